"""What the trainer and the model's verbs read images from: a float32 tensor (N, D) held in
memory, or `MappedImages`, uint8 rows left in their file (deepae.data.ImageRows) and
converted one batch at a time. `as_images` and `as_source` turn what a user gives (arrays,
lists, one image, a memory-mapped file) into one of them, checked against the model.

`gatherer(x)` (a training batch) and `chunks(x, size)` (validation, encoding) are the two
ways deepae.train and deepae.api read images; for a tensor they are the index_select and
the slices they always were. A batch of a MappedImages is gathered from the file and
divided by 255 in float32, the arithmetic `deepae.data.flatten_images` does for the whole
array, so both give the same bits and the same training.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from deepae.data import ImageRows, as_rows, flatten_images
from deepae.errors import ConfigError

CHUNK = 8192  # images per chunk where the caller does not choose: 25 MB of 784 floats
Gather = Callable[[torch.Tensor], torch.Tensor]  # idx (B,) -> images (B, D) float32


class MappedImages:
    """Images (N, D) float32 in [0, 1] as the trainer sees them, read from uint8 rows (N,
    H, W) that stay in their file and converted per batch: a 600,000-image file costs a
    batch of floats, not N x D of them. It has the part of torch.Tensor's interface that
    deepae.train uses: len, shape, numel, to(device), x[i:j] (a view) and x[idx] (a
    batch)."""

    def __init__(self, rows: ImageRows, device: torch.device | str = "cpu"):
        if rows.dtype != np.uint8:
            raise TypeError(f"MappedImages reads uint8 images, got {rows.dtype}")
        self.rows = rows
        self.device = torch.device(device)
        self.shape = torch.Size((len(rows), math.prod(rows.shape[1:])))  # (N, D)
        self._buffers: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # B -> (uint8, float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"MappedImages(shape={tuple(self.shape)}, device={self.device})"

    def numel(self) -> int:
        return self.shape[0] * self.shape[1]

    def to(self, device: torch.device | str) -> MappedImages:
        """The same images, with batches delivered on `device`."""
        device = torch.device(device)
        return self if device == self.device else MappedImages(self.rows, device)

    def __getitem__(self, key) -> MappedImages | torch.Tensor:
        """A slice: a MappedImages view (nothing is read). Indices: those images, (B, D)."""
        if isinstance(key, slice):
            return MappedImages(self.rows[key], self.device)
        return self.gather(torch.as_tensor(key).reshape(-1))

    def gather(self, idx: torch.Tensor, *, reuse: bool = False) -> torch.Tensor:
        """Images idx (B,) -> float32 (B, D) in [0, 1] on self.device. With `reuse`, into
        buffers kept per batch size, which the next gather of that size overwrites (as the
        trainer's in-memory batches are)."""
        n = len(idx)
        raw, flat = self._buffers.get(n) if reuse and n in self._buffers else (None, None)
        if raw is None:
            raw = np.empty((n, *self.rows.shape[1:]), np.uint8)  # (B, H, W)
            flat = np.empty((n, self.shape[1]), np.float32)  # (B, D)
            if reuse:
                self._buffers[n] = raw, flat
        self.rows.take(idx.cpu().numpy(), out=raw)
        return self._float(raw, flat)

    def chunks(self, size: int) -> Iterator[torch.Tensor]:
        """The images in order, `size` at a time: float32 (b, D) on self.device."""
        for raw in self.rows.chunks(size):
            yield self._float(raw, np.empty((len(raw), self.shape[1]), np.float32))

    def _float(self, raw: np.ndarray, out: np.ndarray) -> torch.Tensor:
        # flatten_images' arithmetic: uint8 / float32(255), rounded once, in float32.
        np.divide(raw.reshape(len(raw), -1), np.float32(255), out=out, dtype=np.float32)
        batch = torch.from_numpy(out)  # (b, D)
        return batch if self.device.type == "cpu" else batch.to(self.device)


def gatherer(x: torch.Tensor | MappedImages) -> Gather:
    """idx (B,) -> the batch x[idx] (B, D) float32 on x's device, written into a buffer kept
    per batch size (the last batch of an epoch may be smaller): the training step's read."""
    if isinstance(x, MappedImages):
        return lambda idx: x.gather(idx, reuse=True)
    buffers: dict[int, torch.Tensor] = {}

    def take(idx: torch.Tensor) -> torch.Tensor:
        if len(idx) not in buffers:
            buffers[len(idx)] = x.new_empty(len(idx), x.shape[1])
        return torch.index_select(x, 0, idx, out=buffers[len(idx)])  # (B, D)

    return take


def chunks(x: torch.Tensor | MappedImages, size: int) -> Iterator[torch.Tensor]:
    """x in order, `size` images at a time, as float32 (b, D): views of a tensor, batches
    read from the file for MappedImages. A size that is not a whole number >= 1 is a
    ConfigError (the verbs' `batch_size`)."""
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ConfigError(f"batch_size must be a whole number >= 1, got {size!r}",
                          field="batch_size")  # fmt: skip
    size = int(size)
    if isinstance(x, MappedImages):
        yield from x.chunks(size)
        return
    for start in range(0, x.shape[0], size):
        yield x[start : start + size]


def equal(a: torch.Tensor | MappedImages, b: torch.Tensor | MappedImages) -> bool:
    """Whether a and b hold the same images, compared a chunk at a time."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return torch.equal(a, b)
    if tuple(a.shape) != tuple(b.shape):
        return False
    pairs = zip(chunks(a, CHUNK), chunks(b, CHUNK), strict=True)
    return all(torch.equal(p.cpu(), q.cpu()) for p, q in pairs)


def as_array(x: torch.Tensor | MappedImages) -> np.ndarray:
    """Every image of x as one float32 array (N, D) in memory: for what needs them all at
    once (UMAP's neighbour graph), never for training itself."""
    if isinstance(x, torch.Tensor):
        return x.cpu().numpy()
    out, at = np.empty(tuple(x.shape), np.float32), 0  # (N, D)
    for chunk in x.chunks(CHUNK):
        out[at : at + len(chunk)] = chunk.cpu().numpy()
        at += len(chunk)
    return out


def as_images(config, x: Any, name: str) -> torch.Tensor:
    """Images x as a network of ModelConfig `config` takes them: float32 (N, D) in [0, 1].
    One image, (H, W) or (D,), is a batch of one, as scikit-learn's transform takes one
    sample. Anything else that is not (N, H, W) or (N, D) is a ConfigError naming `name`."""
    try:
        arr = np.asarray(x)
    except ValueError as e:  # a ragged list of rows
        raise ConfigError(f"{name} is not an array of images ({e})", field=name) from None
    if arr.shape in (tuple(config.image_shape), (config.input_size,)):
        arr = arr.reshape(1, config.input_size)
    else:
        _check_shape(config, arr.shape, name)
    flat = flatten_images(arr, name)  # (N, D) float32: x itself when it already was
    if not flat.flags.writeable:  # a pandas 3 DataFrame's values, a read-only np.load
        flat = flat.copy()  # torch warns on a tensor over memory it may not write
    return torch.from_numpy(flat)


def as_source(config, x: Any, name: str) -> torch.Tensor | MappedImages:
    """`as_images`, except that uint8 images in a file (deepae.data.ImageRows, or a uint8
    np.memmap) stay there: a MappedImages, read and converted batch by batch."""
    rows = as_rows(x)
    if rows is None or rows.shape in (tuple(config.image_shape), (config.input_size,)):
        return as_images(config, x, name)  # in memory, or a single image
    _check_shape(config, rows.shape, name)
    return MappedImages(rows)


def _check_shape(config, given: tuple[int, ...], name: str) -> None:
    d, (h, w) = config.input_size, config.image_shape
    if len(given) not in (2, 3) or math.prod(given[1:]) != d:
        raise ConfigError(
            f"{name} has shape {given}, but the model takes {h}x{w} images ({d} values): "
            f"give ({h}, {w}) or ({d},) for one image, (N, {h}, {w}) or (N, {d}) for many "
            "(other images need a model built with input_size and image_shape)",
            field=name,
        )
