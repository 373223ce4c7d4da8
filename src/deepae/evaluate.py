"""How good is a latent space? Reconstruction and neighbourhood metrics, each beside PCA.

Every number a model gets is computed the same way for PCA with as many components, so it
has a baseline; on MNIST the published numbers of the Parametric UMAP paper
(Sainburg, McInnes & Gentner 2021, its notebooks) are shown beside them.

The metric functions take NumPy arrays and return numbers or dicts; `evaluate_run` puts
them together for a trained `Autoencoder`, `format_table` turns the result into text.
scikit-learn (the `eval` extra) is imported inside the functions that need it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepae.data import class_name, flatten_images
from deepae.errors import ConfigError, MissingExtraError

BCE_EPS = 1e-7  # Keras' backend epsilon: predictions are clipped to [eps, 1 - eps] for BCE
KNN_KS = (1, 5)  # the neighbour counts the Parametric UMAP paper reports
TRUST_SAMPLES = 5000  # trustworthiness is O(n^2) in memory and time: a seeded subset
TRUST_K = 10
DEAD_THRESHOLD = 0.99  # a latent unit exactly 0 for more than this share is dead

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


def require_sklearn() -> None:
    """Raise a `MissingExtraError` that says what to install if scikit-learn is missing."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise MissingExtraError(
            "evaluation needs scikit-learn; install it with: pip install 'deepae[eval]'"
        ) from None


# -- the metrics ----------------------------------------------------------------------------


def reconstruction_metrics(
    x: np.ndarray,
    x_hat: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    class_names: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Reconstruction errors of x_hat against x, both (N, D) or (N, H, W).

    x: uint8 0-255 or float in [0, 1]; x_hat: float, any range (PCA's can leave [0, 1]).
    Returns {"bce", "mse", "psnr", "mse_per_class"}: BCE is the training loss (mean over
    pixels and images, x_hat clipped to [1e-7, 1 - 1e-7] as Keras does), MSE the mean
    squared error, PSNR = 10 log10(1 / MSE) in dB for pixels of range 1 (None if MSE is 0),
    and mse_per_class maps each class (its name if `class_names` is given) to its MSE.
    """
    x = flatten_images(x).astype(np.float64)  # (N, D)
    x_hat = np.asarray(x_hat, dtype=np.float64).reshape(x.shape)  # (N, D)
    p = np.clip(x_hat, BCE_EPS, 1 - BCE_EPS)
    bce = -(x * np.log(p) + (1 - x) * np.log1p(-p)).mean()
    per_image = ((x_hat - x) ** 2).mean(axis=1)  # (N,)
    mse = float(per_image.mean())
    out: dict[str, Any] = {"bce": float(bce), "mse": mse, "psnr": _psnr(mse)}
    if labels is not None:
        labels = np.asarray(labels)
        out["mse_per_class"] = {
            class_name(class_names, c): float(per_image[labels == c].mean())
            for c in np.unique(labels)
        }
    return out


def knn_accuracy(
    train_codes: np.ndarray,
    train_labels: np.ndarray,
    test_codes: np.ndarray | None,
    test_labels: np.ndarray | None,
    k: int,
) -> float:
    """Share of test codes (M, d) whose k nearest training codes (N, d) vote their label.

    A scikit-learn KNeighborsClassifier (Euclidean, majority vote, ties to the smallest
    label) fit on the training codes. test_codes=None scores the training codes
    themselves, leave-one-out: a point is never its own neighbour.
    """
    require_sklearn()
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=k).fit(train_codes, train_labels)
    if test_codes is not None:
        return float(clf.score(test_codes, test_labels))
    neighbours = clf.kneighbors(None, n_neighbors=k, return_distance=False)  # (N, k)
    classes = np.unique(train_labels)
    votes = (train_labels[neighbours][:, :, None] == classes).sum(axis=1)  # (N, C)
    predicted = classes[votes.argmax(axis=1)]  # argmax: ties go to the smallest label
    return float((predicted == train_labels).mean())


def trustworthiness(
    x: np.ndarray,
    codes: np.ndarray,
    *,
    k: int = TRUST_K,
    n_samples: int = TRUST_SAMPLES,
    seed: int = 0,
) -> float:
    """scikit-learn's trustworthiness (Venna & Kaski 2001) of codes (N, d) for x (N, D),
    on a seeded random subset of `n_samples` points (all of them if N is smaller).

    1.0 means the k nearest neighbours in the codes were also near in the input.
    """
    require_sklearn()
    from sklearn.manifold import trustworthiness as sk_trustworthiness

    idx = _subset(len(x), n_samples, seed)
    x_sub = flatten_images(x[idx])  # (n, D)
    return float(sk_trustworthiness(x_sub, np.asarray(codes)[idx], n_neighbors=k))


def zero_fractions(codes: np.ndarray) -> list[float]:
    """Per latent unit, the fraction of codes (N, latent) that are exactly 0.

    With a ReLU latent a unit that is 0 for (almost) every sample is dead: its gradient is
    0 too, so it never comes back and the 2-D plot collapses onto a line."""
    return (np.asarray(codes) == 0).mean(axis=0, dtype=np.float64).tolist()


def dead_units(codes: np.ndarray, threshold: float = DEAD_THRESHOLD) -> int:
    """How many latent units (columns of codes (N, d)) are exactly 0 for more than
    `threshold` of the samples: a dead ReLU unit carries no information."""
    return int(((np.asarray(codes) == 0).mean(axis=0) > threshold).sum())


def dead_unit_indices(fractions, threshold: float = DEAD_THRESHOLD) -> list[int]:
    """The latent units whose share of exact zeros (`zero_fractions`) is above `threshold`."""
    return [unit for unit, frac in enumerate(fractions) if frac > threshold]


def collapse_note(dead: list[int], latent_activation: str) -> str:
    """What a page says about a model whose latent units `dead` died: what it means and
    what to do ("" when none is dead)."""
    if not dead:
        return ""
    units = ", ".join(map(str, dead))
    fix = (
        "train again with latent_activation 'linear', which cannot die "
        "(deepae train ... --latent-activation linear), or with another seed"
        if latent_activation == "relu"
        else "train again with another seed (deepae train ... --seed N)"
    )
    return (
        f"The latent space collapsed: latent unit{'s' if len(dead) > 1 else ''} {units} "
        f"{'are' if len(dead) > 1 else 'is'} dead (exactly 0 for more than "
        f"{DEAD_THRESHOLD:.0%} of the training images), so the codes carry little or no "
        f"information and this run's pictures of the latent space mean little. To fix it, "
        f"{fix}."
    )


@dataclass(frozen=True)
class Embedding:
    """What the metrics need from a method: codes of the training images (N, d), codes
    of the evaluated images (M, d) and their reconstructions (M, D)."""

    train_codes: np.ndarray
    codes: np.ndarray
    reconstruction: np.ndarray


def pca_baseline(
    x_train: np.ndarray, x_eval: np.ndarray, n_components: int, *, seed: int = 0
) -> Embedding:
    """PCA fit on x_train (N, D); codes of both and inverse-transformed x_eval (M, D).

    scikit-learn's PCA with its automatic solver (exact for MNIST's shape: the covariance
    eigendecomposition); `seed` fixes the randomized solver where that one is chosen.
    """
    require_sklearn()
    from sklearn.decomposition import PCA

    train = flatten_images(x_train)  # (N, D) float32
    # Constant pixels make explained_variance_ratio_ divide 0 by 0; it is not used here.
    with np.errstate(divide="ignore", invalid="ignore"):
        pca = PCA(n_components=n_components, random_state=seed).fit(train)
    codes = pca.transform(flatten_images(x_eval))  # (M, d)
    return Embedding(pca.transform(train), codes, pca.inverse_transform(codes))


def score(
    embedding: Embedding,
    x: np.ndarray,
    labels: np.ndarray | None,
    train_labels: np.ndarray | None,
    *,
    leave_one_out: bool = False,
    class_names: tuple[str, ...] | None = None,
    trust_samples: int = TRUST_SAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Every metric of one method on images x (M, ...) with their labels (M,) or None.

    kNN classifiers are fit on the training codes; `leave_one_out` when x is the
    training set itself. A metric the data is too small (or unlabelled) for is None.
    """
    out = reconstruction_metrics(x, embedding.reconstruction, labels, class_names=class_names)
    if labels is not None and train_labels is not None:
        for k in KNN_KS:
            fits = k + leave_one_out <= len(train_labels)
            out[f"knn{k}_accuracy"] = (
                knn_accuracy(
                    embedding.train_codes,
                    train_labels,
                    None if leave_one_out else embedding.codes,
                    None if leave_one_out else labels,
                    k,
                )
                if fits
                else None
            )
    # scikit-learn's trustworthiness needs k < n / 2
    fits = min(len(x), trust_samples) > 2 * TRUST_K
    out["trustworthiness"] = (
        trustworthiness(x, embedding.codes, n_samples=trust_samples, seed=seed) if fits else None
    )
    out["dead_units"] = dead_units(embedding.codes)
    return out


# -- a trained model ------------------------------------------------------------------------


def evaluate_run(
    ae: Any,
    data: Any,
    *,
    split: str = "test",
    trust_samples: int = TRUST_SAMPLES,
    seed: int = 0,
    train_codes: np.ndarray | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate an `Autoencoder` on a split of `data` (a deepae.data.LoadedData), beside
    PCA with as many components as the model has latent units. `train_codes` are
    ae.encode(data.x_train) (N, latent) if the caller has them already. `progress` shows
    a bar over the methods scored (on a terminal only).

    Returns {"dataset", "split", "n", "latent_size", "model": {...}, "pca": {...},
    "published": {...} or None, "seconds"}; the metric dicts come from `score`.
    """
    require_sklearn()
    if split not in ("test", "train"):
        raise ConfigError(f"split must be test or train, got {split!r}", field="split")
    start = time.perf_counter()
    x, labels = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    latent = ae.model_config.latent_size
    if train_codes is None:
        train_codes = ae.encode(data.x_train)  # (N, latent)
    codes = train_codes if split == "train" else ae.encode(x)  # (M, latent)
    methods = {"model": Embedding(train_codes, codes, ae.reconstruct(x))}
    if latent <= min(len(data.x_train), ae.model_config.input_size):  # else PCA cannot
        methods["pca"] = pca_baseline(data.x_train, x, latent, seed=seed)
    common = dict(
        leave_one_out=split == "train",
        class_names=getattr(data, "class_names", None),
        trust_samples=trust_samples,
        seed=seed,
    )
    result: dict[str, Any] = {"dataset": data.name, "split": split, "n": len(x)}
    result["latent_size"] = latent
    result["pca"] = None
    from tqdm.auto import tqdm

    # disable=None: a bar only on a terminal, never in logs
    for name in tqdm(methods, desc="evaluating", unit="method", leave=False,
                     disable=None if progress else True):  # fmt: skip
        result[name] = score(methods[name], x, labels, data.y_train, **common)
    known = split == "test" and latent == 2 and len(x) == 10_000
    result["published"] = PUBLISHED.get(data.name) if known else None
    result["trustworthiness"] = {"k": TRUST_K, "samples": min(trust_samples, len(x))}
    result["seconds"] = time.perf_counter() - start
    return result


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


def _psnr(mse: float) -> float | None:
    return 10 * math.log10(1 / mse) if mse > 0 else None  # None: perfect, and JSON-safe


def _subset(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
