"""The Python API: numpy in, numpy out, against a NumPy forward pass as the oracle."""

import numpy as np
import pytest
import torch

from deepae import Autoencoder
from deepae.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def ae(mnist_small):
    model = Autoencoder(latent_activation="linear", epochs=1, seed=0)
    model.fit(mnist_small.x_train[:1000], validation_data=mnist_small.x_test[:200], verbose=0)
    return model


def numpy_forward(ae, x):
    """The article's encoder in plain NumPy: relu(relu(x W1 + b1) W2 + b2), linear latent."""
    w = {k: v.detach().numpy().astype(np.float64) for k, v in ae.net.state_dict().items()}
    h = np.maximum(x @ w["encoder.0.weight"].T + w["encoder.0.bias"], 0)
    return h @ w["encoder.2.weight"].T + w["encoder.2.bias"]


def test_fit_returns_keras_like_history(mnist_small):
    model = Autoencoder(epochs=2)
    history = model.fit(
        mnist_small.x_train[:640], validation_data=mnist_small.x_test[:64], verbose=0
    )
    assert [r.epoch for r in history] == [1, 2]
    # The last val_loss is the fitted model's BCE on the validation images, as PyTorch's
    # own BCE computes it from the network's logits (the trainer has a loss of its own).
    x = torch.from_numpy(mnist_small.x_test[:64].reshape(64, 784) / np.float32(255))
    with torch.no_grad():
        bce = torch.nn.functional.binary_cross_entropy_with_logits(model.net.logits(x), x)
    assert history[-1].val_loss == pytest.approx(bce.item(), rel=1e-5)
    assert history[0].val_loss > history[1].val_loss  # it learned


def test_encode_equals_a_numpy_forward_pass(ae, mnist_small):
    z = ae.encode(mnist_small.x_train[:50])
    assert z.shape == (50, 2) and z.dtype == np.float32
    expected = numpy_forward(ae, mnist_small.x_train[:50].reshape(50, 784) / 255.0)
    np.testing.assert_allclose(z, expected, rtol=1e-4, atol=1e-4)


def test_uint8_images_and_flat_floats_encode_alike(ae, mnist_small):
    x = mnist_small.x_train[:20]
    np.testing.assert_array_equal(ae.encode(x), ae.encode(x.reshape(20, 784) / np.float32(255)))


def test_decode_and_reconstruct_shapes(ae, mnist_small):
    images = ae.decode([[0.0, 5.0], [3.0, 1.0]])
    assert images.shape == (2, 28, 28) and images.dtype == np.float32
    assert ((images >= 0) & (images <= 1)).all()
    assert ae.decode([0.5, 0.5]).shape == (1, 28, 28)
    rec = ae.reconstruct(mnist_small.x_test[:10])
    assert rec.shape == (10, 28, 28)
    np.testing.assert_allclose(rec, ae.decode(ae.encode(mnist_small.x_test[:10])), atol=1e-6)


def test_decode_is_deterministic_and_batch_independent(ae):
    z = np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32)
    np.testing.assert_array_equal(ae.decode(z), ae.decode(z))
    # other batch sizes pick other matmul kernels: equal up to float32 rounding
    np.testing.assert_allclose(ae.decode(z, batch_size=7)[:50], ae.decode(z[:50]), atol=1e-6)


@pytest.mark.parametrize("bad", [[[1.0, 2.0, 3.0]], [[np.nan, 0.0]], [[[1.0, 2.0]]]])
def test_bad_codes_are_refused(ae, bad):
    with pytest.raises(ConfigError, match="codes must be"):
        ae.decode(bad)


def test_bad_images_are_refused(ae):
    with pytest.raises(ConfigError, match="784"):
        ae.encode(np.zeros((2, 10, 10), np.uint8))
    with pytest.raises(DataError):
        ae.encode(np.full((2, 784), 2.0, np.float32))  # outside [0, 1]
    with pytest.raises(ConfigError, match="unknown option"):
        Autoencoder(hiden_sizes=(3,))


def test_save_and_load_round_trip_is_bit_exact(ae, mnist_small, tmp_path):
    ae.save(tmp_path / "m")
    again = Autoencoder.load(tmp_path / "m")
    assert again.model_config == ae.model_config
    assert again.train_config == ae.train_config
    for (k, a), (_, b) in zip(
        ae.net.state_dict().items(), again.net.state_dict().items(), strict=True
    ):
        assert np.array_equal(a.numpy(), b.numpy()), k
    np.testing.assert_array_equal(
        again.encode(mnist_small.x_test[:100]), ae.encode(mnist_small.x_test[:100])
    )


def test_summary_prints_the_table_once_and_returns_it_only_when_asked(capsys):
    assert Autoencoder().summary() is None  # Keras returns None: a notebook shows it once
    text = Autoencoder().summary(print_fn=None)
    assert capsys.readouterr().out.strip() == text.strip()
    assert "dense_4 (Dense)" in text and "25872" in text  # 32 x 784 + 784, by hand


# -- figures from the model: pyplot figures, or drawn into the caller's axes ---------------


def test_plot_helpers_draw_what_the_verbs_compute(ae, mnist_small):
    import matplotlib.pyplot as plt

    x, y = mnist_small.x_test[:300], mnist_small.y_test[:300]
    fig = ae.plot_latent(x, y)
    assert plt.fignum_exists(fig.number)  # pyplot's: a notebook shows it, plt.show() too
    offsets = fig.axes[0].collections[0].get_offsets()
    np.testing.assert_array_equal(np.asarray(offsets), ae.encode(x))
    own, axes = plt.subplots(1, 2)
    assert ae.plot_latent(x, y, ax=axes[1]) is own and axes[1].get_legend() is not None
    # Without x, the manifold spans the codes of the images the model was fit on.
    grid = ae.plot_manifold().axes[0].images[0].get_array()
    again = ae.plot_manifold(mnist_small.x_train[:1000]).axes[0].images[0].get_array()
    np.testing.assert_array_equal(grid, again)
    fig = ae.plot_reconstructions(x[:25], y[:25])  # 25 images: 3 blocks of 10 columns
    shown = [a for a in fig.axes if a.images]
    assert len(fig.axes) == 3 * 2 * 10 and len(shown) == 50
    recon = ae.reconstruct(x[:1])[0]  # row 2 of block 1: the reconstructions
    np.testing.assert_allclose(shown[10].images[0].get_array(), recon, atol=1e-6)


def test_plot_manifold_needs_images_before_any_fit():
    with pytest.raises(ConfigError) as e:
        Autoencoder().plot_manifold()
    assert e.value.field == "x"


@pytest.mark.parametrize("engine", ["fused", "autograd"])
def test_a_fit_that_diverges_gives_the_model_back_as_before_its_epoch(
    mnist_small, engine, monkeypatch
):
    # The oracle: a model that never diverged. Both train one epoch; then one's loss turns
    # NaN at its second epoch's 6th step, after its weights and Adam's moments have moved
    # (TrainingDiverged), and both train the second epoch again. Weights and optimizer state
    # given back bit for bit make the two end equal; the moved ones would not.
    from deepae import train
    from deepae.errors import TrainingDiverged

    x = mnist_small.x_train[:640]
    models = [Autoencoder(engine=engine, seed=3) for _ in range(2)]
    for m in models:
        m.fit(x, epochs=1, verbose=0)
    before = models[0].get_weights()
    real_plan = train.Trainer._epoch_plan

    def poisoned(self, x, epoch):
        step = real_plan(self, x, epoch)
        return lambda s: step(s) * float("nan") if s == 5 else step(s)

    with monkeypatch.context() as patch:
        patch.setattr(train.Trainer, "_epoch_plan", poisoned)
        with pytest.raises(TrainingDiverged, match="epoch 2, step 6"):
            models[0].fit(x, epochs=1, verbose=0)
    for w, b in zip(models[0].get_weights(), before, strict=True):
        np.testing.assert_array_equal(w, b)
    assert models[0].train_state.epoch == 1
    for m in models:
        m.fit(x, epochs=1, verbose=0)
    for a, b in zip(models[0].get_weights(), models[1].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_values_and_bad_images_are_value_errors_as_in_scikit_learn():
    # scikit-learn's estimators raise ValueError for bad parameters and data
    # (its check_estimators_nan_inf expects one): deepae's errors for them are ValueErrors.
    with pytest.raises(ValueError, match="lr must be a positive number"):
        Autoencoder(lr=-1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        Autoencoder(epochs=1).fit(np.full((4, 784), np.nan, dtype=np.float32))


# -- scikit-learn's fitted attributes and shapes -------------------------------------------


def test_inverse_transform_gives_back_the_shape_fit_was_given(mnist_small):
    # scikit-learn's convention, with its PCA as the oracle: inverse_transform gives arrays
    # shaped as fit's X, so flat (N, 784) in, flat out; images (N, 28, 28) in, images out.
    from sklearn.decomposition import PCA

    images = mnist_small.x_train[:64]
    flat = images.reshape(64, 784) / np.float32(255)
    pca = PCA(2).fit(flat)
    for x, shape in ((flat, pca.inverse_transform(pca.transform(flat[:5])).shape),
                     (images, (5, 28, 28))):  # fmt: skip
        ae = Autoencoder(epochs=1, latent_activation="linear")
        z = ae.fit_transform(x, verbose=0)
        back = ae.inverse_transform(z[:5])
        assert back.shape == shape
        np.testing.assert_array_equal(back.reshape(5, 784), ae.decode(z[:5]).reshape(5, 784))
    assert ae.decode(z[:5]).shape == (5, 28, 28)  # decode keeps the image shape


def test_n_features_in_and_feature_names_as_scikit_learn_sets_them(mnist_small, tmp_path):
    # The oracles: scikit-learn's own Pipeline (which asks its first step) and its
    # ClassNamePrefixFeaturesOutMixin, which names PCA's and umap-learn's columns.
    from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin
    from sklearn.exceptions import NotFittedError
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    class Autoencoder_(ClassNamePrefixFeaturesOutMixin, BaseEstimator):
        _n_features_out, n_features_in_ = 2, 784

        def fit(self, x=None):
            return self

    Autoencoder_.__name__ = "Autoencoder"
    flat = mnist_small.x_train[:64].reshape(64, 784) / np.float32(255)
    ae = Autoencoder(epochs=1, latent_activation="linear")
    assert not hasattr(ae, "n_features_in_")  # scikit-learn's: none before fit
    with pytest.raises(NotFittedError):
        ae.get_feature_names_out()
    pipe = make_pipeline(ae, StandardScaler()).fit(flat)
    assert pipe.n_features_in_ == flat.shape[1] == 784
    names = pipe.get_feature_names_out()
    assert list(names) == list(Autoencoder_().get_feature_names_out()) == [
        "autoencoder0", "autoencoder1"]  # fmt: skip
    assert ae.get_feature_names_out(input_features=[f"x{i}" for i in range(784)]).dtype == object
    with pytest.raises(ValueError, match="input_features should have length equal to number"):
        ae.get_feature_names_out(input_features=["a", "b"])
    ae.save(tmp_path / "m")
    assert Autoencoder.load(tmp_path / "m").n_features_in_ == 784  # loaded: fitted


def sklearn_twin(ae: Autoencoder, transform: str):
    """The oracle for set_output: a scikit-learn transformer whose transform is ae's encode,
    wrapped by scikit-learn's own set_output machinery (_SetOutputMixin, through
    TransformerMixin), fitted and set to `transform`."""
    from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin

    class Autoencoder_(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
        _n_features_out = 2

        def fit(self, x, y=None):
            self.n_features_in_ = 784
            return self

        def transform(self, x):
            return ae.encode(np.asarray(x, dtype=np.float32))

    Autoencoder_.__name__ = "Autoencoder"
    return Autoencoder_().set_output(transform=transform).fit(None)


def test_set_output_gives_the_dataframes_scikit_learn_gives(mnist_small):
    import pandas as pd
    import sklearn
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    flat = mnist_small.x_train[:256].reshape(256, 784) / np.float32(255)
    frame = pd.DataFrame(flat, index=[f"digit{i}" for i in range(256)])
    ae = Autoencoder(epochs=1, latent_activation="linear")
    ae.fit(frame, verbose=0)
    assert isinstance(ae.transform(frame), np.ndarray)  # arrays until asked
    assert ae.set_output(transform="pandas") is ae
    expected = sklearn_twin(ae, "pandas").transform(frame)
    pd.testing.assert_frame_equal(ae.transform(frame), expected)
    assert list(expected.columns) == ["autoencoder0", "autoencoder1"]
    assert list(expected.index[:2]) == ["digit0", "digit1"]
    kept = ae.set_output(transform=None).transform(frame)  # None: as it was
    assert list(kept.columns) == ["autoencoder0", "autoencoder1"]
    np.testing.assert_array_equal(ae.inverse_transform(ae.transform(frame)),
                                  ae.inverse_transform(ae.encode(flat)))  # fmt: skip
    assert isinstance(ae.set_output(transform="default").transform(frame), np.ndarray)
    with sklearn.config_context(transform_output="pandas"):  # the global setting, as theirs
        pd.testing.assert_frame_equal(ae.transform(frame), expected)
    with pytest.raises(ConfigError, match="transform must be one of default, pandas, polars"):
        ae.set_output(transform="arrow")
    # A pipeline passes set_output to every step (before: "set_output is not available").
    pipe = make_pipeline(Autoencoder(epochs=1, latent_activation="linear"), StandardScaler())
    out = pipe.set_output(transform="pandas").fit_transform(frame, autoencoder__verbose=0)
    assert list(out.columns) == ["autoencoder0", "autoencoder1"] and out.index.equals(frame.index)
    copy = clone(Autoencoder(epochs=1).set_output(transform="pandas"))  # clone keeps it
    assert isinstance(copy.fit_transform(frame, verbose=0), pd.DataFrame)


def test_set_output_polars_gives_the_frames_scikit_learn_gives(mnist_small):
    import polars as pl
    import polars.testing
    import sklearn

    flat = mnist_small.x_train[:256].reshape(256, 784) / np.float32(255)
    frame = pl.DataFrame(flat)  # columns column_0 .. column_783
    ae = Autoencoder(epochs=1, latent_activation="linear")
    ae.fit(frame, verbose=0)
    expected = sklearn_twin(ae, "polars").transform(frame)
    assert isinstance(expected, pl.DataFrame)
    assert expected.columns == ["autoencoder0", "autoencoder1"]
    polars.testing.assert_frame_equal(ae.set_output(transform="polars").transform(frame),
                                      expected)  # fmt: skip
    ae.set_output(transform="default")
    assert isinstance(ae.transform(frame), np.ndarray)
    with sklearn.config_context(transform_output="polars"):  # the global setting, as theirs
        polars.testing.assert_frame_equal(ae.transform(frame), expected)


def test_read_only_arrays_are_taken_without_a_warning(ae, mnist_small):
    # pandas 3's DataFrame.values and np.load(mmap_mode="r") hand out read-only arrays;
    # torch.from_numpy warns about them (the suite makes warnings errors).
    flat = mnist_small.x_test[:20].reshape(20, 784) / np.float32(255)
    frozen = flat.copy()
    frozen.setflags(write=False)
    z = ae.encode(frozen)
    np.testing.assert_array_equal(z, ae.encode(flat))
    z.setflags(write=False)
    np.testing.assert_array_equal(ae.decode(z), ae.decode(z.copy()))
