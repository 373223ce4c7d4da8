"""One palette everywhere: latent.png's pixels, its legend and the explorer page (its data
and, in Chromium, its canvas) colour class c the same way."""

import numpy as np
import pytest
from matplotlib.image import imread

from deepae import Autoencoder, plots
from deepae.data import LoadedData
from deepae.explorer import explorer
from deepae.run import figures, save_figure
from explorer_helpers import page_data
from test_explorer_browser import open_page

# Matplotlib's tab10, typed in from its documentation (the oracle, not computed here).
TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
         "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]  # fmt: skip
# tab20's first eleven, typed in from Matplotlib's documentation too.
TAB20 = ["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a",
         "#d62728", "#ff9896", "#9467bd", "#c5b0d5", "#8c564b"]  # fmt: skip
NAMES = [f"digit {i}" for i in range(10)]


def rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])


def test_palette_is_tab10_then_tab20_then_turbo():
    assert plots.palette(10) == TAB10 and plots.palette(3) == TAB10[:3]
    assert plots.palette(12)[:2] == ["#1f77b4", "#aec7e8"]  # tab20: blue, light blue
    many = plots.palette(40)
    assert len(set(many)) == 40 and all(len(c) == 7 and c[0] == "#" for c in many)


def test_latent_png_draws_each_class_in_its_palette_colour(tmp_path):
    # Two classes, each a stack of points at one spot: whatever the antialiasing, the
    # pixel under the spot is the class's colour.
    codes = np.array([[0.0, 0.0]] * 5 + [[3.0, 2.0]] * 5 + [[1.5, 1.0]] * 5)
    labels = np.array([3] * 5 + [7] * 5 + [0] * 5)
    fig = plots.plot_latent(codes, labels, class_names=NAMES)
    ax = fig.axes[0]
    path = save_figure(fig, tmp_path / "latent.png", dpi=fig.dpi)
    pixels = np.rint(imread(path)[..., :3] * 255).astype(int)  # (H, W, 3)
    height = pixels.shape[0]
    for (u, v), c in (((0.0, 0.0), 3), ((3.0, 2.0), 7), ((1.5, 1.0), 0)):
        x, y = ax.transData.transform((u, v))  # display pixels, origin bottom left
        got = pixels[int(height - y), int(x)]
        assert np.abs(got - rgb(TAB10[c])).max() <= 3, (c, got)
    # The legend names the classes present, in their colours; no colour bar.
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["digit 0", "digit 3", "digit 7"]
    assert [h.get_color() for h in legend.legend_handles] == [TAB10[0], TAB10[3], TAB10[7]]
    assert len(fig.axes) == 1


def test_a_sample_missing_classes_keeps_the_datasets_colours():
    # 15 class names: tab20, even though the points only hold classes 0-2.
    fig = plots.plot_latent(np.zeros((3, 2)), np.array([0, 1, 2]),
                            class_names=[str(i) for i in range(15)])  # fmt: skip
    colours = [h.get_color() for h in fig.axes[0].get_legend().legend_handles]
    assert colours == plots.palette(15)[:3] == plots.palette(20)[:3]


def test_a_sampled_latent_png_keeps_the_palette_of_all_labels(mnist_small, tmp_path,
                                                              monkeypatch):  # fmt: skip
    # 11 unnamed classes: 0-9 five images each, 10 a single one. latent.png draws a sample
    # (20 here, 100,000 in real runs) that misses class 10; it must still colour with
    # tab20, as the explorer page does for the same data, not with tab10.
    y = np.array(list(range(10)) * 5 + [10], np.uint8)  # (51,)
    x = mnist_small.x_train[:51]
    spots = np.array([[c % 4, c // 4] for c in range(11)], np.float32)  # class c's spot
    codes = spots[y]  # (51, 2): every image of a class at one spot
    data = LoadedData(x, y, x[:4], y[:4], "test", None, "eleven", None)
    ae = Autoencoder(hidden_sizes=(8,), latent_activation="linear")
    monkeypatch.setattr(figures, "LATENT_POINTS", 20)
    where, save = {}, figures.save_figure

    def save_and_locate(fig, path, dpi=100):  # latent.png's spots, in its own pixels
        if path.name == "latent.png":
            fig.canvas.draw()  # the layout places the axes
            where["spots"] = fig.axes[0].transData.transform(spots)  # (11, 2), y up
            dpi = fig.dpi
        return save(fig, path, dpi)

    monkeypatch.setattr(figures, "save_figure", save_and_locate)
    figures.write_figures(tmp_path, ae, data, codes=codes)
    pixels = np.rint(imread(tmp_path / "latent.png")[..., :3] * 255).astype(int)  # (H, W, 3)
    drawn = [pixels[int(pixels.shape[0] - py), int(px)] for px, py in where["spots"]]
    assert np.abs(drawn[10] - 255).max() <= 3  # the sample misses class 10: white there
    for c in range(10):
        assert np.abs(drawn[c] - rgb(TAB20[c])).max() <= 3, (c, drawn[c], TAB20[c])
    meta, _ = page_data(explorer.build_explorer(ae, x, y, codes=codes, points=20))
    assert meta["palette"] == TAB20[: len(meta["palette"])] and len(meta["palette"]) >= 10


@pytest.fixture(scope="module")
def two_spots(mnist_small, tmp_path_factory):
    """An explorer page whose training set is 40 copies of one digit (class 3) and 40 of
    another (class 7): every point of a class sits at one spot of the plane."""
    x = np.concatenate([np.repeat(mnist_small.x_train[:1], 40, 0),
                        np.repeat(mnist_small.x_train[1:2], 40, 0)])  # fmt: skip
    y = np.array([3] * 40 + [7] * 40, np.uint8)
    ae = Autoencoder(latent_activation="linear", seed=2)
    html = explorer.build_explorer(ae, x, y, class_names=NAMES)
    path = tmp_path_factory.mktemp("palette") / "explorer.html"
    path.write_text(html)
    spots = ae.encode(x[[0, 40]])  # (2, 2): the plane is the latent space itself
    return path, html, spots


def test_the_explorer_embeds_the_figures_palette(two_spots):
    _, html, _ = two_spots
    meta, _ = page_data(html)
    assert meta["palette"] == TAB10[:8]  # classes 0-7 named in the page, ten in the data


@pytest.mark.browser
def test_the_explorer_draws_the_figures_colours_in_chromium(two_spots, browser):  # noqa: F811
    path, _, spots = two_spots
    page, problems = open_page(browser, path)
    try:
        assert page.evaluate("window.deepae.colors") == TAB10[:8]
        for (u, v), c in zip(spots, (3, 7), strict=True):
            got = page.evaluate(
                """([u, v]) => {
                  const [px, py] = window.deepae.toPixel(u, v);
                  const c = document.getElementById("scatter");
                  const dpr = c.width / c.clientWidth;
                  return Array.from(c.getContext("2d")
                    .getImageData(Math.floor(px * dpr), Math.floor(py * dpr), 1, 1).data);
                }""",
                [float(u), float(v)],
            )
            # 40 points at 0.7 opacity on one spot: the class's colour, fully opaque.
            assert got[3] == 255 and np.abs(np.array(got[:3]) - rgb(TAB10[c])).max() <= 2
        assert problems == []
    finally:
        page.context.close()
