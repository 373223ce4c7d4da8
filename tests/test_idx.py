"""IDX reading, checked against headers packed by hand with struct (the oracle)."""

import gzip
import os
import signal
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepae.data.idx import encode_idx, idx_shape, maybe_gunzip, parse_idx, read_idx, read_idx_bytes
from deepae.errors import DataError


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """IDX as the format's description has it: 0, 0, dtype code, ndim, big-endian dims, data."""
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    return struct.pack(">BBBB", 0, 0, code, array.ndim) + dims + array.tobytes()


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(5, 4, 3), dtype=np.uint8)


def test_parse_images_and_labels(images):
    x = parse_idx(idx_bytes(images), name="x", ndim=3)
    assert x.dtype == np.uint8 and x.shape == (5, 4, 3)
    np.testing.assert_array_equal(x, images)
    assert x.flags.writeable
    labels = np.array([5, 0, 4, 1, 9], dtype=np.uint8)
    np.testing.assert_array_equal(parse_idx(idx_bytes(labels), name="y", ndim=1), labels)


def test_header_bytes_are_the_mnist_magic(images):
    # 0x00000803 for 3-D uint8 images, 0x00000801 for labels, as on LeCun's page.
    assert idx_bytes(images)[:4] == bytes.fromhex("00000803")
    assert encode_idx(images) == idx_bytes(images)
    assert encode_idx(images[:, 0, 0])[:4] == bytes.fromhex("00000801")
    assert idx_shape(idx_bytes(images), name="x") == (5, 4, 3)


def test_encode_rejects_other_dtypes():
    with pytest.raises(DataError, match="uint8"):
        encode_idx(np.zeros((2, 2), dtype=np.float32))


@pytest.mark.parametrize("compress", [False, True])
def test_read_raw_and_gzipped(tmp_path, images, compress):
    data = idx_bytes(images)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if compress else data)
    assert read_idx_bytes(path) == data
    np.testing.assert_array_equal(read_idx(path, ndim=3), images)


def _corrupt_cases():
    good = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    return {
        "empty": (b"", "empty"),
        "short header": (good[:3], "truncated IDX header"),
        "wrong magic": (b"\x12\x34" + good[2:], "not an IDX file"),
        "dtype code": (good[:2] + b"\x0d" + good[3:], "dtype code 0x0d"),
        "ndim": (good[:3] + b"\x01" + good[4:], "1 dimensions, expected 3"),
        "zero ndim": (good[:3] + b"\x00" + good[4:], "0 dimensions"),
        "dims cut": (good[:10], "truncated IDX header"),
        "truncated": (good[:-1], "truncated"),
        "trailing": (good + b"\0", "trailing bytes"),
    }


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("case", list(_corrupt_cases()))
def test_corrupt_files_name_the_file(tmp_path, case, compress):
    data, phrase = _corrupt_cases()[case]
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DataError, match=phrase) as err:
        read_idx(path, ndim=3)
    assert str(path) in str(err.value)


def test_lying_header_is_rejected_before_allocating():
    # Claims 10**9 labels (1 GB) but holds 10 bytes: must fail fast without allocating it.
    data = struct.pack(">BBBBI", 0, 0, 8, 1, 10**9) + bytes(10)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="1000000000 bytes but the file holds 10"):
            parse_idx(data, name="liar-idx1-ubyte", ndim=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # numpy reports its allocations to tracemalloc


def test_corrupt_gzip(tmp_path, images):
    packed = bytearray(gzip.compress(idx_bytes(images)))
    packed[len(packed) // 2] ^= 0xFF  # flipped bits in the deflate stream or its CRC
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(DataError, match="corrupt or truncated gzip") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_truncated_gzip(tmp_path, images):
    packed = gzip.compress(idx_bytes(images))
    for cut in (len(packed) // 2, len(packed) - 4, 12):
        path = tmp_path / f"cut{cut}.gz"
        path.write_bytes(packed[:cut])
        with pytest.raises(DataError, match="corrupt or truncated gzip") as err:
            read_idx(path)
        assert str(path) in str(err.value)


def test_gzip_header_only_is_rejected():
    with pytest.raises(DataError, match="x.gz: corrupt"):
        maybe_gunzip(b"\x1f\x8bnot really gzip", name="x.gz")


def test_gzip_bomb_stops_at_the_cap(tmp_path):
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(bytes(30_000_000), compresslevel=1))  # inflates to 30 MB
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="more than 1000000 bytes"):
            read_idx_bytes(path, max_bytes=1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # stopped near the cap, not after inflating all 30 MB
    assert len(read_idx_bytes(path, max_bytes=30_000_000)) == 30_000_000


def test_raw_file_over_the_cap(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(bytes(1001))
    with pytest.raises(DataError, match="1001 bytes, more than the 1000-byte limit"):
        read_idx_bytes(path, max_bytes=1000)


def test_missing_file(tmp_path):
    path = tmp_path / "nope-idx1-ubyte"
    with pytest.raises(DataError, match="cannot read") as err:
        read_idx(path)
    assert str(path) in str(err.value)


@settings(max_examples=50, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
    cut=st.integers(1, 200),
)
def test_round_trip_and_any_truncation_fails(shape, seed, cut):
    array = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    data = idx_bytes(array)
    np.testing.assert_array_equal(parse_idx(data, name="x"), array)
    with pytest.raises(DataError, match="^x: "):
        parse_idx(data[: max(0, len(data) - cut)], name="x")


NOT_REGULAR = {  # what a path can be instead of a file: a FIFO blocks open() forever
    "fifo": os.mkfifo,
    "dev-zero": lambda p: os.symlink("/dev/zero", p),
    "folder": os.mkdir,
}


@pytest.mark.parametrize("kind", NOT_REGULAR)
def test_a_file_that_is_not_regular_is_refused_at_once(tmp_path, kind):
    path = tmp_path / "train-images-idx3-ubyte"
    NOT_REGULAR[kind](path)

    def expired(signum, frame):
        raise TimeoutError("read_idx_bytes blocked")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(10)
    try:
        with pytest.raises(DataError, match="not a regular file") as err:
            read_idx_bytes(path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert str(path) in str(err.value)
