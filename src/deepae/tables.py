"""The evaluation as tables: the side-by-side text `deepae evaluate` prints (the report
shows the same cells as HTML), and the published 2-D numbers it is read against.

Pure data and text: no NumPy, no scikit-learn, so the report and scripts can use it alone.
"""

from __future__ import annotations

from typing import Any

# Published 2-D numbers: Sainburg, McInnes & Gentner, "Parametric UMAP embeddings for
# representation and semisupervised learning", Neural Computation 2021, from the notebooks
# of the paper's repository (notebooks/dataset-projections). Their protocol: embeddings
# trained on the first 50,000 training images; kNN classifiers fit on the training codes,
# scored on the 10,000 test images; MSE on the test images (pixels / 255);
# trustworthiness with k=5 on the first 10,000 *training* images ("trust_paper": another
# protocol than this module's k=10 test-set figure, so a column of its own).
# UMAP/AE = UMAP loss + reconstruction (conv nets); P.UMAP = Parametric UMAP with a
# separate decoder; UMAP = umap-learn, decoded by inverse_transform.
_P = ("knn5_accuracy", "knn1_accuracy", "mse", "trust_paper")
PUBLISHED_IMAGE_SHAPE = (28, 28)  # MNIST's and Fashion-MNIST's own: no other size compares
PUBLISHED = {
    "mnist": {
        name: dict(zip(_P, values, strict=True))
        for name, values in {
            "UMAP/AE": (0.9537, 0.9403, 0.0360, 0.9675),
            "P.UMAP": (0.9614, 0.9402, 0.0374, 0.9573),
            "UMAP": (0.9544, 0.9317, 0.0393, 0.9601),
            "t-SNE": (0.9502, 0.9411, None, 0.9874),
            "AE": (0.7926, 0.7647, 0.0369, 0.9663),
            "VAE": (0.7649, 0.7241, 0.0371, 0.9513),
            "PCA": (0.4201, 0.3765, 0.0557, 0.7434),
        }.items()
    },
    "fashion-mnist": {  # the paper's Fashion-MNIST table has no 1-NN column
        name: dict(zip(_P, values, strict=True))
        for name, values in {
            "UMAP/AE": (0.7561, None, 0.0240, 0.9842),
            "P.UMAP": (0.7407, None, 0.0266, 0.9733),
            "UMAP": (0.7608, None, 0.0347, 0.9777),
            "t-SNE": (0.8039, None, None, 0.9906),
            "AE": (0.7339, None, 0.0244, 0.9803),
            "VAE": (0.7161, None, 0.0253, 0.9751),
            "PCA": (0.5055, None, 0.0461, 0.9126),
        }.items()
    },
}
PAPER_TRUST = {"k": 5, "samples": 10_000}  # the paper's protocol: the first training images
ARTICLE_VAL_BCE = 0.1985  # the article's epoch-10 val_loss (Keras, 784-32-2-32-784)


# -- the table ------------------------------------------------------------------------------

_ROWS = (  # (key, label, format)
    ("bce", "reconstruction BCE", "{:.4f}"),
    ("mse", "reconstruction MSE", "{:.4f}"),
    ("psnr", "PSNR (dB)", "{:.2f}"),
    ("knn1_accuracy", "1-NN accuracy", "{:.3f}"),
    ("knn5_accuracy", "5-NN accuracy", "{:.3f}"),
    ("trustworthiness", "trustworthiness", "{:.3f}"),
    ("dead_units", "dead latent units", "{:d}"),
)


def table_caption(result: dict[str, Any]) -> str:
    """The line above `format_table`'s table: data, split, size, what kNN was fit on."""
    loo = ", leave-one-out" if result["split"] == "train" else ""
    return (
        f"{result['dataset']} {result['split']} set, {result['n']:,} images, "
        f"{result['latent_size']}-D codes (kNN fit on the training codes{loo})"
    )


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """`format_table`'s table as cells, head row first: metric, model, PCA (report.html
    shows the same table as HTML)."""
    d = result["latent_size"]
    methods = {"model": "model", "pca": f"PCA {d}-D"}
    methods = {key: title for key, title in methods.items() if result.get(key)}
    rows = [["metric", *methods.values()]]
    for key, label, fmt in _ROWS:
        if key not in result["model"]:
            continue
        if key == "trustworthiness":
            label += f" (k={result['trustworthiness']['k']})"
        cells = [_fmt(result[m].get(key), fmt) for m in methods]
        rows.append([label, *cells])
    for cls in result["model"].get("mse_per_class", {}):
        cells = [_fmt(result[m]["mse_per_class"][cls], "{:.4f}") for m in methods]
        rows.append([f"MSE {cls}", *cells])
    return rows


def published_lines(result: dict[str, Any]) -> list[str]:
    """The published numbers `format_table` prints under its table (none: [])."""
    return _published_lines(result)


def format_table(result: dict[str, Any]) -> str:
    """`evaluate_run`'s result as text: model and PCA side by side, then the published 2-D
    numbers of the dataset where the paper has them (MNIST, Fashion-MNIST test sets)."""
    rows = table_rows(result)
    head = rows[0]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [table_caption(result)]
    for i, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
        if i == 0:
            lines.append("-" * len(lines[-1]))
    return "\n".join(lines + _published_lines(result))


_PUBLISHED_COLUMNS = (
    ("knn5_accuracy", "5-NN", "{:.3f}"),
    ("knn1_accuracy", "1-NN", "{:.3f}"),
    ("mse", "MSE", "{:.4f}"),
    ("trust_paper", "trust (k=5, train)", "{:.3f}"),
)
PUBLISHED_CAPTION = "published, {dataset} 2-D (Parametric UMAP paper, Sainburg et al. 2021)"


def published_rows(result: dict[str, Any]) -> list[list[str]]:
    """The paper's numbers for this result's dataset as rows of text: a header (method,
    5-NN, 1-NN, MSE, trust), then one row per method; [] where the paper has none."""
    published = result.get("published") or {}
    if not published:
        return []
    rows = [["method", *(label for _, label, _ in _PUBLISHED_COLUMNS)]]
    for name, row in published.items():
        rows.append([name, *(_fmt(row.get(k), fmt) for k, _, fmt in _PUBLISHED_COLUMNS)])
    return rows


def _published_lines(result: dict[str, Any]) -> list[str]:
    """The paper's rows for this dataset, methods down, metrics across."""
    rows = published_rows(result)
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["", PUBLISHED_CAPTION.format(dataset=result["dataset"]) + ":"]
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
    if result["dataset"] == "mnist":
        lines.append(f"the article's own val BCE: {ARTICLE_VAL_BCE}")
    return lines


def _fmt(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
