"""Folders of image files as a dataset: Pillow reads each file, makes it grayscale and
resizes it; the result is cached as one array file keyed by the folder's content.

Layout, as torchvision's ImageFolder and Keras' image_dataset_from_directory have it:
  folder/cat/1.png, folder/dog/7.jpg, ...   one subfolder per class: labelled, classes sorted
  folder/1.png, folder/2.png, ...           no subfolders: unlabelled
Files and folders whose name starts with "." are ignored. Every other file is given to
Pillow whatever its extension; one that it cannot read (not an image, truncated, too
large) is skipped with a warning, or stops the load with `strict=True`.

The cache holds one uint8 (N, H, W) .npy per folder and image size (under
`<cache>/folders/`), valid while the list of (path, size, mtime) of the folder's files is
the same; a changed, added or removed file makes the next load read the folder again.
The images are used from the cache file, memory-mapped (deepae.data.ImageRows), so a
folder of more images than fit in RAM as floats trains a batch at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepae import fsio
from deepae.data._base import (
    LoadedData,
    Log,
    cache_root,
    check_class_count,
    split_data,
    warnings_only,
)  # fmt: skip
from deepae.data.arrays import map_npy, one_line
from deepae.data.mapped import as_rows
from deepae.errors import ConfigError, DataError, DeepAEError

LOADER_VERSION = 1  # part of the cache key: bump when decoding changes, old entries go stale
CACHE_SUBDIR = "folders"
ANNOUNCE_AT = 1000  # say that a read has started when it has at least this many files
DEFAULT_IMAGE_SIZE = (28, 28)  # MNIST's: the article's 784-input model fits folder images


@dataclass(frozen=True, eq=False)
class ImageFolder:
    """What `load_image_folder` found."""

    images: np.ndarray  # (N, H, W) uint8 in sorted path order; np.memmap of the cache file
    labels: np.ndarray | None  # (N,) index into class_names; None when unlabelled
    class_names: tuple[str, ...] | None  # sorted subfolder names; None when unlabelled
    skipped: tuple[tuple[str, str], ...]  # (path relative to the folder, why) per skipped file
    cache_path: Path | None  # the cache file read or written; None if caching failed
    cached: bool  # True when the images came from the cache


@dataclass(frozen=True)
class _File:
    rel: str  # path relative to the folder, "/"-separated
    label: str | None  # the class subfolder; None for files at the top level
    stamp: tuple[int, int]  # (size, mtime_ns): the cache key's view of the content


def load_image_folder(
    folder: str | os.PathLike,
    *,
    image_size: tuple[int, int] = (28, 28),
    strict: bool = False,
    cache_dir: str | os.PathLike | None = None,
    log: Log | None = None,
) -> ImageFolder:
    """Read every image under `folder` as grayscale uint8, resized to image_size (H, W).

    Returns images (N, H, W) uint8 and, when the folder has class subfolders, labels (N,)
    and the sorted class names. `log` receives the progress lines and the warnings (skipped
    files, empty classes); without it, the warnings are Python warnings (UserWarning), so a
    library user still hears of skipped files. Raises DataError for a missing or empty
    folder, or (strict) for the first unreadable file.
    """
    folder, log, image_size = Path(folder), log or warnings_only, parse_image_size(image_size)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; check the path")
    files, skipped = _scan(folder)
    if strict and skipped:
        raise _strict_error(folder, *skipped[0])
    if not files:
        raise DataError(
            f"{folder}: no image files in it; put PNG/JPEG/BMP images there "
            "(or in one subfolder per class)"
        )
    key = _content_key(files, image_size)
    meta_path = _slot(cache_root(cache_dir), folder, image_size)
    found = _read_cache(meta_path, key, image_size, len(files), log)
    if found is None:
        if len(files) >= ANNOUNCE_AT:
            log(f"reading {len(files):,} images from {folder} (cached for next time) ...")
        images, failed = _read_all(folder, files, image_size, strict)
    else:
        images, failed = found
    if strict and failed:
        raise _strict_error(folder, *failed[0])
    skipped += failed
    if not len(images):
        rel, why = skipped[0]
        raise DataError(
            f"{folder}: none of its {len(skipped)} files is a readable image (e.g. {rel}: {why})"
        )
    cache_path = _cache_file(meta_path, key) if found is not None else _write_cache(
        meta_path, key, images, failed, folder, image_size, log
    )  # fmt: skip
    if found is None and cache_path is not None:
        images = _mapped(cache_path, images)  # the decoded copy is freed: train from the file
    if skipped:
        log(_skipped_warning(folder, skipped, len(images) + len(skipped)))
    bad = {rel for rel, _ in failed}
    labels, names = _labels([f.label for f in files if f.rel not in bad], folder)
    _warn_empty_classes(folder, names, log)
    return ImageFolder(images, labels, names, tuple(skipped), cache_path, found is not None)


def load_folder(path: Path, image_size, split: dict, strict: bool, cache_dir, log) -> LoadedData:
    """A folder of images as a dataset (see `load_image_folder`), with a seeded held-out
    validation split (`split`: val_fraction, seed)."""
    found = load_image_folder(
        path, image_size=image_size or DEFAULT_IMAGE_SIZE, strict=strict, cache_dir=cache_dir,
        log=log,
    )  # fmt: skip
    source = "image folder (cached)" if found.cached else "image folder"
    rows = as_rows(found.images)  # the cache file, memory-mapped: its images stay there
    images = found.images if rows is None else rows
    return split_data(images, found.labels, found.class_names, path, source, split)


def read_image(path: str | os.PathLike, image_size: tuple[int, int] = (28, 28)) -> np.ndarray:
    """One image file as grayscale uint8 (H, W) = image_size.

    Colour is made gray with Pillow's ITU-R 601-2 luma (L = 0.299 R + 0.587 G + 0.114 B),
    16-bit gray is scaled to 8 bits, float gray in [0, 1] or [0, 255] to 0-255, EXIF
    rotation is applied, and the image is resized with Lanczos filtering (antialiased when
    shrinking). Raises DataError naming the file.
    """
    image, why = _try_read(path, image_size)
    if image is None:
        raise DataError(f"{path}: {why}")
    return image


def _try_read(path, image_size) -> tuple[np.ndarray | None, str]:
    """(image (H, W) uint8, "") or (None, why it could not be read)."""
    image_mod, image_ops = _pillow()
    h, w = image_size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on odd but readable files
            warnings.simplefilter("error", image_mod.DecompressionBombWarning)
            with image_mod.open(path) as im:
                im.draft("L", (w, h))  # JPEG: decode at a reduced scale, much faster
                gray = _gray(image_ops.exif_transpose(im), image_mod)
                if gray.size != (w, h):
                    gray = gray.resize((w, h), image_mod.Resampling.LANCZOS)
                return np.array(gray, dtype=np.uint8), ""  # (H, W)
    # Pillow's decoders raise many types on malformed input (OSError, SyntaxError,
    # ValueError, struct.error, IndexError, ...): any of them means "not readable".
    except Exception as e:
        return None, _reason(e, image_mod)


def resize_images(images: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Images (N, H, W), uint8 or float32 in [0, 1], resized to image_size (h, w) with the
    filter files get (Lanczos); returns (N, h, w) of the same dtype."""
    h, w = parse_image_size(image_size)
    if images.shape[1:] == (h, w):
        return images
    image_mod, _ = _pillow()
    out = np.empty((len(images), h, w), images.dtype)  # (N, h, w)
    for i, image in enumerate(images):
        # uint8 -> mode "L"; float32 -> mode "F", which keeps the values' precision.
        pil = image_mod.fromarray(image if image.dtype == np.uint8 else image.astype(np.float32))
        out[i] = pil.resize((w, h), image_mod.Resampling.LANCZOS)
    if out.dtype != np.uint8:
        np.clip(out, 0.0, 1.0, out=out)  # Lanczos overshoots a little at sharp edges
    return out


def parse_image_size(value: int | str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """28 -> (28, 28); "32x24" -> (32, 24) (height x width); (32, 24) -> (32, 24)."""
    given = value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*(?:[xX,]\s*(\d+)\s*)?", value)
        value = (int(m[1]), int(m[2] or m[1])) if m else ()
    elif isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    size = tuple(value) if isinstance(value, tuple | list) else ()
    if len(size) != 2 or not all(isinstance(n, int) and 1 <= n <= 4096 for n in size):
        raise ConfigError(
            f"image size {given!r}: give HEIGHTxWIDTH such as 28x28 or 32x32, or one number "
            "for square images (1 to 4096 pixels a side)"
        )
    return size


# -- the folder -----------------------------------------------------------------------------


def _scan(folder: Path) -> tuple[list[_File], list[tuple[str, str]]]:
    """The candidate files in sorted order, and (rel, why) for entries skipped already."""
    found, skipped, errors = [], [], []
    seen = {os.path.realpath(folder)}  # folders read, so a link back up cannot loop
    for root, dirs, names in os.walk(folder, onerror=errors.append, followlinks=True):
        prefix = os.path.relpath(root, folder).replace(os.sep, "/") + "/"  # once per folder
        prefix = "" if prefix == "./" else prefix
        keep = []
        for d in (d for d in dirs if not d.startswith(".")):
            real = os.path.realpath(os.path.join(root, d))  # a linked class folder counts
            if real in seen:
                skipped.append((prefix + d, "a link to a folder read already"))
            else:
                seen.add(real)
                keep.append(d)
        dirs[:] = keep
        for name in names:
            if name.startswith("."):
                continue
            path, rel = os.path.join(root, name), prefix + name
            try:
                st = os.stat(path)
            except OSError as e:  # a broken link, or a file removed meanwhile
                skipped.append((rel, _reason(e)))
                continue
            if not stat.S_ISREG(st.st_mode):  # a FIFO would block a reader forever
                skipped.append((rel, "not a regular file"))
                continue
            label = _printable(rel.split("/", 1)[0]) if "/" in rel else None
            found.append(_File(rel, label, (st.st_size, st.st_mtime_ns)))
    skipped += [(os.path.relpath(e.filename or folder, folder), _reason(e)) for e in errors]
    found.sort(key=lambda f: f.rel.split("/"))
    if any(f.label is not None for f in found):  # class subfolders: loose files have no class
        skipped += [(f.rel, "not in a class subfolder") for f in found if f.label is None]
        found = [f for f in found if f.label is not None]
    return found, skipped


def _warn_empty_classes(folder: Path, names: tuple[str, ...] | None, log: Log) -> None:
    """A class folder with no readable image is no class of the data (torchvision's
    ImageFolder refuses it): said, so that a missing class does not pass unseen."""
    empty = sorted(_class_folders(folder) - set(names)) if names is not None else []
    if empty:
        more = f" and {len(empty) - 3} more" if len(empty) > 3 else ""
        log(f"warning: {folder}: {len(empty)} class folder(s) hold no readable image and are "
            f"not classes of this dataset: {', '.join(empty[:3])}{more}")  # fmt: skip


def _class_folders(folder: Path) -> set[str]:
    """The names of the folder's subfolders (links followed), as `_scan` labels them."""
    try:
        with os.scandir(folder) as entries:
            return {_printable(e.name) for e in entries
                    if not e.name.startswith(".") and e.is_dir()}  # fmt: skip
    except OSError:  # unreadable now: _scan said so already
        return set()


def _printable(name: str) -> str:
    """A folder name as text: bytes that are not UTF-8 (an old zip's Latin-1 names, kept
    by Python as surrogates that no figure can draw) written as \\xNN escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _read_all(folder: Path, files: list[_File], image_size, strict: bool):
    """Decode every file: (images (N, H, W) uint8, [(rel, why) of those that failed])."""
    out = np.empty((len(files), *image_size), np.uint8)  # (N, H, W)
    failed, n = [], 0
    for f in files:
        image, why = _try_read(os.path.join(folder, f.rel), image_size)
        if image is not None:
            out[n] = image
            n += 1
        elif strict:
            raise _strict_error(folder, f.rel, why)
        else:
            failed.append((f.rel, why))
    return out[:n], failed


def _labels(labels: list[str | None], folder: Path):
    """Class subfolder names -> (uint8 class numbers (N,), sorted names), or (None, None)."""
    if not labels or labels[0] is None:
        return None, None
    names = tuple(sorted(set(labels)))
    check_class_count(len(names), str(folder))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[v] for v in labels], dtype=np.uint8), names


# -- the cache -----------------------------------------------------------------------------


def _content_key(files: list[_File], image_size) -> str:
    listing = [LOADER_VERSION, list(image_size), [[f.rel, *f.stamp] for f in files]]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def _slot(root: Path, folder: Path, image_size) -> Path:
    """The cache entry's metadata file: one per folder and image size, so a changed
    folder replaces its entry instead of adding one."""
    where = json.dumps([str(folder.resolve()), list(image_size)])
    return root / CACHE_SUBDIR / f"{hashlib.sha256(where.encode()).hexdigest()[:24]}.json"


def _cache_file(meta_path: Path, key: str) -> Path:
    return meta_path.with_name(f"{meta_path.stem}-{key[:16]}.npy")


def _read_cache(meta_path: Path, key: str, image_size, n_files: int, log: Log):
    """(images, failed) from a valid cache entry, else None (a miss, or a broken entry)."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("key") != key:
            return None
        failed = [(str(rel), str(why)) for rel, why in meta["skipped"]]
        images = map_npy(_cache_file(meta_path, key))  # uint8: memory-mapped
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, DataError) as e:
        log(f"ignoring a broken cache entry {meta_path} ({one_line(e)}); reading the folder")
        return None
    expected = (n_files - len(failed), *image_size)
    if images.dtype != np.uint8 or images.shape != expected:
        log(f"ignoring a cache entry {meta_path} that does not match the folder; reading it")
        return None
    return images, failed


def _mapped(npy: Path, images: np.ndarray) -> np.ndarray:
    """The cache file just written, memory-mapped; `images` if it cannot be read back."""
    try:
        mapped = map_npy(npy)
    except DataError:
        return images
    return mapped if mapped.shape == images.shape else images


def _write_cache(meta_path, key, images, failed, folder, image_size, log) -> Path | None:
    npy = _cache_file(meta_path, key)
    try:
        with fsio.atomic_path(npy, suffix=".npy") as tmp:
            np.save(tmp, images, allow_pickle=False)
        # The metadata goes last: it is what makes the entry valid.
        meta = {"version": LOADER_VERSION, "folder": str(folder.resolve()), "key": key,
                "image_size": list(image_size), "count": len(images),
                "skipped": [list(s) for s in failed]}  # fmt: skip
        fsio.write_json(meta_path, meta)
    except DeepAEError as e:  # a read-only or full cache only costs speed next time
        log(f"warning: not caching {folder} ({e})")
        return None
    for old in meta_path.parent.glob(f"{meta_path.stem}-*.npy"):  # the folder's old entries
        if old != npy:
            with contextlib.suppress(OSError):
                old.unlink()
    return npy


# -- helpers -------------------------------------------------------------------------------


def _pillow():
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise DataError("reading image files needs Pillow: pip install 'deepae[images]'") from None
    return Image, ImageOps


def _gray(im, image_mod):
    if im.mode == "I" or im.mode.startswith("I;16"):
        # 16-bit gray: convert("L") would clip everything above 255 to white.
        values = np.asarray(im, dtype=np.float64) / 257.0  # 65535 -> 255
        return image_mod.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    if im.mode == "F":
        # 32-bit float (scientific TIFFs): convert("L") would truncate [0, 1] to 0 and 1.
        # [0, 1] is scaled by 255, [0, 255] kept; any other range has no meaning we could
        # guess (a per-image min-max would make images incomparable), so it is refused.
        values = np.asarray(im, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError("float pixels that are NaN or infinite")
        low, high = values.min(), values.max()
        if low < 0 or high > 255:
            raise ValueError(f"float pixels in [{low:g}, {high:g}], outside [0, 1] and [0, 255]; "
                             "rescale them or save the image as 8- or 16-bit")  # fmt: skip
        scale = 255.0 if high <= 1 else 1.0
        return image_mod.fromarray(np.rint(values * scale).astype(np.uint8))
    return im.convert("L")


def _reason(e: BaseException, image_mod=None) -> str:
    if image_mod is not None and isinstance(e, image_mod.UnidentifiedImageError):
        return "not an image file Pillow can read"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return one_line(e)


def _strict_error(folder: Path, rel: str, why: str) -> DataError:
    return DataError(
        f"{folder / rel}: {why}; fix or remove it, or load without strict (--strict) to skip "
        "such files with a warning"
    )


def _skipped_warning(folder: Path, skipped, total: int) -> str:
    shown = ", ".join(f"{rel} ({why})" for rel, why in skipped[:3])
    more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    return (
        f"warning: {folder}: skipped {len(skipped)} of {total} files that are not readable "
        f"images: {shown}{more}; fix or remove them, or use strict=True (--strict) to stop at "
        "the first"
    )
