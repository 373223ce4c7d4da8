"""The plane, the manifold grid and the interpolation lines (deepae.latent), and the
figures drawn from them (deepae.plots, deepae.runs): checked against NumPy computed here."""

import dataclasses

import numpy as np
import pytest
from matplotlib.image import imread

from deepae import latent, plots
from deepae import run as runs
from deepae.api import Autoencoder
from deepae.errors import ConfigError
from deepae.run import figures


def codes_3d(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 3)) * [5.0, 2.0, 0.5] + [1.0, -2.0, 3.0]).astype(np.float32)


class RecordingModel:
    """Stands in for an Autoencoder: decode records the codes it is given and returns
    images that encode them, so the grid's layout can be read back from the pixels."""

    def __init__(self, latent_size=2):
        self.latent_size = latent_size
        self.decoded = []

    def decode(self, z):
        z = np.asarray(z, np.float32)
        self.decoded.append(z)
        images = np.zeros((len(z), 4, 4), np.float32)
        images[:, 0, 0] = z[:, 0]
        images[:, 0, 1] = z[:, 1]
        return images

    def encode(self, x):
        return np.asarray(x, np.float32).reshape(len(x), -1)[:, : self.latent_size]


def test_manifold_grid_spans_the_1st_to_99th_percentile():
    rng = np.random.default_rng(1)
    points = rng.standard_t(3, size=(20000, 2)) * [3.0, 0.5] + [10.0, -4.0]  # heavy tails
    us, vs = latent.manifold_grid(points, 20)
    assert us.shape == vs.shape == (20,)
    assert us[0] == pytest.approx(np.percentile(points[:, 0], 1), rel=1e-12)
    assert us[-1] == pytest.approx(np.percentile(points[:, 0], 99), rel=1e-12)
    assert vs[0] == pytest.approx(np.percentile(points[:, 1], 1), rel=1e-12)
    assert vs[-1] == pytest.approx(np.percentile(points[:, 1], 99), rel=1e-12)
    np.testing.assert_allclose(np.diff(us), (us[-1] - us[0]) / 19)  # evenly spaced


def test_decode_grid_is_one_batch_with_v_growing_upwards():
    model = RecordingModel()
    plane = latent.fit_plane(np.zeros((10, 2), np.float32))
    us, vs = np.linspace(-1, 1, 5), np.linspace(10, 20, 3)
    images = latent.decode_grid(model, plane, us, vs)
    assert len(model.decoded) == 1 and model.decoded[0].shape == (15, 2)  # one batch
    assert images.shape == (3, 5, 4, 4)
    np.testing.assert_allclose(images[:, :, 0, 0], np.tile(us, (3, 1)), rtol=1e-6)  # u by column
    np.testing.assert_allclose(images[:, 0, 0, 1], vs[::-1], rtol=1e-6)  # top row: largest v


def test_tile_images_places_each_image_at_its_row_and_column():
    images = np.arange(3 * 4 * 2 * 5).reshape(3, 4, 2, 5)
    tiled = plots.tile_images(images)
    assert tiled.shape == (6, 20)
    for r in range(3):
        for c in range(4):
            np.testing.assert_array_equal(tiled[2 * r : 2 * r + 2, 5 * c : 5 * c + 5], images[r, c])


def test_manifold_figure_has_the_grid_and_latent_ticks(small_run):
    codes = small_run.ae.encode(small_run.data.x_train)
    fig = figures.manifold_figure(small_run.ae, codes, size=7)
    ax = fig.axes[0]
    picture = ax.get_images()[0]
    assert picture.get_array().shape == (7 * 28, 7 * 28)  # 7 x 7 tiles of 28 x 28
    us, vs = latent.manifold_grid(codes, 7)
    left, right, bottom, top = picture.get_extent()
    step_u, step_v = us[1] - us[0], vs[1] - vs[0]
    # Tiles are centred on grid points: the extent reaches half a step beyond the ends.
    assert (left, right) == pytest.approx((us[0] - step_u / 2, us[-1] + step_u / 2))
    assert (bottom, top) == pytest.approx((vs[0] - step_v / 2, vs[-1] + step_v / 2))
    assert ax.get_xlabel() == "z[0]" and ax.get_ylabel() == "z[1]"
    # The top-left tile is the decode of (u_min, v_max).
    first = small_run.ae.decode([[us[0], vs[-1]]])[0]
    np.testing.assert_allclose(picture.get_array()[:28, :28], first, atol=1e-6)


def test_interpolation_ends_are_the_codes_of_the_two_images(small_run):
    ae, x = small_run.ae, small_run.data.x_test
    codes, images = latent.interpolate(ae, x[[3, 10]], x[[2, 5]], steps=7)
    assert codes.shape == (2, 7, 2) and images.shape == (2, 7, 28, 28)
    np.testing.assert_array_equal(codes[:, 0], ae.encode(x[[3, 10]]))
    np.testing.assert_array_equal(codes[:, -1], ae.encode(x[[2, 5]]))
    np.testing.assert_allclose(codes[0, 3], ae.encode(x[[3, 2]]).mean(0), rtol=1e-5)  # midpoint
    np.testing.assert_allclose(images[1, 0], ae.reconstruct(x[[10]])[0], atol=1e-6)


def test_default_pairs_join_different_labels():
    labels = np.array([3, 1, 0, 2, 1, 0, 3, 2])
    pairs = latent.default_pairs(len(labels), labels, count=3)
    assert pairs == [(2, 1), (3, 0), (2, 1)]  # first 0 -> first 1, first 2 -> first 3, ...
    assert all(labels[i] != labels[j] for i, j in pairs)
    assert latent.default_pairs(5, None, count=4) == [(0, 1), (2, 3)]


def test_interpolation_figure_rows_and_columns(small_run):
    fig = figures.interpolation_figure(small_run.ae, small_run.data, pairs=[(0, 1), (2, 3)])
    axes = np.array(fig.axes).reshape(2, 12)  # two pairs x (original, 10 steps, original)
    np.testing.assert_allclose(
        axes[0, 0].get_images()[0].get_array(), small_run.data.x_test[0] / 255
    )
    np.testing.assert_allclose(
        axes[1, -1].get_images()[0].get_array(), small_run.data.x_test[3] / 255
    )
    labels = small_run.data.y_test
    assert axes[0, 0].get_ylabel() == f"{labels[0]} \u2192 {labels[1]}"


def test_pairs_out_of_range_is_a_clear_error(small_run):
    with pytest.raises(ConfigError, match="two test-image indices"):
        figures.interpolation_figure(small_run.ae, small_run.data, pairs=[(0, 10**6)])


def test_pca_plane_is_orthonormal_and_lift_inverts_project():
    codes = codes_3d()
    plane = latent.fit_plane(codes)
    assert plane.is_pca and plane.axis_labels == ("PC1", "PC2")
    np.testing.assert_allclose(plane.axes @ plane.axes.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(plane.mean, codes.mean(0, dtype=np.float64), rtol=1e-12)
    assert abs(plane.axes[0, 0]) > 0.99  # the widest direction is the first axis
    uv = plane.project(codes[:10])
    np.testing.assert_allclose(plane.project(plane.lift(uv)), uv, atol=1e-5)


def test_pca_plane_of_one_code_still_has_two_axes():
    code = np.array([[0.5, -2.0, 3.0]])  # one image's code, latent size 3
    plane = latent.fit_plane(code)
    assert plane.axes.shape == (2, 3)
    np.testing.assert_allclose(plane.axes @ plane.axes.T, np.eye(2), atol=1e-12)
    # The one code is the plane's origin; a code one unit along the first axis is (1, 0).
    np.testing.assert_allclose(plane.project(code), [[0.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(plane.project(code + plane.axes[0]), [[1.0, 0.0]], atol=1e-6)


def test_latent_size_3_figures_say_pca_and_do_not_crash(small_run, tmp_path):
    ae = Autoencoder(latent_size=3, latent_activation="linear")  # untrained: shapes only
    d = small_run.data
    data = dataclasses.replace(d, x_train=d.x_train[:1500], y_train=d.y_train[:1500])
    paths = runs.write_figures(tmp_path, ae, data)
    assert {p.name for p in paths} >= {"latent.png", "manifold.png", "interpolation.png"}
    codes = ae.encode(data.x_train)
    fig = figures.manifold_figure(ae, codes, size=5)
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("PC1", "PC2")
    assert "principal components" in fig.axes[0].get_title()
    assert imread(tmp_path / "manifold.png").shape[:2] == (1000, 1000)


def test_stratified_order_keeps_label_shares_in_every_prefix():
    labels = np.repeat(np.arange(4), [500, 300, 150, 50])  # shares .5 .3 .15 .05
    order = latent.stratified_order(labels, len(labels), seed=3)
    assert sorted(order.tolist()) == list(range(1000))  # a permutation
    for k in (20, 100, 357):
        counts = np.bincount(labels[order[:k]], minlength=4)
        assert np.all(np.abs(counts - k * np.array([0.5, 0.3, 0.15, 0.05])) <= 1.5), (k, counts)
    np.testing.assert_array_equal(order, latent.stratified_order(labels, 1000, seed=3))


def test_latent_size_1_gets_figures_and_a_page(small_run, tmp_path):
    ae = Autoencoder(latent_size=1, latent_activation="linear")
    d = small_run.data
    data = dataclasses.replace(d, x_train=d.x_train[:1000], y_train=d.y_train[:1000])
    names = {p.name for p in runs.write_figures(tmp_path, ae, data)}
    names |= {p.name for p in runs.write_pages(tmp_path, ae, data)}
    assert {"manifold.png", "interpolation.png", "explorer.html", "report.html"} <= names


def test_unlabelled_data_gets_figures_and_pages(small_run, tmp_path):
    d = small_run.data
    data = dataclasses.replace(d, x_train=d.x_train[:1000], y_train=None, y_test=None)
    paths = runs.write_figures(tmp_path, small_run.ae, data)
    paths += runs.write_pages(tmp_path, small_run.ae, data)
    assert {p.name for p in paths} >= {"manifold.png", "interpolation.png", "explorer.html"}
    fig = figures.interpolation_figure(small_run.ae, data)
    assert fig.axes[0].get_ylabel() == "#0 \u2192 #1"  # pairs of indices without labels
