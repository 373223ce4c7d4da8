"""Compare two run folders file by file, times aside: are their outputs the same?

    python scripts/compare_runs.py runs/before runs/after

Used to check that a refactoring changed no output: train the article's run (same seed,
same machine) before and after, then compare. Wall-clock times (history seconds, timing
fields, `updated`, the report's date), the run's own name (in page titles) and file sizes
listed on the report are set aside; everything else must match exactly: PNG bytes,
tensors and their metadata, JSON values, CSV cells, HTML text. Exits 1 on a difference.

--drop KEY (repeatable) sets aside a top-level JSON key that was removed on purpose (e.g.
`--drop data`: metrics.json no longer repeats run.json's data record), in the JSON files
and in the report's tables.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

TIME_KEYS = {"seconds", "train_seconds", "median_epoch_seconds", "updated"}


DROPPED: set[str] = set()


def _strip_times(value, top: bool = False):
    if isinstance(value, dict):
        skip = TIME_KEYS | (DROPPED if top else set())
        return {k: _strip_times(v) for k, v in value.items() if k not in skip}
    if isinstance(value, list):
        return [_strip_times(v) for v in value]
    return value


def _safetensors(raw: bytes):
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    if "state" in meta:  # a checkpoint's bookkeeping, history times included
        meta["state"] = _strip_times(json.loads(meta["state"]))
    return meta, header, raw[8 + n :]


def _history(raw: bytes):
    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _html(raw: bytes, name: str):
    text = raw.decode()
    for where in ("deepae explorer: {}", "deepae run {}", "<code>{}</code>"):  # the titles
        text = text.replace(where.format(name), where.format("RUN"))
    text = re.sub(r"Report written [0-9: -]+\.", "Report written DATE.", text)
    text = re.sub(r"\(([0-9,]+) bytes\)", "(SIZE bytes)", text)
    keys = "|".join(sorted(TIME_KEYS))
    text = re.sub(
        rf"<tr><th>({keys})</th><td>[^<]*</td></tr>", r"<tr><th>\1</th><td>T</td></tr>", text
    )
    # the seconds column of the report's history table: the 4th cell of each row
    for key in DROPPED:  # a dropped key's row in the report's tables: up to the row's end
        text = re.sub(rf"<tr><th>{key}</th><td>(<table.*?</table>|[^<]*)</td></tr>", "", text)
    return re.sub(r"(<tr><td>\d+</td>(?:<td>[^<]*</td>){2})<td>[^<]*</td>", r"\1<td>T</td>", text)


def normalised(path: Path):
    raw = path.read_bytes()
    if path.suffix == ".safetensors":
        return _safetensors(raw)
    if path.suffix == ".json" and path.name != "run.json":
        return _strip_times(json.loads(raw), top=True)
    if path.suffix == ".json":
        return _strip_times(json.loads(raw))
    if path.name == "history.csv":
        return _history(raw)
    if path.suffix == ".html":
        return _html(raw, path.parent.resolve().name)
    return raw


def compare(a: Path, b: Path) -> list[str]:
    """One line per file: 'same NAME' or 'DIFF NAME: why'."""
    lines = []
    for name in sorted({p.name for p in a.iterdir()} | {p.name for p in b.iterdir()}):
        pa, pb = a / name, b / name
        if not pa.exists() or not pb.exists():
            lines.append(f"DIFF {name}: only in {a if pa.exists() else b}")
            continue
        va, vb = normalised(pa), normalised(pb)
        if va == vb:
            lines.append(f"same {name}")
        elif isinstance(va, dict) and isinstance(vb, dict):
            keys = sorted(k for k in va.keys() | vb.keys() if va.get(k) != vb.get(k))
            lines.append(f"DIFF {name}: keys {', '.join(keys)}")
        else:
            lines.append(f"DIFF {name}")
    return lines


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Compare two run folders, times aside.")
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--drop", action="append", default=[], metavar="KEY")
    args = parser.parse_args(argv)
    # A missing folder is a mistake in the command, not a difference (exit 1): exit 2.
    for folder in (args.before, args.after):
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder; give two run folders (deepae train's)")
    DROPPED.update(args.drop)
    lines = compare(args.before, args.after)
    print("\n".join(lines))
    return 1 if any(line.startswith("DIFF") for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
