"""scikit-learn's verbs for deepae's models: `ScikitLearnVerbs`, the part of
`deepae.Autoencoder` that makes it the transformer it is to pipelines, `clone`, grid
searches and `check_is_fitted` (`fit_transform`, `transform`, `inverse_transform`,
`get_params`, `set_params`, `set_output`, `n_features_in_`, `get_feature_names_out`).
scikit-learn is optional: it is imported only when asked for.

The host class (Autoencoder) provides `fit`, `encode`, `decode`, `_untrained` and the
attributes `model_config`, `train_config`, `train_state`, `_loaded`, `_sample_shape`.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from deepae import config as cfg
from deepae.errors import ConfigError, MissingExtraError

MODEL_FIELDS = {f for f in cfg.ModelConfig.__dataclass_fields__}
TRAIN_FIELDS = {f for f in cfg.TrainConfig.__dataclass_fields__}
OUTPUTS = ("default", "pandas", "polars")  # scikit-learn's set_output(transform=...)


class ScikitLearnVerbs:
    """scikit-learn's estimator and transformer protocol over a model's configs and verbs."""

    def fit_transform(self, x: np.ndarray, y: np.ndarray | None = None, **fit_options):
        """scikit-learn's fit_transform: `fit(x, y, **fit_options)` (y: labels, not used, as
        a pipeline passes them; or x itself), then the codes of x: an array (N, latent), or
        the DataFrame `set_output` asks for."""
        self.fit(x, y, **fit_options)
        return self._as_output(self.encode(x), x)

    def __sklearn_tags__(self):
        from sklearn.base import BaseEstimator, TransformerMixin

        class Transformer(TransformerMixin, BaseEstimator):
            pass

        return Transformer().__sklearn_tags__()

    def __sklearn_is_fitted__(self) -> bool:
        return self.train_state.epoch > 0 or self._loaded

    def transform(self, x: np.ndarray) -> np.ndarray:
        """scikit-learn's transform: `encode` (images -> codes (N, latent)) of a fitted (or
        loaded) model; before that scikit-learn's NotFittedError."""
        self._check_fitted("transform")
        return self._as_output(self.encode(x), x)

    def set_output(self, *, transform: str | None = None) -> ScikitLearnVerbs:
        """scikit-learn's set_output: `transform="pandas"` (or "polars") makes transform and
        fit_transform return a DataFrame whose columns are `get_feature_names_out()`, with
        the input's index when it was a pandas DataFrame; "default": arrays, unless
        scikit-learn's `set_config(transform_output=...)` says otherwise; None: unchanged.
        inverse_transform and deepae's own verbs return arrays, as in scikit-learn. This is
        what lets `Pipeline.set_output` pass through the model. Returns self."""
        if transform is None:
            return self
        if transform not in OUTPUTS:
            raise ConfigError(f"transform must be one of {', '.join(OUTPUTS)} or None, got "
                              f"{transform!r}", field="transform")  # fmt: skip
        # scikit-learn's own attribute name: its clone copies it to the clone.
        self._sklearn_output_config = {"transform": transform}
        return self

    def _as_output(self, codes: np.ndarray, x: Any):
        """codes (N, latent) in the container set_output (or scikit-learn's global
        transform_output, if scikit-learn is loaded at all) asks for."""
        kind = getattr(self, "_sklearn_output_config", {}).get("transform", "default")
        if kind == "default" and "sklearn" in sys.modules:
            kind = sys.modules["sklearn"].get_config().get("transform_output", "default")
        if kind == "default":
            return codes
        try:
            frames = importlib.import_module(kind)
        except ImportError:
            raise MissingExtraError(f"set_output(transform={kind!r}) needs {kind}; install it "
                                    f"with: pip install {kind}") from None  # fmt: skip
        columns = self.get_feature_names_out().tolist()
        if kind == "polars":
            return frames.DataFrame(codes, schema=columns, orient="row")
        index = x.index if isinstance(x, frames.DataFrame) else None
        return frames.DataFrame(codes, columns=columns, index=index)

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        """scikit-learn's inverse_transform: `decode` of a fitted (or loaded) model, codes
        (N, latent) -> images shaped as the fit's x held them: (N, H, W), or (N, D) after a
        fit on flat vectors, as scikit-learn's transformers (and umap-learn's UMAP) give back
        their input's shape; (N, H, W) for a loaded model. Before a fit, scikit-learn's
        NotFittedError."""
        self._check_fitted("inverse_transform")
        images = self.decode(z)  # (N, H, W)
        return images.reshape(len(images), *(self._sample_shape or self.model_config.image_shape))

    @property
    def n_features_in_(self) -> int:
        """scikit-learn's: the values per image the fitted (or loaded) model takes (D, 784
        for MNIST); before a fit there is none (an AttributeError), as in scikit-learn."""
        if not self.__sklearn_is_fitted__():
            raise AttributeError(f"this {type(self).__name__} is not fitted yet: no "
                                 "n_features_in_ before fit")  # fmt: skip
        return self.model_config.input_size

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        """scikit-learn's names of the codes' columns, as its ClassNamePrefixFeaturesOutMixin
        makes them (PCA's, umap-learn's UMAP's): the class name in lower case and the column,
        `autoencoder0`, `autoencoder1`. `input_features`, if given, must have one name per
        input value (n_features_in_)."""
        self._check_fitted("get_feature_names_out")
        if input_features is not None and len(input_features) != self.n_features_in_:
            raise ConfigError(f"input_features should have length equal to number of features "
                              f"({self.n_features_in_}), got {len(input_features)}",
                              field="input_features")  # fmt: skip
        prefix = type(self).__name__.lower()
        columns = range(self.model_config.latent_size)
        return np.asarray([f"{prefix}{i}" for i in columns], dtype=object)

    def _check_fitted(self, verb: str) -> None:
        # scikit-learn's transformers refuse to transform before fit (check_is_fitted; its
        # estimator check check_transformers_unfitted), and so does umap-learn's UMAP: the
        # codes of an untrained network mean nothing. Keras' verbs (encode, predict) do not.
        if self.__sklearn_is_fitted__():
            return
        message = (
            f"this {type(self).__name__} is not fitted yet: call fit (or load a saved model) "
            f"before {verb}; encode and decode take an untrained network"
        )
        try:
            from sklearn.exceptions import NotFittedError  # a ValueError and AttributeError
        except ImportError:  # scikit-learn is optional
            raise ConfigError(message) from None
        raise NotFittedError(message)

    def __repr__(self) -> str:
        """The settings that differ from the class's defaults, as scikit-learn shows them:
        `Autoencoder(epochs=3, latent_activation='linear')`."""
        defaults = self._default_params()
        changed = {k: v for k, v in self.get_params().items() if defaults.get(k, self) != v}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    @classmethod
    def _default_params(cls) -> dict[str, Any]:
        # `cls().get_params()` without building a network.
        return {**fields_of(cfg.ModelConfig()), **fields_of(cfg.TrainConfig())}

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Every ModelConfig and TrainConfig field as a dict: `Autoencoder(**params)` builds
        the same (untrained) model, as scikit-learn's clone does."""
        return {**fields_of(self.model_config), **fields_of(self.train_config)}

    def set_params(self, **params: Any) -> ScikitLearnVerbs:
        """Change config fields, None included (`lr=None`: Keras' default rate), as
        scikit-learn's grid searches do. A changed architecture (or seed) builds a new,
        untrained network; training fields apply from the next fit, which goes on from the
        optimizer's state (a schedule's settings cannot change mid-run; another optimizer
        starts afresh: deepae.train.Trainer.continue_from). Returns self."""
        check_options(params)
        model_config = dataclasses.replace(self.model_config, **pick(params, MODEL_FIELDS))
        train_config = dataclasses.replace(self.train_config, **pick(params, TRAIN_FIELDS))
        rebuild = model_config != self.model_config or train_config.seed != self.train_config.seed
        self.model_config, self.train_config = model_config, train_config
        if rebuild:
            self._untrained()
        return self


def check_options(options: dict[str, Any]) -> None:
    """ConfigError naming the first option that is no ModelConfig or TrainConfig field."""
    unknown = sorted(set(options) - MODEL_FIELDS - TRAIN_FIELDS)
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}", field=unknown[0])


def pick(options: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in fields}


def fields_of(config: Any) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
