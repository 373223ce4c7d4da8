"""The article's figures, as functions: data in, Matplotlib figure out.

Nothing here trains, saves or shows; callers (`deepae.runs`, notebooks) decide what to do
with the figure. Uses Matplotlib's object API only (no pyplot state), so it is safe in
threads and never opens a window.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def plot_latent(
    codes: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    class_names: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    axis_labels: tuple[str, str] = ("z[0]", "z[1]"),
) -> Figure:
    """Scatter of 2-D codes (N, 2) coloured by label (N,), as the article draws it:
    13 x 10 inches, point size 4, the 'hsv' colour map and a colour bar."""
    fig, ax = _figure_and_axes(ax, (13, 10))
    if labels is None:
        ax.scatter(codes[:, 0], codes[:, 1], s=4, color="tab:blue", linewidths=0)
    else:
        points = ax.scatter(codes[:, 0], codes[:, 1], s=4, c=labels, cmap="hsv", linewidths=0)
        bar = fig.colorbar(points, ax=ax)
        classes = np.unique(labels)
        if class_names is not None and len(classes) <= len(class_names):
            bar.set_ticks(classes)
            bar.set_ticklabels([class_names[int(c)] for c in classes])
        bar.set_label("label")
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title or f"{len(codes):,} codes in the latent space")
    return fig


def plot_reconstructions(
    originals: np.ndarray,
    reconstructions: np.ndarray,
    labels: Sequence | None = None,
) -> Figure:
    """Originals (N, H, W) in the top row, their reconstructions below, each column titled
    with its label (the article's figure for training indices 110-119)."""
    titles = None if labels is None else [str(v) for v in labels]
    return plot_image_grid(
        [originals, reconstructions], titles=titles, row_labels=("original", "reconstruction")
    )


def plot_image_grid(
    rows: Sequence[np.ndarray],
    *,
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
) -> Figure:
    """Rows of images, each (N, H, W) uint8 or [0, 1] float; titles above the first row."""
    n = len(rows[0])
    fig = Figure(figsize=(max(2.0 * n, 4.0), 2.3 * len(rows)))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, images in enumerate(rows):
        for i in range(n):
            ax = axes[r, i]
            ax.imshow(
                images[i], cmap="gray", vmin=0, vmax=images_max(images), interpolation="nearest"
            )
            ax.set_xticks([])
            ax.set_yticks([])
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r])
    for i, title in enumerate(titles or []):
        axes[0, i].set_title(title)
    fig.tight_layout()
    return fig


def plot_loss(epochs: Sequence[int], loss: Sequence[float], val_loss: Sequence | None = None,
              *, loss_name: str = "loss", ax: Axes | None = None) -> Figure:  # fmt: skip
    """Training (and validation) loss per epoch."""
    fig, ax = _figure_and_axes(ax, (7, 4.5))
    ax.plot(epochs, loss, marker="o", label="loss")
    if val_loss is not None and any(v is not None for v in val_loss):
        ax.plot(
            epochs, [np.nan if v is None else v for v in val_loss], marker="o", label="val_loss"
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel(loss_name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def images_max(images: np.ndarray) -> float:
    """255 for uint8 images, 1 for [0, 1] floats: the white point for imshow."""
    return 255.0 if images.dtype == np.uint8 else 1.0


def _figure_and_axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size)
    return fig, fig.add_subplot()
