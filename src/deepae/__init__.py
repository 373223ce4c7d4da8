"""deepae: train, understand and use dense autoencoders on image data.

    from deepae import Autoencoder, load_mnist
    (x_train, y_train), (x_test, y_test) = load_mnist()
    ae = Autoencoder()                      # the article's 784-32-2-32-784 model
    ae.fit(x_train, validation_data=x_test)
    z = ae.encode(x_train)                  # (60000, 2)

Names are imported lazily (PEP 562) so that `import deepae` and the command line start
fast: PyTorch loads only when a model is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from deepae._version import __version__

# public name -> module that defines it
_EXPORTS = {
    "Autoencoder": "deepae.api",
    "UMAP": "deepae.compat",
    "History": "deepae.callbacks",
    "Callback": "deepae.callbacks",
    "EarlyStopping": "deepae.callbacks",
    "CSVLogger": "deepae.callbacks",
    "ModelConfig": "deepae.config",
    "TrainConfig": "deepae.config",
    "load_mnist": "deepae.data",
    "load_dataset": "deepae.data",
    "TrainingDiverged": "deepae.errors",
    "MissingExtraError": "deepae.errors",
    "DeepAEError": "deepae.errors",
    "DataError": "deepae.errors",
    "RunError": "deepae.errors",
    "ConfigError": "deepae.errors",
}

__all__ = [
    "Autoencoder",
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "History",
    "ConfigError",
    "DataError",
    "DeepAEError",
    "MissingExtraError",
    "ModelConfig",
    "RunError",
    "TrainConfig",
    "TrainingDiverged",
    "UMAP",
    "__version__",
    "load_dataset",
    "load_mnist",
]

if TYPE_CHECKING:
    from deepae.api import Autoencoder
    from deepae.callbacks import Callback, CSVLogger, EarlyStopping, History
    from deepae.compat import UMAP
    from deepae.config import ModelConfig, TrainConfig
    from deepae.data import load_dataset, load_mnist
    from deepae.errors import (
        ConfigError,
        DataError,
        DeepAEError,
        MissingExtraError,
        RunError,
        TrainingDiverged,
    )  # fmt: skip


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'deepae' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The lazy names too, so that tab completion finds them (PEP 562).
    return sorted({*globals(), *_EXPORTS})
