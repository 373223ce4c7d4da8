"""Read and write IDX, the file format MNIST and Fashion-MNIST ship in.

Layout (http://yann.lecun.com/exdb/mnist/, foot of the page): two zero bytes, a dtype code
(0x08 = unsigned byte), the number of dimensions, one big-endian uint32 per dimension, then
the values in C order. Only unsigned bytes are supported: every MNIST-like file uses them.

A header is never trusted: the size it claims is checked against the bytes at hand before
anything is allocated, and gzip input is decompressed under a size cap (a gzip bomb stops
at the cap instead of filling memory).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from deepae.data._base import open_regular
from deepae.errors import DataError

UBYTE = 0x08  # IDX dtype code of unsigned bytes, the only one MNIST-like files use
GZIP_MAGIC = b"\x1f\x8b"
# The largest MNIST-like file (train images) is 47 MB decompressed; 64 MiB leaves headroom.
MAX_BYTES = 64 * 2**20


def idx_header(shape: tuple[int, ...]) -> bytes:
    """The header of a uint8 IDX file holding an array of `shape`."""
    return bytes((0, 0, UBYTE, len(shape))) + struct.pack(f">{len(shape)}I", *shape)


def encode_idx(array: np.ndarray) -> bytes:
    """The bytes of the IDX file holding a uint8 `array` of any shape (C order)."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise DataError(f"IDX needs uint8 values, got {array.dtype}; convert with .astype('uint8')")
    return idx_header(array.shape) + array.tobytes()


def idx_shape(data: bytes, *, name: str, ndim: int | None = None) -> tuple[int, ...]:
    """Check the header of the IDX bytes `data` against their length; return the shape.

    `name` (the file or URL) goes into every error message; `ndim`, if given, is required.
    """
    fix = "get a fresh copy of the file"
    if not data:
        raise DataError(f"{name}: empty file, not IDX data; {fix}")
    if len(data) < 4:
        raise DataError(f"{name}: truncated IDX header ({len(data)} bytes); {fix}")
    if data[:2] != b"\0\0":
        raise DataError(
            f"{name}: not an IDX file (magic bytes {data[:4].hex()}, expected 000008xx); {fix}"
        )
    code, rank = data[2], data[3]
    if code != UBYTE:
        raise DataError(
            f"{name}: IDX dtype code 0x{code:02x} is not supported (only 0x08, unsigned byte)"
        )
    if rank == 0 or (ndim is not None and rank != ndim):
        want = "at least 1" if ndim is None else str(ndim)
        raise DataError(f"{name}: IDX header says {rank} dimensions, expected {want}; {fix}")
    offset = 4 + 4 * rank
    if len(data) < offset:
        raise DataError(f"{name}: truncated IDX header ({len(data)} bytes); {fix}")
    shape = struct.unpack_from(f">{rank}I", data, 4)
    claimed, held = math.prod(shape), len(data) - offset  # Python ints: no overflow
    if math.prod(max(n, 1) for n in shape) > 2**62:  # empty, yet too big for numpy's shapes
        raise DataError(f"{name}: header claims an impossible shape {shape}; {fix}")
    if claimed != held:
        what = "truncated" if held < claimed else "trailing bytes after the data"
        raise DataError(
            f"{name}: header claims shape {shape} = {claimed} bytes but the file holds {held} "
            f"({what}); {fix}"
        )
    return shape


def parse_idx(data: bytes, *, name: str, ndim: int | None = None) -> np.ndarray:
    """Decode uncompressed IDX bytes into a writable uint8 array of the header's shape."""
    shape = idx_shape(data, name=name, ndim=ndim)
    # Copy: a view would be read-only and keep the whole `data` buffer alive.
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * len(shape)).reshape(shape).copy()


def maybe_gunzip(raw: bytes, *, name: str, max_bytes: int = MAX_BYTES) -> bytes:
    """`raw` itself, or its decompressed content if it starts with the gzip magic bytes."""
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
            out = f.read(max_bytes + 1)  # one byte more than allowed tells "too big" apart
    # BadGzipFile (an OSError) for a bad header or CRC, EOFError for a cut-off stream.
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{name}: corrupt or truncated gzip ({e}); download it again") from e
    if len(out) > max_bytes:
        raise DataError(
            f"{name}: decompresses to more than {max_bytes} bytes, too big for an MNIST-like "
            "file; pass a larger max_bytes if it is meant to be"
        )
    return out


def read_idx_bytes(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES) -> bytes:
    """The uncompressed IDX bytes of the file at `path` (raw or gzipped)."""
    path = Path(path)
    try:
        with open_regular(path) as f:  # a FIFO or a device is refused, never waited on
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise DataError(
                    f"{path}: {size} bytes, more than the {max_bytes}-byte limit for an "
                    "MNIST-like file; pass a larger max_bytes if it is meant to be"
                )
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e}); check the path") from e
    return maybe_gunzip(raw, name=str(path), max_bytes=max_bytes)


def read_idx(
    path: str | os.PathLike, *, ndim: int | None = None, max_bytes: int = MAX_BYTES
) -> np.ndarray:
    """Read a raw or gzipped uint8 IDX file into an array of the header's shape."""
    return parse_idx(read_idx_bytes(path, max_bytes=max_bytes), name=str(path), ndim=ndim)
