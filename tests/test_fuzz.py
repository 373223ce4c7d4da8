"""Fuzzing the readers of untrusted files (IDX, .npy/.npz, image folders): random bytes,
truncations, flipped bytes and lying headers. Whatever comes in, the only exception that
may come out is the project's one-line DataError."""

import functools
import gzip
import io
import math
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy_format
from PIL import Image

from deepae.data import folders as images
from deepae.data import load_dataset, load_idx_dataset
from deepae.data.idx import encode_idx, idx_header, maybe_gunzip, parse_idx, read_idx
from deepae.errors import DataError

FUZZ = settings(max_examples=150, deadline=None)


def outcome(fn):
    """fn()'s result, or None if it raised DataError (with a one-line message); any other
    exception fails the test."""
    try:
        return fn()
    except DataError as e:
        assert "\n" not in str(e) and str(e)
        return None


def mutate(blob: bytes, cut: int | None, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(blob if cut is None else blob[: cut % (len(blob) + 1)])
    for at, bits in flips:
        if out:
            out[at % len(out)] ^= bits
    return bytes(out)


MUTATION = {
    "cut": st.none() | st.integers(0, 10**6),
    "flips": st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=4),
}


# -- IDX -----------------------------------------------------------------------------------------


@FUZZ
@given(blob=st.binary(max_size=300))
def test_idx_random_bytes(blob):
    x = outcome(lambda: parse_idx(blob, name="x"))
    if x is not None:  # accepted only if it is exactly an IDX file: it encodes back to itself
        assert encode_idx(x) == blob
    out = outcome(lambda: maybe_gunzip(b"\x1f\x8b" + blob, name="x"))
    if out is not None:  # what comes out is what gzip itself decompresses
        assert out == gzip.decompress(b"\x1f\x8b" + blob)


@FUZZ
@given(
    shape=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4), extra=st.binary(max_size=64)
)
def test_idx_header_lies(shape, extra):
    # The header's claim is checked against the bytes before anything is allocated.
    blob = idx_header(tuple(shape)) + extra
    x = outcome(lambda: parse_idx(blob, name="x"))
    possible = math.prod(max(n, 1) for n in shape) <= 2**62  # numpy's limit, even when empty
    assert (x is not None) == (math.prod(shape) == len(extra) and possible)
    if x is not None:
        assert x.shape == tuple(shape)


@FUZZ
@given(gz=st.booleans(), **MUTATION)
def test_idx_files_truncated_or_flipped(gz, cut, flips):
    array = np.arange(60, dtype=np.uint8).reshape(5, 3, 4)
    blob = idx_header(array.shape) + array.tobytes()
    if gz:
        import gzip

        blob = gzip.compress(blob, mtime=0)
    blob = mutate(blob, cut, flips)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images-idx3-ubyte"
        path.write_bytes(blob)
        x = outcome(lambda: read_idx(path, ndim=3))
    if cut is not None and cut % (len(blob) + 1) < len(blob) and not flips:
        assert x is None  # a truncated file is never accepted
    if x is not None:
        assert x.shape == (5, 3, 4)


# -- .npy / .npz -----------------------------------------------------------------------------


@functools.cache
def valid_npz() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buf, images=rng.integers(0, 256, (12, 3, 3), np.uint8), labels=np.arange(12) % 3)
    return buf.getvalue()


def load_bytes(blob: bytes, name: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(blob)
        return outcome(lambda: load_dataset(path, cache_dir=Path(tmp) / "cache"))


@FUZZ
@given(blob=st.binary(max_size=600), name=st.sampled_from(["a.npz", "a.npy"]))
def test_array_files_of_random_bytes(blob, name):
    assert load_bytes(blob, name) is None


@FUZZ
@given(compressed=st.booleans(), **MUTATION)
def test_npz_truncated_or_flipped(compressed, cut, flips):
    blob = valid_npz()
    if compressed:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zc:
                for name in zf.namelist():
                    zc.writestr(name, zf.read(name))
        blob = out.getvalue()
    d = load_bytes(mutate(blob, cut, flips), "a.npz")
    if cut is not None and cut % (len(blob) + 1) < len(blob):
        assert d is None  # the end-of-central-directory record is gone
    if d is not None:
        assert d.x_train.shape[1:] == (3, 3)


@functools.cache
def keras_npz() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(2)
    x = {k: rng.integers(0, 256, (n, 4, 4), np.uint8) for k, n in (("x_train", 6), ("x_test", 3))}
    np.savez_compressed(
        buf, **x, y_train=np.arange(6, dtype=np.uint8), y_test=np.zeros(3, np.uint8)
    )
    return buf.getvalue()


@FUZZ
@given(**MUTATION)
def test_keras_npz_in_a_data_dir_or_as_a_dataset(cut, flips):
    """Both readers of Keras' layout: --data-dir mnist.npz (checked by SHA-256, so never
    accepted here) and --dataset file.npz."""
    blob = mutate(keras_npz(), cut, flips)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mnist.npz"
        path.write_bytes(blob)
        assert outcome(lambda: load_idx_dataset("mnist", path, cache_dir=tmp)) is None
        d = outcome(lambda: load_dataset(path, cache_dir=tmp))
    assert d is None or d.x_train.shape[1:] == (4, 4)  # a flipped name may change the layout


npy_dtypes = st.sampled_from(["<u1", "<f4", ">f8", "<i8", "|b1", "<U3", "|O", "<c8", "|V4"])


@FUZZ
@given(
    shape=st.lists(st.integers(-3, 2**40), max_size=4),
    dtype=npy_dtypes,
    fortran=st.booleans(),
    payload=st.binary(max_size=200),
)
def test_npy_header_lies(shape, dtype, fortran, payload):
    buf = io.BytesIO()
    header = {"descr": dtype, "fortran_order": fortran, "shape": tuple(shape)}
    npy_format.write_array_header_1_0(buf, header)
    d = load_bytes(buf.getvalue() + payload, "a.npy")
    if d is not None:  # accepted only when the header tells the truth about the payload
        itemsize = np.dtype(dtype).itemsize
        assert dtype in ("<u1", "<f4", ">f8") and math.prod(shape) * itemsize == len(payload)
        assert len(d.x_train) + len(d.x_test) == shape[0]


@FUZZ
@given(
    header=st.binary(max_size=200), version=st.sampled_from([b"\x01\x00", b"\x02\x00", b"\x03\x00"])
)
def test_npy_random_headers(header, version):
    size = (
        struct.pack("<H", len(header)) if version == b"\x01\x00" else struct.pack("<I", len(header))
    )
    # A header with no data after it holds no images: never a dataset.
    assert load_bytes(b"\x93NUMPY" + version + size + header, "a.npy") is None


# -- image folders --------------------------------------------------------------------------


@functools.cache
def valid_images() -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    out = {}
    formats = {
        "png": "PNG",
        "jpg": "JPEG",
        "bmp": "BMP",
        "gif": "GIF",
        "tif": "TIFF",
        "webp": "WEBP",
    }
    for ext, fmt in formats.items():
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt)
        out[ext] = buf.getvalue()
    return out


@FUZZ
@given(
    kind=st.sampled_from(["png", "jpg", "bmp", "gif", "tif", "webp", "random"]),
    random=st.binary(max_size=400),
    strict=st.booleans(),
    labelled=st.booleans(),
    **MUTATION,
)
def test_image_folder_of_damaged_files(kind, random, strict, labelled, cut, flips):
    blob = random if kind == "random" else mutate(valid_images()[kind], cut, flips)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        sub = folder / "class" if labelled else folder
        sub.mkdir(parents=True)
        good = io.BytesIO()
        Image.fromarray(np.zeros((5, 5), np.uint8)).save(good, format="PNG")
        (sub / "good.png").write_bytes(good.getvalue())
        (sub / f"fuzzed.{kind}").write_bytes(blob)
        no_cache = Path(tmp) / "no-cache"  # a file: caching fails quietly, no fsync per example
        no_cache.write_text("")
        found = outcome(
            lambda: images.load_image_folder(  # (log: a skipped file is no failure here)
                folder, image_size=(6, 4), strict=strict, cache_dir=no_cache, log=print
            )
        )
    if found is None:
        assert strict  # without strict, the good image is always loaded
    else:
        assert found.images.shape[1:] == (6, 4) and len(found.images) in (1, 2)
        assert len(found.images) + len(found.skipped) == 2
        assert (found.labels is not None) == labelled


def test_fuzz_inputs_are_valid_when_unharmed():
    """The seeds the fuzzers mutate are readable: a failure above is the damage's doing."""
    assert load_bytes(valid_npz(), "a.npz") is not None
    with tempfile.TemporaryDirectory() as tmp:
        for ext, blob in valid_images().items():
            (Path(tmp) / f"x.{ext}").write_bytes(blob)
            assert images.read_image(Path(tmp) / f"x.{ext}", (9, 7)).shape == (9, 7)


@pytest.mark.parametrize("blob", [b"", b"\x00" * 10, b"BM" + b"\xff" * 60])
def test_tiny_garbage_images(tmp_path, blob):
    (tmp_path / "x.bmp").write_bytes(blob)
    with pytest.raises(DataError, match=r"x\.bmp: "):
        images.read_image(tmp_path / "x.bmp")
