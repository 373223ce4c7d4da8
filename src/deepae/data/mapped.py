"""Images that stay in their file: `ImageRows`, the rows of a memory-mapped uint8 array
(N, H, W), seen whole or through an index (a held-out split), read a few at a time.

A dataset larger than RAM is used by reading each batch or chunk from the OS page cache
when it is needed (deepae.batches for training, `image_chunks` for everything else):
nothing here converts all images at once. As with NumPy arrays, an integer, a list or an
array of indices gathers those images into memory, while a slice or `select` gives another
`ImageRows`, a view. `np.asarray(rows)` reads every image into memory: the one way to ask
for that, on purpose.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator

import numpy as np

from deepae.errors import DataError

CHUNK = 8192  # images per chunk when iterating: 6.4 MB of 28 x 28 pixels
WATCH_ATTR = "deepae_watch"  # where `watch_map` leaves a map's FileWatch


class FileWatch:
    """The file under a memory map, asked before each read whether it is as it was mapped.

    A mapped page that the file no longer holds (another program truncated it) kills the
    process with SIGBUS: no message, no checkpoint. One fstat before a read (about a
    microsecond, once a batch or chunk) turns that into a DataError, and so a file rewritten
    in place, whose old and new images would otherwise be mixed in one training."""

    def __init__(self, fd: int, path: str):
        self._fd, self.path = fd, path  # fd: this watch's own descriptor of the mapped file
        self._stamp = self._now()

    def _now(self) -> tuple[int, int]:
        st = os.fstat(self._fd)
        return st.st_size, st.st_mtime_ns

    def check(self) -> None:
        """DataError if the file's size or modification time changed since it was mapped."""
        size, mtime = self._now()
        if (size, mtime) == self._stamp:
            return
        what = (f"now {size:,} bytes, {self._stamp[0]:,} when it was opened"
                if size != self._stamp[0] else "rewritten in place")  # fmt: skip
        raise DataError(
            f"{self.path}: the file changed while deepae was reading its images ({what}); "
            "leave a dataset's file alone while deepae uses it (write changes to a new file); "
            "a training run stopped by this resumes from its last checkpoint",
            field="dataset",
        )

    @staticmethod
    def of(images) -> FileWatch | None:
        """The watch of a memory map: deepae's own (`watch_map`), or for a np.memmap that
        NumPy opened by name, a new one; None for anything else."""
        if not isinstance(images, np.memmap):
            return None
        watch = getattr(images, WATCH_ATTR, None)
        if watch is not None or not images.filename:
            return watch
        try:  # non-blocking: whatever is at that path now must not hang us (a FIFO)
            fd = os.open(images.filename, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return FileWatch(fd, os.fspath(images.filename))

    def __reduce__(self):
        # A pickled or deep-copied memmap is an array in memory: nothing left to watch, and
        # a copied descriptor would be closed twice.
        return _unwatched, ()

    def __del__(self):
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: __init__ failed
            os.close(self._fd)


def _unwatched() -> None:
    return None


def watch_map(images: np.memmap, fd: int, path: str) -> np.memmap:
    """`images` with their file watched from now on (`FileWatch`); fd, an open descriptor
    of the file mapped, becomes the watch's."""
    setattr(images, WATCH_ATTR, FileWatch(fd, path))
    return images


class ImageRows:
    """Images (N, H, W) uint8 read on demand from `images` (usually a read-only np.memmap
    of a .npy file), through `index` (N,) row numbers when given (a split of the file)."""

    def __init__(self, images: np.ndarray, index: np.ndarray | None = None,
                 watch: FileWatch | None = None):  # fmt: skip
        self._images = images  # (N0, H, W) uint8, left where it is
        self._index = None if index is None else np.asarray(index, dtype=np.intp)  # (N,)
        self._watch = watch  # the file under `images`, checked before every read

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self._images.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self._images.dtype

    @property
    def ndim(self) -> int:
        return self._images.ndim

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return len(self._images) if self._index is None else len(self._index)

    def __repr__(self) -> str:
        return f"ImageRows(shape={self.shape}, dtype={self.dtype})"

    def __getitem__(self, key) -> np.ndarray | ImageRows:
        """A slice: an ImageRows view. An integer: that image (H, W). Indices (a list or
        an integer array) or a boolean mask (N,): those images (B, H, W), read into memory.
        A tuple indexes the images so chosen as NumPy would (x[0, 5]: row 5 of image 0)."""
        if isinstance(key, slice):
            if self._index is None:
                return ImageRows(self._images[key], watch=self._watch)
            return ImageRows(self._images, self._index[key], self._watch)
        if isinstance(key, int | np.integer):
            return self.take(np.array([range(len(self))[key]]))[0]  # range: IndexError
        if isinstance(key, tuple):  # x[i, j]: the images first, then NumPy's indexing
            return self._in_images(key)
        positions = np.asarray(key)
        if positions.dtype.kind in "iu" and positions.ndim != 1:  # 0-d, or (a, b) of indices
            if positions.ndim == 0:
                return self[int(positions)]
            images = self.take(positions.reshape(-1))
            return images.reshape(*positions.shape, *images.shape[1:])
        return self.take(self._positions(positions))

    def _in_images(self, key: tuple):
        """x[first, *rest] where `rest` indexes within the images with ints and slices (NumPy's
        basic indexing, the same after the images are read); array indices within them, or
        an Ellipsis, combine with the first in ways only NumPy's whole array gives."""
        if not key:
            return self
        first, rest = key[0], key[1:]
        if any(k is Ellipsis or not isinstance(k, int | np.integer | slice) for k in rest) or (
            first is Ellipsis
        ):
            raise IndexError("images take ints and slices after the image index; read them "
                             "first for more (np.asarray(x[i])[...])")  # fmt: skip
        images = self[first]
        if isinstance(images, ImageRows):
            images = np.asarray(images)
        lead = (
            ()
            if np.ndim(images) == len(self.shape) - 1
            else (slice(None),) * (np.ndim(images) - len(self.shape) + 1)
        )
        return images[(*lead, *rest)]

    def select(self, idx: np.ndarray) -> ImageRows:
        """The images at positions idx (M,), or where a boolean mask (N,) is true, as
        another ImageRows: nothing is read."""
        idx = self._positions(idx)
        rows = idx if self._index is None else self._index[idx]
        return ImageRows(self._images, rows, self._watch)

    def _positions(self, key) -> np.ndarray:
        """Positions (M,) from integer indices or a boolean mask (N,), as NumPy reads them."""
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != (len(self),):
                raise IndexError(f"a boolean index of shape {key.shape} for {len(self)} "
                                 f"images; give one value per image")  # fmt: skip
            return np.flatnonzero(key)
        if key.size == 0:
            return np.zeros(0, np.intp)  # np.asarray([]) is float64
        if key.dtype.kind not in "iu" or key.ndim != 1:
            raise IndexError(f"images are indexed by a slice, an integer, a 1-D array of "
                             f"integers or a boolean mask, not {key.dtype} of shape "
                             f"{key.shape}")  # fmt: skip
        return key.astype(np.intp, copy=False)

    def take(self, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The images at positions idx (B,), read into `out` (B, H, W) or a new array."""
        rows = idx if self._index is None else self._index[idx]
        self._check()
        return np.take(self._images, rows, axis=0, out=out)

    def chunks(self, size: int = CHUNK) -> Iterator[np.ndarray]:
        """The images in order, `size` at a time, as arrays (b, H, W)."""
        for start in range(0, len(self), size):
            self._check()
            if self._index is None:
                yield np.asarray(self._images[start : start + size])
            else:
                yield self._images[self._index[start : start + size]]

    def _check(self) -> None:
        if self._watch is not None:
            self._watch.check()

    def __iter__(self) -> Iterator[np.ndarray]:
        for chunk in self.chunks():
            yield from chunk

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if copy is False:
            raise ValueError("ImageRows are read from their file: they cannot be an array "
                             "without a copy")  # fmt: skip
        out = np.empty(self.shape, self.dtype)
        at = 0
        for chunk in self.chunks():
            out[at : at + len(chunk)] = chunk
            at += len(chunk)
        return out if dtype is None else out.astype(dtype, copy=False)


def as_rows(x) -> ImageRows | None:
    """x as ImageRows when its images stay in a file (an ImageRows, or a uint8 np.memmap
    of two or more dimensions), else None: in-memory arrays are used as they are."""
    if isinstance(x, ImageRows):
        return x
    if isinstance(x, np.memmap) and x.dtype == np.uint8 and x.ndim >= 2:
        return ImageRows(np.asarray(x), watch=FileWatch.of(x))
    return None


def is_mapped(x) -> bool:
    """True for images that stay in their file (see `as_rows`)."""
    return as_rows(x) is not None


def image_chunks(x, size: int = CHUNK) -> Iterator[np.ndarray]:
    """The images of x (an array or ImageRows), in order, `size` at a time: views of an
    array, arrays read from the file for ImageRows."""
    rows = as_rows(x)
    if rows is not None:
        yield from rows.chunks(size)
        return
    for start in range(0, len(x), size):
        yield x[start : start + size]
