"""What `deepae data info` and `deepae data fetch` say: which local copy of a dataset
`deepae train` would use, each file verified, and the tables that print it.

`info` looks through the same local sources as `load_idx_dataset`, in the same order
(`mnist.local_sources`: the data_dir when one is given, else the cache, then the system
folders) and reads them only: it downloads, caches, repairs and deletes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from deepae.data._base import cache_root
from deepae.data.idx import read_idx_bytes
from deepae.data.mnist import (
    DatasetSpec,
    _file_info,
    _from_npz,
    _spec,
    download_sources,
    local_sources,
)  # fmt: skip
from deepae.errors import DataError

ABSENT = dict(present=False, bytes=None, sha256=None, verified=False, shape=None, error=None)


def info(
    name: str | DatasetSpec,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict:
    """Which local copy of dataset `name` `load_idx_dataset` would use, verified by SHA-256.

    Returns {"name", "source" (the source that would be used, None if none is complete),
    "path", "complete", "cache_path", "data_dir", "files" (those of the source used, else of
    the first source looked at), "sources" (each source looked at, in order, up to the one
    used: {"source", "path", "complete", "files"}), "downloads" (what `fetch` would try
    when no local source is complete; [] with a data_dir, which is the only source)}.
    Each file: {"file" (the name found), "present", "bytes", "sha256", "verified", "shape",
    "error"}."""
    spec = _spec(name)
    cache = cache_root(cache_dir) / spec.name
    sources = []
    for source, folder in local_sources(spec, data_dir, cache):
        files = _examine(spec, folder, gz=source != "cache", npz=data_dir is not None)
        complete = all(f["verified"] for f in files.values())
        sources.append({"source": source, "path": str(folder), "complete": complete,
                        "files": files})  # fmt: skip
        if complete:
            break
    used = sources[-1] if sources[-1]["complete"] else None
    return {
        "name": spec.name,
        "source": used and used["source"],
        "path": used and used["path"],
        "complete": used is not None,
        "cache_path": str(cache),
        "data_dir": None if data_dir is None else str(data_dir),
        "files": (used or sources[0])["files"],
        "sources": sources,
        "downloads": [] if data_dir is not None else download_sources(spec),
    }


def _examine(spec: DatasetSpec, folder: Path, *, gz: bool, npz: bool) -> dict[str, dict]:
    """file name -> what `folder` holds of it (raw IDX, or .gz too where `gz`; Keras' npz
    in place of missing files where `npz`, as `load_idx_dataset` reads a data_dir)."""
    names = spec.files.values()
    found = {f: _locate(folder, f, gz) for f in names}
    keras = None
    if npz and spec.npz_name:
        keras = folder if folder.suffix == ".npz" else folder / spec.npz_name
    if npz and keras is not None and keras.is_file() and None in found.values():
        try:
            blobs = _from_npz(spec, keras)
        except DataError as e:
            return {f: dict(ABSENT, file=keras.name, present=True, error=str(e)) for f in names}
        return {f: dict(_file_info(spec, f, b), file=keras.name) for f, b in blobs.items()}
    out = {}
    for fname, path in found.items():
        if path is None:
            out[fname] = dict(ABSENT, file=fname)
            continue
        try:
            out[fname] = _file_info(spec, fname, read_idx_bytes(path), where=str(path))
        except DataError as e:
            out[fname] = dict(ABSENT, present=True, error=str(e))
        out[fname]["file"] = path.name
    return out


def _locate(folder: Path, fname: str, gz: bool) -> Path | None:
    names = (fname, f"{fname}.gz") if gz else (fname,)
    return next((folder / n for n in names if (folder / n).is_file()), None)


# -- the tables ------------------------------------------------------------------------


def format_info(record: dict) -> str:
    """`info`'s or `fetch`'s record as text: the source used, then a table per source
    looked at (file, bytes, verified, shape), then what else would be tried."""
    name = record["name"]
    if "sources" not in record:  # fetch: the files it put into the cache
        head = (f"{name}: already in the cache, {record['cache_path']}, verified"
                if record["source"] == "cache" else
                f"{name}: fetched from {record['source']} into {record['cache_path']}")  # fmt: skip
        return head + "\n" + _files_table(record["files"])
    if record["complete"]:
        head = f"{name}: `deepae train` would load it from {record['source']}"
    elif record["data_dir"] is not None:
        head = (
            f"{name}: {record['data_dir']} does not hold a complete, verified copy, and with "
            "--data-dir it is the only source: fix the files there, or leave out --data-dir"
        )
    else:
        tries = ", then ".join(record["downloads"]) or "nothing (no download source is known)"
        head = (
            f"{name}: no complete local copy; `deepae data fetch --dataset {name}` (or `deepae "
            f"train`) would download it from {tries}, into {record['cache_path']}"
        )
    lines = [head]
    for src in record["sources"]:
        state = "used" if src["complete"] else "incomplete, skipped"
        if not any(f["present"] for f in src["files"].values()):
            state = "nothing there"
        where = src["source"] if src["path"] in src["source"] else f"{src['source']} {src['path']}"
        lines += ["", f"{where}: {state}", _files_table(src["files"])]
    return "\n".join(lines)


def _files_table(files: dict[str, dict]) -> str:
    rows = [("file", "IDX bytes", "verified", "shape")]  # bytes once decompressed
    for fname, f in files.items():
        verified = "yes" if f["verified"] else ("no" if f["present"] else "missing")
        shape = " x ".join(map(str, f["shape"])) if f.get("shape") else "-"
        size = f"{f['bytes']:,}" if f.get("bytes") is not None else "-"
        rows.append((f.get("file", fname), size, verified, shape))
    text = _align(rows, right=(1,))
    errors = [f"  {f.get('file', n)}: {f['error']}" for n, f in files.items() if f.get("error")]
    return "\n".join([text, *errors])


def format_description(record: dict) -> str:
    """`describe`'s record (a folder or array file) as text: name, source, path and shapes,
    then a table of the classes with their training counts."""
    keys = ("name", "source", "path", "train", "validation")
    lines = [_align([(k, str(record[k])) for k in keys])]
    classes = record["classes"]
    if isinstance(classes, dict):
        rows = [("class", "training images"), *((c, f"{n:,}") for c, n in classes.items())]
        lines += ["", _align(rows, right=(1,))]
    else:
        lines.append(f"classes     {classes}")
    return "\n".join(lines)


def _align(rows: list[tuple[str, ...]], right: tuple[int, ...] = ()) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    cells = [
        [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        for r in rows
    ]
    return "\n".join("  ".join(row).rstrip() for row in cells)
