"""The article's figures, as functions: data in, Matplotlib figure out.

Nothing here trains, saves or shows. Every function takes an optional `ax` (or draws a
whole figure of its own) and returns the figure. A figure of its own is made with
`matplotlib.pyplot.figure`, so it behaves as the article's `plt.figure(...)` does: a
notebook shows it under the cell, a script shows it on `plt.show()`. Whoever only saves
figures closes them (`deepae.run.save_figure` does), or pyplot keeps them alive.

Every figure colours classes from one palette, `palette`; the explorer page
(deepae.explorer) embeds the same colours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

# Matplotlib's qualitative maps: distinct hues, no order implied between classes.
_QUALITATIVE = (("tab10", 10), ("tab20", 20))
_MANY_CLASSES = "turbo"  # beyond 20 classes: a perceptual map, sampled evenly
MAX_COLUMNS = 10  # images per row in image grids before they wrap (the article's 10)


def palette(n: int) -> list[str]:
    """The colours of classes 0..n-1 as '#rrggbb': Matplotlib's tab10 for up to 10
    classes, tab20 for up to 20, else n colours sampled evenly from 'turbo'. Class c has
    colour palette(n)[c] in every figure and in the explorer page."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    for name, size in _QUALITATIVE:
        if n <= size:
            return [to_hex(c) for c in colormaps[name].colors[:n]]
    cmap = colormaps[_MANY_CLASSES]
    return [to_hex(cmap((i + 0.5) / n)) for i in range(n)]


def class_count(labels: np.ndarray, class_names: Sequence[str] | None = None) -> int:
    """How many classes the palette is sized for: the class names given, or the largest
    label + 1 (labels are class numbers 0..K-1, as deepae.data gives them). A sample that
    lacks some classes still colours each class as the whole dataset does."""
    labels = np.asarray(labels)
    top = int(labels.max()) + 1 if labels.size else 0
    return max(top, 0 if class_names is None else len(class_names))


def class_numbers(
    labels: Sequence | np.ndarray, class_names: Sequence[str] | None = None
) -> tuple[np.ndarray, Sequence[str] | None]:
    """Labels (N,) as class numbers 0..K-1, with the names of those classes. Class numbers
    (non-negative integers, also as floats such as 3.0) stay as they are and keep
    `class_names`; any other labels (strings, -1, 0.5) are numbered in sorted order and
    name themselves."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "iu" and (not labels.size or labels.min() >= 0):
        return labels, class_names
    if labels.dtype.kind == "f" and np.all(
        np.isfinite(labels) & (labels >= 0) & (labels == np.round(labels))
    ):
        return labels.astype(np.int64), class_names
    names, numbers = np.unique(labels, return_inverse=True)
    return numbers.reshape(-1), [str(n) for n in names]


def plot_latent(
    codes: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    class_names: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    axis_labels: tuple[str, str] = ("z[0]", "z[1]"),
    n_classes: int | None = None,
) -> Figure:
    """Scatter of 2-D codes (N, 2) coloured by label (N,) as the article draws it (13 x 10
    inches, point size 4), but with `palette`'s qualitative colours and a legend naming
    the classes (`class_names[label]`, else the label) instead of 'hsv' and a colour bar:
    neighbouring digits get distinct hues, and the legend says which is which.
    `n_classes`: the palette's size when the codes are a sample of a larger set, whose
    classes it may not all hold (default: `class_count` of these labels and names)."""
    fig, ax = _figure_and_axes(ax, (13, 10), layout="constrained")
    codes = np.asarray(codes)
    if labels is None:
        ax.scatter(codes[:, 0], codes[:, 1], s=4, color=palette(1)[0], linewidths=0)
    else:
        labels, class_names = class_numbers(labels, class_names)
        colors = np.array(palette(max(class_count(labels, class_names), n_classes or 0)))
        # One scatter in data order (not one per class): no class is drawn over all others.
        ax.scatter(codes[:, 0], codes[:, 1], s=4, c=colors[labels], linewidths=0)
        _legend(ax, np.unique(labels), colors, class_names)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title or f"{len(codes):,} codes in the latent space")
    return fig


def _legend(ax: Axes, classes: np.ndarray, colors: np.ndarray, class_names) -> None:
    from matplotlib.lines import Line2D

    names = [class_names[c] if class_names is not None and c < len(class_names) else str(c)
             for c in classes]  # fmt: skip
    handles = [
        Line2D([], [], marker="o", linestyle="", color=colors[c], markersize=7, label=literal(n))
        for c, n in zip(classes, names, strict=True)
    ]
    # Outside the axes, on the right: inside, it would hide codes ("best" placement also
    # costs a pass over every point). Long class lists wrap into columns of 25.
    ax.legend(handles=handles, title="label", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False, ncols=math.ceil(len(handles) / 25))  # fmt: skip


def plot_reconstructions(
    originals: np.ndarray,
    reconstructions: np.ndarray,
    labels: Sequence | None = None,
    *,
    max_columns: int | None = MAX_COLUMNS,
) -> Figure:
    """Originals (N, H, W) in the top row, their reconstructions below, each column titled
    with its label (the article's figure for training indices 110-119); more than
    `max_columns` images wrap into further pairs of rows."""
    titles = None if labels is None else [str(v) for v in labels]
    return plot_image_grid(
        [originals, reconstructions], titles=titles, row_labels=("original", "reconstruction"),
        max_columns=max_columns,
    )  # fmt: skip


def plot_image_grid(
    rows: Sequence[np.ndarray],
    *,
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    tile_inches: float = 2.0,
    max_columns: int | None = MAX_COLUMNS,
) -> Figure:
    """Rows of images, each (N, H, W) uint8 or [0, 1] float; titles above the first row.
    Past `max_columns` (None: never) the rows wrap as a block: images max_columns.. go
    into a second block of the same rows below, titles with them, so that 100 images make
    a tall page instead of one 20,000-pixel-wide strip. Titles and row labels are shown
    as written (a `$` is a dollar, not mathtext)."""
    n = len(rows[0])
    cols = n if not max_columns else max(1, min(n, max_columns))
    blocks = max(1, math.ceil(n / cols))
    fig = _new_figure((max(tile_inches * cols, 4.0), (tile_inches + 0.3) * len(rows) * blocks))
    axes = fig.subplots(len(rows) * blocks, cols, squeeze=False)  # block b: rows b*R..
    for b in range(blocks):
        block = axes[b * len(rows) : (b + 1) * len(rows)]
        shown = range(b * cols, min(n, (b + 1) * cols))  # image indices of this block
        for r, images in enumerate(rows):
            for c, ax in enumerate(block[r]):
                _image_tile(ax, images, shown[c] if c < len(shown) else None)
            if row_labels is not None:
                block[r, 0].set_ylabel(literal(row_labels[r]))
        for c, i in enumerate(shown):
            if titles is not None and i < len(titles):
                block[0, c].set_title(literal(titles[i]))
    fig.tight_layout()
    return fig


def _image_tile(ax: Axes, images: np.ndarray, i: int | None) -> None:
    if i is None:  # past the last image of a wrapped grid: an empty cell
        ax.set_axis_off()
        return
    ax.imshow(images[i], cmap="gray", vmin=0, vmax=images_max(images), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_loss(epochs: Sequence[int], loss: Sequence[float], val_loss: Sequence | None = None,
              *, loss_name: str = "loss", ax: Axes | None = None) -> Figure:  # fmt: skip
    """Training (and validation) loss per epoch."""
    fig, ax = _figure_and_axes(ax, (7, 4.5))
    ax.plot(epochs, loss, marker="o", label="loss")
    if val_loss is not None and any(v is not None for v in val_loss):
        # Only the validated epochs (every validation_freq-th), joined by one line.
        shown = [(e, v) for e, v in zip(epochs, val_loss, strict=True) if v is not None]
        ax.plot(*zip(*shown, strict=True), marker="o", label="val_loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel(loss_name)
    ax.grid(alpha=0.3)
    ax.legend()
    _tight(fig, ax)
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
    _tight(fig, ax)
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
    # One row per pair, never wrapped: a line from start to end reads left to right.
    return plot_image_grid(rows, titles=titles, row_labels=row_labels, tile_inches=1.2,
                           max_columns=None)  # fmt: skip


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


def _new_figure(size: tuple[float, float], **options) -> Figure:
    import matplotlib.pyplot as plt

    return plt.figure(figsize=size, **options)


def _figure_and_axes(ax: Axes | None, size: tuple[float, float], **options) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = _new_figure(size, **options)
    return fig, fig.add_subplot()


def _tight(fig: Figure, ax: Axes) -> None:
    # Only a figure of our own: the caller's figure (ax=) has the caller's layout.
    if len(fig.axes) == 1 and fig.get_layout_engine() is None:
        fig.tight_layout()
