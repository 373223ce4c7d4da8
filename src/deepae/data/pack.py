"""`deepae data pack SOURCE OUT.npy`: a dataset, whatever its source, written as one uint8
.npy that training memory-maps (deepae.data.ImageRows), with its labels and split beside
it (docs/datasets.md says why one file):

    OUT.npy          images (N, H, W) uint8: the training split, then the test split
    OUT.labels.npy   labels (N,) uint8 in the same order (labelled data only)
    OUT.json         {"format": "deepae-pack", "version": 1, "name", "source", "n_train",
                      "n_test", "image_shape", "class_names"}: where the split falls

The three files are written to temporaries first (deepae.fsio), so a pack that fails leaves
an earlier one whole. Then the sidecars of the earlier pack are removed, and the files
renamed into place with OUT.json last, so a pack cut short between two renames reads as a
plain .npy (held-out split, unlabelled), never with another pack's split or labels.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from deepae import fsio
from deepae.data._base import LoadedData
from deepae.data.arrays import PACK_FORMAT, PACK_VERSION, info_path, labels_path
from deepae.data.mapped import image_chunks
from deepae.errors import ConfigError, DeepAEError, RunError

CHUNK = 10_000  # images copied per write: 7.8 MB of 28 x 28 pixels


def pack(data: LoadedData, out: str | os.PathLike, *, progress: bool = False) -> dict:
    """Write `data` (training split, then test split) to `out` as uint8 (N, H, W), its
    labels to OUT.labels.npy and its split and class names to OUT.json. Float images in
    [0, 1] are rounded to 8 bits (round(255 x)). The images are copied CHUNK at a time,
    so a memory-mapped source is never held in memory; `progress` shows a bar on a
    terminal. Returns {"images", "labels" (None: unlabelled), "info" (paths), "n_train",
    "n_test", "image_shape", "quantised" (the source was float), "removed" (temporaries
    of an earlier pack to `out` whose process was killed)}."""
    out = Path(out)
    if out.suffix.lower() != ".npy":
        raise ConfigError(f"{out}: the packed file must be a .npy (its labels go beside it as "
                          f"{labels_path(out).name})", field="out")  # fmt: skip
    _check_target(out, data.path)
    n_train, n_test = len(data.x_train), len(data.x_test)
    shape = (n_train + n_test, *data.x_train.shape[1:])  # (N, H, W)
    labelled = data.y_train is not None and data.y_test is not None
    names = list(data.class_names) if labelled and data.class_names else None
    source = (data.load_args or {}).get("dataset") or data.name
    info = {"format": PACK_FORMAT, "version": PACK_VERSION, "name": data.name,
            "source": source, "n_train": n_train, "n_test": n_test, "image_shape": list(shape[1:]),
            "class_names": names}  # fmt: skip
    # All three files are written to temporaries first, so a pack that fails (a full disk,
    # Ctrl-C) leaves an earlier pack whole. Only then are the old sidecars removed and the
    # files renamed, the images first and OUT.json last (the contexts close inside out).
    # A pack killed with SIGKILL leaves its temporaries (the size of the pack); each names
    # its process, so the next pack removes those whose process is gone, and no other's.
    removed = [name for target in (out, labels_path(out), info_path(out))
               for name in fsio.remove_orphans(target)]  # fmt: skip
    labels_file = (fsio.atomic_path(labels_path(out), suffix=".npy", owned=True)
                   if labelled else None)  # fmt: skip
    with (
        fsio.atomic_path(info_path(out), owned=True) as info_tmp,
        labels_file or contextlib.nullcontext() as labels_tmp,
        fsio.atomic_path(out, suffix=".npy", owned=True) as images_tmp,
    ):
        _write_images(images_tmp, shape, (data.x_train, data.x_test), progress)
        if labelled:
            labels = np.concatenate([data.y_train, data.y_test]).astype(np.uint8)  # (N,)
            np.save(labels_tmp, labels, allow_pickle=False)
        Path(info_tmp).write_text(json.dumps(info, indent=2) + "\n")
        # On disk before the old sidecars go: a full disk or Ctrl-C met while syncing (seconds
        # for a large pack) must find the earlier pack whole, labels and split included.
        _sync(images_tmp, labels_tmp, info_tmp)
        for stale in (info_path(out), labels_path(out)):  # see the module's docstring
            _remove(stale)
    return {"images": out, "labels": labels_path(out) if labelled else None,
            "info": info_path(out), "n_train": n_train, "n_test": n_test,
            "image_shape": shape[1:], "quantised": data.x_train.dtype != np.uint8,
            "removed": removed}  # fmt: skip


def format_pack(result: dict) -> str:
    """What `deepae data pack` prints about a `pack` result."""
    n = result["n_train"] + result["n_test"]
    size = "x".join(map(str, result["image_shape"]))
    lines = [f"packed {n:,} images of {size} ({result['n_train']:,} training, then "
             f"{result['n_test']:,} test) into {result['images']}"]  # fmt: skip
    lines += [f"  {result[k]}" for k in ("labels", "info") if result[k] is not None]
    if result["quantised"]:
        lines.append("note: float images were rounded to 8 bits (round(255 x))")
    if result.get("removed"):
        lines.append(f"removed {len(result['removed'])} temporary file(s) left by a pack to "
                     "the same file that was killed")  # fmt: skip
    return "\n".join(lines)


def _check_target(out: Path, source: Path | None) -> None:
    """ConfigError if writing the pack to `out` would lose a file it does not replace on
    purpose: one of the source's own files (itself, its labels or split), or OUT.json of
    another tool (a description, a config: the loader ignores such a file, so must we)."""
    if source is not None:
        source = Path(source).resolve()
        own = {source}
        if source.suffix.lower() == ".npy" and source.is_file():  # its labels and split
            own |= {labels_path(source), info_path(source)}
        hit = [p for p in (out, labels_path(out), info_path(out)) if p.resolve() in own]
        if hit:
            what = "the source itself" if hit[0].resolve() == source else "a file of the source"
            raise ConfigError(f"{hit[0]} is {what}; write the pack to another file",
                              field="out")  # fmt: skip
    try:
        info = fsio.read_json(info_path(out))
    except RunError:  # not JSON, not a regular file: not a pack's either
        info = "another file"
    if info is not None and not (isinstance(info, dict) and info.get("format") == PACK_FORMAT):
        raise ConfigError(
            f"{info_path(out)} is not a {PACK_FORMAT} file, and packing to {out.name} would "
            "replace it; move it away, or choose another name for the pack",
            field="out",
        )


def _sync(*paths: str | None) -> None:
    for path in filter(None, paths):
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def _write_images(out: str, shape: tuple[int, ...], parts, progress: bool) -> None:
    """The .npy header, then each part's images as uint8, CHUNK at a time, with a bar."""
    header = {"descr": npy_format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
              "shape": shape}  # fmt: skip
    bar = progress_bar(shape[0], progress)
    try:
        with open(out, "wb") as f:
            npy_format.write_array_header_1_0(f, header)
            for images in parts:
                for chunk in image_chunks(images, CHUNK):
                    f.write(np.ascontiguousarray(_as_uint8(chunk)).data)
                    bar.update(len(chunk))
    finally:
        bar.close()


def _as_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 images as they are; float images in [0, 1] rounded to 0-255."""
    if images.dtype == np.uint8:
        return images
    return np.rint(np.asarray(images, np.float32) * np.float32(255)).astype(np.uint8)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as e:
        raise DeepAEError(f"cannot replace {path}: {e.strerror or e}; choose a writable "
                          "folder for the pack") from None  # fmt: skip


def progress_bar(total: int, progress: bool):
    """A tqdm bar of `total` images, shown only when `progress` is true and the output is
    a terminal (tqdm's disable=None), as deepae.train's bar is."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="packing", unit="image", unit_scale=True, leave=False,
                disable=None if progress else True)  # fmt: skip
