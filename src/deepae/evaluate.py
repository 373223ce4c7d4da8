"""How good is a latent space? Reconstruction and neighbourhood metrics, each beside PCA.

Every number a model gets is computed the same way for PCA with as many components, so it
has a baseline; on MNIST's own test set (checked by SHA-256, not by name) the published
numbers of the Parametric UMAP paper (Sainburg, McInnes & Gentner 2021, its notebooks) are
shown beside them.

The metric functions take NumPy arrays and return numbers or dicts; `evaluate_run` puts
them together for a trained `Autoencoder`; `deepae.tables.format_table` turns the result
into text.
scikit-learn (the `eval` extra) is imported inside the functions that need it.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepae.data import DATASETS, class_name, flatten_images, image_chunks, is_mapped
from deepae.data.idx import idx_header
from deepae.errors import ConfigError, MissingExtraError
from deepae.tables import PUBLISHED, PUBLISHED_IMAGE_SHAPE

BCE_EPS = 1e-7  # Keras' backend epsilon: predictions are clipped to [eps, 1 - eps] for BCE
KNN_KS = (1, 5)  # the neighbour counts the Parametric UMAP paper reports
TRUST_SAMPLES = 5000  # trustworthiness is O(n^2) in memory and time: a seeded subset
TRUST_K = 10
DEAD_THRESHOLD = 0.99  # a latent unit exactly 0 for more than this share is dead
# Images left in their file (deepae.data.ImageRows) are evaluated a chunk at a time (the
# metrics' ~5 float64 arrays of EVAL_CHUNK x 784: 63 MB), PCA is fit on a sample, and
# trustworthiness (scikit-learn's holds three n x n arrays: 600 MB for 5,000) uses fewer.
EVAL_CHUNK, PCA_FIT_SAMPLES, TRUST_SAMPLES_MAPPED = 2048, 20_000, 2000


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
    x_hat: np.ndarray | Callable[[np.ndarray], np.ndarray],
    labels: np.ndarray | None = None,
    *,
    class_names: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Reconstruction errors of x_hat against x, both (N, D) or (N, H, W).

    x: uint8 0-255 or float in [0, 1]; x_hat: float, any range (PCA's can leave [0, 1]),
    or a function of a chunk of images (images left in their file, ImageRows, are read
    EVAL_CHUNK at a time). Returns {"bce", "mse", "psnr", "mse_per_class"}: BCE is the
    training loss (mean over pixels and images, x_hat clipped to [1e-7, 1 - 1e-7] as Keras
    does), MSE the mean squared error, PSNR = 10 log10(1 / MSE) in dB for pixels of range
    1 (None if MSE is 0), and mse_per_class maps each class (its name if `class_names` is
    given) to its MSE.
    """
    size = EVAL_CHUNK if is_mapped(x) else max(len(x), 1)
    bce_sum, per_image, start = 0.0, [], 0
    for xb in image_chunks(x, size):
        flat = flatten_images(xb).astype(np.float64)  # (b, D)
        recon = x_hat(xb) if callable(x_hat) else x_hat[start : start + len(xb)]
        recon = np.asarray(recon, dtype=np.float64).reshape(flat.shape)  # (b, D)
        p = np.clip(recon, BCE_EPS, 1 - BCE_EPS)
        # One chunk (arrays): sum / n is numpy's mean, to the bit.
        bce_sum += (flat * np.log(p) + (1 - flat) * np.log1p(-p)).sum()
        per_image.append(((recon - flat) ** 2).mean(axis=1))  # (b,)
        start += len(xb)
    per_image = np.concatenate(per_image)  # (N,)
    mse = float(per_image.mean())
    bce = -(bce_sum / (len(per_image) * flat.shape[1]))
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
    of the evaluated images (M, d) and their reconstructions (M, D), or, for images left
    in their file, the function that reconstructs a chunk of them."""

    train_codes: np.ndarray
    codes: np.ndarray
    reconstruction: np.ndarray | Callable[[np.ndarray], np.ndarray]


def pca_baseline(
    x_train: np.ndarray, x_eval: np.ndarray, n_components: int, *, seed: int = 0
) -> Embedding:
    """PCA fit on x_train (N, D); codes of both and inverse-transformed x_eval (M, D).

    scikit-learn's PCA with its automatic solver (exact for MNIST's shape: the covariance
    eigendecomposition); `seed` fixes the randomized solver where that one is chosen.
    Images left in their file (deepae.data.ImageRows) are never converted whole: PCA is
    fit on a seeded sample of PCA_FIT_SAMPLES training images, the codes are computed
    EVAL_CHUNK images at a time, and the reconstruction is a function of a chunk.
    """
    require_sklearn()
    from sklearn.decomposition import PCA

    mapped = is_mapped(x_train) or is_mapped(x_eval)
    # (N, D) float32, or (S, D) of a seeded sample for images left in their file
    train = flatten_images(x_train[_subset(len(x_train), PCA_FIT_SAMPLES, seed)] if mapped
                           else x_train)  # fmt: skip
    # Constant pixels make explained_variance_ratio_ divide 0 by 0; it is not used here.
    with np.errstate(divide="ignore", invalid="ignore"):
        pca = PCA(n_components=n_components, random_state=seed).fit(train)
    if not mapped:
        codes = pca.transform(flatten_images(x_eval))  # (M, d)
        return Embedding(pca.transform(train), codes, pca.inverse_transform(codes))

    def project(images: np.ndarray) -> np.ndarray:  # images (b, ...) -> codes (b, d)
        return pca.transform(flatten_images(images))

    codes = [np.concatenate([project(c) for c in image_chunks(x, EVAL_CHUNK)])
             for x in (x_train, x_eval)]  # fmt: skip
    return Embedding(*codes, lambda images: pca.inverse_transform(project(images)))


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
    "published": {...} or None, "seconds"}; the metric dicts come from `score`; "published"
    only for 2-D codes of the test set the paper used (`is_published_test_set`).
    """
    require_sklearn()
    if split not in ("test", "train"):
        raise ConfigError(f"split must be test or train, got {split!r}", field="split")
    start = time.perf_counter()
    x, labels = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    trust_samples = min(trust_samples, TRUST_SAMPLES_MAPPED) if is_mapped(x) else trust_samples
    latent = ae.model_config.latent_size
    if train_codes is None:
        train_codes = ae.encode(data.x_train)  # (N, latent)
    codes = train_codes if split == "train" else ae.encode(x)  # (M, latent)
    recon = ae.reconstruct if is_mapped(x) else ae.reconstruct(x)  # mapped: chunk by chunk
    methods = {"model": Embedding(train_codes, codes, recon)}
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
    # The published tables: 2-D maps of the 10,000 test images at their 28 x 28 pixels.
    known = split == "test" and latent == 2 and len(x) == 10_000
    known = known and tuple(ae.model_config.image_shape) == PUBLISHED_IMAGE_SHAPE
    result["published"] = PUBLISHED[data.name] if known and is_published_test_set(data) else None
    result["trustworthiness"] = {"k": TRUST_K, "samples": min(trust_samples, len(x))}
    result["seconds"] = time.perf_counter() - start
    return result


def is_published_test_set(data: Any) -> bool:
    """Whether `data` (a LoadedData) holds, as its test split, the very test set the
    published numbers (tables.PUBLISHED) were measured on: MNIST's or Fashion-MNIST's
    10,000 test images and labels, byte for byte, under that dataset's name.

    A name alone is no evidence: any file called mnist.npz, and any folder called mnist,
    loads as "mnist". So the test split, written as the IDX files it would make, must have
    the SHA-256 that deepae.data.mnist verifies every download against (hashing 7.8 MB:
    ~20 ms); uint8 images only, as the files hold. The name must agree too, since the
    tables print it."""
    spec = DATASETS.get(data.name)
    if spec is None or data.name not in PUBLISHED:
        return False
    for role, array in (("test_images", data.x_test), ("test_labels", data.y_test)):
        if array is None or array.dtype != np.uint8:
            return False
        digest = hashlib.sha256(idx_header(tuple(array.shape)))
        for chunk in image_chunks(array):  # images left in their file: a chunk at a time
            digest.update(np.ascontiguousarray(chunk).tobytes())
        if digest.hexdigest() != spec.sha256[spec.files[role]]:
            return False
    return True


def _psnr(mse: float) -> float | None:
    return 10 * math.log10(1 / mse) if mse > 0 else None  # None: perfect, and JSON-safe


def _subset(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
