"""Memory and speed on a dataset larger than the article's: a synthetic uint8 .npy of
600,000 images (MNIST's 60,000 training digits tiled ten times, labels beside it as
NAME.labels.npy), trained on from the file (memory-mapped, read a batch at a time) and
from memory (the same images and labels in an uncompressed .npz, which deepae reads and
converts to float32 whole: the path every array took before).

    make bench-memory          # or: python scripts/bench_memory.py [--count 600000]

Each path is one fresh `deepae train` process running the whole pipeline: training with
validation, encoding, evaluation beside PCA, figures, explorer and report. The parent
samples the child's RssAnon (/proc/PID/status: anonymous memory; the pages of a mapped
file are not in it, and the kernel can drop them at any time) every 20 ms and reports its
peak (not getrusage's max RSS, which counts those file pages). Images per second:
training images x epochs / the run's train_seconds (metrics.json: the training steps
alone, validation excluded). The data files are written before the
measured processes start and are not part of any number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from deepae.cli_values import positive_int

SAMPLE_S = 0.02  # RssAnon sampling period
TARGET_MB = 600  # the budget for the memory-mapped path at 600,000 images
TARGET_RATIO = 1.5  # ... and its throughput: within 1.5x of the in-memory path


def tiles(x: np.ndarray, count: int):
    """x repeated until `count` images have been yielded, one block at a time."""
    done = 0
    while done < count:
        block = x[: count - done]
        yield block
        done += len(block)


def write_npy(f, x: np.ndarray, count: int) -> None:
    header = {"descr": npy_format.dtype_to_descr(x.dtype), "fortran_order": False,
              "shape": (count, *x.shape[1:])}  # fmt: skip
    npy_format.write_array_header_1_0(f, header)
    for block in tiles(x, count):
        f.write(np.ascontiguousarray(block).data)


def write_data(folder: Path, count: int) -> tuple[Path, Path]:
    """big.npy (+ big.labels.npy) and big.npz holding the same images and labels."""
    from deepae import load_mnist

    (x, y), _ = load_mnist()
    npy, npz = folder / "big.npy", folder / "big.npz"
    with open(npy, "wb") as f:
        write_npy(f, x, count)
    with open(folder / "big.labels.npy", "wb") as f:
        write_npy(f, y, count)
    # Stored, not deflated: deepae reads it as it would any .npz, into memory.
    with zipfile.ZipFile(npz, "w", zipfile.ZIP_STORED) as zf:
        for name, a in (("images", x), ("labels", y)):
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                write_npy(f, a, count)
    return npy, npz


def rss_anon_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"^RssAnon:\s+(\d+) kB", status, re.M)
    return int(m[1]) / 1024 if m else None


def measure(path: Path, name: str, runs: Path, args: argparse.Namespace) -> dict:
    """One `deepae train` on `path` in a fresh process: peak RssAnon, max RSS, speed."""
    # --overwrite: a --folder given again holds this run from last time.
    cmd = [sys.executable, "-m", "deepae.cli", "train", "--dataset", str(path), "--runs-dir",
           str(runs), "--name", name, "--overwrite", "--epochs", str(args.epochs),
           "--no-progress", "--device", args.device]  # fmt: skip
    log = runs / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start, peak = time.perf_counter(), 0.0
    with open(log, "w") as out:  # a file, not a pipe: a full pipe would stall the child
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        while child.poll() is None:
            peak = max(peak, rss_anon_mb(child.pid) or 0.0)
            time.sleep(SAMPLE_S)
    wall = time.perf_counter() - start
    if child.returncode != 0:
        sys.exit(f"{name}: deepae train failed ({child.returncode}):\n{log.read_text()}")
    metrics = json.loads((runs / name / "metrics.json").read_text())
    n_train = json.loads((runs / name / "run.json").read_text())["data"]["n_train"]
    seconds = metrics["train_seconds"]
    return {"name": name, "n_train": n_train, "peak_anon_mb": peak, "wall_s": wall,
            "train_s": seconds, "images_per_s": n_train * args.epochs / seconds}  # fmt: skip


PATHS = ("mapped", "memory")  # the two ways deepae reads the data (see the docstring)


def path_names(text: str) -> list[str]:
    """An argparse type: 'mapped', 'memory', 'both' or a comma-separated list of them."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    names = [p for n in names for p in (PATHS if n == "both" else [n])]
    unknown = sorted(set(names) - set(PATHS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown path(s) {', '.join(unknown) or repr(text)}; "
                                         "give mapped, memory or both")  # fmt: skip
    return list(dict.fromkeys(names))  # each once, in the order given


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=positive_int, default=600_000,
                   help="images (default: 600000)")  # fmt: skip
    p.add_argument("--epochs", type=positive_int, default=1,
                   help="epochs per run (default: 1)")  # fmt: skip
    p.add_argument("--device", default="cpu", help="deepae train --device (default: cpu)")
    p.add_argument("--paths", type=path_names, default="both",
                   help="mapped, memory or both (default: both)")  # fmt: skip
    p.add_argument("--folder", type=Path, help="where to write the data and runs (default: "
                   "a temporary folder, removed afterwards)")  # fmt: skip
    args = p.parse_args()
    paths = args.paths
    with tempfile.TemporaryDirectory(prefix="deepae-bench-memory-") as tmp:
        folder = args.folder or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        npy, npz = write_data(folder, args.count)
        print(f"wrote {args.count:,} images as {npy} ({npy.stat().st_size / 1e6:.0f} MB) and "
              f"{npz.name} in {time.perf_counter() - start:.1f} s")  # fmt: skip
        sources = {"mapped": npy, "memory": npz}
        rows = [measure(sources[k], k, folder / "runs", args) for k in paths]
    report(rows, args)


def report(rows: list[dict], args: argparse.Namespace) -> None:
    memory = next((r for r in rows if r["name"] == "memory"), None)
    print(f"\n{args.count:,} images, {args.epochs} epoch(s), device {args.device}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n")  # fmt: skip
    print("| path | training images | peak RssAnon (MB) | train s | images/s | speed vs "
          "memory | wall s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{r['images_per_s'] / memory['images_per_s']:.2f}" if memory else "-"
        print(f"| {r['name']} | {r['n_train']:,} | {r['peak_anon_mb']:.0f} | {r['train_s']:.1f} "
              f"| {r['images_per_s']:,.0f} | {ratio} | {r['wall_s']:.1f} |")  # fmt: skip
    print(
        f"\ntargets at 600,000 images: mapped peak RssAnon <= {TARGET_MB} MB, speed vs "
        f"memory >= {1 / TARGET_RATIO:.2f} (RssAnon sampled every {SAMPLE_S * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
