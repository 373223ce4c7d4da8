"""`Autoencoder`: the Python face of deepae. NumPy in, NumPy out; the model speaks in
verbs (`fit`, `encode`, `decode`, `reconstruct`) that the plots, the explorer and the
command line all use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepae import config as cfg
from deepae import model, storage, train
from deepae.data import flatten_images
from deepae.errors import ConfigError

_MODEL_FIELDS = {f for f in cfg.ModelConfig.__dataclass_fields__}
_TRAIN_FIELDS = {f for f in cfg.TrainConfig.__dataclass_fields__}


class Autoencoder:
    """A dense autoencoder; `Autoencoder()` is the article's 784-32-2-32-784 model.

    Keyword arguments set fields of `ModelConfig` (architecture) or `TrainConfig`
    (optimizer, epochs, seed, ...), e.g. `Autoencoder(latent_activation="linear", seed=3)`.
    """

    def __init__(
        self,
        model_config: cfg.ModelConfig | None = None,
        train_config: cfg.TrainConfig | None = None,
        **options: Any,
    ):
        unknown = sorted(set(options) - _MODEL_FIELDS - _TRAIN_FIELDS)
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)}")
        model_opts = {k: v for k, v in options.items() if k in _MODEL_FIELDS}
        train_opts = {k: v for k, v in options.items() if k in _TRAIN_FIELDS}
        self.model_config = cfg.replace(model_config or cfg.ModelConfig(), **model_opts)
        self.train_config = cfg.replace(train_config or cfg.TrainConfig(), **train_opts)
        self.net = model.build(self.model_config, seed=self.train_config.seed)
        self.history: list[train.EpochRecord] = []
        self.train_state = train.TrainState()
        self.trainer: train.Trainer | None = None
        self._graph_key: tuple[str, int] | None = None  # the neighbour graph of the last fit
        self._graph_cache = None

    # -- training -----------------------------------------------------------------------

    def fit(
        self,
        x: np.ndarray,
        validation_data: np.ndarray | None = None,
        *,
        verbose: int = 1,
        progress: bool | None = None,
        on_epoch_end: Callable[[train.EpochRecord, train.TrainState], None] | None = None,
        stop: Callable[[], bool] | None = None,
        **train_options: Any,
    ) -> list[train.EpochRecord]:
        """Train on images x: uint8 (N, H, W) or float (N, D) in [0, 1]. Labels are never
        needed. `verbose=1` prints Keras' epoch lines and shows a progress bar (`progress`
        overrides the bar alone); `train_options`
        override `TrainConfig` fields for this model (epochs=, batch_size=, lr=, ...).
        Calling fit again continues training (up to the new `epochs`); `stop()` is polled
        before each step to end early (`self.train_state.interrupted` then says so).
        Returns the history, one record per epoch."""
        unknown = sorted(set(train_options) - _TRAIN_FIELDS)
        if unknown:
            raise ConfigError(f"unknown training option(s) {', '.join(unknown)}")
        self.train_config = cfg.replace(self.train_config, **train_options)
        x_train = self._as_input(x, "x")
        x_val = None
        if validation_data is not None:
            x_val = self._as_input(validation_data, "validation_data")
        trainer = self.trainer_for(x_train, log=print if verbose else None)

        def report(record: train.EpochRecord, state: train.TrainState) -> None:
            if verbose:
                print(train.format_epoch(record, self.train_config.epochs), flush=True)
            if on_epoch_end is not None:
                on_epoch_end(record, state)

        self.train_state = train.fit(
            trainer, x_train, x_val, state=self.train_state, on_epoch_end=report,
            progress=verbose > 0 if progress is None else progress, stop=stop,
        )  # fmt: skip
        self.history = self.train_state.history
        return self.history

    def trainer_for(self, x: Any, *, log: Callable[[str], None] | None = None) -> train.Trainer:
        """The trainer (optimizer state included) for training images x; built on first use
        and rebuilt, keeping the optimizer state, when the training config or the number of
        images changed. With a neighbour loss it gets the images' graph (built or taken from
        the cache, deepae.neighbours; `log` hears about it)."""
        x_train = x if isinstance(x, torch.Tensor) else self._as_input(x, "x")
        n_train = len(x_train)
        trainer = self.trainer
        if trainer is None or trainer.cfg != self.train_config or trainer.n_train != n_train:
            graph = self._graph(x_train, log) if self.train_config.neighbour_weight else None
            self.trainer = train.Trainer(self.net, self.train_config, n_train, graph=graph)
            if trainer is not None and self.train_state.epoch:
                self.trainer.load_state_dict(trainer.state_dict())
        return self.trainer

    def _graph(self, x_train: torch.Tensor, log):
        from deepae import neighbours

        flat = x_train.cpu().numpy()  # (N, D) float32 in [0, 1]
        key = hashlib.sha256(memoryview(np.ascontiguousarray(flat)).cast("B")).hexdigest()
        k = self.train_config.neighbours
        if self._graph_key != (key, k):
            self._graph_cache = neighbours.graph_for(flat, k, key, log=log)
            self._graph_key = (key, k)
        return self._graph_cache

    # -- the verbs ----------------------------------------------------------------------

    def encode(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Images (N, H, W) uint8 or (N, D) float -> codes (N, latent) float32."""
        return self._run(self.net.encoder, self._as_input(x, "x"), batch_size)

    def decode(self, z: np.ndarray | list, batch_size: int = 8192) -> np.ndarray:
        """Codes (N, latent), e.g. [[0.0, 5.0]] -> images (N, H, W) float32 in [0, 1]."""
        z_arr = np.asarray(z, dtype=np.float32)
        latent = self.model_config.latent_size
        if z_arr.ndim == 1 and z_arr.shape[0] == latent:
            z_arr = z_arr[None]
        if z_arr.ndim != 2 or z_arr.shape[1] != latent or not np.isfinite(z_arr).all():
            raise ConfigError(
                f"codes must be finite numbers of shape (N, {latent}), got shape {z_arr.shape}"
            )
        out = self._run(self.net.decoder, torch.from_numpy(z_arr), batch_size)
        return out.reshape(len(out), *self.model_config.image_shape)

    def reconstruct(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Images -> their reconstructions (N, H, W) float32 in [0, 1]."""
        out = self._run(self.net, self._as_input(x, "x"), batch_size)
        return out.reshape(len(out), *self.model_config.image_shape)

    def summary(self, print_fn: Callable[[str], None] | None = print) -> str:
        """The Keras-style summary table; printed (as Keras does) and returned."""
        text = model.summary(self.net)
        if print_fn is not None:
            print_fn(text)
        return text

    # -- persistence --------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write config.json and model.safetensors into `folder`; returns the folder."""
        storage.save_model(folder, self.net, self.train_config)
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path) -> Autoencoder:
        """A model saved by `save` (or by `deepae train`)."""
        net, train_config = storage.load_model(folder)
        ae = cls(net.config, train_config)
        ae.net = net
        return ae

    # -- helpers ------------------------------------------------------------------------

    def _as_input(self, x: Any, name: str) -> torch.Tensor:
        flat = flatten_images(np.asarray(x))  # (N, D) float32 in [0, 1]
        if flat.shape[1] != self.model_config.input_size:
            raise ConfigError(
                f"{name} has {flat.shape[1]} values per image but the model takes "
                f"{self.model_config.input_size}; build it with input_size={flat.shape[1]}"
            )
        return torch.from_numpy(flat)

    @torch.no_grad()
    def _run(self, module: torch.nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
        self.net.eval()
        device = next(self.net.parameters()).device
        parts = [
            module(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)
        ]
        if not parts:
            return np.zeros((0, module(x[:0].to(device)).shape[1]), np.float32)
        return torch.cat(parts).numpy()
