"""Benchmark: MNIST's 60,000 training digits as a folder of PNG files, loaded by
`deepae.load_dataset(folder)` uncached (every file decoded with Pillow) and cached (one
array file keyed by the folder's content).

    python scripts/bench_datasets.py [--count 60000] [--repeats 3] [--folder DIR]

Writes the PNGs into DIR (default: a temporary folder, removed afterwards) as
<label>/<index>.png, then times each load with a fresh cache for the uncached runs and a
warm one for the cached runs, and checks that the pixels and labels are MNIST's. Prints a
Markdown table for docs/benchmarks.md. The PNGs sit in the OS page cache when read (they
were just written): the numbers are decode time, not disk time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from deepae import load_dataset, load_mnist
from deepae.cli_values import positive_int
from deepae.data.folders import load_image_folder

BUDGET_S = 30.0  # the target for 60,000 28 x 28 PNGs, uncached


def write_pngs(folder: Path, x: np.ndarray, y: np.ndarray) -> float:
    start = time.perf_counter()
    # A --folder used before holds the PNGs of that run, maybe more of them than this one
    # writes: empty the class folders, so the loader reads this run's images only.
    for label in range(10):
        for old in (folder / str(label)).glob("*.png"):
            old.unlink()
    for label in np.unique(y):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        Image.fromarray(image).save(folder / str(label) / f"{i:05d}.png")
    return time.perf_counter() - start


def timed_load(folder: Path, cache: Path) -> tuple[float, object]:
    start = time.perf_counter()
    data = load_dataset(folder, cache_dir=cache)
    return time.perf_counter() - start, data


def check(folder: Path, cache: Path, x: np.ndarray, y: np.ndarray) -> None:
    """The folder's images, in the loader's order (label, then index), are MNIST's."""
    found = load_image_folder(folder, cache_dir=cache)
    order = np.lexsort((np.arange(len(y)), y))  # by label, then by index
    assert found.cached and np.array_equal(found.images, x[order]), "pixels differ"
    # A few images may not hold every digit: the classes are the digits written.
    digits = np.unique(y)
    assert found.class_names == tuple(str(c) for c in digits), found.class_names
    assert np.array_equal(found.labels, np.searchsorted(digits, y[order])), "labels differ"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=positive_int, default=60_000, help="images (default: 60000)")
    p.add_argument("--repeats", type=positive_int, default=3,
                   help="loads of each kind (default: 3)")  # fmt: skip
    p.add_argument("--folder", type=Path, help="where to write the PNGs (default: a temp dir)")
    args = p.parse_args()

    (x, y), _ = load_mnist()
    x, y = x[: args.count], y[: args.count]
    with tempfile.TemporaryDirectory(prefix="deepae-bench-") as tmp:
        folder = args.folder or Path(tmp) / "mnist-png"
        write_s = write_pngs(folder, x, y)
        print(f"wrote {len(x):,} PNGs to {folder} in {write_s:.1f} s")
        uncached = []
        for r in range(args.repeats):
            seconds, data = timed_load(folder, Path(tmp) / f"cache-{r}")
            assert data.source == "image folder", data.source
            uncached.append(seconds)
        cache = Path(tmp) / "cache-0"
        cached = []
        for _ in range(args.repeats):
            seconds, data = timed_load(folder, cache)
            assert data.source == "image folder (cached)", data.source
            cached.append(seconds)
        check(folder, cache, x, y)
    rows = [("first load (uncached)", uncached), ("second load (cached)", cached)]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    print(f"\n{len(x):,} 28 x 28 PNGs, {machine}, --repeats {args.repeats}; checked\n")
    print("| load | median | min | max | budget |")
    print("|---|---|---|---|---|")
    budget_s = BUDGET_S * len(x) / 60_000  # the budget scaled to the images loaded
    for name, times in rows:
        budget = f"< {budget_s:.2g} s" if "uncached" in name else ""
        print(f"| {name} | {statistics.median(times):.2f} s | {min(times):.2f} s | "
              f"{max(times):.2f} s | {budget} |")  # fmt: skip
    if statistics.median(uncached) > budget_s:
        raise SystemExit("over budget")


if __name__ == "__main__":
    main()
