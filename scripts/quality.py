"""Quality benchmark: deepae's presets over several seeds, umap-learn's UMAP and PCA, on the
test set of one dataset, side by side in one run.

    python scripts/quality.py [--dataset mnist] [--article-seeds 5] [--best2d-seeds 3]
                              [--umap2d-seeds 3] [--no-umap] [--out quality.json]
                              [--set FIELD=VALUE ...]

Trains each preset with seeds 0, 1, ... on the full training set, evaluates it on the test
set (deepae.evaluate) and prints a Markdown table: val BCE and MSE, 5-NN and 1-NN accuracy,
trustworthiness (this project's k=10 on 5,000 test images, and the Parametric UMAP paper's
k=5 on the first 10,000 training images), dead latent units and seconds (median [min, max]
over seeds). umap-learn's UMAP (2-D, default parameters, same training images) is fit
beside them: its fit time, 5-NN, trustworthiness, and its inverse_transform's MSE and time
on 1,000 test codes. PCA with 2 components and the paper's published rows close the table.

Seconds are wall-clock: for presets with a neighbour graph they include building it (each
run gets a fresh graph cache, so the graph is built, never read). A benchmark, not a test:
it takes about half an hour on 2 cores. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from deepae import config, evaluate, tables
from deepae.api import Autoencoder
from deepae.data import flatten_images, load_idx_dataset
from deepae.errors import DeepAEError

INVERSE_CODES = 1000  # umap-learn's inverse_transform is slow: scored on this many codes


def paper_trust(x_train: np.ndarray, codes: np.ndarray) -> float:
    """Trustworthiness as the Parametric UMAP paper computes it: k=5, first 10,000
    training images."""
    from sklearn.manifold import trustworthiness

    n = tables.PAPER_TRUST["samples"]
    return float(trustworthiness(flatten_images(x_train[:n]), codes[:n], n_neighbors=5))


def run_preset(preset: str, seed: int, data: Any, overrides: dict | None = None) -> dict[str, Any]:
    """One run of `preset` with `seed` (and config `overrides`): its test-set metrics and
    wall-clock seconds."""
    overrides = overrides or {}
    model_config, train_config = config.resolve(preset, seed=seed, **overrides)
    ae = Autoencoder(model_config, train_config)
    with tempfile.TemporaryDirectory() as cache:  # a neighbour graph is built, not read
        start = time.perf_counter()
        ae.graph_cache_dir = cache
        history = ae.fit(data.x_train, validation_data=data.x_test, verbose=0, progress=False)
        seconds = time.perf_counter() - start
    codes = ae.encode(data.x_train)
    result = evaluate.evaluate_run(ae, data, train_codes=codes)
    model = result["model"] | {"trust_paper": paper_trust(data.x_train, codes)}
    changed = ", ".join(f"{k}={v}" for k, v in overrides.items())
    return {"method": f"{preset} ({changed})" if changed else preset, "seed": seed,
            "val_bce": history[-1].val_loss,
            "seconds": seconds, "model": model, "pca": result["pca"]}  # fmt: skip


def run_umap_learn(data: Any) -> dict[str, Any]:
    """umap-learn's UMAP, 2-D, default parameters, on the same training images."""
    from deepae.neighbours import require_umap

    require_umap()
    import umap

    x, xt = flatten_images(data.x_train), flatten_images(data.x_test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba and umap-learn's own notices
        start = time.perf_counter()
        reducer = umap.UMAP(n_components=2).fit(x)
        fit_seconds = time.perf_counter() - start
        codes_test = reducer.transform(xt)
        start = time.perf_counter()
        decoded = reducer.inverse_transform(codes_test[:INVERSE_CODES])
        inverse_seconds = time.perf_counter() - start
    codes = reducer.embedding_
    model = {
        "mse": float(((decoded - xt[:INVERSE_CODES]) ** 2).mean()),
        "knn5_accuracy": evaluate.knn_accuracy(codes, data.y_train, codes_test, data.y_test, 5),
        "knn1_accuracy": evaluate.knn_accuracy(codes, data.y_train, codes_test, data.y_test, 1),
        "trustworthiness": evaluate.trustworthiness(data.x_test, codes_test),
        "trust_paper": paper_trust(data.x_train, codes),
        "dead_units": 0,
    }
    return {"method": "umap-learn UMAP", "seed": None, "val_bce": None, "seconds": fit_seconds,
            "inverse_seconds": inverse_seconds, "model": model, "pca": None}  # fmt: skip


def summarise(values: list, fmt: str) -> str:
    """'median [min, max]' of values, the single value, or '-'."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    med, lo, hi = statistics.median(values), min(values), max(values)
    return f"{fmt.format(med)} [{fmt.format(lo)}, {fmt.format(hi)}]"


COLUMNS = [  # (title, value of a run, format)
    ("val BCE", lambda r: r["val_bce"], "{:.4f}"),
    ("test MSE", lambda r: r["model"]["mse"], "{:.4f}"),
    ("5-NN", lambda r: r["model"]["knn5_accuracy"], "{:.3f}"),
    ("1-NN", lambda r: r["model"]["knn1_accuracy"], "{:.3f}"),
    ("trust k=10 test", lambda r: r["model"]["trustworthiness"], "{:.3f}"),
    ("trust k=5 train", lambda r: r["model"].get("trust_paper"), "{:.3f}"),
    ("dead units", lambda r: r["model"]["dead_units"], "{:.0f}"),
    ("seconds", lambda r: r["seconds"], "{:.0f}"),
]


def table(results: list[dict[str, Any]], dataset: str) -> str:
    """A Markdown table: one row per method (median [min, max] over seeds), PCA, and the
    paper's published rows for the dataset."""
    lines = ["| method | runs | " + " | ".join(t for t, _, _ in COLUMNS) + " |"]
    lines.append("|---" * (len(COLUMNS) + 2) + "|")
    for method in dict.fromkeys(r["method"] for r in results):
        rs = [r for r in results if r["method"] == method]
        cells = [summarise([get(r) for r in rs], fmt) for _, get, fmt in COLUMNS]
        lines.append(f"| {method} | {len(rs)} | " + " | ".join(cells) + " |")
    pca = next((r["pca"] for r in results if r["pca"]), None)
    if pca is not None:
        lines.append(f"| PCA 2-D | 1 | {pca['bce']:.4f} | {pca['mse']:.4f} | "
                     f"{pca['knn5_accuracy']:.3f} | {pca['knn1_accuracy']:.3f} | "
                     f"{pca['trustworthiness']:.3f} | - | 0 | - |")  # fmt: skip
    for name, row in tables.PUBLISHED.get(dataset, {}).items():
        values = [None, row["mse"], row["knn5_accuracy"], row["knn1_accuracy"], None,
                  row["trust_paper"], None, None]  # fmt: skip
        cells = [summarise([v], fmt) for v, (_, _, fmt) in zip(values, COLUMNS, strict=True)]
        lines.append(f"| published {name} | - | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"))
    parser.add_argument("--article-seeds", type=int, default=5, help="(default: 5)")
    parser.add_argument("--best2d-seeds", type=int, default=3, help="(default: 3)")
    parser.add_argument("--umap2d-seeds", type=int, default=3, help="(default: 3)")
    parser.add_argument("--no-umap", action="store_true", help="skip umap-learn's UMAP")
    parser.add_argument("--data-dir", help="folder with the dataset's files (skips downloads)")
    parser.add_argument("--out", help="also write every run's numbers to this .json file")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        type=_setting, help="a config field for every preset trained, e.g. "
                        "precision=float32 (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    overrides = dict(args.set)
    if "seed" in overrides:
        parser.error(
            "--set seed: the seeds are this script's (0, 1, ... for each preset); "
            "choose how many with --article-seeds, --best2d-seeds and --umap2d-seeds"
        )
    plan = [("article", s) for s in range(args.article_seeds)]
    plan += [("best2d", s) for s in range(args.best2d_seeds)]
    plan += [("umap2d", s) for s in range(args.umap2d_seeds)]
    # Every preset of the plan with the --set fields, checked before the half hour begins.
    for preset in dict.fromkeys(p for p, _ in plan):
        try:
            config.resolve(preset, seed=0, **overrides)
        except DeepAEError as e:
            parser.error(f"--set: {e}")
    try:
        return run_plan(plan, overrides, args)
    except DeepAEError as e:  # data that cannot be read, a device that is not there, ...
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2


def run_plan(plan: list[tuple[str, int]], overrides: dict, args: argparse.Namespace) -> int:
    """Train and evaluate every (preset, seed) of `plan`, then umap-learn; print the table."""
    data = load_idx_dataset(args.dataset, args.data_dir)
    results = []
    start = time.perf_counter()
    for preset, seed in plan:
        results.append(run_preset(preset, seed, data, overrides))
        report(results[-1], args.out, results)
    if not args.no_umap:
        results.append(run_umap_learn(data))
        report(results[-1], args.out, results)
    print(f"({time.perf_counter() - start:.0f} s in all)\n", file=sys.stderr)
    print(table(results, args.dataset))
    umap_run = next((r for r in results if r["method"] == "umap-learn UMAP"), None)
    if umap_run:
        print(f"\numap-learn: MSE is inverse_transform's on {INVERSE_CODES} test codes, which "
              f"took {umap_run['inverse_seconds']:.0f} s; seconds is the fit.")  # fmt: skip
    if args.dataset == "mnist":
        print(f"The article reports val_loss {tables.ARTICLE_VAL_BCE} after 10 epochs (Keras).")
    return 0


def _setting(text: str) -> tuple[str, Any]:
    """FIELD=VALUE -> (field, value): the value as JSON where it parses (numbers, lists),
    else as text."""
    field, sep, value = text.partition("=")
    if not sep or not field:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    try:
        return field, json.loads(value)
    except json.JSONDecodeError:
        return field, value


def report(r: dict[str, Any], out: str | None, results: list[dict[str, Any]]) -> None:
    """Print one run's line, and save every run so far (a long benchmark keeps what it
    measured whatever happens later)."""
    if out:
        Path(out).write_text(json.dumps(results, indent=2) + "\n")
    m = r["model"]
    print(f"{r['method']} seed {r['seed']}: MSE {m['mse']:.4f}, 5-NN {m['knn5_accuracy']:.3f}, "
          f"trust k=5 train {m['trust_paper']:.3f}, {r['seconds']:.0f} s",
          file=sys.stderr, flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
