"""explorer.html as data: the exported decoder, the embedded points and images, the size
budget, and the `deepae explore` command. The page's behaviour in a real browser is in
test_explorer_browser.py."""

import base64
import re
import subprocess
import sys
import webbrowser

import numpy as np
import pytest
from sklearn.decomposition import PCA

from deepae.api import Autoencoder
from deepae.cli import main
from deepae.errors import ConfigError
from deepae.explorer import explorer
from explorer_helpers import DECODERS, decode_with_numpy, make_model, page_data


@pytest.mark.parametrize("name", DECODERS)
def test_exported_layers_compute_the_torch_decoder(name):
    ae = make_model(DECODERS[name])
    layers, weights = explorer.decoder_layers(ae.net)
    assert weights.dtype == np.dtype("<f4")
    assert [layer["in"] for layer in layers][0] == ae.model_config.latent_size
    assert layers[-1]["out"] == 784
    assert layers[-1]["activation"] == ae.model_config.output_activation
    z = np.random.default_rng(1).normal(scale=3, size=(50, ae.model_config.latent_size))
    expected = ae.decode(z.astype(np.float32)).reshape(50, -1)
    np.testing.assert_allclose(decode_with_numpy(layers, weights, z), expected, atol=1e-5)


def test_article_decoder_layers_are_described():
    layers, weights = explorer.decoder_layers(Autoencoder().net)
    assert [(d["in"], d["out"], d["activation"]) for d in layers] == [
        (2, 32, "relu"),
        (32, 784, "sigmoid"),
    ]
    assert weights.size == 2 * 32 + 32 + 32 * 784 + 784  # 25,968: the decoder's parameters


@pytest.fixture(scope="module")
def article_page(small_run, mnist):
    """The page for the small run's model over the whole MNIST training set."""
    return explorer.build_explorer(
        small_run.ae, mnist.x_train, mnist.y_train, class_names=mnist.class_names
    )


def test_page_is_one_offline_file_under_3_mb(article_page):
    size = len(article_page.encode())
    assert size < 3_000_000, size
    meta, images = page_data(article_page)
    assert meta["points"]["count"] == 10_000
    assert meta["images"]["count"] == 10_000  # every scatter point's image fits the budget
    assert len(images) == 10_000 * 784
    # Nothing is fetched: no URL in any src or href but data: ones, no http(s) anywhere.
    links = re.findall(r"""(?:src|href)\s*=\s*["']?([^"' >]*)""", article_page)
    assert all(link.startswith("data:") for link in links), links
    assert "http:" not in article_page and "https:" not in article_page


def test_embedded_points_are_the_stratified_codes(article_page, small_run, mnist):
    meta, images = page_data(article_page)
    index = np.frombuffer(base64.b64decode(meta["points"]["index"]), "<u4")
    xy = np.frombuffer(base64.b64decode(meta["points"]["xy"]), "<f4").reshape(-1, 2)
    labels = np.frombuffer(base64.b64decode(meta["points"]["labels"]), np.uint8)
    assert len(np.unique(index)) == 10_000
    codes = small_run.ae.encode(mnist.x_train[index])
    np.testing.assert_allclose(xy, codes, rtol=1e-6, atol=1e-6)  # latent 2: the plane is z
    np.testing.assert_array_equal(labels, mnist.y_train[index])
    shares = np.bincount(labels, minlength=10) / 10_000
    np.testing.assert_allclose(shares, np.bincount(mnist.y_train) / 60_000, atol=2e-4)
    assert images == mnist.x_train[index].tobytes()
    assert meta["classes"] == list(mnist.class_names)
    assert meta["plane"] == {
        "mean": [0.0, 0.0], "axes": [[1.0, 0.0], [0.0, 1.0]],
        "labels": ["z[0]", "z[1]"], "pca": False,
    }  # fmt: skip


def test_images_give_way_to_the_size_budget(small_run):
    data = small_run.data
    html = explorer.build_explorer(
        small_run.ae, data.x_train, data.y_train, points=3000, max_bytes=400_000
    )
    meta, images = page_data(html)
    assert len(html.encode()) <= 400_000
    assert 0 < meta["images"]["count"] < 3000
    index = np.frombuffer(base64.b64decode(meta["points"]["index"]), "<u4")
    assert images == data.x_train[index[: meta["images"]["count"]]].tobytes()  # a prefix


def test_pca_plane_for_a_3d_latent_space(small_run):
    ae = make_model({"latent_size": 3})
    x = small_run.data.x_train[:2000]
    meta, _ = page_data(explorer.build_explorer(ae, x, None, points=500))
    assert meta["plane"]["pca"] and meta["plane"]["labels"] == ["PC1", "PC2"]
    # The oracle: scikit-learn's PCA of the same codes; an axis may come out negated.
    want = PCA(2).fit(ae.encode(x).astype(np.float64)).components_  # (2, 3)
    axes = np.asarray(meta["plane"]["axes"])  # (2, 3)
    signs = np.sign(np.sum(axes * want, axis=1, keepdims=True))
    np.testing.assert_allclose(axes * signs, want, atol=1e-5)
    assert meta["points"]["labels"] is None and meta["classes"] == []


def test_string_labels_are_numbered_in_sorted_order(small_run):
    """As latent.png numbers them (deepae.plots): classes sorted, each named by itself."""
    data = small_run.data
    words = np.array(["odd", "even"])[(data.y_train[:600] % 2 == 0).astype(int)]  # (600,)
    html = explorer.build_explorer(small_run.ae, data.x_train[:600], words, points=200)
    meta, _ = page_data(html)
    assert meta["classes"] == ["even", "odd"]
    assert meta["palette"] == ["#1f77b4", "#ff7f0e"]  # tab10's first two
    index = np.frombuffer(base64.b64decode(meta["points"]["index"]), "<u4")
    labels = np.frombuffer(base64.b64decode(meta["points"]["labels"]), np.uint8)
    np.testing.assert_array_equal(labels, data.y_train[index] % 2)  # even 0, odd 1
    # Class numbers as floats, with names as a NumPy array: the names stay.
    names = np.array([f"digit {c}" for c in range(10)])
    html = explorer.build_explorer(
        small_run.ae, data.x_train[:600], data.y_train[:600].astype(float), points=200,
        class_names=names,
    )  # fmt: skip
    meta, _ = page_data(html)
    assert meta["classes"] == list(names)


def test_up_to_256_classes_embed_exactly_and_more_are_refused():
    # Labels are one byte a point in the page, as in deepae's datasets (data.MAX_CLASSES):
    # class 255 is the last that fits; class 256 would wrap to 0, so it is refused.
    ae = Autoencoder(latent_activation="linear")
    x = np.random.default_rng(0).integers(0, 256, (257, 28, 28), dtype=np.uint8)
    words = np.array([f"w{i:03d}" for i in range(257)])  # sorted order = index order
    meta, _ = page_data(explorer.build_explorer(ae, x[:256], words[:256], points=256))
    index = np.frombuffer(base64.b64decode(meta["points"]["index"]), "<u4")
    labels = np.frombuffer(base64.b64decode(meta["points"]["labels"]), np.uint8)
    np.testing.assert_array_equal(labels, index)  # image i is class i, w{i}
    assert meta["classes"] == list(words[:256]) and len(meta["palette"]) == 256
    for y in (words, np.arange(257), np.array([0, 5, 300] * 85 + [0, 5])):
        with pytest.raises(ConfigError, match=r"at most 256 classes, numbered 0-255") as e:
            explorer.build_explorer(ae, x, y, points=50)
        assert e.value.field == "y_train"


def test_bad_point_count_is_an_error(small_run):
    with pytest.raises(ConfigError, match="points must be at least 1"):
        explorer.build_explorer(small_run.ae, small_run.data.x_train, None, points=0)


def test_explore_command_writes_the_page_and_opens_it(small_run, tmp_path, monkeypatch, capsys):
    opened = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    out = tmp_path / "page.html"
    assert (
        main(["explore", str(small_run.folder), "--out", str(out), "--points", "800", "--open"])
        == 0
    )
    assert out.is_file() and str(out) in capsys.readouterr().out
    meta, _ = page_data(out.read_text())
    assert meta["points"]["count"] == 800
    assert opened == [out.resolve().as_uri()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explore", "{tmp}/nope"], "no run folder"),
        (["explore", "{tmp}"], "config.json is missing"),
        (["explore", "{run}", "--points", "0"], "points must be at least 1"),
        (["plot", "{run}", "--pairs", "1"], "is not two indices"),
    ],
)
def test_explore_errors_are_one_line_and_exit_2(small_run, tmp_path, args, message):
    fill = {"run": small_run.folder, "tmp": tmp_path}
    proc = subprocess.run(
        [sys.executable, "-m", "deepae.cli", *[a.format(**fill) for a in args]],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_explore_help_states_the_defaults():
    proc = subprocess.run(
        [sys.executable, "-m", "deepae.cli", "explore", "--help"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0
    assert "usage: deepae explore" in proc.stdout and "(default: 10000)" in proc.stdout
