"""Files, safely: atomic writes (a crash or a full disk never leaves a half-written file in
place) and the one JSON reader, which turns any damage into a clear `RunError`.

Each writer writes a temporary file in the target folder, fsyncs it, then renames it over
the target (`os.replace` is atomic on POSIX), so a reader sees either the old complete
file or the new complete file, never a mixture.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deepae.errors import DeepAEError, RunError

TEMP_MARK = ".tmp"  # in every temporary file name atomic_path makes
# What atomic_path names its files: ".NAME." + mkstemp's 8 random characters (CPython's
# tempfile._RandomNameSequence: a-z, 0-9 and _) + ".tmp" [+ ".png"]. Only that is removed:
# a user's own ".draft.tmp" in a run folder is not deepae's to delete.
TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(TEMP_MARK) + r"(\.[^.]+)?")
MAX_JSON_BYTES = 16 * 2**20  # run files are a few kB; a bigger one is not ours
# Run files nest a few levels deep. A deeper value is not ours, and code that walks it
# recursively (the report's tables) would overflow Python's stack: refused on reading.
MAX_JSON_DEPTH = 32


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp", *,
                owned: bool = False) -> Iterator[str]:  # fmt: skip
    """Yield a temporary path to write; on success it replaces `path`, on failure it is
    removed. `suffix` keeps the format detection of writers such as Matplotlib working.
    `owned`: the name also says which process wrote it (machine and PID), so that a later
    writer can remove it once that process is gone (`remove_orphans`): for files written
    into a folder no run owns, where another process may be writing at the same time."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # ".NAME.XXXX.tmp[.suffix]": hidden, and recognisable by `remove_temporaries`;
        # owned: ".NAME.MACHINE.PID-XXXX.tmp[.suffix]", recognisable by `remove_orphans`.
        tail = TEMP_MARK if suffix == TEMP_MARK else TEMP_MARK + suffix
        prefix = f".{path.name}.{_owner()}-" if owned else f".{path.name}."
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=tail, dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        yield tmp
        with open(tmp, "rb") as f:
            # mkstemp makes 0600 files; give the file the mode open() would have (0666
            # less the umask), so a run folder is readable by whom the user's umask says.
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _write_error(path, e) from None
        raise
    _fsync_dir(path.parent)


def remove_temporaries(folder: str | os.PathLike) -> list[str]:
    """Delete what interrupted `atomic_path` writes left in `folder` (a kill -9 between
    creating and renaming a temporary file): hidden regular files whose name has the
    temporary mark. Returns their names."""
    removed = []
    for entry in os.scandir(folder):
        ours = TEMPORARY.fullmatch(entry.name) is not None
        if ours and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
            removed.append(entry.name)
    return removed


def remove_orphans(path: str | os.PathLike) -> list[str]:
    """Delete the temporaries of `path` that `atomic_path(path, owned=True)` made in a
    process of this machine that has ended without removing them (killed with SIGKILL, or
    the machine lost power). A live process's are kept, and so are another machine's (a
    shared folder, or a container's: its PIDs mean nothing here). Returns their names."""
    path = Path(path)
    machine = _machine()
    owned = r"(?P<machine>[A-Za-z0-9_-]+)\.(?P<pid>\d+)-[a-z0-9_]{8}"
    pattern = re.compile(re.escape(f".{path.name}.") + owned + re.escape(TEMP_MARK) + r"(\.[^.]+)?")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:  # no folder yet, or an unreadable one: nothing of ours to clean
        return removed
    for entry in entries:
        found = pattern.fullmatch(entry.name)
        if not (found and found["machine"] == machine and not _alive(int(found["pid"]))):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:  # gone meanwhile, or not ours to remove (a read-only folder, another
            continue  # user's file in a sticky one): kept, and the pack goes on
    return removed


def _owner() -> str:
    """'MACHINE.PID' of this process, as owned temporaries carry it: MACHINE is what makes
    its PIDs mean the same processes (`_machine`)."""
    return f"{_machine()}.{os.getpid()}"


@functools.cache
def _machine() -> str:
    """This process's PID space, in [A-Za-z0-9_-]: the host name, and on Linux the boot
    (cloned machines share a host name) and the PID namespace (a container shares the host
    name and boot of its host, not its PIDs)."""
    parts = [re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname()) or "host"]
    with contextlib.suppress(OSError):
        boot = Path("/proc/sys/kernel/random/boot_id").read_text()
        parts.append(re.sub(r"[^a-f0-9]", "", boot)[:8])
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return "-".join(parts)


def _alive(pid: int) -> bool:
    """Whether process `pid` of this machine runs; True where that cannot be told safely
    (outside POSIX, os.kill(pid, 0) would terminate the process)."""
    if os.name != "posix" or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OverflowError, OSError):  # not a PID this system could have
        return False
    return True


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def read_bytes(path: str | os.PathLike, *, max_bytes: int, fix: str,
               within: str | os.PathLike | None = None) -> bytes:  # fmt: skip
    """The bytes of the regular file at `path`. FileNotFoundError when it is missing;
    RunError naming the file and `fix` (what to do) when it is not a regular file (a FIFO,
    a device such as /dev/zero behind a link), larger than `max_bytes`, or unreadable,
    and, given a folder `within` (a run folder), when `path` resolves (through symbolic
    links) to a place outside it. Opened non-blocking and checked before reading, so a
    FIFO never hangs the caller."""
    path = Path(path)
    if within is not None:
        _check_within(path, Path(within), fix)
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


def read_json(path: str | os.PathLike, *, fix: str = "rerun the command that writes it",
              within: str | os.PathLike | None = None) -> Any:  # fmt: skip
    """The JSON value in the file at `path`, or None when there is no such file.

    Anything else that is wrong (unreadable, not UTF-8, not JSON, too deeply nested, too
    large, not a regular file, a link out of the folder `within`: see `read_bytes`) raises
    RunError naming the file and `fix`, what to do."""
    try:
        raw = read_bytes(path, max_bytes=MAX_JSON_BYTES, fix=fix, within=within)
    except FileNotFoundError:
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise RunError(f"{path} is corrupt ({why}); {fix}") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise RunError(f"{path} is corrupt (nested too deeply); {fix}")
    return value


def _depth(value: Any) -> int:
    # Levels of lists and objects, counted without recursion (a scalar is 1).
    depth, level = 0, [value]
    while level:
        depth += 1
        level = [
            item
            for v in level
            if isinstance(v, list | dict)
            for item in (v.values() if isinstance(v, dict) else v)
        ]
    return depth


def _check_within(path: Path, folder: Path, fix: str) -> None:
    # A run folder is shared and unpacked from archives: a file of it that is a link to
    # ~/.ssh/... or /etc/... must not be read (and shown in a page) as if it were the run's.
    try:
        target, root = path.resolve(), folder.resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: a loop of links (Python < 3.13)
        raise RunError(f"{path} cannot be resolved ({e}); {fix}") from None
    if not target.is_relative_to(root):
        raise RunError(
            f"{path} links outside the run folder {folder} (to {target}); replace the link "
            f"with the file itself, or {fix}"
        )


def _umask() -> int:
    # The only way to read the umask is to set it: set it to anything and put it back.
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


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
