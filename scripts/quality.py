"""Quality benchmark: the article's recipe over several seeds, `best2d` over a few, and PCA.

    python scripts/quality.py [--article-seeds 5] [--best2d-seeds 3] [--out quality.json]

Trains each preset with seeds 0, 1, ... on the full MNIST training set, evaluates it on the
test set (deepae.evaluate) and prints a Markdown table: val BCE and MSE (median, min, max),
5-NN accuracy, dead latent units and training seconds; PCA with 2 components beside them.
A benchmark, not a test: it takes minutes (best2d trains ~2 minutes per seed on 2 cores).
Training seconds count the training steps only (EpochRecord.train_seconds); on a shared
machine they vary with the load, so the table gives their median, min and max.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from deepae import config as presets
from deepae import evaluate
from deepae.api import Autoencoder
from deepae.data import load_idx_dataset

ARTICLE_VAL_BCE = evaluate.ARTICLE_VAL_BCE


def train_and_evaluate(preset: str, seed: int, data: Any) -> dict[str, Any]:
    """One run of `preset` with `seed`: its test-set metrics, dead units, training time."""
    model_config, train_config = presets.resolve(preset, seed=seed)
    ae = Autoencoder(model_config, train_config)
    history = ae.fit(data.x_train, data.x_test, verbose=0, progress=False)
    result = evaluate.evaluate_run(ae, data)
    return {
        "preset": preset,
        "seed": seed,
        "val_bce": history[-1].val_loss,
        "train_seconds": sum(r.train_seconds for r in history),
        "model": result["model"],
        "pca": result["pca"],
    }


def summarise(values: list[float], fmt: str) -> str:
    """'median [min, max]' of values, or the single value."""
    if len(values) == 1:
        return fmt.format(values[0])
    med, lo, hi = statistics.median(values), min(values), max(values)
    return f"{fmt.format(med)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def table(results: list[dict[str, Any]]) -> str:
    """A Markdown table: one row per preset (median [min, max] over seeds), then PCA."""
    head = "| method | runs | val BCE | test MSE | 5-NN | dead latent units | train s |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for preset in dict.fromkeys(r["preset"] for r in results):
        rs = [r for r in results if r["preset"] == preset]
        dead = [r["model"]["dead_units"] for r in rs]
        lines.append(
            f"| {preset} | {len(rs)} "
            f"| {summarise([r['val_bce'] for r in rs], '{:.4f}')} "
            f"| {summarise([r['model']['mse'] for r in rs], '{:.4f}')} "
            f"| {summarise([r['model']['knn5_accuracy'] for r in rs], '{:.3f}')} "
            f"| {sum(d > 0 for d in dead)} of {len(rs)} runs ({', '.join(map(str, dead))}) "
            f"| {summarise([r['train_seconds'] for r in rs], '{:.1f}')} |"
        )
    pca = results[0]["pca"]
    lines.append(
        f"| PCA 2-D | 1 | {pca['bce']:.4f} | {pca['mse']:.4f} | {pca['knn5_accuracy']:.3f} "
        "| 0 | - |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--article-seeds", type=int, default=5, help="(default: 5)")
    parser.add_argument("--best2d-seeds", type=int, default=3, help="(default: 3)")
    parser.add_argument("--data-dir", help="folder with the MNIST files (skips downloads)")
    parser.add_argument("--out", help="also write every run's numbers to this .json file")
    args = parser.parse_args(argv)

    data = load_idx_dataset("mnist", args.data_dir)
    plan = [("article", s) for s in range(args.article_seeds)]
    plan += [("best2d", s) for s in range(args.best2d_seeds)]
    results = []
    start = time.perf_counter()
    for preset, seed in plan:
        r = train_and_evaluate(preset, seed, data)
        results.append(r)
        print(
            f"{preset} seed {seed}: val BCE {r['val_bce']:.4f}, MSE {r['model']['mse']:.4f}, "
            f"5-NN {r['model']['knn5_accuracy']:.3f}, dead units {r['model']['dead_units']}, "
            f"{r['train_seconds']:.1f} s training",
            file=sys.stderr,
            flush=True,
        )
    print(f"({time.perf_counter() - start:.0f} s in all)\n", file=sys.stderr)
    print(table(results))
    print(f"\nThe article reports val_loss {ARTICLE_VAL_BCE} after 10 epochs (Keras).")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
