"""deepae.config: the article's defaults, field checks that name the field, the JSON round
trip, presets, and one list of activations that the model, the engine and the explorer
page agree on."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from deepae import config, engine, model
from deepae.config import ModelConfig, TrainConfig, from_dict, replace, resolve, to_dict
from deepae.errors import ConfigError


def test_model_defaults_are_the_articles_keras_model():
    c = ModelConfig()
    assert c.input_size == 784
    assert c.hidden_sizes == (32,)
    assert c.latent_size == 2
    assert (c.hidden_activation, c.latent_activation, c.output_activation) == (
        "relu",
        "relu",
        "sigmoid",
    )
    assert c.decoder_hidden_sizes is None
    assert c.decoder_sizes == (32,)
    assert c.batch_norm is False
    assert c.image_shape == (28, 28)


def test_train_defaults_are_keras_compile_and_fit():
    c = TrainConfig()
    assert (c.loss, c.optimizer) == ("bce", "adam")
    assert c.lr is None
    assert c.learning_rate == 1e-3  # keras.optimizers.Adam's default
    assert c.batch_size == 32
    assert c.epochs == 10
    assert c.eps == 1e-7
    assert c.adam_betas == (0.9, 0.999)


def test_learning_rate_is_keras_default_per_optimizer_unless_set():
    assert TrainConfig(optimizer="sgd").learning_rate == 1e-2  # keras.optimizers.SGD
    assert TrainConfig(optimizer="sgd", lr=0.5).learning_rate == 0.5


def test_decoder_sizes_mirror_the_encoder_unless_given():
    assert ModelConfig(hidden_sizes=(64, 16)).decoder_sizes == (16, 64)
    assert ModelConfig(hidden_sizes=(64, 16), decoder_hidden_sizes=(8,)).decoder_sizes == (8,)


INVALID = [
    (TrainConfig, {"lr": -1e-3}, "lr"),
    (TrainConfig, {"lr": 0.0}, "lr"),
    (TrainConfig, {"lr": float("inf")}, "lr"),
    (TrainConfig, {"lr": float("nan")}, "lr"),
    (TrainConfig, {"batch_size": 0}, "batch_size"),
    (TrainConfig, {"epochs": True}, "epochs"),
    (TrainConfig, {"eps": -1e-7}, "eps"),
    (TrainConfig, {"eps": float("nan")}, "eps"),
    (TrainConfig, {"weight_decay": -0.1}, "weight_decay"),
    (TrainConfig, {"adam_betas": (0.9, 1.0)}, "adam_betas"),
    (TrainConfig, {"adam_betas": (-0.1, 0.999)}, "adam_betas"),
    (TrainConfig, {"adam_betas": (0.9,)}, "adam_betas"),
    (TrainConfig, {"optimizer": "lamb"}, "optimizer"),
    (TrainConfig, {"loss": "hinge"}, "loss"),
    (TrainConfig, {"schedule": "step"}, "schedule"),
    (TrainConfig, {"engine": "jit"}, "engine"),
    (ModelConfig, {"latent_size": True}, "latent_size"),
    (ModelConfig, {"hidden_sizes": (32, False)}, "hidden_sizes"),
    (ModelConfig, {"hidden_sizes": (32, 0)}, "hidden_sizes"),
    (ModelConfig, {"input_size": 2.5}, "input_size"),
    (ModelConfig, {"decoder_hidden_sizes": (-1,)}, "decoder_hidden_sizes"),
    (ModelConfig, {"hidden_activation": "swish"}, "hidden_activation"),
    (ModelConfig, {"latent_activation": "softmax"}, "latent_activation"),
    (ModelConfig, {"output_activation": "tanh"}, "output_activation"),
    (ModelConfig, {"image_shape": (28, 27)}, "image_shape"),
    (ModelConfig, {"input_size": 100}, "image_shape"),  # 28 * 28 != 100
    (ModelConfig, {"image_shape": (784,)}, "image_shape"),  # figures show H x W images
    (ModelConfig, {"image_shape": (7, 4, 28)}, "image_shape"),
    (ModelConfig, {"hidden_sizes": (10**9,)}, "hidden_sizes"),  # 1.6e12 parameters
    (ModelConfig, {"latent_size": 10**9}, "latent_size"),
    (ModelConfig, {"decoder_hidden_sizes": (32, 10**6)}, "decoder_hidden_sizes"),
    (TrainConfig, {"seed": "abc"}, "seed"),
    (TrainConfig, {"seed": 1.5}, "seed"),
    (TrainConfig, {"seed": True}, "seed"),
    (TrainConfig, {"seed": -1}, "seed"),
    (TrainConfig, {"seed": 2**32}, "seed"),
    (TrainConfig, {"seed": 2**100}, "seed"),
    (TrainConfig, {"seed": 4611686018427387904}, "seed"),  # overflowed torch's seed
]


@pytest.mark.parametrize(("cls", "changes", "field"), INVALID)
def test_invalid_field_raises_config_error_naming_it(cls, changes, field):
    with pytest.raises(ConfigError) as info:
        cls(**changes)
    assert info.value.field == field
    assert field in str(info.value)


def test_lists_become_tuples():
    m = ModelConfig(hidden_sizes=[64, 16], decoder_hidden_sizes=[8], image_shape=[28, 28])
    assert m.hidden_sizes == (64, 16)
    assert m.decoder_hidden_sizes == (8,)
    assert m.image_shape == (28, 28)
    assert TrainConfig(adam_betas=[0.8, 0.9]).adam_betas == (0.8, 0.9)
    hash(m)  # hashable only because the lists became tuples


def test_to_dict_is_json_ready():
    d = to_dict(ModelConfig())
    assert d["hidden_sizes"] == [32]
    assert d["image_shape"] == [28, 28]
    assert d["decoder_hidden_sizes"] is None
    assert json.loads(json.dumps(d)) == d
    t = to_dict(TrainConfig())
    assert t["adam_betas"] == [0.9, 0.999]
    assert json.loads(json.dumps(t)) == t


@pytest.mark.parametrize(
    "c",
    [
        ModelConfig(),
        ModelConfig(
            hidden_sizes=(64, 16),
            decoder_hidden_sizes=(8, 24),
            latent_activation="linear",
            batch_norm=True,
            input_size=12,
            image_shape=(3, 4),
        ),
        TrainConfig(),
        TrainConfig(optimizer="adamw", lr=4e-3, adam_betas=(0.9, 0.99), schedule="onecycle"),
    ],
)
def test_from_dict_inverts_to_dict_through_json(c):
    assert from_dict(type(c), to_dict(c)) == c
    assert from_dict(type(c), json.loads(json.dumps(to_dict(c)))) == c


def test_from_dict_refuses_unknown_keys():
    with pytest.raises(ConfigError, match="unknown TrainConfig field"):
        from_dict(TrainConfig, {"lr": 1e-3, "learning_rate": 1e-3})


@pytest.mark.parametrize("data", [[], "adam", None, 3])
def test_from_dict_refuses_a_non_dict(data):
    with pytest.raises(ConfigError, match="must be a JSON object"):
        from_dict(ModelConfig, data)


def test_from_dict_turns_a_wrong_type_into_config_error():
    with pytest.raises(ConfigError):
        from_dict(TrainConfig, {"lr": "fast"})


def test_replace_ignores_none():
    base = TrainConfig(lr=0.01, epochs=4)
    assert replace(base, lr=None, epochs=None) == base
    changed = replace(base, lr=None, epochs=7)
    assert (changed.lr, changed.epochs) == (0.01, 7)


def test_best2d_preset_values():
    m, t = resolve("best2d", seed=3)
    assert m.hidden_sizes == (256, 256, 128)
    assert m.latent_activation == "linear"
    assert m.decoder_sizes == (128, 256, 256)
    assert (m.input_size, m.latent_size, m.hidden_activation) == (784, 2, "relu")
    assert m.batch_norm is False
    assert t.lr == 4e-3
    assert t.adam_betas == (0.9, 0.99)
    assert t.schedule == "onecycle"
    assert t.batch_size == 512
    assert t.epochs == 90
    assert t.seed == 3
    assert t.optimizer == "adam"


def test_article_preset_is_the_defaults_and_none_overrides_are_ignored():
    assert resolve() == (ModelConfig(), TrainConfig())
    m, t = resolve("best2d", lr=None, epochs=5, latent_size=3)
    assert (t.lr, t.epochs, m.latent_size) == (4e-3, 5, 3)


def test_unknown_preset_raises_config_error():
    with pytest.raises(ConfigError, match="unknown preset") as info:
        resolve("best3d")
    assert info.value.field == "preset"


def test_unknown_override_raises_config_error():
    with pytest.raises(ConfigError, match="unknown config field"):
        resolve("best2d", learning_rate=1e-3)


def test_override_is_checked_like_any_field():
    with pytest.raises(ConfigError) as info:
        resolve("best2d", batch_size=0)
    assert info.value.field == "batch_size"


# -- one list of activations ----------------------------------------------------------


def explorer_activation_names() -> set[str]:
    js = (Path(config.__file__).parent / "explorer" / "explorer.js").read_text(encoding="utf-8")
    body = re.search(r"const ACTIVATIONS = \{(.*?)\n\s*\};", js, re.DOTALL)
    assert body is not None, "no `const ACTIVATIONS = {...};` in explorer.js"
    return set(re.findall(r"^\s*([A-Za-z_]\w*)\s*:", body.group(1), re.MULTILINE))


def test_activations_agree_across_config_model_engine_and_explorer():
    names = set(config.ACTIVATIONS)
    assert names == set(model.ACTIVATION_MODULES)
    assert set(engine.FUSED_ACTIVATIONS) <= names
    assert explorer_activation_names() == names
    assert set(config.OUTPUT_ACTIVATIONS) <= names


X = [-3.0, -0.5, 0.0, 0.25, 2.0]
HAND = {
    "relu": [max(v, 0.0) for v in X],
    "sigmoid": [1 / (1 + math.exp(-v)) for v in X],
    "tanh": [math.tanh(v) for v in X],
    "linear": X,
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_activation_modules_match_hand_formulas(name):
    got = model.ACTIVATION_MODULES[name]()(torch.tensor(X, dtype=torch.float64))
    assert got.tolist() == pytest.approx(HAND[name], rel=1e-14, abs=1e-300)


@pytest.mark.parametrize(
    "changes",
    [{}, {"hidden_sizes": (256, 256, 128)}, {"hidden_sizes": ()}, {"batch_norm": True},
     {"hidden_sizes": (64, 16), "decoder_hidden_sizes": (8, 24, 40), "batch_norm": True},
     {"latent_size": 5, "input_size": 12, "image_shape": (3, 4)}],
)  # fmt: skip
def test_parameter_count_is_what_the_network_holds(changes):
    cfg = ModelConfig(**changes)
    assert cfg.parameter_count == sum(p.numel() for p in model.AutoencoderNet(cfg).parameters())


def test_the_parameter_cap_is_checked_before_anything_is_allocated():
    # 784-h-2-h-784 holds 1574 h + 786 parameters: the widest h under the cap passes.
    h = (config.MAX_PARAMETERS - 786) // 1574
    assert ModelConfig(hidden_sizes=(h,)).parameter_count <= config.MAX_PARAMETERS
    with pytest.raises(ConfigError, match="parameters") as info:
        ModelConfig(hidden_sizes=(h + 1,))
    assert info.value.field == "hidden_sizes"


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1])
def test_every_accepted_seed_seeds_the_shuffle(seed):
    from deepae.train import _epoch_order

    cfg = TrainConfig(seed=seed)
    order = _epoch_order(1000, cfg, 10**6)  # seed * 1_000_003 + epoch must fit torch's seed
    assert sorted(order.tolist()) == list(range(1000))  # a permutation
    assert torch.equal(order, _epoch_order(1000, cfg, 10**6))  # the same seed, the same order
    assert not torch.equal(order, _epoch_order(1000, cfg, 10**6 - 1))  # another epoch's
    other = TrainConfig(seed=seed + 1 if seed < 2**32 - 1 else 0)
    assert not torch.equal(order, _epoch_order(1000, other, 10**6))  # another seed's


@pytest.mark.parametrize(
    ("cls", "field", "value", "message"),
    [
        (ModelConfig, "hidden_sizes", 32, "hidden_sizes must be a list of whole numbers, got 32"),
        (ModelConfig, "hidden_sizes", "32", "hidden_sizes must be a list of whole numbers"),
        (ModelConfig, "image_shape", (28.0, 28), "image_shape must be a list of whole numbers"),
        (ModelConfig, "batch_norm", "yes", "batch_norm must be True or False, got 'yes'"),
        (ModelConfig, "latent_size", True, "latent_size must be a whole number, got True"),
        (ModelConfig, "hidden_activation", 3, "hidden_activation must be a name"),
        (TrainConfig, "lr", "x", "lr must be a number, got 'x'"),
        (TrainConfig, "epochs", 2.0, "epochs must be a whole number, got 2.0"),
        (TrainConfig, "epochs", None, "epochs must be a whole number, got None"),
        (TrainConfig, "adam_betas", 0.9, "adam_betas must be a list of numbers, got 0.9"),
        (TrainConfig, "shuffle", "no", "shuffle must be True or False, got 'no'"),
        (TrainConfig, "validate", 5, "validate must be True or False, got 5"),
    ],
)
def test_a_value_of_the_wrong_kind_is_a_config_error(cls, field, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        cls(**{field: value})
    assert e.value.field == field


def test_numpy_scalars_and_arrays_are_stored_as_python_values():
    m = ModelConfig(hidden_sizes=np.array([16, 8]), latent_size=np.int64(3))
    t = TrainConfig(epochs=np.int32(4), lr=np.float32(0.5), shuffle=np.bool_(False), eps=0)
    assert m.hidden_sizes == (16, 8) and type(m.hidden_sizes[0]) is int
    assert type(m.latent_size) is int and type(t.epochs) is int and t.epochs == 4
    assert type(t.lr) is float and t.lr == 0.5 and t.shuffle is False
    assert type(t.eps) is float  # an int given for a number
    assert from_dict(TrainConfig, json.loads(json.dumps(to_dict(t)))) == t  # JSON takes them


@pytest.mark.parametrize("field", ["weight_decay", "eps", "momentum"])
def test_an_infinite_rate_setting_is_refused(field):
    with pytest.raises(ConfigError, match=f"{field} must be a finite number >= 0, got inf"):
        TrainConfig(**{field: math.inf})
