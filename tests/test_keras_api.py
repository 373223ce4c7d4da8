"""Keras' and scikit-learn's vocabulary on `Autoencoder`: the article's own code runs with
deepae's import, fit continues as Keras' does, callbacks, and the verbs' shapes."""

import csv
import re
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from deepae import Autoencoder, CSVLogger, EarlyStopping
from deepae.errors import ConfigError, DataError

# The article's code, line for line, except: the imports (keras -> deepae), the four
# lines that build the Keras graph (-> `Autoencoder()`, its encoder and decoder), and the
# sample counts of its reshapes (60000 / 10000 -> the sizes of this test's subset).
ARTICLE = """
import numpy as np
import matplotlib.pyplot as plt
from deepae import Autoencoder
# Loading MNIST Digit dataset
(X_train, y_train), (X_test, y_test) = mnist.load_data()
# Convert 2D arrays into 1D (flattening)
X_train_flat = X_train.reshape({n_train}, X_train.shape[1]*X_train.shape[2])
X_test_flat = X_test.reshape({n_test}, X_test.shape[1]*X_test.shape[2])
# Normalize values
X_train_flat = X_train_flat/255
X_test_flat = X_test_flat/255
autoencoder = Autoencoder()
encoder = autoencoder.encoder
decoder = autoencoder.decoder
autoencoder.summary()
autoencoder.compile(loss='binary_crossentropy', optimizer='adam')
autoencoder.fit(X_train_flat, X_train_flat, epochs=10, validation_data=(X_test_flat, X_test_flat))
encoded_values = encoder.predict(X_train_flat)
plt.figure(figsize=(13,10))
plt.scatter(encoded_values[:,0], encoded_values[:,1], s=4, c=y_train, cmap='hsv')
plt.colorbar()
plt.show()
decoded_values = decoder.predict(encoded_values)
decoded_values = decoded_values.reshape({n_train}, 28, 28)
# Display some images
fig, axes = plt.subplots(ncols=10, sharex=False, sharey=True, figsize=(20, 7))
counter = 0
for i in range(110, 120):
    axes[counter].set_title(y_train[i])
    axes[counter].imshow(decoded_values[i], cmap='gray')
    axes[counter].get_xaxis().set_visible(False)
    axes[counter].get_yaxis().set_visible(False)
    counter += 1
plt.show()
"""
EPOCH_LINE = re.compile(r"Epoch (\d+)/10 - [\d.]+s - loss: ([\d.]+) - val_loss: ([\d.]+)")


def test_the_articles_code_runs_with_the_deepae_import(mnist_small, capsys):
    # 3,000 images in all: 500 test digits, and 2,500 training digits (the fixture's 2,000
    # and the test digits' mirror images, which the model cannot have seen).
    x_train = np.concatenate([mnist_small.x_train, mnist_small.x_test[:, :, ::-1]])
    y_train = np.concatenate([mnist_small.y_train, mnist_small.y_test])
    data = ((x_train, y_train), (mnist_small.x_test, mnist_small.y_test))
    space = {"mnist": SimpleNamespace(load_data=lambda: data)}
    code = ARTICLE.format(n_train=len(x_train), n_test=len(mnist_small.x_test))
    with warnings.catch_warnings():  # plt.show() on the test's non-interactive backend
        warnings.filterwarnings("ignore", message=".*non-interactive.*")
        warnings.filterwarnings("ignore", message=".*cannot show the figure.*")
        exec(compile(code, "article.py", "exec"), space)
    out = capsys.readouterr().out
    assert "Total params: 51,154" in out  # autoencoder.summary()
    lines = EPOCH_LINE.findall(out)
    ae = space["autoencoder"]
    assert [int(e) for e, _, _ in lines] == list(range(1, 11))
    # The printed numbers are the History's, to the 4 decimals Keras prints.
    history = ae.history.history
    assert [float(v) for _, v, _ in lines] == [round(v, 4) for v in history["loss"]]
    assert [float(v) for _, _, v in lines] == [round(v, 4) for v in history["val_loss"]]
    assert space["encoded_values"].shape == (2500, 2)
    # decoder(encoder(x)) is the autoencoder's reconstruction
    recon = ae.predict(space["X_train_flat"]).reshape(2500, 28, 28)
    np.testing.assert_allclose(space["decoded_values"], recon, atol=1e-6)


# -- fit: History, repeated fits, Keras' initial_epoch ------------------------------------


def small_fit(mnist_small, *fits, **options):
    ae = Autoencoder(latent_activation="linear", seed=1, batch_size=64, **options)
    x, v = mnist_small.x_train[:640], mnist_small.x_test[:128]
    return ae, [ae.fit(x, validation_data=v, verbose=0, **f) for f in fits]


def weights(ae):
    return [w.copy() for w in ae.get_weights()]


def test_two_fits_of_2_epochs_are_one_fit_of_4(mnist_small):
    a, (h1, h2) = small_fit(mnist_small, {"epochs": 2}, {"epochs": 2})
    b, (h,) = small_fit(mnist_small, {"epochs": 4})
    assert (h1.epoch, h2.epoch, h.epoch) == ([0, 1], [2, 3], [0, 1, 2, 3])
    assert h1.history["loss"] + h2.history["loss"] == h.history["loss"]
    assert h1.history["val_loss"] + h2.history["val_loss"] == h.history["val_loss"]
    for wa, wb in zip(weights(a), weights(b), strict=True):
        np.testing.assert_array_equal(wa, wb)  # same batches, optimizer state carried over
    assert h2.params == {"verbose": 0, "epochs": 4, "initial_epoch": 2, "steps": 10,
                         "validation_freq": 1, "do_validation": True}  # fmt: skip
    assert a.history is h2 and len(a.train_state.history) == 4


def test_kerass_initial_epoch_continues_the_same_way(mnist_small):
    a, (_, h2) = small_fit(mnist_small, {"epochs": 2}, {"epochs": 4, "initial_epoch": 2})
    b, _ = small_fit(mnist_small, {"epochs": 4})
    assert h2.epoch == [2, 3]
    for wa, wb in zip(weights(a), weights(b), strict=True):
        np.testing.assert_array_equal(wa, wb)
    with pytest.raises(ConfigError) as e:
        a.fit(mnist_small.x_train[:64], epochs=9, initial_epoch=1, verbose=0)
    assert e.value.field == "initial_epoch"
    assert a.fit(mnist_small.x_train[:640], epochs=4, initial_epoch=4, verbose=0).epoch == []


def test_fit_arguments_hold_for_that_call_and_leave_the_config(mnist_small):
    x = mnist_small.x_train[:128]
    ae = Autoencoder(epochs=1, latent_activation="linear")
    # Each fit without `epochs` trains the config's 1 more, not the total so far.
    assert [ae.fit(x, verbose=0).epoch for _ in range(3)] == [[0], [1], [2]]
    before = ae.get_params()
    h = ae.fit(x, epochs=2, batch_size=16, shuffle=False, validation_freq=2, verbose=0)
    assert h.epoch == [3, 4] and h.params["steps"] == 8  # 128 / 16
    assert ae.get_params() == before  # epochs 1, batch_size 32, shuffle, validation_freq 1
    assert ae.fit(x, verbose=0).params["steps"] == 4  # batch 32 again


def test_shuffle_set_on_the_model_is_what_fit_uses(mnist_small):
    x = mnist_small.x_train[:128]
    configured = Autoencoder(shuffle=False, epochs=2, latent_activation="linear")
    configured.fit(x, verbose=0)
    argued = Autoencoder(epochs=2, latent_activation="linear")
    argued.fit(x, shuffle=False, verbose=0)
    shuffled = Autoencoder(epochs=2, latent_activation="linear")
    shuffled.fit(x, verbose=0)
    for a, b in zip(configured.get_weights(), argued.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(configured.get_weights()[0], shuffled.get_weights()[0])


def test_set_params_between_fits_applies_to_the_optimizer(mnist_small):
    x = mnist_small.x_train[:128]
    ae = Autoencoder(epochs=1, latent_activation="linear")
    ae.fit(x, verbose=0)
    ae.set_params(lr=0.05, adam_betas=(0.5, 0.6), weight_decay=0.1)
    ae.fit(x, verbose=0)
    (group,) = ae.trainer.opt.param_groups
    assert (group["lr"], group["betas"], group["weight_decay"]) == (0.05, (0.5, 0.6), 0.1)
    (state,) = ae.trainer.opt.state.values()
    assert state["step"].item() == 8  # Adam's state went on: 4 steps in each fit
    # Keras' compile with another optimizer starts it afresh.
    ae.compile(optimizer="sgd")
    ae.fit(x, verbose=0)
    assert isinstance(ae.trainer.opt, torch.optim.SGD) and ae.trainer.opt.param_groups[0][
        "lr"] == 0.05 and ae.train_state.epoch == 3  # fmt: skip
    # None is a value: lr=None is Keras' default rate again.
    assert ae.set_params(lr=None).get_params()["lr"] is None


@pytest.mark.parametrize(("first", "then"), [("fused", "autograd"), ("autograd", "fused")])
def test_another_engine_between_fits_goes_on_with_adams_state(mnist_small, first, then):
    # The engines keep Adam's state in other layouts (one flat tensor, one per layer). The
    # oracle: the same two fits on one engine, which the engines match to float rounding;
    # a continuation with fresh moments (what a dropped state gives) lands far from it.
    x = mnist_small.x_train[:256]
    runs = {}
    for name, engines in (("switched", (first, then)), ("kept", (first, first))):
        ae = Autoencoder(engine=engines[0], shuffle=False, latent_activation="linear", seed=5)
        ae.fit(x, epochs=1, verbose=0)
        ae.set_params(engine=engines[1])
        ae.fit(x, epochs=1, verbose=0)
        assert ae.trainer.engine_name == engines[1]
        runs[name] = ae.get_weights()
    state = next(iter(ae.trainer.opt.state.values()))
    assert state["step"].item() == 16  # 8 steps in each fit
    for a, b in zip(runs["switched"], runs["kept"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    begun = Autoencoder(engine=first, shuffle=False, latent_activation="linear", seed=5)
    begun.fit(x, epochs=1, verbose=0)
    fresh = Autoencoder(engine=then, shuffle=False, latent_activation="linear", seed=5)
    fresh.set_weights(begun.get_weights())
    fresh.fit(x, epochs=1, verbose=0)  # the same weights, Adam's moments at zero
    pairs = zip(fresh.get_weights(), runs["kept"], strict=True)
    gap = max(np.abs(a - b).max() for a, b in pairs)
    assert gap > 1e-3


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "rmsprop"])
def test_another_engine_between_fits_with_other_optimizers(mnist_small, optimizer):
    x = mnist_small.x_train[:128]
    ae = Autoencoder(engine="fused", optimizer=optimizer, latent_activation="linear")
    ae.fit(x, epochs=1, verbose=0)
    before = next(iter(ae.trainer.opt.state.values()), {})
    ae.set_params(engine="autograd")
    ae.fit(x, epochs=1, verbose=0)
    assert ae.trainer.engine_name == "autograd" and ae.train_state.epoch == 2
    if before:  # SGD without momentum keeps no state
        first = ae.trainer.opt.state[next(ae.net.parameters())]
        assert before.keys() == first.keys()


def test_a_schedule_keeps_its_settings_mid_run(mnist_small):
    x = mnist_small.x_train[:128]
    stop = SimpleNamespace(on_epoch_end=lambda e, logs: setattr(ae, "stop_training", e == 1))
    ae = Autoencoder(epochs=4, schedule="onecycle", lr=4e-3, latent_activation="linear")
    ae.fit(x, callbacks=[stop], verbose=0)  # the one-cycle shaped over 4 epochs, 2 done
    ae.set_params(lr=1e-2)
    with pytest.raises(ConfigError, match="onecycle schedule fixed its steps and rates") as e:
        ae.fit(x, epochs=4, initial_epoch=2, verbose=0)
    assert e.value.field == "lr"
    ae.set_params(lr=4e-3, weight_decay=0.01)  # not the schedule's: applies
    ae.fit(x, epochs=4, initial_epoch=2, verbose=0)
    (group,) = ae.trainer.opt.param_groups
    whole = Autoencoder(epochs=4, schedule="onecycle", lr=4e-3, latent_activation="linear")
    whole.fit(x, verbose=0)  # the schedule run through in one fit
    (whole_group,) = whole.trainer.opt.param_groups
    assert group["weight_decay"] == 0.01 and whole_group["weight_decay"] == 0
    assert (group["lr"], group["betas"]) == (whole_group["lr"], whole_group["betas"])


def test_validation_freq_validates_every_nth_epoch_and_the_last(mnist_small):
    _, (every,) = small_fit(mnist_small, {"epochs": 7})
    _, (third,) = small_fit(mnist_small, {"epochs": 7, "validation_freq": 3})
    # Validation does not change training: the same losses, and the val_loss of epochs 3,
    # 6 and 7 (the last) exactly as validating every epoch gives them.
    assert third.history["loss"] == every.history["loss"]
    validated = [r.epoch for r in third if r.val_loss is not None]
    assert validated == [3, 6, 7]
    assert third.history["val_loss"] == [every.history["val_loss"][i] for i in (2, 5, 6)]
    stop = EarlyStopping(patience=1)  # waits through the epochs without val_loss, as Keras
    _, (h,) = small_fit(mnist_small, {"epochs": 4, "validation_freq": 2, "callbacks": [stop]})
    assert h.epoch == [0, 1, 2, 3]
    with pytest.raises(ConfigError) as e:
        small_fit(mnist_small, {"epochs": 1, "validation_freq": 0})
    assert e.value.field == "validation_freq"


def test_validation_split_takes_the_last_part_as_keras_does(mnist_small):
    ae = Autoencoder(latent_activation="linear", epochs=1)
    x = mnist_small.x_train[:400]
    h = ae.fit(x, validation_split=0.25, verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(ae.evaluate(x[300:]), rel=1e-6)
    assert h.params["steps"] == 10  # 300 training images, batch 32


def test_a_schedule_shaped_by_the_total_cannot_be_extended(mnist_small):
    ae = Autoencoder(schedule="onecycle", epochs=1)
    ae.fit(mnist_small.x_train[:64], verbose=0)
    with pytest.raises(ConfigError, match="onecycle") as e:
        ae.fit(mnist_small.x_train[:64], verbose=0)
    assert e.value.field == "epochs"


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"y": "other"}, "y"),
        ({"validation_data": ("x", "other")}, "validation_data"),
        ({"validation_data": ("x", "x", "x")}, "validation_data"),
        ({"validation_split": 1.0}, "validation_split"),
        ({"epochs": -1}, "epochs"),
        ({"callbacks": "not a list"}, "callbacks"),
    ],
)
def test_fit_refuses_what_an_autoencoder_cannot_do(mnist_small, kwargs, field):
    x = mnist_small.x_train[:64]
    arrays = {"x": x, "other": mnist_small.x_train[64:128]}
    for key, value in kwargs.items():
        if isinstance(value, tuple):
            kwargs[key] = tuple(arrays[v] for v in value)
        elif value in arrays:
            kwargs[key] = arrays[value]
    with pytest.raises(ConfigError) as e:
        Autoencoder().fit(x, verbose=0, **kwargs)
    assert e.value.field == field and "\n" not in str(e.value)


def test_a_refused_fit_leaves_the_model_as_it_was(mnist_small):
    # A fresh model given Keras' initial_epoch, and a callback that refuses the fit
    # before it trains: the model must stay untrained (scikit-learn's check_is_fitted is
    # the oracle), and the next fit start at epoch 0.
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    x = mnist_small.x_train[:64]
    ae = Autoencoder(epochs=2)
    for bad in ([EarlyStopping()], "not a list"):  # no val_loss to monitor; not a list
        with pytest.raises(ConfigError):
            ae.fit(x, epochs=5, initial_epoch=3, callbacks=bad, verbose=0)
    assert ae.train_state.epoch == 0 and ae.history is None
    with pytest.raises(NotFittedError):
        check_is_fitted(ae)
    assert ae.fit(x, epochs=1, verbose=0).epoch == [0]


@pytest.mark.parametrize("split", [None, 0.0])
def test_validation_split_none_means_no_split_as_in_keras(mnist_small, split):
    # Keras' fit splits only `if validation_split` (keras/src/trainers: None and 0 alike).
    h = Autoencoder(epochs=1).fit(mnist_small.x_train[:64], validation_split=split, verbose=0)
    assert h.params["steps"] == 2 and "val_loss" not in h.history  # all 64 images trained


@pytest.mark.parametrize("split", ["0.2", True, [0.2]])
def test_validation_split_of_the_wrong_kind_is_one_clear_error(mnist_small, split):
    with pytest.raises(ConfigError, match="validation_split must be a number") as e:
        Autoencoder(epochs=1).fit(mnist_small.x_train[:64], validation_split=split, verbose=0)
    assert e.value.field == "validation_split"


@pytest.mark.parametrize("shape", [(64, 1), (64, 3)])
def test_a_column_of_labels_or_a_later_steps_targets_are_not_used(mnist_small, shape):
    # scikit-learn's Pipeline passes y to every step, and a transformer ignores it: a
    # column of labels (n, 1) or multi-output targets (n, k) of a later regressor. The
    # oracle: the same model fit without y.
    x = mnist_small.x_train[:64]
    y = np.arange(np.prod(shape), dtype=float).reshape(shape)
    with_y, alone = Autoencoder(epochs=1), Autoencoder(epochs=1)
    assert with_y.fit(x, y, verbose=0).history == alone.fit(x, verbose=0).history
    with pytest.raises(ConfigError, match="the target must be the images"):
        Autoencoder(epochs=1).fit(x, x[::-1].reshape(64, 784), verbose=0)  # other images
    with pytest.raises(ConfigError, match="the target must be the images"):
        Autoencoder(epochs=1).fit(x, (x[::-1] / 255.0).tolist(), verbose=0)  # as lists too


def test_validation_data_as_kerass_list_or_one_tuple(mnist_small):
    # Keras 3 reads a list as a tuple and (x_val,) as x_val alone
    # (keras/src/trainers/data_adapters/data_adapter_utils.py, unpack_x_y_sample_weight).
    # The oracle: the same model trained with validation_data=x_val, bit for bit.
    x, v = mnist_small.x_train[:64], mnist_small.x_test[:16]
    expected = Autoencoder(epochs=1).fit(x, validation_data=v, verbose=0).history
    for given in ([v, v], (v,), [v], [v.reshape(16, 784) / np.float32(255)] * 2):
        h = Autoencoder(epochs=1).fit(x, validation_data=given, verbose=0)
        assert h.history == expected, type(given)
    # A plain list of images is images: two (28, 28) images, as np.stack would give them.
    pair = Autoencoder(epochs=1).fit(x, validation_data=np.stack([v[0], v[1]]), verbose=0)
    listed = Autoencoder(epochs=1).fit(x, validation_data=[v[0], v[1]], verbose=0)
    assert listed.history == pair.history
    with pytest.raises(ConfigError, match="target must be the images") as e:
        Autoencoder(epochs=1).fit(x, validation_data=[v, v[::-1]], verbose=0)
    assert e.value.field == "validation_data"


def test_verbose_auto_is_kerass_1(mnist_small, monkeypatch):
    # Keras' fit defaults to verbose="auto", which Keras 3 takes as 1
    # (keras/src/callbacks/progbar_logger.py, set_params): the epoch lines and the bar.
    ae = Autoencoder(epochs=1)
    bars = []
    real = ae.trainer_for
    monkeypatch.setattr(
        ae, "trainer_for", lambda *a, **k: bars.append(k["progress"]) or real(*a, **k)
    )
    ae.fit(mnist_small.x_train[:64], verbose="auto")
    ae.fit(mnist_small.x_train[:64])  # Keras' default
    assert bars == [True, True]
    assert ae.history.params["verbose"] == "auto"  # as Keras' History.params holds it
    for bad in ("loud", 3, None):
        with pytest.raises(ConfigError, match="verbose must be 'auto', 0, 1 or 2") as e:
            ae.fit(mnist_small.x_train[:64], verbose=bad)
        assert e.value.field == "verbose"
    assert ae.train_state.epoch == 2


def test_y_equal_to_x_is_accepted(mnist_small):
    x = mnist_small.x_train[:64]
    h = Autoencoder(epochs=1).fit(x, x.copy(), validation_data=(x, x), verbose=0)
    assert len(h.history["loss"]) == len(h.history["val_loss"]) == 1


# -- callbacks ----------------------------------------------------------------------------


class FakeModel:
    def __init__(self):
        self.stop_training, self.w = False, [np.zeros(1)]

    def get_weights(self):
        return [a.copy() for a in self.w]

    def set_weights(self, w):
        self.w = w


def drive(callback, values, key="val_loss"):
    """Feed `values` to a callback as Keras would, on_train_end included; returns the
    epochs it ran."""
    model = FakeModel()
    callback.set_model(model)
    callback.on_train_begin({})
    ran = len(values)
    for epoch, v in enumerate(values):
        model.w = [np.array([float(epoch)])]  # the weights "after" this epoch
        callback.on_epoch_end(epoch, {key: v})
        if model.stop_training:
            ran = epoch + 1
            break
    callback.on_train_end({key: values[ran - 1]})
    return ran, model


def test_early_stopping_counts_patience_as_keras_does():
    # best at epoch 1 (0.9); epochs 2 and 3 do not beat it: patience 2 is used up at 3.
    cb = EarlyStopping(patience=2)
    ran, model = drive(cb, [1.0, 0.9, 0.95, 0.91, 0.5])
    assert (ran, cb.stopped_epoch, cb.best_epoch) == (4, 3, 1)
    assert model.w == [np.array([3.0])]  # not restored
    # min_delta: 0.95 -> 0.949 is no improvement by more than 0.01
    ran, _ = drive(EarlyStopping(monitor="loss", min_delta=0.01, patience=1), [1.0, 0.95, 0.949],
                   key="loss")  # fmt: skip
    assert ran == 3
    cb = EarlyStopping(patience=1, restore_best_weights=True)
    ran, model = drive(cb, [1.0, 0.8, 0.9, 0.7])
    assert ran == 3 and model.w[0][0] == 1.0  # epoch 1's weights put back


def test_early_stopping_takes_kerass_mode_min_delta_and_whole_numbers():
    # Hand-traced with Keras 3's rules (keras/src/callbacks/early_stopping.py): an epoch
    # improves when monitor_op(current - min_delta, best), min_delta = abs(given), negated
    # for 'min'. 'max': best 2.0 at epoch 1; 1.5 and 1.9 do not beat it: patience 2 is
    # used up at epoch 3.
    cb = EarlyStopping(monitor="loss", mode="max", patience=2)
    ran, _ = drive(cb, [1.0, 2.0, 1.5, 1.9, 3.0], key="loss")
    assert (ran, cb.stopped_epoch, cb.best_epoch, cb.best) == (4, 3, 1, 2.0)
    # A negative min_delta counts as its absolute value: 0.995 is not below 1.0 - 0.01.
    cb = EarlyStopping(min_delta=-0.01, patience=1)
    assert cb.min_delta == 0.01 and drive(cb, [1.0, 0.995, 0.98])[0] == 2
    # NumPy's integers (a parameter grid's) are whole numbers: the same as patience=2.
    cb = EarlyStopping(patience=np.int64(2))
    assert drive(cb, [1.0, 0.9, 0.95, 0.91, 0.5])[0] == 4 and cb.stopped_epoch == 3
    for bad, field in (({"mode": "maximum"}, "mode"), ({"min_delta": float("nan")}, "min_delta"),
                       ({"baseline": "low"}, "baseline"), ({"start_from_epoch": -1},
                       "start_from_epoch"), ({"patience": 1.5}, "patience")):  # fmt: skip
        with pytest.raises(ConfigError) as e:
            EarlyStopping(**bad)
        assert e.value.field == field


def test_early_stopping_baseline_as_keras_does():
    # Keras restarts the patience only on an improvement that also beats the baseline,
    # and stops only on an epoch that does not improve. Baseline 0.5, patience 2: epochs
    # 0 and 1 improve (1.0, 0.9) without beating it, so wait counts 1, 2; epoch 2 (0.95)
    # does not improve and wait 3 >= 2: stop at 2.
    values = [1.0, 0.9, 0.95, 0.6, 0.3]
    cb = EarlyStopping(baseline=0.5, patience=2, restore_best_weights=True)
    ran, model = drive(cb, values)
    assert (ran, cb.stopped_epoch, cb.best_epoch) == (3, 2, 1)
    assert model.w[0][0] == 1.0  # the best epoch of those, though none beat the baseline
    assert drive(EarlyStopping(patience=2), values)[0] == 5  # without: epoch 2 is wait 1
    # Baseline 0.95, beaten at epoch 1: from there as without a baseline.
    assert drive(EarlyStopping(baseline=0.95, patience=2), values)[0] == 5


def test_early_stopping_starts_from_the_epoch_keras_says():
    # start_from_epoch=2: epochs 0 and 1 are not watched (else 0.2 after 0.1 would stop
    # at epoch 1 with patience 0); epoch 2 is the first best, epoch 3 stops.
    values = [0.1, 0.2, 1.0, 1.1, 0.5]
    assert drive(EarlyStopping(patience=0), values)[0] == 2
    cb = EarlyStopping(patience=0, start_from_epoch=2, restore_best_weights=True)
    ran, model = drive(cb, values)
    assert (ran, cb.stopped_epoch, cb.best_epoch) == (4, 3, 2)
    assert model.w[0][0] == 2.0  # epoch 2's weights: the first watched, and the best


def test_early_stopping_restores_the_best_weights_when_fit_ends_without_stopping():
    # Keras 3's EarlyStopping puts the best epoch's weights back in on_train_end, whether
    # or not it stopped (keras/src/callbacks/early_stopping.py): best at epoch 1, then
    # worse at 2 and 3, and the epochs run out before patience 3 does.
    cb = EarlyStopping(patience=3, restore_best_weights=True)
    ran, model = drive(cb, [1.0, 0.8, 0.9, 0.95])
    assert (ran, cb.stopped_epoch, cb.best_epoch) == (4, 0, 1)
    assert model.w[0][0] == 1.0  # epoch 1's weights, not the last epoch's (3)
    ran, model = drive(EarlyStopping(patience=3), [1.0, 0.8, 0.9, 0.95])
    assert model.w[0][0] == 3.0  # without restore_best_weights: the last epoch's


def test_early_stopping_restores_the_best_weights_of_a_real_fit(mnist_small):
    # The oracle: the weights after the fit's best epoch, as a callback placed before
    # EarlyStopping saw them. 3 epochs and patience 3: it never stops, yet restores.
    class Snapshots:
        def __init__(self):
            self.weights = []

        def on_epoch_end(self, epoch, logs):
            self.weights.append(self.model.get_weights())

    ae = Autoencoder(epochs=3, lr=0.2, latent_activation="linear")  # lr: val_loss jumps
    x, v = mnist_small.x_train[:256], mnist_small.x_test[:64]
    snaps, stop = Snapshots(), EarlyStopping(patience=3, restore_best_weights=True)
    h = ae.fit(x, validation_data=v, callbacks=[snaps, stop], verbose=0)
    best = int(np.argmin(h.history["val_loss"]))
    assert best < 2, "the last epoch must not be the best, or nothing is restored"
    assert stop.stopped_epoch == 0 and stop.best_epoch == best
    for w, b in zip(ae.get_weights(), snaps.weights[best], strict=True):
        np.testing.assert_array_equal(w, b)
    assert ae.evaluate(v) == pytest.approx(h.history["val_loss"][best], rel=1e-5)


def test_early_stopping_ends_fit_on_a_plateau(mnist_small):
    # lr 1e-30: no weight moves, so val_loss is the same every epoch: a plateau.
    ae = Autoencoder(optimizer="sgd", lr=1e-30, epochs=20, batch_size=256)
    x, v = mnist_small.x_train[:512], mnist_small.x_test[:64]
    stop = EarlyStopping(patience=2)
    h = ae.fit(x, validation_data=v, callbacks=[stop], verbose=0)
    assert h.epoch == [0, 1, 2] and stop.stopped_epoch == 2
    assert len(set(h.history["val_loss"])) == 1
    assert ae.train_state.epoch == 3 and not ae.train_state.interrupted
    # the next fit starts at epoch 3, as a continued Keras fit would
    assert ae.fit(x, epochs=1, verbose=0).epoch == [3]


def test_early_stopping_without_its_metric_is_refused(mnist_small):
    ae = Autoencoder(epochs=2)
    with pytest.raises(ConfigError, match="validation_data") as e:
        ae.fit(mnist_small.x_train[:64], callbacks=[EarlyStopping()], verbose=0)
    assert e.value.field == "monitor" and ae.train_state.epoch == 0  # before any training


def test_csv_logger_writes_one_row_per_epoch(mnist_small, tmp_path):
    path = tmp_path / "log.csv"
    ae = Autoencoder(epochs=2, latent_activation="linear")
    x, v = mnist_small.x_train[:128], mnist_small.x_test[:32]
    h1 = ae.fit(x, validation_data=v, callbacks=[CSVLogger(path)], verbose=0)
    h2 = ae.fit(x, validation_data=v, callbacks=[CSVLogger(path, append=True)], verbose=0)
    rows = list(csv.reader(path.read_text().splitlines()))
    assert rows[0] == ["epoch", "loss", "val_loss"]
    expected = [[e, lo, va] for h in (h1, h2)
                for e, lo, va in zip(h.epoch, h.history["loss"], h.history["val_loss"],
                                     strict=True)]  # fmt: skip
    assert [[int(r[0]), float(r[1]), float(r[2])] for r in rows[1:]] == expected


def test_csv_logger_has_val_loss_when_the_first_epoch_does_not_validate(mnist_small, tmp_path):
    path = tmp_path / "log.csv"
    ae = Autoencoder(epochs=3, latent_activation="linear")
    h = ae.fit(mnist_small.x_train[:128], validation_data=mnist_small.x_test[:32],
               validation_freq=2, callbacks=[CSVLogger(path)], verbose=0)  # fmt: skip
    rows = list(csv.reader(path.read_text().splitlines()))
    assert rows[0] == ["epoch", "loss", "val_loss"]
    # Keras writes "NA" for a value an epoch lacks (keras/src/callbacks/csv_logger.py:
    # logs.get(key, "NA")).
    assert [r[2] for r in rows[1:]] == ["NA", repr(h.history["val_loss"][0]),
                                        repr(h.history["val_loss"][1])]  # fmt: skip


def test_csv_logger_appending_keeps_every_row_under_the_files_columns(mnist_small, tmp_path):
    # Appending to a log that has rows: no second header, and the columns stay the same in
    # every row, the val_loss cell "NA" where an epoch did not validate (as Keras' does).
    path = tmp_path / "log.csv"
    ae = Autoencoder(epochs=2, latent_activation="linear")
    x, v = mnist_small.x_train[:128], mnist_small.x_test[:32]
    h1 = ae.fit(x, validation_data=v, callbacks=[CSVLogger(path)], verbose=0)
    h2 = ae.fit(x, validation_data=v, validation_freq=2, verbose=0,
                callbacks=[CSVLogger(path, append=True)])  # fmt: skip
    assert h2.epoch == [2, 3] and len(h2.history["val_loss"]) == 1  # epoch 3 of 4 does not
    rows = list(csv.reader(path.read_text().splitlines()))
    loss = h1.history["loss"] + h2.history["loss"]
    val = h1.history["val_loss"] + h2.history["val_loss"]
    assert rows == [["epoch", "loss", "val_loss"], ["0", repr(loss[0]), repr(val[0])],
                    ["1", repr(loss[1]), repr(val[1])], ["2", repr(loss[2]), "NA"],
                    ["3", repr(loss[3]), repr(val[2])]]  # fmt: skip


def test_a_fit_refused_by_a_callback_leaves_a_csv_log_as_it_was(mnist_small, tmp_path):
    # EarlyStopping refuses a fit that cannot give val_loss before it trains; a CSVLogger
    # listed before it must not have truncated its file by then.
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\n0,0.5\n")
    ae = Autoencoder(epochs=1)
    with pytest.raises(ConfigError, match="validation_data"):
        ae.fit(mnist_small.x_train[:64], callbacks=[CSVLogger(path), EarlyStopping()], verbose=0)
    assert path.read_text() == "epoch,loss\n0,0.5\n"


def test_a_plain_object_with_hooks_is_a_callback(mnist_small):
    seen = []
    hooks = SimpleNamespace(on_epoch_end=lambda epoch, logs: seen.append((epoch, set(logs))))
    ae = Autoencoder(epochs=2)
    ae.fit(mnist_small.x_train[:64], callbacks=[hooks], verbose=0)
    assert seen == [(0, {"loss"}), (1, {"loss"})] and hooks.model is ae


# -- the verbs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted(mnist_small):
    ae = Autoencoder(latent_activation="linear", epochs=1)
    ae.fit(mnist_small.x_train[:500], verbose=0)
    return ae


def test_one_image_is_encoded_as_one(fitted, mnist_small):
    x = mnist_small.x_test
    one = fitted.encode(x[:1])
    assert one.shape == (1, 2)
    np.testing.assert_array_equal(fitted.encode(x[0]), one)
    np.testing.assert_array_equal(fitted.transform(x[0].reshape(784)), one)
    assert fitted.predict(x[0]).shape == (28, 28)


@pytest.mark.parametrize("shape", [(28,), (3, 10, 10), (2, 28, 28, 1, 2), (4, 100)])
def test_wrong_shapes_say_what_the_model_takes(fitted, shape):
    with pytest.raises(ConfigError) as e:
        fitted.encode(np.zeros(shape, np.uint8))
    message = str(e.value)
    assert e.value.field == "x" and f"{shape}" in message
    assert "(28, 28)" in message and "(N, 784)" in message and "input_size=28" not in message


def test_sklearn_and_keras_verbs_are_the_same_verbs(fitted, mnist_small):
    x = mnist_small.x_test[:20]
    z = fitted.transform(x)
    np.testing.assert_array_equal(z, fitted.encode(x))
    np.testing.assert_array_equal(fitted.inverse_transform(z), fitted.decode(z))
    flat = x.reshape(20, 784) / np.float32(255)
    assert fitted.predict(flat).shape == (20, 784)
    np.testing.assert_array_equal(fitted.predict(x), fitted.reconstruct(x))
    np.testing.assert_array_equal(fitted.encoder.predict(flat), z)
    assert fitted.decoder.predict(z).shape == (20, 784)


def test_predict_and_evaluate_take_kerass_batch_size_and_verbose(fitted, mnist_small, capsys):
    # Keras' Model.predict(x, batch_size=None, verbose="auto") and
    # evaluate(x, y, batch_size=None, verbose="auto"): `predict(x, verbose=0)` is the
    # common Keras line. The oracle: the same verbs without those arguments.
    x = mnist_small.x_test[:20]
    flat = x.reshape(20, 784) / np.float32(255)
    z = fitted.encode(x)
    np.testing.assert_array_equal(fitted.predict(x, batch_size=None, verbose=0), fitted.predict(x))
    np.testing.assert_array_equal(fitted.encoder.predict(flat, verbose=0), z)
    # Another batch size may block the products otherwise: the same codes to float rounding.
    np.testing.assert_allclose(fitted.encoder.predict(flat, batch_size=7), z, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(fitted.decoder.predict(z, None, verbose="auto"),
                                  fitted.decoder.predict(z))  # fmt: skip
    assert fitted.evaluate(x, x, batch_size=None, verbose=2) == fitted.evaluate(x)
    assert capsys.readouterr().out == ""
    with pytest.raises(ConfigError) as e:
        fitted.predict(x, verbose="loud")
    assert e.value.field == "verbose"


def test_evaluate_is_the_mean_bce(fitted, mnist_small):
    x = mnist_small.x_test[:50].reshape(50, 784) / 255.0
    p = fitted.predict(x).astype(np.float64)
    bce = -np.mean(x * np.log(p) + (1 - x) * np.log1p(-p))  # the oracle, in NumPy
    assert fitted.evaluate(x) == pytest.approx(bce, rel=1e-5)
    with pytest.raises(ConfigError):
        fitted.evaluate(x, x[::-1])


def test_fit_transform_fits_then_encodes(mnist_small):
    x = mnist_small.x_train[:200]
    ae = Autoencoder(epochs=1, latent_activation="linear")
    z = ae.fit_transform(x, verbose=0)
    assert ae.train_state.epoch == 1
    np.testing.assert_array_equal(z, ae.encode(x))


def test_get_params_set_params_and_presets():
    ae = Autoencoder(preset="best2d", epochs=3)
    params = ae.get_params()
    assert params["hidden_sizes"] == (256, 256, 128) and params["lr"] == 4e-3
    assert params["epochs"] == 3  # an option overrides the preset
    assert Autoencoder(**params).get_params() == params  # scikit-learn's clone
    before = ae.net
    assert ae.set_params(lr=1e-3) is ae and ae.net is before  # training field: same network
    ae.set_params(hidden_sizes=(8,))
    assert ae.net is not before and ae.summary(print_fn=None).count("Dense") == 4
    with pytest.raises(ConfigError) as e:
        ae.set_params(hiden_sizes=(3,))
    assert e.value.field == "hiden_sizes"
    with pytest.raises(ConfigError) as e:
        Autoencoder(preset="nope")
    assert e.value.field == "preset"


def test_set_weights_restores_the_model_and_training_goes_on_from_them(mnist_small):
    x = mnist_small.x_train[:300]
    ae = Autoencoder(latent_activation="linear", epochs=1)
    ae.fit(x, verbose=0)
    saved, codes = ae.get_weights(), ae.encode(x)
    ae.fit(x, verbose=0)  # moves every weight
    assert not np.array_equal(ae.encode(x), codes)
    ae.set_weights(saved)
    np.testing.assert_array_equal(ae.encode(x), codes)
    # The fused engine trains the net's own tensors (views of its flat buffer): were the
    # copy to replace them, training would leave what get_weights reads unchanged.
    ae.fit(x, verbose=0)
    assert all(not np.array_equal(a, b) for a, b in zip(ae.get_weights(), saved, strict=True))
    with pytest.raises(ConfigError, match="weights do not match") as e:
        ae.set_weights(saved[:-1])
    assert e.value.field == "weights"


@pytest.mark.parametrize(
    ("keras_name", "loss"),
    [("binary_crossentropy", "bce"), ("mean_squared_error", "mse"), ("mse", "mse")],
)
def test_compile_maps_keras_loss_names(keras_name, loss):
    ae = Autoencoder()
    ae.compile(optimizer="rmsprop", loss=keras_name)
    assert (ae.train_config.optimizer, ae.train_config.loss) == ("rmsprop", loss)


def test_compile_refuses_a_loss_it_has_not():
    with pytest.raises(ConfigError, match="loss must be one of") as e:
        Autoencoder().compile(loss="hinge")
    assert e.value.field == "loss"


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_a_verbs_batch_size_must_be_a_whole_number(fitted, mnist_small, batch_size):
    x = mnist_small.x_test[:20]
    for verb in (fitted.encode, fitted.reconstruct, fitted.evaluate):
        with pytest.raises(ConfigError, match="batch_size must be a whole number >= 1") as e:
            verb(x, batch_size=batch_size)
        assert e.value.field == "batch_size"
    assert fitted.encode(x, batch_size=np.int64(7)).shape == (20, 2)  # NumPy's ints do


def test_no_images_is_a_data_error_before_training(mnist_small):
    ae = Autoencoder(epochs=1)
    x, empty = mnist_small.x_train[:64], mnist_small.x_train[:0]
    for call, field in ((lambda: ae.fit(empty, verbose=0), "x"),
                        (lambda: ae.fit(x, validation_data=empty, verbose=0), "validation_data"),
                        (lambda: ae.evaluate(empty), "x")):  # fmt: skip
        with pytest.raises(DataError, match="holds no images") as e:
            call()
        assert e.value.field == field
    assert ae.train_state.epoch == 0
    assert ae.encode(empty).shape == (0, 2)  # no images in, no codes out


def test_the_package_lists_its_lazy_names():
    import deepae

    assert {"Autoencoder", "UMAP", "load_mnist", "EarlyStopping"} <= set(dir(deepae))


@pytest.mark.parametrize(
    ("call", "field"),
    [(lambda ae, x, y: ae.plot_latent(x[:10], y[:5]), "y"),
     (lambda ae, x, y: ae.plot_reconstructions(x[:3], labels=[1]), "labels"),
     (lambda ae, x, y: ae.encode([[0.0] * 784, [0.0] * 10]), "x"),  # ragged rows
     (lambda ae, x, y: ae.decode(["a", "b"]), "z"),
     (lambda ae, x, y: ae.set_weights([w * np.nan for w in ae.get_weights()]), "weights")],
)  # fmt: skip
def test_odd_arguments_are_config_errors(fitted, mnist_small, call, field):
    with pytest.raises(ConfigError) as e:
        call(fitted, mnist_small.x_test, mnist_small.y_test)
    assert e.value.field == field


def test_transform_before_fit_is_scikit_learns_not_fitted_error(mnist_small, tmp_path):
    # The oracle: scikit-learn's own estimator check, on a model of 1x2 "images" (its data).
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.estimator_checks import check_transformers_unfitted

    small = {"input_size": 2, "image_shape": (1, 2), "hidden_sizes": (3,)}
    check_transformers_unfitted("Autoencoder", Autoencoder(**small))
    ae, x = Autoencoder(epochs=1), mnist_small.x_test[:5]
    for verb, data in ((ae.transform, x), (ae.inverse_transform, [[0.0, 1.0]])):
        with pytest.raises(NotFittedError, match="not fitted yet: call fit") as e:
            verb(data)
        assert "\n" not in str(e.value)
    assert ae.encode(x).shape == (5, 2)  # Keras' verbs take an untrained network
    ae.save(tmp_path / "m")
    assert Autoencoder.load(tmp_path / "m").transform(x).shape == (5, 2)  # loaded: fitted


def test_a_scikit_learn_pipeline_takes_the_model_as_a_transformer(mnist_small):
    from sklearn.exceptions import NotFittedError
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.utils.validation import check_is_fitted

    x, y = mnist_small.x_train[:300].reshape(300, -1) / 255.0, mnist_small.y_train[:300]
    test = mnist_small.x_test[:50].reshape(50, -1) / 255.0
    pipe = make_pipeline(Autoencoder(epochs=1, latent_activation="linear"),
                         KNeighborsClassifier(5))  # fmt: skip
    with pytest.raises(NotFittedError):
        check_is_fitted(pipe.steps[0][1])
    pipe.fit(x, y)  # the labels reach the autoencoder too, which does not use them
    ae = pipe.steps[0][1]
    check_is_fitted(ae)
    # The oracle: the same two steps by hand, on a model trained without labels.
    alone = Autoencoder(epochs=1, latent_activation="linear")
    alone.fit(x, verbose=0)
    for a, b in zip(ae.get_weights(), alone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    knn = KNeighborsClassifier(5).fit(alone.encode(x), y)
    np.testing.assert_array_equal(pipe.predict(test), knn.predict(alone.encode(test)))
