"""The figures of a run folder: latent.png, reconstructions.png, manifold.png,
interpolation.png and loss.png, drawn from a model, its data and what training computed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepae import fsio, latent
from deepae.data import LoadedData, class_name
from deepae.errors import ConfigError
from deepae.run import files
from deepae.train import EpochRecord

ARTICLE_INDICES = tuple(range(110, 120))  # the article's originals-vs-reconstructions
# The most images reconstructions.png shows (a column each): more cannot be told apart,
# and `--indices 0-10000000000` must be refused before a list of them is built.
MAX_INDICES = 1000
# latent.png draws at most this many codes, a stratified sample kept in data order: more
# only blot the picture (and cost seconds); MNIST's 60,000 are all drawn.
LATENT_POINTS = 100_000


def default_indices(n: int) -> list[int]:
    """The article's training images 110-119, or the first ten of a smaller set."""
    return list(ARTICLE_INDICES) if n >= ARTICLE_INDICES[-1] + 1 else list(range(min(10, n)))


def parse_indices(text: str) -> list[int]:
    """'110-119' -> [110, ..., 119]; '3,5,8' -> [3, 5, 8]; mixed forms allowed. At most
    MAX_INDICES of them: counted before any list is built, so '0-10000000000' costs nothing."""
    shown = repr(text if len(text) <= 40 else text[:37] + "...")
    spans, count = [], 0
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d{1,18})\s*(?:-\s*(\d{1,18})\s*)?", part)
        if not m or (m[2] is not None and int(m[2]) < int(m[1])):
            raise ConfigError(
                f"indices {shown}: use numbers and ranges like 110-119 or 3,5,8",
                field="indices",
            )
        spans.append((int(m[1]), int(m[2] or m[1])))
        count += spans[-1][1] - spans[-1][0] + 1
        if count > MAX_INDICES:
            raise ConfigError(
                f"indices {shown} names more than the {MAX_INDICES} images a figure can "
                f"show; choose at most {MAX_INDICES}",
                field="indices",
            )
    return [i for first, last in spans for i in range(first, last + 1)]


def check_indices(indices: Sequence[int] | None, n: int, split: str = "train") -> list[int]:
    """`indices` checked against a set of n images (None: `default_indices(n)`); at most
    MAX_INDICES of them."""
    if indices is None:
        return default_indices(n)
    if len(indices) > MAX_INDICES:
        raise ConfigError(
            f"indices names {len(indices)} images, more than the {MAX_INDICES} a figure can "
            f"show; choose at most {MAX_INDICES}",
            field="indices",
        )
    whole = (int, np.integer)
    bad = [i for i in indices if isinstance(i, bool) or not isinstance(i, whole) or not 0 <= i < n]
    if bad:
        raise ConfigError(
            f"indices {bad[:5]} out of range for {n} {split} images (0-{n - 1}); "
            "choose indices in range",
            field="indices",
        )
    return list(indices)


def write_figures(
    folder: str | Path,
    ae,
    data: LoadedData,
    *,
    codes: np.ndarray | None = None,
    history: Sequence[EpochRecord] = (),
    indices: Sequence[int] | None = None,
    pairs: Sequence[Sequence[int]] | None = None,
) -> list[Path]:
    """Draw the run's figures into `folder` (loss.png only when there is a `history`,
    interpolation.png only when the test split holds a pair of images);
    `codes` = ae.encode(data.x_train) if already computed. Returns the paths."""
    from deepae import plots

    folder = Path(folder)
    codes = ae.encode(data.x_train) if codes is None else codes
    # Each figure is saved (and closed) before the next is drawn: pyplot holds only one.
    draw = {
        "latent.png": lambda: latent_figure(codes, data.y_train, data.class_names),
        "reconstructions.png": lambda: reconstruction_figure(
            ae, data.x_train, data.y_train, data.class_names, indices
        ),  # fmt: skip
        "manifold.png": lambda: manifold_figure(ae, codes),
        "interpolation.png": lambda: interpolation_figure(ae, data, pairs),
    }
    if history:
        # At history.csv's precision, so that the figure drawn at the end of training and
        # the one `deepae plot` redraws from the file are the same picture, bit for bit.
        draw[files.LOSS_FIGURE] = lambda: plots.plot_loss(
            [h.epoch for h in history],
            [round(h.loss, 6) for h in history],
            [None if h.val_loss is None else round(h.val_loss, 6) for h in history],
            loss_name=ae.train_config.loss,
        )
    paths = []
    for name, make in draw.items():
        fig = make()
        if fig is not None:
            paths.append(save_figure(fig, folder / name))
    return paths


def latent_figure(codes: np.ndarray, labels: np.ndarray | None, class_names=None, *,
                  points: int | None = None):  # fmt: skip
    """latent.png: the training codes (N, latent) on the plane, coloured by their labels
    (N,) or None; at most `points` of them (default LATENT_POINTS), a stratified sample
    kept in data order. The palette is sized for the classes of all N labels, as the
    explorer page sizes it: a sample that misses the highest class (a rare one) must not
    pick tab10 where the page picks tab20, or a class would have two colours."""
    from deepae import plots

    view = latent.fit_plane(codes)
    points = LATENT_POINTS if points is None else points
    shown = slice(None)  # every code, or (P,) indices of a stratified sample of them
    if len(codes) > points:
        shown = np.sort(latent.stratified_order(labels, len(codes))[:points])
    xy = view.project(codes[shown])  # (P, 2)
    n_classes = None
    if labels is not None:
        labels, class_names = plots.class_numbers(labels, class_names)
        n_classes = plots.class_count(labels, class_names)
    of = f" of {len(codes):,}" if len(xy) < len(codes) else ""
    return plots.plot_latent(
        xy, None if labels is None else labels[shown], class_names=class_names,
        n_classes=n_classes, axis_labels=view.axis_labels,
        title=f"{len(xy):,}{of} training codes{view.note}",
    )  # fmt: skip


def reconstruction_figure(ae, x: np.ndarray, y: np.ndarray | None, class_names=None,
                          indices: Sequence[int] | None = None, split: str = "train"):  # fmt: skip
    """Originals x[indices] above their reconstructions, titled with their labels."""
    from deepae import plots

    idx = np.asarray(check_indices(indices, len(x), split), dtype=np.int64)
    labels = None if y is None else [class_name(class_names, v) for v in y[idx]]
    return plots.plot_reconstructions(x[idx], ae.reconstruct(x[idx]), labels)


def manifold_figure(ae, codes: np.ndarray, size: int = latent.MANIFOLD_SIZE):
    """manifold.png: the decoder on a size x size grid over the 1st-99th percentiles of the
    training codes' plane coordinates (see deepae.latent; drawn by `ae.plot_manifold`)."""
    lo, hi = (_ordinal(p) for p in latent.PERCENTILES)
    title = f"decoder on a {size} x {size} grid over the {lo}-{hi} percentile of the codes"
    note = latent.fit_plane(codes).note
    return ae.plot_manifold(codes=codes, size=size, title=title + note.replace(" (", "\n("))


def interpolation_figure(ae, data: LoadedData, pairs: Sequence[Sequence[int]] | None = None):
    """interpolation.png: for test-image index pairs (default: latent.default_pairs), the
    images decoded along the straight line between the two codes, originals at the ends.
    None when there is no pair to draw (a test split of a single image)."""
    from deepae import plots

    x, y = data.x_test, data.y_test
    if pairs is None:
        pairs = latent.default_pairs(len(x), y)
    pairs = latent.check_pairs(pairs, len(x))
    if not pairs:
        return None
    a, b = (np.array([p[k] for p in pairs]) for k in (0, 1))
    _, decoded = latent.interpolate(ae, x[a], x[b])  # (P, steps, H, W)
    names = [
        f"#{i} \u2192 #{j}"
        if y is None
        else f"{class_name(data.class_names, y[i])} \u2192 {class_name(data.class_names, y[j])}"
        for i, j in pairs
    ]
    return plots.plot_interpolation(x[a], decoded, x[b], row_labels=names)


def write_decoded(path: str | Path, ae, points: Sequence[Sequence[float]]) -> Path:
    """Decode latent `points` (N, latent) and save the images as .npy (N, H, W) or as a
    .png grid titled with each point; the suffix of `path` chooses. Returns the path."""
    from deepae import plots

    path = Path(path)
    if path.suffix not in (".npy", ".png"):
        raise ConfigError(f"out {path}: use a .png or .npy file name", field="out")
    images = ae.decode(np.asarray(points, dtype=np.float32))  # (N, H, W)
    if path.suffix == ".npy":
        with fsio.atomic_path(path, suffix=".npy") as tmp:
            np.save(tmp, images)
        return path
    titles = ["(" + ", ".join(f"{v:g}" for v in p) + ")" for p in points]
    return save_figure(plots.plot_image_grid([images], titles=titles), path)


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Save a Matplotlib figure atomically as PNG, then close it (pyplot would keep every
    figure deepae.plots made alive, and warn past 20); returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with fsio.atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path


def _ordinal(p: float) -> str:
    n = int(p)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{p:g}{suffix}"
