"""deepae.compat.UMAP: umap-learn's names and habits on the umap2d map (fit afresh,
labels ignored, returns self, get_params/set_params/clone, save and load)."""

import numpy as np
import pytest
from sklearn.base import clone

from deepae import UMAP, Autoencoder, config
from deepae.errors import ConfigError

SMALL = {"n_epochs": 1, "batch_size": 64, "hidden_sizes": (32,)}  # seconds, not minutes


@pytest.fixture(scope="module")
def x(mnist_small):
    return mnist_small.x_train[:300]


def test_umap_learns_names_switch_with_one_import(x):
    reducer = UMAP(n_neighbors=10, min_dist=0.2, random_state=3, n_epochs=1, batch_size=64)
    t = reducer.train_config
    assert (t.neighbours, t.min_dist, t.seed, t.epochs) == (10, 0.2, 3, 1)
    preset = config.resolve("umap2d")[1]
    assert t.neighbour_weight == preset.neighbour_weight
    unset = UMAP().train_config  # umap-learn's names left unset: the preset's values
    assert (unset.neighbours, unset.min_dist, unset.negative_rate, unset.seed, unset.epochs) == (
        preset.neighbours, preset.min_dist, preset.negative_rate, 0, preset.epochs)  # fmt: skip
    embedding = reducer.fit_transform(x)
    assert embedding.shape == (300, 2) and np.array_equal(embedding, reducer.embedding_)
    np.testing.assert_allclose(reducer.transform(x[:5]), embedding[:5], atol=1e-5)
    images = reducer.inverse_transform(embedding[:5])
    assert images.shape == (5, 28, 28) and images.min() >= 0 and images.max() <= 1


def test_fit_starts_afresh_ignores_labels_and_is_quiet(x, mnist_small, capsys):
    once = UMAP(**SMALL).fit(x)
    assert capsys.readouterr().out == ""  # umap-learn's verbose=False
    twice = UMAP(**SMALL)
    with pytest.warns(
        UserWarning, match="ignores y: .*umap-learn's fit\\(x, y\\) makes a supervised"
    ):
        assert twice.fit(x, mnist_small.y_train[:300]) is twice  # labels: accepted, unused
    twice.fit(x)  # a second fit trains a new map, as umap-learn's does
    assert twice.train_state.epoch == 1
    np.testing.assert_array_equal(twice.embedding_, once.embedding_)
    UMAP(verbose=True, **SMALL).fit(x)
    assert "Epoch 1/1" in capsys.readouterr().out


def test_params_speak_umap_learns_names_and_clone(x):
    reducer = UMAP(n_neighbors=7, random_state=5, **SMALL)
    params = reducer.get_params()
    assert {k: params[k] for k in ("n_neighbors", "random_state", "n_epochs", "metric")} == {
        "n_neighbors": 7, "random_state": 5, "n_epochs": 1, "metric": "euclidean"}  # fmt: skip
    assert not {"neighbours", "seed", "latent_size", "negative_rate", "epochs"} & set(params)
    copy = clone(reducer)  # scikit-learn's: UMAP(**get_params()), each value checked
    assert type(copy) is UMAP and copy.get_params() == params
    copy.set_params(n_neighbors=12, negative_sample_rate=3, verbose=True)
    assert (copy.train_config.neighbours, copy.train_config.negative_rate) == (12, 3)
    assert copy.verbose is True and reducer.train_config.neighbours == 7
    with pytest.raises(ConfigError, match="neighbours is n_neighbors here") as e:
        copy.set_params(neighbours=3)
    assert e.value.field == "neighbours"
    with pytest.raises(ConfigError, match="latent_size is n_components here"):
        UMAP(latent_size=3)
    with pytest.raises(ConfigError, match="metric must be 'euclidean'"):
        UMAP(metric="cosine")


def test_a_numpy_random_state_draws_a_seed():
    a = UMAP(random_state=np.random.RandomState(0)).train_config.seed
    b = UMAP(random_state=np.random.RandomState(0)).train_config.seed
    assert a == b == np.random.RandomState(0).randint(0, 2**31 - 1)


def test_saved_and_loaded_it_is_the_same_umap(x, tmp_path):
    reducer = UMAP(**SMALL).fit(x)
    reducer.save(tmp_path / "m")
    loaded = UMAP.load(tmp_path / "m")
    assert type(loaded) is UMAP and loaded.get_params() == reducer.get_params()
    np.testing.assert_array_equal(loaded.transform(x), reducer.embedding_)
    assert type(Autoencoder.load(tmp_path / "m")) is Autoencoder


def test_a_loaded_umap_fits_a_new_map_from_scratch(x, tmp_path):
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    fresh = UMAP(**SMALL).fit(x)  # the oracle: a fit from scratch
    other = UMAP(**SMALL).fit(x[::-1].copy())  # another map, saved and loaded
    other.save(tmp_path / "m")
    loaded = UMAP.load(tmp_path / "m")
    check_is_fitted(loaded)
    loaded.set_params(random_state=7)  # a new untrained network: no longer fitted
    with pytest.raises(NotFittedError):
        check_is_fitted(loaded)
    again = UMAP.load(tmp_path / "m")
    np.testing.assert_array_equal(again.fit(x).embedding_, fresh.embedding_)


def test_a_continued_fit_on_other_images_uses_their_graph(x, mnist_small):
    # A fit stopped after its first epoch, then continued on other images of the same
    # count: the trainer must hold the new images' graph, not the first ones'.
    from deepae.callbacks import Callback

    class StopAfterOne(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    other = mnist_small.x_train[300:600]
    reducer = UMAP(**{**SMALL, "n_epochs": 2})
    Autoencoder.fit(reducer, x, callbacks=[StopAfterOne()], verbose=0)
    first = reducer.trainer.neighbour.graph
    Autoencoder.fit(reducer, other, epochs=1, verbose=0)  # to the same total: 2
    assert reducer.train_state.epoch == 2
    alone = UMAP(**SMALL)
    Autoencoder.fit(alone, other, verbose=0)  # the oracle: the other images' own graph
    assert reducer.trainer.neighbour.graph.sha256 == alone.trainer.neighbour.graph.sha256
    assert reducer.trainer.neighbour.graph.sha256 != first.sha256


def test_a_preset_is_refused_by_name():
    with pytest.raises(ConfigError, match="UMAP is the umap2d preset") as e:
        UMAP(preset="best2d")
    assert e.value.field == "preset"


def test_inverse_transform_gives_back_the_inputs_shape(x):
    flat = x.reshape(len(x), -1) / np.float32(255)
    reducer = UMAP(**SMALL).fit(flat)
    back = reducer.inverse_transform(reducer.embedding_[:4])
    assert back.shape == (4, 784)
    np.testing.assert_array_equal(back, reducer.decode(reducer.embedding_[:4]).reshape(4, 784))
    # umap-learn's UMAP is a ClassNamePrefixFeaturesOutMixin: its columns are umap0, umap1.
    assert list(reducer.get_feature_names_out()) == ["umap0", "umap1"]
    assert reducer.n_features_in_ == flat.shape[1]
    # set_output, as scikit-learn's transformers (umap-learn's UMAP among them) have it.
    import pandas as pd

    frame = pd.DataFrame(flat, index=np.arange(len(flat)) * 2)
    codes = reducer.set_output(transform="pandas").fit_transform(frame)
    assert list(codes.columns) == ["umap0", "umap1"] and codes.index.equals(frame.index)
    np.testing.assert_array_equal(codes.to_numpy(), reducer.embedding_)


def test_a_refused_set_params_changes_nothing():
    # scikit-learn's contract for set_params, which a grid search relies on: a value
    # refused must not leave the values before it set. The oracle: get_params() before.
    reducer = UMAP(**SMALL)
    before = reducer.get_params()
    for bad in ({"verbose": True, "n_neighbors": 5, "lr": -1},
                {"verbose": True, "random_state": 3, "metric": "cosine"},
                {"verbose": True, "neighbours": 3}):  # fmt: skip
        with pytest.raises(ConfigError):
            reducer.set_params(**bad)
        assert reducer.get_params() == before
    ae = Autoencoder(epochs=1)
    before, net = ae.get_params(), ae.net
    with pytest.raises(ConfigError, match="lr must be a positive number"):
        ae.set_params(hidden_sizes=(8,), lr=-1)
    assert ae.get_params() == before and ae.net is net


def test_repr_shows_what_differs_from_the_defaults():
    assert repr(UMAP()) == "UMAP()"
    assert repr(UMAP(n_neighbors=5, random_state=3)) == "UMAP(n_neighbors=5, random_state=3)"
    assert repr(Autoencoder()) == "Autoencoder()"
    assert repr(Autoencoder(epochs=3, latent_activation="linear")) == (
        "Autoencoder(latent_activation='linear', epochs=3)")  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [{"x": np.zeros((5, 10, 10), np.uint8)},  # not the model's images
     {"validation_split": 1.0},  # refused by Autoencoder.fit
     {"callbacks": "not a list"}],
)  # fmt: skip
def test_a_refit_that_fails_leaves_the_fitted_map_as_it_was(x, bad):
    # umap-learn checks x before it changes anything; here a refit starts from scratch,
    # so it must not drop the fitted map before it knows that it can train a new one.
    # The oracle: the map's own embedding_ and weights from before the failed call.
    from sklearn.utils.validation import check_is_fitted

    reducer = UMAP(**SMALL).fit(x)
    weights, embedding = reducer.get_weights(), reducer.embedding_
    with pytest.raises(ConfigError):
        reducer.fit(**{"x": x, **bad})
    check_is_fitted(reducer)
    assert reducer.train_state.epoch == 1 and reducer.embedding_ is embedding
    for w, b in zip(reducer.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(w, b)
    np.testing.assert_array_equal(reducer.transform(x), embedding)


def test_an_unfitted_map_refuses_transform_as_umap_learns_does(x):
    # umap-learn's unfitted UMAP raises an AttributeError in transform and
    # inverse_transform; scikit-learn's NotFittedError is one, with a message.
    from sklearn.exceptions import NotFittedError

    reducer = UMAP(**SMALL)
    for verb, data in ((reducer.transform, x[:3]), (reducer.inverse_transform, [[0.0, 1.0]])):
        with pytest.raises(AttributeError, match="UMAP is not fitted yet") as e:
            verb(data)
        assert isinstance(e.value, NotFittedError)
    reducer.fit(x)
    assert reducer.inverse_transform(reducer.transform(x[:3])).shape == (3, 28, 28)


def test_umap_learns_settings_deepae_lacks_are_named_as_such():
    # The oracle: umap-learn's own UMAP signature. Each of its settings is one deepae's UMAP
    # takes (its names, or a deepae field) or one refused as umap-learn's, never "unknown".
    import inspect

    import umap

    from deepae.compat import NAMES
    from deepae.estimator import MODEL_FIELDS, TRAIN_FIELDS

    theirs = set(inspect.signature(umap.UMAP).parameters)
    ours = set(NAMES) | {"metric", "verbose"} | MODEL_FIELDS | TRAIN_FIELDS
    lacking = sorted(theirs - ours)
    assert lacking  # spread, init, learning_rate, ...
    for name in lacking:
        with pytest.raises(ConfigError, match=f"^{name} is a setting of umap-learn's UMAP"):
            UMAP(**{name: 1})
        with pytest.raises(ConfigError, match=f"^{name} is a setting of umap-learn's UMAP"):
            UMAP().set_params(**{name: 1})


@pytest.mark.parametrize(
    ("given", "phrase"),
    [({"n_neighbors": 1}, "n_neighbors: neighbours must be"),
     ({"n_epochs": 0}, "n_epochs: epochs must be"),
     ({"negative_sample_rate": -1}, "negative_sample_rate: negative_rate must be")],
)  # fmt: skip
def test_a_refused_value_is_named_as_umap_learn_names_it(given, phrase):
    # A umap-learn user gave n_neighbors, not deepae's `neighbours`: the message and the
    # error's field start from the name they used (the config's own words follow).
    name = next(iter(given))
    for make in (lambda: UMAP(**given), lambda: UMAP().set_params(**given)):
        with pytest.raises(ConfigError, match=f"^{phrase}") as e:
            make()
        assert e.value.field == name
