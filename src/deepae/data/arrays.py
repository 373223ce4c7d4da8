"""Arrays as data: read .npy and .npz files from anyone without trusting them, and load
them as a dataset (`load_npz`, `load_npy`).

`np.load` allocates whatever an .npy header claims before it reads a byte of data, and
will unpickle object arrays if asked. Here every header is checked against the bytes that
are really there before anything is allocated, object and structured arrays are refused,
and a zip member's claimed size is checked against its compressed size (deflate cannot
expand more than ~1032:1), so a lying header or a zip bomb ends in a `DataError`, not in
an out-of-memory kill. Nothing here ever unpickles.

A uint8 .npy given as a dataset is memory-mapped once its header has passed those checks
(`map_npy`): its images stay in the file, so it may be larger than RAM. `deepae data pack`
(deepae.data.pack) writes such files, with their labels and split beside them.
"""

from __future__ import annotations

import contextlib
import math
import os
import tokenize
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from deepae import fsio
from deepae.data._base import (
    LoadedData,
    Log,
    check_image_stack,
    check_labels,
    number_labels,
    open_regular,
    quiet,
    split_data,
)  # fmt: skip
from deepae.data.mapped import FileWatch, ImageRows, watch_map
from deepae.errors import DataError, RunError

# The largest array accepted (bytes): 4 GiB is ~5 million 28x28 float32 images. Bigger
# claims are refused before anything is allocated.
MAX_ARRAY_BYTES = 4 * 2**30
# Deflate's best case is ~1032:1 (RFC 1951: a 258-byte match in 2 bits); a member that
# claims to expand more than this is lying about its size.
MAX_DEFLATE_RATIO = 1100
# What a header parse can raise on garbage: numpy wraps most as ValueError, but the
# Python 2 header fallback tokenizes and can raise the rest.
_HEADER_ERRORS = (ValueError, SyntaxError, TypeError, tokenize.TokenError, RecursionError)


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """The array of the .npy file at `path`; the header is checked against the file size
    first. Raises DataError naming the file for anything but a well-formed plain array."""
    path = Path(path)
    try:
        with open_regular(path) as f:  # a FIFO or a device is refused, never waited on
            return _read_array(f, os.fstat(f.fileno()).st_size, str(path), MAX_ARRAY_BYTES)
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e}); check the path") from None


class NpzFile:
    """The arrays of an open .npz, read one at a time by name (see `open_npz`)."""

    def __init__(self, zf: zipfile.ZipFile, path: Path):
        self._zf, self.path = zf, path
        self._members = {
            info.filename[: -len(".npy")]: info
            for info in zf.infolist()
            if info.filename.endswith(".npy") and not info.is_dir()
        }

    @property
    def keys(self) -> list[str]:
        """Array names, in the order they are stored."""
        return list(self._members)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.get(key)

    def get(self, key: str, *, max_bytes: int = MAX_ARRAY_BYTES) -> np.ndarray:
        """The array `key`, refused before allocation if it would exceed `max_bytes`."""
        info = self._members[key]
        where = f"{self.path}[{key}]"
        limit = info.compress_size * MAX_DEFLATE_RATIO + 1024
        if info.file_size > limit:
            raise DataError(
                f"{where}: zip entry claims {info.file_size} bytes from {info.compress_size} "
                "compressed, more than deflate can expand; the file is corrupt or hostile"
            )
        try:
            with self._zf.open(info) as f:
                return _read_array(f, info.file_size, where, max_bytes)
        except DataError:  # the entry read, but is not an array deepae takes: said already
            raise
        # What zipfile raises on damaged entries: bad CRC, cut-off deflate stream, an
        # encrypted or unknown compression method, a bad local header.
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError,
                NotImplementedError, ValueError) as e:  # fmt: skip
            raise DataError(
                f"{where}: corrupt zip entry ({one_line(e)}); save the file again"
            ) from None


@contextlib.contextmanager
def open_npz(path: str | os.PathLike) -> Iterator[NpzFile]:
    """Open the .npz at `path` for reading its arrays by name; DataError if it is not a zip."""
    path = Path(path)
    with open_regular(path) as f:  # a FIFO or a device is refused, never waited on
        try:
            zf = zipfile.ZipFile(f)
        except OSError as e:
            raise DataError(f"{path}: cannot read it ({e.strerror or e}); check the path") from None
        # BadZipFile for a damaged directory, NotImplementedError for an unknown zip version.
        except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as e:
            raise DataError(
                f"{path}: not a readable .npz ({one_line(e)}); save arrays with numpy.savez"
            ) from None
        with zf:
            yield NpzFile(zf, path)


def map_npy(path: str | os.PathLike) -> np.ndarray:
    """The array of the .npy file at `path`, checked as `read_npy` checks it; a uint8
    array is memory-mapped read-only (an np.memmap: its pages stay in the file and the OS
    page cache, so a file larger than RAM can be used), any other is read into memory.
    A mapped array has no size limit: nothing is allocated for it, and its header has
    been checked against the file's size."""
    path = Path(path)
    try:
        with open_regular(path) as f:  # a FIFO or a device is refused, never waited on
            size = os.fstat(f.fileno()).st_size
            shape, fortran, dtype = _checked_header(f, size, str(path), None)
            if dtype != np.uint8 or math.prod(shape) == 0:
                _check_limit(shape, dtype, str(path), MAX_ARRAY_BYTES)
                return _read_data(f, shape, fortran, dtype, str(path))
            order = "F" if fortran else "C"
            mapped = np.memmap(f, dtype=dtype, mode="r", offset=f.tell(), shape=shape, order=order)
            return watch_map(mapped, os.dup(f.fileno()), str(path))  # see mapped.FileWatch
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e}); check the path") from None


def _read_array(f: BinaryIO, size: int, where: str, max_bytes: int) -> np.ndarray:
    """Read one .npy stream of `size` bytes: header, checks, then exactly the data."""
    shape, fortran, dtype = _checked_header(f, size, where, max_bytes)
    return _read_data(f, shape, fortran, dtype, where)


def _checked_header(f: BinaryIO, size: int, where: str, max_bytes: int | None):
    """(shape, fortran, dtype) of a .npy stream of `size` bytes whose header has just been
    checked against them (and against `max_bytes`, unless None); `f` is left at the data."""
    shape, fortran, dtype = _read_header(f, where)
    if dtype.hasobject or dtype.fields is not None or dtype.itemsize == 0:
        raise DataError(
            f"{where}: {dtype} arrays are not supported (object arrays would need pickle, "
            "which deepae never loads); save plain numeric arrays"
        )
    if any(n < 0 for n in shape):
        raise DataError(f"{where}: header has a negative dimension {shape}; the file is corrupt")
    claimed, held = math.prod(shape) * dtype.itemsize, size - f.tell()
    if claimed != held:
        what = "truncated" if held < claimed else "trailing bytes after the data"
        raise DataError(
            f"{where}: header claims shape {shape} of {dtype} = {claimed} bytes but the file "
            f"holds {held} ({what}); save the array again"
        )
    if max_bytes is not None:
        _check_limit(shape, dtype, where, max_bytes)
    return shape, fortran, dtype


def _check_limit(shape: tuple[int, ...], dtype: np.dtype, where: str, max_bytes: int) -> None:
    if math.prod(max(n, 1) for n in shape) * dtype.itemsize > max_bytes:
        raise DataError(
            f"{where}: shape {shape} of {dtype} is more than the {max_bytes}-byte limit"
        )


def _read_data(f: BinaryIO, shape, fortran: bool, dtype: np.dtype, where: str) -> np.ndarray:
    claimed = math.prod(shape) * dtype.itemsize
    data = f.read(claimed)
    if len(data) != claimed:
        raise DataError(f"{where}: ends after {len(data)} of {claimed} data bytes (truncated)")
    flat = np.frombuffer(data, dtype=dtype, count=math.prod(shape))
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def _read_header(f: BinaryIO, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        with warnings.catch_warnings():
            # numpy warns (and parses anyway) for headers written by Python 2.
            warnings.simplefilter("ignore")
            version = npy_format.read_magic(f)
            if version == (1, 0):
                return npy_format.read_array_header_1_0(f)
            if version == (2, 0):
                return npy_format.read_array_header_2_0(f)
    except _HEADER_ERRORS as e:
        raise DataError(
            f"{where}: not a .npy array ({one_line(e)}); save it with numpy.save"
        ) from None
    raise DataError(f"{where}: .npy format version {version} is not supported (only 1.0, 2.0)")


def one_line(e: BaseException) -> str:
    """An exception as one short line, for messages that must stay on one line."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."


# -- arrays as a dataset -------------------------------------------------------------------

IMAGE_KEYS = ("images", "x")  # .npz names of unsplit images; the labels' names pair up:
LABEL_KEYS = {"images": "labels", "x": "y"}


def load_npy(path: Path, split: dict, log: Log = quiet) -> LoadedData:
    """A .npy of images (see check_image_stack); uint8 images stay in the file (ImageRows,
    read a chunk at a time). Labels come from NAME.labels.npy beside it when there is one;
    the split from NAME.json where `deepae data pack` wrote one (training images first),
    else it is a seeded held-out split. `log` hears of a file that is slow to read."""
    raw = map_npy(path)
    x = check_image_stack(raw, str(path))
    if isinstance(raw, np.memmap):
        x = ImageRows(x, watch=FileWatch.of(raw))  # never converted whole: read per batch
        if raw.ndim > 1 and not raw.flags.c_contiguous:  # Fortran order
            # Each image's pixels lie one image-count apart: a batch of 512 gathered 17x
            # slower than from C order (page cache warm), one disk page per pixel when cold.
            log(
                f"warning: {path} is stored in Fortran order, so each image's pixels are "
                "spread over the whole file and training reads it many times slower; save "
                "it with numpy.save(path, numpy.ascontiguousarray(images)) to train at speed"
            )
    info = _pack_info(path, len(x))
    y, names = _labels_beside(path, len(x), info.get("class_names"))
    n = info.get("n_train")
    if n is None:
        return split_data(x, y, names, path, "npy file", split)
    y_train, y_test = (None, None) if y is None else (y[:n], y[n:])
    name = info.get("name") or path.stem  # the source's: a packed mnist is still mnist
    return LoadedData(x[:n], y_train, x[n:], y_test, "packed npy file", path, name, names)


def load_npz(path: Path, split: dict) -> LoadedData:
    """A .npz in Keras' layout (x_train, x_test, + y_train, y_test), used as is; or
    images (+ labels), x (+ y) or a single array, split as `split` says. An optional
    class_names array names integer labels."""
    with open_npz(path) as npz:
        keys = npz.keys
        names = (
            _names(npz["class_names"], f"{path}[class_names]") if "class_names" in keys else None
        )
        if "x_train" in keys and "x_test" in keys:
            return _keras_layout(npz, path, names)
        image_key = next((k for k in IMAGE_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
        if image_key is None:
            raise DataError(
                f"{path}: holds {', '.join(keys) or 'no arrays'}; expected x_train and x_test "
                "(with y_train and y_test), or images (with labels), or x (with y)"
            )
        x, y = check_image_stack(npz[image_key], f"{path}[{image_key}]"), None
        label_key = LABEL_KEYS.get(image_key)
        if label_key in keys:
            raw = check_labels(npz[label_key], f"{path}[{label_key}]", len(x))
            (y,), names = number_labels([raw], names, str(path))
        else:
            names = None  # class names without labels name nothing
    return split_data(x, y, names, path, "npz file", split)


def _keras_layout(npz: NpzFile, path: Path, names) -> LoadedData:
    x_train = check_image_stack(npz["x_train"], f"{path}[x_train]")
    x_test = check_image_stack(npz["x_test"], f"{path}[x_test]")
    if x_train.shape[1:] != x_test.shape[1:] or x_train.dtype != x_test.dtype:
        raise DataError(
            f"{path}: x_train is {x_train.dtype} {x_train.shape[1:]} but x_test is "
            f"{x_test.dtype} {x_test.shape[1:]}; both need the same size and dtype"
        )
    y_keys = [k for k in ("y_train", "y_test") if k in npz.keys]
    if len(y_keys) == 1:
        raise DataError(f"{path}: has {y_keys[0]} but not both y_train and y_test")
    y_train = y_test = None
    if y_keys:
        raw = [
            check_labels(npz[k], f"{path}[{k}]", len(x))
            for k, x in (("y_train", x_train), ("y_test", x_test))
        ]
        (y_train, y_test), names = number_labels(raw, names, str(path))
    return LoadedData(x_train, y_train, x_test, y_test, "npz file", path, path.stem,
                      names if y_keys else None)  # fmt: skip


def _names(raw: np.ndarray, where: str) -> tuple[str, ...]:
    if raw.ndim != 1 or raw.dtype.kind != "U":
        raise DataError(f"{where}: class_names must be a 1-D array of strings")
    return tuple(raw.tolist())


# -- a .npy with its labels and split beside it (what `deepae data pack` writes) ------------

LABELS_SUFFIX = ".labels.npy"  # NAME.npy's labels: NAME.labels.npy, uint8 (N,)
INFO_SUFFIX = ".json"  # NAME.npy's split and class names: NAME.json
PACK_FORMAT, PACK_VERSION = "deepae-pack", 1
_PACK_FIX = "pack the data again (deepae data pack), or remove that file"


def labels_path(path: str | os.PathLike) -> Path:
    """Where the labels of the images in NAME.npy are: NAME.labels.npy beside it."""
    path = Path(path)
    return path.with_name(path.stem + LABELS_SUFFIX)


def info_path(path: str | os.PathLike) -> Path:
    """Where the split and class names of a packed NAME.npy are: NAME.json beside it."""
    path = Path(path)
    return path.with_name(path.stem + INFO_SUFFIX)


def _pack_info(path: Path, n: int) -> dict:
    """NAME.json of a packed NAME.npy of n images, checked ({} when there is none, or it is
    a JSON object without a "format": another tool's file)."""
    where = info_path(path)
    try:
        info = fsio.read_json(where, fix=_PACK_FIX)
    except RunError as e:
        raise DataError(str(e), field="dataset") from None
    if info is None or isinstance(info, dict) and "format" not in info:
        # No "format" key: another tool's NAME.json (a description, a config), not a pack's;
        # ignoring it reads NAME.npy as if it were not there.
        return {}
    counts = [info.get(k) if isinstance(info, dict) else None for k in ("n_train", "n_test")]
    names = info.get("class_names") if isinstance(info, dict) else None
    valid = (
        isinstance(info, dict)
        and (info.get("format"), info.get("version")) == (PACK_FORMAT, PACK_VERSION)
        and all(type(c) is int and c >= 1 for c in counts)
        and counts[0] + counts[1] == n
        and (names is None or isinstance(names, list) and all(isinstance(v, str) for v in names))
        and isinstance(info.get("name", ""), str)
    )
    if not valid:
        raise DataError(
            f"{where}: not a {PACK_FORMAT} {PACK_VERSION} split of the {n} images of "
            f"{path.name} (n_train + n_test must be {n}); {_PACK_FIX}",
            field="dataset",
        )
    return info


def _labels_beside(path: Path, n: int, names: list[str] | None):
    """(labels (n,) uint8, class names) from NAME.labels.npy, or (None, None) without it."""
    where = labels_path(path)
    if not where.is_file():
        return None, None
    raw = check_labels(read_npy(where), str(where), n)
    (y,), names = number_labels([raw], tuple(names) if names else None, str(where))
    return y, names
