"""What every data source shares: the `LoadedData` they return, the one image and label
validator, the held-out split, and the class-name helper.

Sources (deepae.data.mnist, .arrays, .folders) turn files into arrays; everything about
what a valid image or label array is lives here, once.
"""

from __future__ import annotations

import math
import os
import stat
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from deepae.data.mapped import ImageRows
from deepae.errors import DataError

Log = Callable[[str], None]

# Labels are stored as uint8, as MNIST's, so at most 256 classes: every source refuses
# more with the same message, and pages and figures can rely on it.
MAX_CLASSES = 256


def quiet(message: str) -> None:
    """The default `log`: the library prints nothing."""


def warnings_only(message: str) -> None:
    """The log of a load given none: its warnings as Python warnings, the rest unsaid."""
    if message.startswith("warning: "):
        warnings.warn(message.removeprefix("warning: "), stacklevel=4)
    else:
        quiet(message)


def cache_root(explicit: str | os.PathLike | None = None) -> Path:
    """The cache root: `explicit`, else $DEEPAE_CACHE, else ~/.cache/deepae."""
    root = explicit or os.environ.get("DEEPAE_CACHE") or Path.home() / ".cache" / "deepae"
    return Path(root).expanduser()


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """The regular file at `path`, open for binary reading. Anything else (a FIFO, a device
    such as /dev/zero behind a link, a folder) or an unreadable path is a DataError. It is
    opened non-blocking and checked before a byte is read: open() of a FIFO without a
    writer would wait forever."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e}); check the path") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DataError(
                f"{path}: cannot read it (not a regular file but a FIFO, a device or a "
                "folder); give the path of a data file"
            )
        os.set_blocking(fd, True)  # a regular file: reads behave as usual
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays with == is ambiguous
class LoadedData:
    """A dataset: images (N, H, W), labels (N,) or None, and where it came from.

    Images are uint8 (0-255), or float32 in [0, 1] for float arrays; uint8 images of a
    .npy file or a folder's cache stay in their file (deepae.data.ImageRows, read a chunk
    at a time). Labels are uint8 class numbers (None: unlabelled). Unpacks like
    `keras.datasets.mnist.load_data()`: `(x_train, y_train), (x_test, y_test) = data`.
    """

    x_train: np.ndarray | ImageRows  # (60000, 28, 28) uint8 for MNIST
    y_train: np.ndarray | None  # (60000,) uint8; None for unlabelled data
    x_test: np.ndarray | ImageRows  # (10000, 28, 28) uint8 (the held-out split for others)
    y_test: np.ndarray | None  # (10000,) uint8; None for unlabelled data
    source: str  # "cache", "data-dir <dir>", "system <dir>", "npm <package>", "npz file", ...
    path: Path | None  # folder (or file) holding the data; None if a download was not cached
    name: str
    class_names: tuple[str, ...] | None  # label value -> name; None: show the numbers
    # How deepae.data.load_dataset was called, so a run can load the same data again.
    load_args: dict | None = None
    # True where deepae held the test split out itself (val_fraction, seed); False where
    # the data brought its own (MNIST, a Keras-layout .npz, a pack).
    held_out: bool = False

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        yield self.x_train, self.y_train
        yield self.x_test, self.y_test

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray | None]:
        """(images, labels) of split "train" or "test"."""
        if name not in ("train", "test"):
            raise DataError(f"split must be train or test, got {name!r}", field="split")
        return (self.x_train, self.y_train) if name == "train" else (self.x_test, self.y_test)


def class_name(class_names: Sequence[str] | None, label: object) -> str:
    """The name of class number `label`, or the number itself where there is no name."""
    i = int(label)
    return class_names[i] if class_names and 0 <= i < len(class_names) else str(i)


# -- the one image validator ------------------------------------------------------------


def check_pixels(x: np.ndarray, where: str) -> np.ndarray:
    """Pixel values as deepae takes them: uint8 (0-255) as is, float in [0, 1] as float32.
    Any shape. Raises DataError naming `where` for other dtypes, NaN or out-of-range."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind != "f":
        raise DataError(
            f"{where}: images of dtype {x.dtype}; use uint8 (0-255) or float in [0, 1], "
            "e.g. x.astype(np.uint8)"
        )
    if x.size and not np.isfinite(x).all():
        raise DataError(f"{where}: images contain NaN or infinite values; clean the data first")
    if x.size:
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise DataError(
                f"{where}: float images must lie in [0, 1] (the BCE loss needs it), got "
                f"[{lo:g}, {hi:g}]; divide 0-255 values by 255, or save them as uint8"
            )
    return x.astype(np.float32, copy=False)


def check_image_stack(raw: np.ndarray, where: str) -> np.ndarray:
    """An image array of a data file -> (N, H, W) uint8, or float32 in [0, 1].

    Accepts (N, H, W), (N, H, W, 1) (Keras' channels-last gray) and (N, H*W) of square
    images. Raises DataError naming `where` for anything else."""
    x = np.asarray(raw)
    if x.ndim == 4 and x.shape[3] == 1:
        x = x[..., 0]
    elif x.ndim == 2 and x.shape[1] > 0:  # (N, H * W): flattened square images
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise DataError(
                f"{where}: flat images of {x.shape[1]} values are not square; save them "
                "as (N, H, W)"
            )
        x = x.reshape(len(x), side, side)
    if x.ndim != 3 or 0 in x.shape:
        raise DataError(
            f"{where}: images of shape {raw.shape}; expected (N, H, W), (N, H, W, 1) or "
            "(N, H*W) of square images, with N, H, W at least 1"
        )
    return check_pixels(x, where)


def flatten_images(x: np.ndarray, where: str = "images") -> np.ndarray:
    """Images as the article feeds them to the network: float32 (N, D) in [0, 1].

    uint8 (N, H, W) or (N, D) is divided by 255; float input of either shape must already be
    in [0, 1] and is passed through (as float32, without a copy where possible).
    """
    x = np.asarray(x)
    if x.ndim not in (2, 3):
        raise DataError(f"{where} must be (N, H, W) or (N, D), got shape {x.shape}")
    x = check_pixels(x, where)
    flat = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    if x.dtype == np.uint8:
        return np.divide(flat, np.float32(255), dtype=np.float32)
    return flat


# -- labels ---------------------------------------------------------------------------------


def check_labels(raw: np.ndarray, where: str, n: int) -> np.ndarray:
    """Label array -> (n,) uint8 class numbers, or strings (numbered by `number_labels`)."""
    y = raw[:, 0] if raw.ndim == 2 and raw.shape[1] == 1 else raw
    if y.ndim != 1:
        raise DataError(f"{where}: labels of shape {raw.shape}; expected one label per image (N,)")
    if len(y) != n:
        raise DataError(f"{where}: {len(y)} labels for {n} images; give one label per image")
    if y.dtype.kind == "U":
        return y
    if y.dtype.kind not in "iu":
        raise DataError(
            f"{where}: labels of dtype {y.dtype}; use integers 0-{MAX_CLASSES - 1} or strings"
        )
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= MAX_CLASSES):
        raise DataError(
            f"{where}: labels range over [{int(y.min())}, {int(y.max())}]; class numbers must "
            f"lie in 0-{MAX_CLASSES - 1}"
        )
    return y.astype(np.uint8)


def number_labels(
    parts: list[np.ndarray], names: tuple[str, ...] | None, where: str
) -> tuple[list[np.ndarray], tuple[str, ...] | None]:
    """Labels of each part as uint8 class numbers, and the class names (or None).

    String labels become the indices of their sorted unique values, which name them."""
    if any(p.dtype.kind == "U" for p in parts):
        if not all(p.dtype.kind == "U" for p in parts):
            raise DataError(f"{where}: mixes string and integer labels; use one kind")
        classes = np.unique(np.concatenate(parts))  # sorted
        check_class_count(len(classes), where)
        numbered = [np.searchsorted(classes, p).astype(np.uint8) for p in parts]
        return numbered, tuple(classes.tolist())
    top = max((int(p.max()) for p in parts if len(p)), default=-1)
    if names is not None and top >= len(names):
        raise DataError(f"{where}: label {top} has no entry in class_names ({len(names)} names)")
    return parts, names


def check_class_count(n: int, where: str) -> None:
    if n > MAX_CLASSES:
        raise DataError(
            f"{where}: {n} classes; at most {MAX_CLASSES} are supported (labels are uint8)"
        )


# -- splits ---------------------------------------------------------------------------------


def holdout_split(n: int, *, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) of a seeded random split of n items, each sorted so the
    data keeps its order; validation gets round(n * val_fraction) items, at least 1."""
    n_val = max(1, round(n * val_fraction))
    if n_val >= n:
        raise DataError(
            f"only {n} image(s): too few to hold out {val_fraction:g} of them for validation "
            "and train on the rest; add images"
        )
    order = np.random.default_rng(seed).permutation(n)  # (n,)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def split_data(x, y, names, path: Path, source: str, split: dict) -> LoadedData:
    """LoadedData of unsplit images x (N, H, W) and labels y (N,) or None, with a seeded
    held-out validation split (`split`: val_fraction, seed)."""
    try:
        train, val = holdout_split(len(x), **split)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    pick = x.select if isinstance(x, ImageRows) else x.__getitem__  # mapped: no copy
    return LoadedData(
        x_train=pick(train), y_train=None if y is None else y[train],
        x_test=pick(val), y_test=None if y is None else y[val],
        source=source, path=path, name=path.stem if path.is_file() else path.name,
        class_names=names, held_out=True,
    )  # fmt: skip


def describe(data: LoadedData) -> dict:
    """What a loaded dataset holds: name, source, path, the shapes and dtype of both splits,
    and the classes with their training counts."""
    counts = None
    if data.y_train is not None:
        values, n = np.unique(data.y_train, return_counts=True)
        counts = {class_name(data.class_names, v): int(c) for v, c in zip(values, n, strict=True)}
    return {
        "name": data.name,
        "source": data.source,
        "path": None if data.path is None else str(data.path),
        "train": f"{data.x_train.shape} {data.x_train.dtype}",
        "validation": f"{data.x_test.shape} {data.x_test.dtype}",
        "classes": counts if counts is not None else "none (unlabelled)",
    }


def format_record(record: dict) -> str:
    """A dict of `describe`, `fetch` or `info` as indented `key: value` lines."""
    lines = []
    for key, value in record.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k}: {v}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)
