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
            bar.set_ticklabels([literal(class_names[int(c)]) for c in classes])
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
    tile_inches: float = 2.0,
) -> Figure:
    """Rows of images, each (N, H, W) uint8 or [0, 1] float; titles above the first row.
    Titles and row labels are shown as written (a `$` is a dollar, not mathtext)."""
    n = len(rows[0])
    fig = Figure(figsize=(max(tile_inches * n, 4.0), (tile_inches + 0.3) * len(rows)))
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
            axes[r, 0].set_ylabel(literal(row_labels[r]))
    for i, title in enumerate(titles or []):
        axes[0, i].set_title(literal(title))
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


def plot_manifold(
    images: np.ndarray,
    us: np.ndarray,
    vs: np.ndarray,
    *,
    axis_labels: tuple[str, str] = ("z[0]", "z[1]"),
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The decoder's view of the plane: images (R, C, H, W) decoded at the grid points
    (us[c], vs[R - 1 - r]) (row 0 on top, as `deepae.latent.decode_grid` returns them),
    tiled into one picture whose axis ticks are latent coordinates."""
    fig, ax = _figure_and_axes(ax, (10, 10))
    # Grid steps; 1 where an axis has no extent (a single value, or a 1-D latent space).
    du = (us[-1] - us[0]) / (len(us) - 1) if len(us) > 1 and us[-1] > us[0] else 1.0
    dv = (vs[-1] - vs[0]) / (len(vs) - 1) if len(vs) > 1 and vs[-1] > vs[0] else 1.0
    # Each tile is centred on its grid point: the extent reaches half a step beyond the ends.
    extent = (us[0] - du / 2, us[-1] + du / 2, vs[0] - dv / 2, vs[-1] + dv / 2)
    ax.imshow(
        tile_images(images), cmap="gray", vmin=0, vmax=images_max(images),
        extent=extent, aspect="auto", interpolation="nearest",
    )  # fmt: skip
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title or f"decoded {len(vs)} x {len(us)} grid")
    fig.tight_layout()
    return fig


def plot_interpolation(
    starts: np.ndarray,
    decoded: np.ndarray,
    ends: np.ndarray,
    *,
    row_labels: Sequence[str] | None = None,
) -> Figure:
    """One row per pair: the original start image (P, H, W), the images decoded along the
    straight line between the two codes (P, steps, H, W), and the original end image."""
    steps = decoded.shape[1]
    scale = images_max(starts)
    rows = [
        np.concatenate([starts[i][None] / scale, decoded[i], ends[i][None] / scale])
        for i in range(len(decoded))
    ]  # each (steps + 2, H, W) in [0, 1]
    titles = ["original", *(f"t={t:.2g}" for t in np.linspace(0, 1, steps)), "original"]
    return plot_image_grid(rows, titles=titles, row_labels=row_labels, tile_inches=1.2)


def tile_images(images: np.ndarray) -> np.ndarray:
    """Images (R, C, H, W) -> one picture (R * H, C * W); image [r, c] at rows r*H..."""
    rows, cols, h, w = images.shape
    return images.transpose(0, 2, 1, 3).reshape(rows * h, cols * w)


def literal(text: str) -> str:
    """`text` escaped for Matplotlib so that it is drawn as written: a class name such as
    "$5 bill" or "$x$" would otherwise be parsed as mathtext (and "$\\frac{$" raises)."""
    return str(text).replace("$", r"\$")


def images_max(images: np.ndarray) -> float:
    """255 for uint8 images, 1 for [0, 1] floats: the white point for imshow."""
    return 255.0 if images.dtype == np.uint8 else 1.0


def _figure_and_axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size)
    return fig, fig.add_subplot()
