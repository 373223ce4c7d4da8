"""Every dataset deepae can train on, behind one call: `load_dataset(source)`.

`source` is one of
  "mnist", "fashion-mnist"   the IDX datasets of `deepae.data`, verified by SHA-256
  a folder of images         `deepae.images`: grayscale, resized (default 28 x 28), cached
  a .npz file                x_train and x_test (+ y_train, y_test), Keras' layout: used as
                             is; or images (+ labels), or x (+ y), or a single array: split
  a .npy file                images only: split
Image arrays are uint8 (N, H, W) in 0-255 or float (N, H, W) in [0, 1] (kept as float32);
(N, H, W, 1) and (N, D) with D a square number are reshaped to (N, H, W). Labels are
integers 0-255 or strings (class names, numbered in sorted order); an optional
`class_names` array in the .npz names integer labels. Data without a test split gets a
seeded held-out validation split of `val_fraction`. docs/datasets.md has the details.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from deepae import arrays, images
from deepae.data import DATASETS, LoadedData, load_idx_dataset
from deepae.errors import ConfigError, DataError
from deepae.images import parse_image_size

Log = Callable[[str], None]

DEFAULT_IMAGE_SIZE = (28, 28)  # MNIST's: the article's 784-input model fits folder images
DEFAULT_VAL_FRACTION = 0.1  # share of unsplit data held out for validation
MAX_CLASSES = 256  # labels are stored as uint8, as MNIST's
IMAGE_KEYS = ("images", "x")  # .npz names of unsplit images; the labels' names pair up:
LABEL_KEYS = {"images": "labels", "x": "y"}


def load_dataset(
    source: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    image_size: int | str | tuple[int, int] | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    strict: bool = False,
    cache_dir: str | os.PathLike | None = None,
    log: Log | None = None,
) -> LoadedData:
    """Load `source` (a dataset name, a folder of images, or a .npz/.npy file).

    image_size: (H, W), an int for square images, or "32x32"; None means 28 x 28 for image
    folders and the stored size for arrays and named datasets (which are resized when it
    is given). val_fraction and seed: the held-out split of data that has no test split.
    strict: stop at the first unreadable file of a folder instead of skipping it.
    data_dir: where the files of a named dataset are (see deepae.data).
    Returns a LoadedData: images (N, H, W) uint8 (float32 in [0, 1] for float arrays),
    labels (N,) uint8 or None, and `load_args`, what it takes to load the same data again.
    Raises DataError (bad or missing data) or ConfigError (bad arguments).
    """
    size = None if image_size is None else parse_image_size(image_size)
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    source = os.fspath(source)
    if source in DATASETS:
        loaded = load_idx_dataset(source, data_dir, cache_dir=cache_dir, log=log)
        dataset = source
    else:
        if data_dir is not None:
            raise ConfigError(
                f"--data-dir is for {' and '.join(DATASETS)}; {source} already says where "
                "its data is"
            )
        path = _existing(source)
        split = {"val_fraction": val_fraction, "seed": seed}
        if path.is_dir():
            loaded = _from_folder(path, size, split, strict, cache_dir, log)
        else:
            loaded = _from_array_file(path, split)
        dataset = str(path)
    if size is not None:  # a no-op for folders, which are read at this size
        x_train, x_test = (images.resize_images(x, size) for x in (loaded.x_train, loaded.x_test))
        loaded = dataclasses.replace(loaded, x_train=x_train, x_test=x_test)
    load_args = {
        "dataset": dataset,  # a name, or an absolute path
        "image_size": None if size is None else list(size),
        "val_fraction": val_fraction,
        "seed": seed,
        "data_dir": None if data_dir is None else str(Path(data_dir).expanduser().resolve()),
    }
    return dataclasses.replace(loaded, load_args=load_args)


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


# -- sources ---------------------------------------------------------------------------------


def _existing(source: str) -> Path:
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(
            f"{source}: neither a dataset name ({', '.join(DATASETS)}) nor an existing file "
            "or folder; check the spelling or the path"
        )
    return path.resolve()


def _from_folder(path: Path, size, split: dict, strict: bool, cache_dir, log) -> LoadedData:
    found = images.load_image_folder(
        path, image_size=size or DEFAULT_IMAGE_SIZE, strict=strict, cache_dir=cache_dir, log=log
    )
    source = "image folder (cached)" if found.cached else "image folder"
    return _split_data(found.images, found.labels, found.class_names, path, source, split)


def _from_array_file(path: Path, split: dict) -> LoadedData:
    loader = _ARRAY_LOADERS.get(path.suffix.lower())
    if loader is None:
        raise DataError(
            f"{path}: not a folder, .npz or .npy file; give a folder of images or arrays "
            "saved with numpy.save / numpy.savez"
        )
    return loader(path, split)


def _from_npy(path: Path, split: dict) -> LoadedData:
    x = _images(arrays.read_npy(path), str(path))
    return _split_data(x, None, None, path, "npy file", split)


def _from_npz(path: Path, split: dict) -> LoadedData:
    with arrays.open_npz(path) as npz:
        keys = npz.keys

        def get(key: str, kind: Callable, *args) -> np.ndarray:
            return kind(npz[key], f"{path}[{key}]", *args)

        names = get("class_names", _names) if "class_names" in keys else None
        if "x_train" in keys and "x_test" in keys:
            x_train, x_test = get("x_train", _images), get("x_test", _images)
            if x_train.shape[1:] != x_test.shape[1:] or x_train.dtype != x_test.dtype:
                raise DataError(
                    f"{path}: x_train is {x_train.dtype} {x_train.shape[1:]} but x_test is "
                    f"{x_test.dtype} {x_test.shape[1:]}; both need the same size and dtype"
                )
            y_keys = [k for k in ("y_train", "y_test") if k in keys]
            if len(y_keys) == 1:
                raise DataError(f"{path}: has {y_keys[0]} but not both y_train and y_test")
            y_train = y_test = None
            if y_keys:
                raw = [get("y_train", _labels, len(x_train)), get("y_test", _labels, len(x_test))]
                (y_train, y_test), names = _number(raw, names, path)
            return LoadedData(x_train, y_train, x_test, y_test, "npz file", path, path.stem,
                              names if y_keys else None)  # fmt: skip
        image_key = next((k for k in IMAGE_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
        if image_key is None:
            raise DataError(
                f"{path}: holds {', '.join(keys) or 'no arrays'}; expected x_train and x_test "
                "(with y_train and y_test), or images (with labels), or x (with y)"
            )
        x, y = get(image_key, _images), None
        label_key = LABEL_KEYS.get(image_key)
        if label_key in keys:
            (y,), names = _number([get(label_key, _labels, len(x))], names, path)
        else:
            names = None  # class names without labels name nothing
    return _split_data(x, y, names, path, "npz file", split)


_ARRAY_LOADERS = {".npy": _from_npy, ".npz": _from_npz}


def _split_data(x, y, names, path: Path, source: str, split: dict) -> LoadedData:
    try:
        train, val = holdout_split(len(x), **split)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    return LoadedData(
        x_train=x[train], y_train=None if y is None else y[train],
        x_test=x[val], y_test=None if y is None else y[val],
        source=source, path=path, name=path.stem if path.is_file() else path.name,
        class_names=names,
    )  # fmt: skip


# -- checking arrays -------------------------------------------------------------------------


def _images(raw: np.ndarray, where: str) -> np.ndarray:
    """Image array -> (N, H, W) uint8, or float32 in [0, 1]; DataError for anything else."""
    if raw.dtype != np.uint8 and raw.dtype.kind != "f":
        raise DataError(
            f"{where}: images of dtype {raw.dtype}; use uint8 (0-255) or float in [0, 1], "
            "e.g. x.astype(np.uint8)"
        )
    x = raw
    if x.ndim == 4 and x.shape[3] == 1:  # (N, H, W, 1): Keras' channels-last gray
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
    if x.dtype == np.uint8:
        return x
    if not np.isfinite(x).all():
        raise DataError(f"{where}: images contain NaN or infinite values; clean the data first")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise DataError(
            f"{where}: float images must lie in [0, 1] (the BCE loss needs it), got "
            f"[{lo:g}, {hi:g}]; divide 0-255 values by 255, or save them as uint8"
        )
    return x.astype(np.float32)


def _labels(raw: np.ndarray, where: str, n: int) -> np.ndarray:
    """Label array -> (n,) uint8 class numbers, or strings (numbered later by _number)."""
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


def _names(raw: np.ndarray, where: str) -> tuple[str, ...]:
    if raw.ndim != 1 or raw.dtype.kind != "U":
        raise DataError(f"{where}: class_names must be a 1-D array of strings")
    return tuple(raw.tolist())


def _number(parts: list[np.ndarray], names, path: Path):
    """Labels of each part as uint8 class numbers, and the class names (or None)."""
    if any(p.dtype.kind == "U" for p in parts):
        if not all(p.dtype.kind == "U" for p in parts):
            raise DataError(f"{path}: mixes string and integer labels; use one kind")
        classes = np.unique(np.concatenate(parts))  # sorted
        if len(classes) > MAX_CLASSES:
            raise DataError(f"{path}: {len(classes)} classes; at most {MAX_CLASSES} are supported")
        numbered = [np.searchsorted(classes, p).astype(np.uint8) for p in parts]
        return numbered, tuple(classes.tolist())
    top = max((int(p.max()) for p in parts if len(p)), default=-1)
    if names is not None and top >= len(names):
        raise DataError(f"{path}: label {top} has no entry in class_names ({len(names)} names)")
    return parts, names


def describe(data: LoadedData) -> dict:
    """What a loaded dataset holds, for `deepae data info PATH`: name, source, path, the
    shapes and dtype of both splits, and the classes with their training counts."""
    counts = None
    if data.y_train is not None:
        values, n = np.unique(data.y_train, return_counts=True)
        counts = {_class(data, v): int(c) for v, c in zip(values, n, strict=True)}
    return {
        "name": data.name,
        "source": data.source,
        "path": None if data.path is None else str(data.path),
        "train": f"{data.x_train.shape} {data.x_train.dtype}",
        "validation": f"{data.x_test.shape} {data.x_test.dtype}",
        "classes": counts if counts is not None else "none (unlabelled)",
    }


def _class(data: LoadedData, value) -> str:
    names = data.class_names
    return names[int(value)] if names and int(value) < len(names) else str(int(value))
