"""Benchmark the explorer page in headless Chromium: decode time, first paint, file size.

    python scripts/bench_explorer.py [RUN] [--repeats 5]

RUN is a run folder (`deepae train` wrote it); without one, the article's 784-32-2-32-784
model is trained for one epoch on MNIST in a temporary folder (the decoder's speed does
not depend on how well it is trained). The page is written with the default 10,000
points, then opened from file:// `--repeats` times in a fresh browser page:

- decode: median time of one `deepae.decode(x, y)` in the page, over 2,000 random points
  (performance.now() around each batch of 100, divided by 100);
- first paint: navigation start -> the first animation frame after the scatter is drawn
  (`deepae.firstPaint`), and Chromium's own first-contentful-paint;
- size: bytes of explorer.html.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from deepae.cli_values import positive_int
from deepae.errors import DeepAEError

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip
BUDGET = {"decode_ms": 1.0, "first_paint_ms": 1000.0, "bytes": 3_000_000}  # the issue's

DECODE_JS = """() => {
  const times = [];
  let sink = 0;
  for (let b = 0; b < 20; b++) {
    const pts = Array.from({length: 100}, () => [Math.random() * 20 - 5, Math.random() * 20 - 5]);
    const t0 = performance.now();
    for (const [x, y] of pts) sink += window.deepae.decode(x, y)[400];
    times.push((performance.now() - t0) / 100);
  }
  times.sort((a, b) => a - b);
  return {median: times[times.length >> 1], sink};
}"""
PAINT_JS = """() => {
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  return {firstPaint: window.deepae.firstPaint, fcp: fcp ? fcp.startTime : null};
}"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="run folder (default: train one epoch)")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="page loads (default: 5)")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deepae-bench-") as tmp:
        try:
            page = write_page(Path(args.run) if args.run else None, Path(tmp))
        except DeepAEError as e:  # a RUN that is not a run folder, a damaged one: one line
            print(f"{parser.prog}: error: {e}", file=sys.stderr)
            return 2
        rows = measure(page, args.repeats)
    size = rows.pop("bytes")
    print(f"explorer.html: {size:,} bytes ({size / 1e6:.2f} MB; budget {BUDGET['bytes']:,})")
    print(f"{'measure':<34}{'median':>10}{'min':>10}{'max':>10}{'budget':>10}")
    for name, (values, budget) in rows.items():
        print(f"{name:<34}{statistics.median(values):>10.3f}{min(values):>10.3f}"
              f"{max(values):>10.3f}{budget:>10g}")  # fmt: skip
    return 0


def write_page(run: Path | None, tmp: Path) -> Path:
    from deepae import explorer
    from deepae import run as runs
    from deepae.api import Autoencoder
    from deepae.data import load_idx_dataset

    if run is None:
        data = load_idx_dataset("mnist")
        ae = Autoencoder(latent_activation="linear", epochs=1)
        ae.fit(data.x_train, verbose=0)
        run = tmp / "run"
        ae.save(run)
    else:
        ae, data = runs.load_run_data(run)
    return explorer.write_explorer(run, ae, data, out=tmp / "explorer.html")


def measure(page: Path, repeats: int) -> dict:
    from playwright.sync_api import sync_playwright

    decode, paint, fcp = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        for _ in range(repeats):
            tab = browser.new_page(viewport={"width": 1280, "height": 800})
            tab.goto(page.as_uri())
            tab.wait_for_function("window.deepae && window.deepae.firstPaint !== null")
            times = tab.evaluate(PAINT_JS)
            paint.append(times["firstPaint"])
            fcp.append(times["fcp"] if times["fcp"] is not None else float("nan"))
            tab.evaluate("window.deepae.ready")
            decode.append(tab.evaluate(DECODE_JS)["median"])
            tab.close()
        browser.close()
    return {
        "decode one point (ms)": (decode, BUDGET["decode_ms"]),
        "first paint of the scatter (ms)": (paint, BUDGET["first_paint_ms"]),
        "first contentful paint (ms)": (fcp, BUDGET["first_paint_ms"]),
        "bytes": page.stat().st_size,
    }


if __name__ == "__main__":
    sys.exit(main())
