"""Keras' `fit` arguments, checked and turned into what deepae's trainer takes: the
target (an autoencoder's is its input), the validation images (given, or split off x),
and the span of epochs a call trains.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from deepae import batches
from deepae.config import TrainConfig
from deepae.errors import ConfigError, DataError

# images -> float32 (N, D) in [0, 1] (a tensor, or batches.MappedImages for images left in
# their file), with the argument's name for messages
AsInput = Callable[[Any, str], torch.Tensor | batches.MappedImages]


def fit_data(
    as_input: AsInput, x: Any, y: Any, validation_data: Any, validation_split: float | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x_train (N, D), x_val (M, D) or None): `validation_data` (x_val, or Keras' (x_val,
    x_val), a list too) wins over `validation_split`, as in Keras, which takes the last part
    of x."""
    x_train = not_empty(as_input(x, "x"), "x")
    check_target(as_input, x, y, x_train, "y")
    if validation_data is not None:
        given, x_val, y_val = _validation(as_input, validation_data)
        x_val = not_empty(x_val, "validation_data")
        check_target(as_input, given, y_val, x_val, "validation_data")
        return x_train, x_val
    if validation_split is None:  # Keras' fit takes None for no split too (a falsy value)
        return x_train, None
    number = isinstance(validation_split, numbers.Real) and not isinstance(validation_split, bool)
    if not number or not 0 <= validation_split < 1:
        raise ConfigError(f"validation_split must be a number in [0, 1), got "
                          f"{validation_split!r}", field="validation_split")  # fmt: skip
    if not validation_split:
        return x_train, None
    split_at = math.floor(len(x_train) * (1 - validation_split))
    if not 0 < split_at < len(x_train):
        raise ConfigError(
            f"validation_split {validation_split} of {len(x_train)} images leaves no training "
            "or no validation image",
            field="validation_split",
        )
    return x_train[:split_at], x_train[split_at:]


def _validation(as_input: AsInput, data: Any) -> tuple[Any, Any, Any]:
    """Keras' validation_data as (x_val as given, x_val (M, D), its target or None): x_val,
    (x_val,) or (x_val, y_val). A list of one or two that is not itself images is that
    tuple, as Keras 3 reads a list (keras/src/trainers/data_adapters/data_adapter_utils.py,
    unpack_x_y_sample_weight); a list of images stays images."""
    name = "validation_data"
    if isinstance(data, list):
        try:
            return data, as_input(data, name), None
        except ConfigError:  # not images: [x_val, x_val] is an array of arrays of images
            if len(data) not in (1, 2):
                raise
        data = tuple(data)
    if not isinstance(data, tuple):
        return data, as_input(data, name), None
    if len(data) not in (1, 2):
        raise ConfigError(f"validation_data must be x_val, (x_val,) or (x_val, x_val), got a "
                          f"tuple of {len(data)} (sample weights are not supported)",
                          field=name)  # fmt: skip
    return data[0], as_input(data[0], name), data[1] if len(data) == 2 else None


def verbosity(verbose: Any) -> int:
    """Keras' fit `verbose` as a number: "auto" (Keras' default) is 1, as Keras 3's
    ProgbarLogger takes it (keras/src/callbacks/progbar_logger.py, set_params), whether or
    not the output is a terminal; 0, 1 and 2 (or a bool) as they are."""
    if isinstance(verbose, str) and verbose == "auto":
        return 1
    if isinstance(verbose, numbers.Integral) and 0 <= verbose <= 2:
        return int(verbose)
    raise ConfigError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}", field="verbose")


def not_empty(images: Any, name: str) -> Any:
    """images (N, D), refused with a DataError when N is 0: a mean loss over no images has
    no value."""
    if len(images) == 0:
        raise DataError(f"{name} holds no images; give at least one", field=name)
    return images


def check_target(as_input: AsInput, x: Any, y: Any, x_flat: torch.Tensor, name: str) -> None:
    """An autoencoder's target is its input: `y` must be x (the same array, or equal), as
    in Keras' fit(X, X); or labels, one per image, as scikit-learn's fit(X, y) and its
    pipelines pass them, which an autoencoder does not use."""
    if y is None or y is x or _labels(y, len(x_flat), x_flat.shape[1]):
        return
    if not batches.equal(as_input(y, name), x_flat):
        raise ConfigError(
            f"{name}: the target must be the images themselves (an autoencoder learns to "
            "reproduce its input, as in the article's fit(X, X)); leave it out",
            field=name,
        )


def epoch_span(done: int, default: int, epochs: int | None, initial_epoch: int,
               begun: TrainConfig | None = None) -> tuple[int, int]:  # fmt: skip
    """(first epoch, epoch to stop at), 0-based counts of every epoch the model trained,
    for a model that has trained `done` epochs, with `begun` the settings training began
    with (None if it has not). Without `initial_epoch`, `epochs` more (default: `default`,
    the config's); with it, Keras' form: epochs initial_epoch..epochs-1, and initial_epoch
    must be `done` (or the model untrained)."""
    n = default if epochs is None else epochs
    for name, value in (("epochs", n), ("initial_epoch", initial_epoch)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}", field=name)
    n, initial_epoch = int(n), int(initial_epoch)
    if initial_epoch == 0:
        first, target = done, done + n
    elif done and initial_epoch != done:
        raise ConfigError(
            f"initial_epoch {initial_epoch} is not the {done} epochs this model has trained; "
            "leave it out to continue",
            field="initial_epoch",
        )
    else:
        first, target = initial_epoch, max(initial_epoch, n)
    # A schedule's shape is fixed by the total when training began (deepae.train), as a
    # resumed run's is (deepae.run.resume refuses the same).
    scheduled = begun is not None and begun.schedule != "constant"
    if done and scheduled and first < target != begun.epochs:
        raise ConfigError(
            f"the {begun.schedule} schedule is shaped by the total epochs ({begun.epochs}), "
            "fixed when training began; a further fit cannot extend it: build a new "
            "Autoencoder, or use schedule 'constant'",
            field="epochs",
        )
    return first, target


def _labels(y: Any, n: int, width: int) -> bool:
    """Whether y is labels (or another step's targets), one row per image: a flat sequence
    of n numbers or names, or n rows of k values with k not an image's `width` (a column
    of labels (n, 1), as scikit-learn's pipelines pass y, or (n, k) multi-output targets).
    Not images of width values each, nor one flat image: those must be x itself."""
    if isinstance(y, str | bytes):
        return False
    shape = getattr(y, "shape", None)
    if shape is None:
        try:
            shape = np.shape(y)  # nested lists: rows of images are not labels
        except (ValueError, TypeError):  # ragged rows: not labels; refused as images
            return False
    shape = tuple(shape)
    flat = shape == (n,) and not (n == width == 1)
    return flat or (len(shape) == 2 and shape[0] == n and shape[1] != width)
