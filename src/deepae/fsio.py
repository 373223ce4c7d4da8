"""Files, safely: atomic writes (a crash or a full disk never leaves a half-written file in
place) and the one JSON reader, which turns any damage into a clear `RunError`.

Each writer writes a temporary file in the target folder, fsyncs it, then renames it over
the target (`os.replace` is atomic on POSIX), so a reader sees either the old complete
file or the new complete file, never a mixture.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deepae.errors import DeepAEError, RunError

MAX_JSON_BYTES = 16 * 2**20  # run files are a few kB; a bigger one is not ours


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path to write; on success it replaces `path`, on failure it is
    removed. `suffix` keeps the format detection of writers such as Matplotlib working."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _write_error(path, e) from None
        raise
    _fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def read_bytes(path: str | os.PathLike, *, max_bytes: int, fix: str) -> bytes:
    """The bytes of the regular file at `path`. FileNotFoundError when it is missing;
    RunError naming the file and `fix` (what to do) when it is not a regular file (a FIFO,
    a device such as /dev/zero behind a link), larger than `max_bytes`, or unreadable.
    Opened non-blocking and checked before reading, so a FIFO never hangs the caller."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise RunError(f"{path} cannot be read ({e.strerror or e}); {fix}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RunError(f"{path} is not a regular file; {fix}")
        if st.st_size > max_bytes:
            raise RunError(f"{path} is {st.st_size} bytes, more than {max_bytes}; {fix}")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(max_bytes + 1)
    except OSError as e:
        raise RunError(f"{path} cannot be read ({e.strerror or e}); {fix}") from None
    finally:
        os.close(fd)


def read_json(path: str | os.PathLike, *, fix: str = "rerun the command that writes it") -> Any:
    """The JSON value in the file at `path`, or None when there is no such file.

    Anything else that is wrong (unreadable, not UTF-8, not JSON, too deeply nested, too
    large, not a regular file) raises RunError naming the file and `fix`, what to do."""
    try:
        raw = read_bytes(path, max_bytes=MAX_JSON_BYTES, fix=fix)
    except FileNotFoundError:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise RunError(f"{path} is corrupt ({why}); {fix}") from None


def _write_error(path: Path, e: OSError) -> DeepAEError:
    return DeepAEError(
        f"cannot write {path}: {e.strerror or e}; free disk space or choose a writable "
        "folder (nothing already saved was changed)"
    )


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform, harmless to skip.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
