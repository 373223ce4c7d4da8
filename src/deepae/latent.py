"""Walking the latent space: the plane we look at, the grid we decode, the lines we follow.

Everything here speaks to the model only through its verbs, `encode` and `decode`, and
otherwise works on NumPy arrays, so the figures (`deepae.plots`), the run folder
(`deepae.run`) and the explorer page (`deepae.explorer`) share one definition of "the
plane" and of "the grid".

The plane is the latent space itself when it has two dimensions. For other sizes it is
the plane of the first two principal components of the training codes, and a plane point
(u, v) stands for the code z = mean + u * pc1 + v * pc2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepae.errors import ConfigError

PCA_FIT_POINTS = 20000  # principal axes from at most this many codes: stable and fast
MANIFOLD_SIZE = 20  # tiles per side of manifold.png
PERCENTILES = (1.0, 99.0)  # manifold range: the bulk of the codes, not their outliers
INTERPOLATION_STEPS = 10
DEFAULT_PAIR_COUNT = 4


@dataclass(frozen=True, eq=False)
class Plane:
    """A 2-D view of a latent space: plane point (u, v) <-> code mean + u*axes[0] + v*axes[1].

    `axes` (2, latent) has orthonormal rows (for latent 1 the second row is zero: v is
    ignored); `mean` (latent,) is the origin. `axis_labels` and `note` say what the axes
    are, for figures and pages."""

    mean: np.ndarray  # (latent,) float64
    axes: np.ndarray  # (2, latent) float64
    axis_labels: tuple[str, str]
    note: str  # "" for a 2-D latent space, else how the plane was chosen

    @property
    def is_pca(self) -> bool:
        return self.axis_labels == ("PC1", "PC2")

    def project(self, codes: np.ndarray) -> np.ndarray:
        """Codes (N, latent) -> plane points (N, 2) float32."""
        return ((np.asarray(codes, np.float64) - self.mean) @ self.axes.T).astype(np.float32)

    def lift(self, points: np.ndarray) -> np.ndarray:
        """Plane points (N, 2) -> codes (N, latent) float32."""
        return (self.mean + np.asarray(points, np.float64) @ self.axes).astype(np.float32)


def fit_plane(codes: np.ndarray) -> Plane:
    """The plane to look at codes (N, latent) through: the latent axes when latent is 2,
    else the first two principal components (SVD of the centred codes)."""
    latent = codes.shape[1]
    if latent == 2:
        return Plane(np.zeros(2), np.eye(2), ("z[0]", "z[1]"), "")
    if latent == 1:
        return Plane(np.zeros(1), np.array([[1.0], [0.0]]), ("z[0]", "(none)"), "")
    mean = codes.mean(0, dtype=np.float64)
    centred = codes[:PCA_FIT_POINTS] - mean
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # vt: (min(N, latent), latent)
    if len(vt) < 2:  # one code: it is the mean, so any two orthonormal axes show it
        vt = np.eye(latent)
    note = f" (first two principal components of the {latent}-D codes)"
    return Plane(mean, vt[:2].copy(), ("PC1", "PC2"), note)


def manifold_grid(
    points: np.ndarray, size: int = MANIFOLD_SIZE, percentiles: Sequence[float] = PERCENTILES
) -> tuple[np.ndarray, np.ndarray]:
    """Grid coordinates over plane points (N, 2): `size` values per axis, evenly spaced
    from the lower to the upper percentile of that axis. Returns (us, vs), each (size,)."""
    if size < 1:
        raise ConfigError(f"manifold size must be at least 1, got {size}")
    lo = np.percentile(points, percentiles[0], axis=0)  # (2,)
    hi = np.percentile(points, percentiles[1], axis=0)  # (2,)
    return np.linspace(lo[0], hi[0], size), np.linspace(lo[1], hi[1], size)


def decode_grid(ae: Any, plane: Plane, us: np.ndarray, vs: np.ndarray) -> np.ndarray:
    """Decode every grid point in one batch. Returns images (len(vs), len(us), H, W): row 0
    holds the largest v, so the array reads like a plot with v growing upwards."""
    uu, vv = np.meshgrid(us, vs[::-1])  # (rows, cols) each
    codes = plane.lift(np.column_stack([uu.ravel(), vv.ravel()]))  # (rows * cols, latent)
    images = ae.decode(codes)  # (rows * cols, H, W)
    return images.reshape(len(vs), len(us), *images.shape[1:])


def interpolate(
    ae: Any, images_a: np.ndarray, images_b: np.ndarray, steps: int = INTERPOLATION_STEPS
) -> tuple[np.ndarray, np.ndarray]:
    """Straight lines in the latent space between the codes of images_a and images_b
    (each (P, H, W)): `steps` evenly spaced codes from code(a) to code(b), both included.
    Returns (codes (P, steps, latent), decoded images (P, steps, H, W))."""
    if steps < 2:
        raise ConfigError(f"interpolation needs at least 2 steps, got {steps}")
    za, zb = ae.encode(images_a), ae.encode(images_b)  # (P, latent) each
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]  # (1, steps, 1)
    codes = za[:, None, :] * (1 - t) + zb[:, None, :] * t  # (P, steps, latent)
    codes[:, -1] = zb  # exact ends: (1 - 1) * za + zb can differ from zb in the last bit
    decoded = ae.decode(codes.reshape(-1, codes.shape[-1]))  # (P * steps, H, W)
    return codes, decoded.reshape(*codes.shape[:2], *decoded.shape[1:])


def default_pairs(
    n: int, labels: np.ndarray | None = None, count: int = DEFAULT_PAIR_COUNT
) -> list[tuple[int, int]]:
    """`count` pairs of indices into n images, each pair of two different labels: the first
    image of class c and the first of class c + 1 for c = 0, 2, 4, ... (0->1, 2->3, ...).
    Without labels (or with a single class), the first images in order: (0, 1), (2, 3), ..."""
    classes = np.unique(labels) if labels is not None else np.array([])
    if len(classes) < 2:
        return [(2 * k, 2 * k + 1) for k in range(count) if 2 * k + 1 < n]
    first = [int(np.argmax(labels == c)) for c in classes]  # first index of each class
    return [(first[(2 * k) % len(first)], first[(2 * k + 1) % len(first)]) for k in range(count)]


def check_pairs(pairs: Sequence[Sequence[int]], n: int) -> list[tuple[int, int]]:
    """Validate image index pairs against a set of n images; returns them as tuples."""
    out = []
    for pair in pairs:
        if len(pair) != 2 or not all(0 <= int(i) < n for i in pair):
            raise ConfigError(
                f"pairs {','.join(map(str, pair))}: give two test-image indices I,J "
                f"between 0 and {n - 1}",
                field="pairs",
            )
        out.append((int(pair[0]), int(pair[1])))
    return out


def stratified_order(labels: np.ndarray | None, n: int, *, seed: int = 0) -> np.ndarray:
    """A seeded order of all n indices in which every prefix holds each label in (nearly)
    its share of the whole: `order[:k]` is a stratified sample of size k. Without labels,
    a plain random permutation. Returns (n,) int64."""
    rng = np.random.default_rng(seed)
    if labels is None:
        return rng.permutation(n)
    labels = np.asarray(labels)
    key = np.empty(n)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        shuffled = rng.permutation(members)
        # The k-th member of a class of size m is due at "time" (k + jitter) / m.
        key[shuffled] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return np.argsort(key, kind="stable")
