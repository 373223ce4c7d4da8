"""Configuration as data: what the network looks like, how it is trained, and the named
presets that bundle both.

Both dataclasses are frozen, carry the article's values as defaults, and check themselves
on construction, so a bad value fails early with a `ConfigError` that names the field.
This module imports nothing heavy (no torch), so the command line can build its options
from it and still answer `--help` at once.

    model_config, train_config = resolve("best2d", seed=3)   # any field can be overridden
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any

from deepae.errors import ConfigError

# The activations, by name: the one list. deepae.model maps each name to a torch module,
# deepae.engine says which of them the fused engine runs, and the explorer page
# (explorer/explorer.js) runs each in JavaScript; tests/test_config.py checks all agree.
ACTIVATIONS = ("relu", "linear", "sigmoid", "tanh", "leaky_relu", "elu", "gelu")
OUTPUT_ACTIVATIONS = ("sigmoid", "linear")
LOSSES = ("bce", "mse")
OPTIMIZERS = ("adam", "adamw", "adagrad", "adadelta", "sgd", "rmsprop")
SCHEDULES = ("constant", "onecycle", "cosine")
DEVICES = ("auto", "cpu", "cuda")
ENGINES = ("auto", "fused", "autograd")
# Keras' mixed-precision policy names, plus "auto" (deepae.precision says what each means)
PRECISIONS = ("float32", "mixed_bfloat16", "auto")

# The largest model accepted, in parameters: 2 GB of float32 weights, 8 GB with their
# gradients and Adam's two moments. Bigger sizes are refused before anything is allocated
# (`--hidden-sizes 1000000000` would otherwise ask for terabytes).
MAX_PARAMETERS = 500_000_000
# Seeds are refused outside [0, 2**32): the shuffle of epoch e is seeded with
# seed * 1_000_003 + e (deepae.train._epoch_order), which must fit torch's 64-bit seed.
SEED_LIMIT = 2**32

# Keras' default learning rate for each optimizer, so `--optimizer adagrad` behaves as
# `compile(optimizer='adagrad')` would in the article's code (keras.optimizers defaults).
DEFAULT_LR = {
    "adam": 1e-3,
    "adamw": 1e-3,
    "adagrad": 1e-3,
    "adadelta": 1e-3,
    "sgd": 1e-2,
    "rmsprop": 1e-3,
}


@dataclass(frozen=True)
class ModelConfig:
    """A dense autoencoder: input -> hidden... -> latent -> hidden... -> input."""

    input_size: int = 784  # 28 * 28 MNIST pixels, flattened as in the article
    hidden_sizes: tuple[int, ...] = (32,)  # encoder hidden layers, input side first
    latent_size: int = 2  # 2-D so every code is a point on a plane
    hidden_activation: str = "relu"  # the article's Dense(32, activation='relu')
    latent_activation: str = "relu"  # the article's; 'linear' cannot die (see README)
    output_activation: str = "sigmoid"  # pixels live in [0, 1]
    # None mirrors hidden_sizes (the article's decoder); a tuple sets them, latent side first.
    decoder_hidden_sizes: tuple[int, ...] | None = None
    batch_norm: bool = False  # BatchNorm after each hidden Dense (not in the article)
    image_shape: tuple[int, ...] = (28, 28)  # (H, W): how decoded vectors are shown as images

    def __post_init__(self) -> None:
        _normalise(self)
        _check_sizes("input_size", self.input_size)
        _check_sizes("hidden_sizes", self.hidden_sizes)
        _check_sizes("latent_size", self.latent_size)
        if self.decoder_hidden_sizes is not None:
            _check_sizes("decoder_hidden_sizes", self.decoder_hidden_sizes)
        for name in ("hidden_activation", "latent_activation"):
            _check_choice(name, getattr(self, name), ACTIVATIONS)
        _check_choice("output_activation", self.output_activation, OUTPUT_ACTIVATIONS)
        _check_sizes("image_shape", self.image_shape)
        if len(self.image_shape) != 2:
            raise ConfigError(
                f"image_shape must be two sizes (height, width), got {self.image_shape}: "
                "figures and the explorer show images as H x W",
                field="image_shape",
            )
        pixels = 1
        for n in self.image_shape:
            pixels *= n
        if pixels != self.input_size:
            raise ConfigError(
                f"image_shape {self.image_shape} has {pixels} pixels but input_size is "
                f"{self.input_size}; give an image shape whose product is the input size",
                field="image_shape",
            )
        self._check_parameter_count()

    def _check_parameter_count(self) -> None:
        count = self.parameter_count
        if count <= MAX_PARAMETERS:
            return
        # Name the field with the largest layer: it is the one to shrink.
        widest = {
            "hidden_sizes": max(self.hidden_sizes, default=0),
            "decoder_hidden_sizes": max(self.decoder_hidden_sizes or (0,)),
            "latent_size": self.latent_size,
            "input_size": self.input_size,
        }
        field = max(widest, key=widest.__getitem__)
        raise ConfigError(
            f"{field} {getattr(self, field)} makes a model of {count:,} parameters, more than "
            f"the {MAX_PARAMETERS:,} that fit in memory (8 GB with gradients and Adam's "
            "moments); choose smaller sizes",
            field=field,
        )

    @property
    def parameter_count(self) -> int:
        """The parameters of `deepae.model.AutoencoderNet(self)`: in * out + out for each
        Dense layer of the encoder and the decoder, and BatchNorm's scale and shift."""
        count = 0
        for sizes in (
            (self.input_size, *self.hidden_sizes, self.latent_size),
            (self.latent_size, *self.decoder_sizes, self.input_size),
        ):
            count += sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
            count += 2 * sum(sizes[1:-1]) if self.batch_norm else 0
        return count

    @property
    def decoder_sizes(self) -> tuple[int, ...]:
        """Decoder hidden sizes, latent side first."""
        if self.decoder_hidden_sizes is not None:
            return self.decoder_hidden_sizes
        return tuple(reversed(self.hidden_sizes))


@dataclass(frozen=True)
class TrainConfig:
    """How to fit: the defaults are Keras' `compile(loss='binary_crossentropy',
    optimizer='adam')` + `fit(epochs=10)` as used in the article."""

    loss: str = "bce"  # mean binary cross-entropy over pixels and samples, as Keras'
    optimizer: str = "adam"
    lr: float | None = None  # None: Keras' default for the optimizer (DEFAULT_LR)
    batch_size: int = 32  # Keras' fit default
    epochs: int = 10  # the article's
    seed: int = 0  # drives initialisation and shuffling; same seed on CPU -> same bits
    device: str = "auto"  # 'auto' takes CUDA when available
    adam_betas: tuple[float, float] = (0.9, 0.999)  # Keras' Adam defaults
    eps: float = 1e-7  # Keras' epsilon for Adam/Adagrad/Adadelta/RMSprop (PyTorch: 1e-8)
    weight_decay: float = 0.0
    momentum: float = 0.0  # SGD only; Keras' default
    schedule: str = "constant"  # learning-rate schedule over the whole run
    shuffle: bool = True  # reshuffle every epoch, as Keras' fit does
    engine: str = "auto"  # 'fused' = hand-written backward (fast), 'autograd' = reference
    # 'mixed_bfloat16': products in bfloat16 (~1.5x faster steps where native); 'auto': that
    # where the device runs bfloat16 natively, else 'float32' (deepae.precision)
    precision: str = "float32"
    validate: bool = True  # evaluate the validation set (False: never)
    # Validate every this many epochs, and after the last (Keras' fit argument of the name).
    validation_freq: int = 1
    # Neighbour maps (deepae.neighbours): UMAP's graph loss beside the reconstruction.
    neighbour_weight: float = 0.0  # its weight; 0 trains a plain autoencoder
    neighbours: int = 15  # k of the k-nearest-neighbour graph (UMAP's n_neighbors default)
    min_dist: float = 0.1  # UMAP's default: how tightly linked codes may pack
    negative_rate: int = 5  # in-batch negatives per edge (UMAP's negative_sample_rate)

    def __post_init__(self) -> None:
        _normalise(self)
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("device", self.device, DEVICES)
        _check_choice("engine", self.engine, ENGINES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_sizes("batch_size", self.batch_size)
        _check_sizes("epochs", self.epochs)
        _check_sizes("validation_freq", self.validation_freq)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be a whole number, got {self.seed!r}", field="seed")
        if not 0 <= self.seed < SEED_LIMIT:
            raise ConfigError(
                f"seed must lie in [0, 2**32), got {self.seed}; choose a smaller seed",
                field="seed",
            )
        if self.lr is not None and not (self.lr > 0 and self.lr < float("inf")):
            raise ConfigError(f"lr must be a positive number, got {self.lr}", field="lr")
        for name in ("eps", "weight_decay", "momentum"):
            value = getattr(self, name)
            if not 0 <= value < float("inf"):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}", field=name)
        self._check_neighbour_fields()
        if not all(0 <= b < 1 for b in self.adam_betas) or len(self.adam_betas) != 2:
            raise ConfigError(
                f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}",
                field="adam_betas",
            )

    def _check_neighbour_fields(self) -> None:
        if not 0 <= self.neighbour_weight < float("inf"):
            raise ConfigError(f"neighbour_weight must be a number >= 0, got "
                              f"{self.neighbour_weight!r}", field="neighbour_weight")  # fmt: skip
        _check_sizes("negative_rate", self.negative_rate)
        _check_sizes("neighbours", self.neighbours)
        if self.neighbours < 2:
            raise ConfigError(f"neighbours must be at least 2, got {self.neighbours}",
                              field="neighbours")  # fmt: skip
        if not 0 <= self.min_dist <= 1:  # UMAP: min_dist <= spread, which is 1 here
            raise ConfigError(f"min_dist must lie in [0, 1], got {self.min_dist!r}",
                              field="min_dist")  # fmt: skip

    @property
    def learning_rate(self) -> float:
        """The learning rate in force: `lr`, or Keras' default for the optimizer."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (tuples become lists)."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
    }


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build `cls` from a dict, refusing unknown keys with a clear error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} field(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    try:
        return cls(**data)
    except TypeError as e:  # a wrong type that the checks above did not catch
        raise ConfigError(f"invalid {cls.__name__}: {e}") from None


def replace(config: Any, **changes: Any) -> Any:
    """`dataclasses.replace` that ignores None values (unset command-line options)."""
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})


# What each field holds, checked and stored as such before the values are: JSON, the
# command line, NumPy and scikit-learn's parameter grids hand over lists and NumPy scalars
# (np.int64(3) is a whole number; True is not, nor is "no" a flag).
_WHOLE = {"input_size", "latent_size", "batch_size", "epochs", "seed", "validation_freq",
          "neighbours", "negative_rate"}  # fmt: skip
_REAL = {"lr", "eps", "weight_decay", "momentum", "neighbour_weight", "min_dist"}
_FLAG = {"batch_norm", "shuffle", "validate"}
_WHOLES = {"hidden_sizes", "decoder_hidden_sizes", "image_shape"}  # tuples of whole numbers
_REALS = {"adam_betas"}  # a tuple of numbers
_OPTIONAL = {"lr", "decoder_hidden_sizes"}  # None: Keras' default rate; the mirror


def _normalise(config: Any) -> None:
    """Check every field's kind and store it as Python's own (int, float, bool, tuple),
    so a frozen config is hashable, compares equal to its JSON copy, and its checks can
    compare numbers. Raises ConfigError naming the field."""
    for name in (f.name for f in dataclasses.fields(config)):
        given = getattr(config, name)
        if given is None and name in _OPTIONAL:
            continue
        value = _kind_checked(name, given)
        if not _same(given, value):  # keep the object given where it is one
            object.__setattr__(config, name, value)


def _kind_checked(name: str, value: Any) -> Any:
    if name in _WHOLE or name in _REAL:
        number = _number(value, whole=name in _WHOLE)
        if number is None:
            what = "a whole number" if name in _WHOLE else "a number"
            raise ConfigError(f"{name} must be {what}, got {value!r}", field=name)
        return number
    if name in _FLAG:
        if not (isinstance(value, bool) or str(getattr(value, "dtype", "")) == "bool"):
            raise ConfigError(f"{name} must be True or False, got {value!r}", field=name)
        return bool(value)
    if name in _WHOLES or name in _REALS:
        sequence = hasattr(value, "__iter__") and not isinstance(value, str | bytes | dict)
        items = tuple(_number(v, whole=name in _WHOLES) for v in value) if sequence else ()
        if not sequence or None in items:
            what = "whole numbers" if name in _WHOLES else "numbers"
            raise ConfigError(f"{name} must be a list of {what}, got {value!r}", field=name)
        return items
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a name (a string), got {value!r}", field=name)
    return value


def _same(given: Any, value: Any) -> bool:
    """Whether `given` already is `value`, type for type (scikit-learn's clone checks that a
    parameter comes back as the very object it passed)."""
    if type(given) is not type(value) or given != value:
        return False
    return not isinstance(value, tuple) or all(
        type(a) is type(b) for a, b in zip(given, value, strict=True)
    )


def _number(value: Any, *, whole: bool) -> int | float | None:
    """value as an int (whole) or a float, or None if it is not one (True is not)."""
    if isinstance(value, bool) or not isinstance(
        value, numbers.Integral if whole else numbers.Real
    ):
        return None
    return int(value) if whole else float(value)


def _check_sizes(name: str, values: int | tuple[int, ...]) -> None:
    """A size (int) or sizes (tuple) must be whole numbers >= 1."""
    for v in values if isinstance(values, tuple) else (values,):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            what = "whole numbers" if isinstance(values, tuple) else "(a whole number, 1 or more)"
            raise ConfigError(f"{name} must be positive {what}, got {values!r}", field=name)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}", field=name)


# -- presets: a name for the changes a recipe makes to the default configs, as data -------

DEFAULT_PRESET = "article"

# name -> (ModelConfig changes, TrainConfig changes)
PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "article": ({}, {}),
    # docs/best2d.md: how it was found and what each choice bought.
    "best2d": (
        {
            "hidden_sizes": (256, 256, 128),  # 3 hidden layers: depth near the latent pays
            "latent_activation": "linear",  # cannot die (README: dead latent units)
            # no batch norm: better here, and a plain stack trains on the fused engine
        },
        {
            "lr": 4e-3,  # peak rate of the one-cycle schedule
            "adam_betas": (0.9, 0.99),  # shorter memory of squared gradients: lower BCE
            "schedule": "onecycle",
            "batch_size": 512,  # fewer, larger steps: more epochs fit in 120 s
            "epochs": 90,  # ~100 s of training on 2 CPU cores (docs/best2d.md)
            # bfloat16 products where the CPU has them: 1.5x faster steps, the same MSE
            "precision": "auto",
        },
    ),
    # docs/umap2d.md: a map as well separated as UMAP's, with best2d's decoder.
    "umap2d": (
        {"hidden_sizes": (256, 256, 128), "latent_activation": "linear"},  # best2d's network
        {
            # UMAP's loss 10x the BCE: separation at little MSE cost (20: a little less
            # trustworthy, 5: a little less separated; docs/umap2d.md)
            "neighbour_weight": 10.0,
            "neighbours": 10,  # k: trustworthiness 0.962 vs 0.961 at 15 (with 10 negatives)
            "negative_rate": 10,  # twice UMAP's: trustworthiness 0.961 vs 0.960 (weight 10)
            "lr": 3e-3,  # peak of the one-cycle schedule
            "adam_betas": (0.9, 0.99),
            "schedule": "onecycle",
            "batch_size": 512,  # edges per step (1,024 images through the encoder)
            "epochs": 130,  # 130 x 60,000 sampled edges: each edge ~6 times
            "min_dist": 0.0,  # tighter than UMAP's 0.1: trustworthiness 0.958 vs 0.955 (seed 0)
            "validation_freq": 10,  # val_loss is reported at the end: 13 passes, not 130
            # bfloat16 products where the CPU has them: ~1.5x faster, the same quality
            "precision": "auto",
        },
    ),
}

MODEL_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelConfig))
TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))


def resolve(name: str = DEFAULT_PRESET, **overrides: Any) -> tuple[ModelConfig, TrainConfig]:
    """The configs of preset `name`, with `overrides` (fields of either config) on top.

    Overrides that are None are ignored, so unset command-line options keep the preset's
    values. Raises ConfigError for an unknown preset or field.
    """
    if name not in PRESETS:
        raise ConfigError(
            f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}", field="preset"
        )
    unknown = sorted(set(overrides) - MODEL_FIELDS - TRAIN_FIELDS)
    if unknown:
        raise ConfigError(f"unknown config field(s) {', '.join(unknown)} for preset {name!r}")
    model_changes, train_changes = PRESETS[name]
    model = replace(ModelConfig(), **model_changes)
    train = replace(TrainConfig(), **train_changes)
    model = replace(model, **{k: v for k, v in overrides.items() if k in MODEL_FIELDS})
    train = replace(train, **{k: v for k, v in overrides.items() if k in TRAIN_FIELDS})
    return model, train
