"""run/figures.py and plots.py at the edges: datasets of a handful of images, and class
names that Matplotlib would read as mathtext."""

import dataclasses
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import cbook
from matplotlib.image import imread

from deepae import plots
from deepae.api import Autoencoder
from deepae.run import figures
from explorer_helpers import page_data

# -- a dataset of 2 to 14 images: every figure degrades, the run completes -----------------


@pytest.mark.parametrize("n, labelled", [(2, False), (3, True), (14, True)])
def test_a_tiny_dataset_trains_to_a_complete_run(tmp_path, n, labelled):
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    arrays = {"images": images}
    if labelled:
        arrays["labels"] = np.arange(n, dtype=np.uint8) % 3
    np.savez(tmp_path / "tiny.npz", **arrays)
    proc = subprocess.run(
        [sys.executable, "-m", "deepae.cli", "train", "--dataset", str(tmp_path / "tiny.npz"),
         "--epochs", "1", "--runs-dir", str(tmp_path / "runs"), "--name", "t", "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    run = tmp_path / "runs" / "t"
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    # The held-out split is max(1, round(0.1 n)) = 1 image: no pair of test images, so no
    # interpolation.png, and the report does not link one.
    n_val = max(1, round(n * 0.1))
    assert n_val == 1 and not (run / "interpolation.png").exists()
    assert "interpolation.png" not in (run / "report.html").read_text()
    for name, shape in [("latent.png", (1000, 1300)), ("manifold.png", (1000, 1000)),
                        ("loss.png", (450, 700))]:  # fmt: skip
        assert imread(run / name).shape[:2] == shape  # figsize x dpi 100
    # reconstructions.png: the first min(10, n_train) training images, 2 inches each.
    columns = min(10, n - n_val)
    assert imread(run / "reconstructions.png").shape[:2] == (460, max(400, 200 * columns))
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["n"] == n_val and evaluation["split"] == "test"
    meta, _ = page_data((run / "explorer.html").read_text())
    assert meta["points"]["count"] == n - n_val
    assert (meta["points"]["labels"] is not None) == labelled


def test_interpolation_needs_two_test_images(mnist_small):
    ae = Autoencoder(latent_activation="linear")
    one = dataclasses.replace(mnist_small, x_test=mnist_small.x_test[:1],
                              y_test=mnist_small.y_test[:1])  # fmt: skip
    assert figures.interpolation_figure(ae, one) is None
    two = dataclasses.replace(one, x_test=mnist_small.x_test[:2], y_test=None)
    fig = figures.interpolation_figure(ae, two)
    assert len(fig.axes) == 12  # one pair (0, 1): original, 10 steps, original


# -- text in figures is drawn as written -------------------------------------------------

NAMES = ("$\\frac{$", "$x$", "a$b", "cost \\$5", "plain")


def drawn_texts(fig) -> list[str]:
    """Render `fig` (a ValueError if mathtext cannot parse a text), then the texts it
    holds: each must be plain text (no mathtext) whose unescaped form is what is drawn."""
    fig.savefig(io.BytesIO(), format="png")
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_text()]
    assert not any(cbook.is_math_text(t.get_text()) for t in texts)
    return [t.get_text().replace("\\$", "$") for t in texts]


def test_class_names_with_dollars_are_drawn_as_written(mnist_small):
    labels = np.arange(len(NAMES))
    fig = plots.plot_latent(np.random.default_rng(0).random((len(NAMES), 2)), labels,
                            class_names=NAMES)  # fmt: skip
    assert set(NAMES) <= set(drawn_texts(fig))
    ae = Autoencoder(latent_activation="linear")
    x = mnist_small.x_train[: len(NAMES)]
    fig = figures.reconstruction_figure(ae, x, labels, NAMES, indices=range(len(NAMES)))
    assert set(NAMES) <= set(drawn_texts(fig))
    data = dataclasses.replace(mnist_small, x_test=x, y_test=labels.astype(np.uint8),
                               class_names=NAMES)  # fmt: skip
    fig = figures.interpolation_figure(ae, data, pairs=[(0, 1), (2, 3)])
    assert {f"{NAMES[0]} \u2192 {NAMES[1]}", f"{NAMES[2]} \u2192 {NAMES[3]}"} <= set(
        drawn_texts(fig)
    )


def test_literal_round_trips_through_matplotlib():
    for name in (*NAMES, "\\", "$$", "\\\\$"):
        escaped = plots.literal(name)
        assert not cbook.is_math_text(escaped)
        assert escaped.replace("\\$", "$") == name  # what Text draws for non-math text


# -- labels that are not class numbers ------------------------------------------------------


def legend_and_colours(fig):
    """The legend's texts and each point's colour as '#rrggbb', in data order."""
    from matplotlib.colors import to_hex

    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    return texts, [to_hex(c) for c in ax.collections[0].get_facecolors()]


def test_latent_scatter_takes_string_and_float_labels():
    codes = np.random.default_rng(0).random((5, 2))
    blue, orange, green = "#1f77b4", "#ff7f0e", "#2ca02c"  # tab10's first three
    # Strings: classes in sorted order (cat 0, dog 1, emu 2), each named by itself.
    fig = plots.plot_latent(codes, np.array(["dog", "cat", "dog", "emu", "cat"]))
    assert legend_and_colours(fig) == (["cat", "dog", "emu"], [orange, blue, orange, green, blue])
    fig = plots.plot_latent(codes[:3], ["b", "a", "b"])  # a plain list too
    assert legend_and_colours(fig) == (["a", "b"], [orange, blue, orange])
    # Class numbers stored as floats (labels read from a CSV) keep their class names.
    fig = plots.plot_latent(codes[:3], np.array([1.0, 0.0, 1.0]), class_names=("zero", "one"))
    assert legend_and_colours(fig) == (["zero", "one"], [orange, blue, orange])
    fig = plots.plot_latent(codes[:3], np.array([2, 0, 2]), class_names=np.array(["x", "y", "z"]))
    assert legend_and_colours(fig) == (["x", "z"], [green, blue, green])
