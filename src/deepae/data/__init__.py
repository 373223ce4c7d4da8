"""Every dataset deepae can train on, behind one call: `load_dataset(source)`.

`source` is one of
  "mnist", "fashion-mnist"   IDX datasets (deepae.data.mnist), verified by SHA-256
  a folder of images         deepae.data.folders: grayscale, resized (default 28 x 28), cached
  a .npz file                deepae.data.arrays: x_train and x_test (+ y_train, y_test), Keras'
                             layout, used as is; or images (+ labels), or x (+ y), or a single
                             array: split
  a .npy file                images (+ NAME.labels.npy beside it): split; uint8 images stay
                             in the file (memory-mapped, `ImageRows`); `deepae data pack`
                             (deepae.data.pack) writes any source so, with its split
Image arrays are uint8 (N, H, W) in 0-255 or float (N, H, W) in [0, 1] (kept as float32);
(N, H, W, 1) and (N, D) with D a square number are reshaped to (N, H, W). Labels are
integers 0-255 or strings (class names, numbered in sorted order); an optional
`class_names` array in the .npz names integer labels. Data without a test split gets a
seeded held-out validation split of `val_fraction`. docs/datasets.md has the details.

The modules behind this face are private in spirit: import from `deepae.data`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from deepae.data import arrays, folders
from deepae.data import pack as packing
from deepae.data._base import (
    MAX_CLASSES,
    LoadedData,
    Log,
    cache_root,
    check_pixels,
    class_name,
    describe,
    flatten_images,
    format_record,
    holdout_split,
    warnings_only,
)
from deepae.data.folders import parse_image_size, resize_images
from deepae.data.inventory import format_description, format_info, info
from deepae.data.mapped import ImageRows, as_rows, image_chunks, is_mapped
from deepae.data.mnist import DATASETS, DatasetSpec, fetch, load_idx_dataset, load_mnist
from deepae.errors import ConfigError, DataError

DEFAULT_VAL_FRACTION = 0.1  # share of unsplit data held out for validation

# File suffix -> loader(path, split) for array files.
_ARRAY_LOADERS = {  # (path, split, log) -> LoadedData; a .npz is read whole: nothing to warn of
    ".npy": arrays.load_npy,
    ".npz": lambda path, split, log: arrays.load_npz(path, split),
}


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
    data_dir: where the files of a named dataset are (see deepae.data.mnist).
    Returns a LoadedData: images (N, H, W) uint8 (float32 in [0, 1] for float arrays),
    labels (N,) uint8 or None, and `load_args`, what it takes to load the same data again.
    It unpacks as `(x_train, y_train), (x_test, y_test)`, like `load_mnist`'s result.
    Raises DataError (bad or missing data) or ConfigError (bad arguments).
    """
    size = None if image_size is None else parse_image_size(image_size)
    if not 0 < val_fraction < 1:
        raise ConfigError(
            f"val_fraction must lie strictly between 0 and 1, got {val_fraction}",
            field="val_fraction",
        )
    source = os.fspath(source)
    if source in DATASETS:
        loaded = load_idx_dataset(source, data_dir, cache_dir=cache_dir, log=log)
        dataset = source
    else:
        if data_dir is not None:
            raise ConfigError(
                f"data_dir is for {' and '.join(DATASETS)}; {source} already says where its "
                "data is",
                field="data_dir",
            )
        path = _existing(source)
        split = {"val_fraction": val_fraction, "seed": seed}
        if path.is_dir():
            loaded = folders.load_folder(path, size, split, strict, cache_dir, log)
        else:
            loaded = _load_array_file(path, split, log or warnings_only)
        dataset = str(path)
    if size is not None:  # a no-op for folders, which are read at this size
        x_train, x_test = (resize_images(x, size) for x in (loaded.x_train, loaded.x_test))
        loaded = dataclasses.replace(loaded, x_train=x_train, x_test=x_test)
    load_args = {
        "dataset": dataset,  # a name, or an absolute path
        "image_size": None if size is None else list(size),
        "val_fraction": val_fraction,
        "seed": seed,
        "data_dir": None if data_dir is None else str(Path(data_dir).expanduser().resolve()),
    }
    return dataclasses.replace(loaded, load_args=load_args)


def data_command(action: str, *operands: str, dataset: str | None = None, data_dir=None,
                 image_size=None, val_fraction: float | None = None, strict: bool = False,
                 cache_dir=None, log: Log | None = None,
                 progress: bool = False) -> str:  # fmt: skip
    """What `deepae data fetch|info|pack` prints. For a named dataset (default mnist):
    "fetch" puts its verified files into the cache, "info" says which local copy
    `load_dataset` would use (`info`). A folder or array file is loaded (folders are
    cached) and described, whatever the action. "pack" takes two operands, SOURCE (what
    `load_dataset` reads, with the other options) and OUT.npy, and writes SOURCE there as
    uint8 with its labels and split beside it (deepae.data.pack; a bar if `progress`)."""
    if action == "pack":
        fraction = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
        return _pack(operands, dataset, progress, val_fraction is not None, data_dir=data_dir,
                     image_size=image_size, val_fraction=fraction, strict=strict,
                     cache_dir=cache_dir, log=log)  # fmt: skip
    if operands:
        raise ConfigError(f"data {action} takes no SOURCE or OUT; name the data with "
                          f"--dataset, e.g. deepae data {action} --dataset "
                          f"{operands[0]}")  # fmt: skip
    name = dataset or "mnist"
    # A named dataset is fetched or described as it is: these options would do nothing.
    unused = [k for k, v in (("image_size", image_size), ("val_fraction", val_fraction),
                             ("strict", strict)) if v not in (None, False)]  # fmt: skip
    if name in DATASETS and unused:
        raise ConfigError(f"{unused[0]} does not apply to fetching or describing {name}; "
                          "leave it out", field=unused[0])  # fmt: skip
    if name not in DATASETS:
        fraction = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
        loaded = load_dataset(name, data_dir=data_dir, image_size=image_size, strict=strict,
                              val_fraction=fraction, cache_dir=cache_dir, log=log)  # fmt: skip
        return format_description(describe(loaded))
    if action == "fetch":
        return format_info(fetch(name, data_dir=data_dir, cache_dir=cache_dir, log=log))
    return format_info(info(name, data_dir=data_dir, cache_dir=cache_dir))


def _pack(operands, dataset, progress: bool, fraction_given: bool, **options) -> str:
    if len(operands) != 2 or dataset is not None:
        raise ConfigError("data pack takes SOURCE and OUT.npy (SOURCE as --dataset takes it), "
                          "e.g. deepae data pack mnist mnist.npy")  # fmt: skip
    source, out = operands
    loaded = load_dataset(source, **options)
    if fraction_given and not loaded.held_out:  # it would be ignored: the data has a split
        raise own_split_error(source)
    return packing.format_pack(packing.pack(loaded, out, progress=progress))


def own_split_error(dataset: str, more: str = "") -> ConfigError:
    """The refusal of a val_fraction given for data that brings its own test split (a named
    set, a Keras-layout .npz, a pack), where it would do nothing."""
    return ConfigError(f"val_fraction is for data without a test split; {dataset} has its "
                       f"own: leave it out{more}", field="val_fraction")  # fmt: skip


def _existing(source: str) -> Path:
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(
            f"{source}: neither a dataset name ({', '.join(DATASETS)}) nor an existing file "
            "or folder; check the spelling or the path",
            field="dataset",
        )
    return path.resolve()


def _load_array_file(path: Path, split: dict, log: Log) -> LoadedData:
    try:
        return _array_loader(path)(path, split, log)
    except DataError as e:
        e.field = e.field or "dataset"  # the file given as the dataset is what to fix
        raise


def _array_loader(path: Path):
    loader = _ARRAY_LOADERS.get(path.suffix.lower())
    if loader is None:
        raise DataError(
            f"{path}: not a folder, .npz or .npy file; give a folder of images or arrays "
            "saved with numpy.save / numpy.savez",
            field="dataset",
        )
    return loader


__all__ = [
    "DATASETS",
    "DEFAULT_VAL_FRACTION",
    "MAX_CLASSES",
    "DatasetSpec",
    "ImageRows",
    "LoadedData",
    "as_rows",
    "cache_root",
    "check_pixels",
    "class_name",
    "data_command",
    "describe",
    "fetch",
    "flatten_images",
    "format_description",
    "format_info",
    "format_record",
    "holdout_split",
    "image_chunks",
    "info",
    "is_mapped",
    "load_dataset",
    "load_idx_dataset",
    "load_mnist",
    "own_split_error",
    "parse_image_size",
    "resize_images",
]
