"""`Autoencoder`: the Python face of deepae. NumPy in, NumPy out; the model speaks in
verbs (`fit`, `encode`, `decode`, `reconstruct`) that the plots, the explorer and the
command line all use, under Keras' names too (`fit` as Keras', `predict`, `evaluate`,
`compile`, `encoder.predict`) and scikit-learn's (`fit_transform`, `transform`,
`inverse_transform`, `get_params`, `set_params`: deepae.estimator).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepae import batches, distributed, fit_args, latent, model, plots, storage, train
from deepae import config as cfg
from deepae import threads as thread_policy
from deepae.callbacks import CallbackList, History, epoch_logs
from deepae.errors import ConfigError
from deepae.estimator import (
    MODEL_FIELDS,
    TRAIN_FIELDS,
    ScikitLearnVerbs,
    check_options,
    pick,
)


class Autoencoder(ScikitLearnVerbs):
    """A dense autoencoder; `Autoencoder()` is the article's 784-32-2-32-784 model.

    Keyword arguments set fields of `ModelConfig` (architecture) or `TrainConfig`
    (optimizer, epochs, seed, ...), e.g. `Autoencoder(latent_activation="linear", seed=3)`;
    `preset` starts from a named config (deepae.config.PRESETS, e.g. "best2d") that they
    override.
    """

    def __init__(
        self,
        model_config: cfg.ModelConfig | None = None,
        train_config: cfg.TrainConfig | None = None,
        *,
        preset: str | None = None,
        **options: Any,
    ):
        check_options(options)
        if preset is not None:
            if model_config is not None or train_config is not None:
                raise ConfigError("give a preset or configs, not both", field="preset")
            model_config, train_config = cfg.resolve(preset)
        model_opts = pick(options, MODEL_FIELDS)
        train_opts = pick(options, TRAIN_FIELDS)
        self.model_config = cfg.replace(model_config or cfg.ModelConfig(), **model_opts)
        self.train_config = cfg.replace(train_config or cfg.TrainConfig(), **train_opts)
        self.net = model.build(self.model_config, seed=self.train_config.seed)
        self.history: History | None = None  # the last fit's, as Keras' model.history
        self.stop_training = False  # a callback sets it to end fit after an epoch
        self._fit_images: Any = None  # the last fit's x: plot_manifold's default range
        self._sample_shape: tuple[int, ...] | None = None  # one image of it: inverse_transform's
        self.train_state = train.TrainState()  # every epoch trained: train_state.history
        self.trainer: train.Trainer | None = None
        self.threads: int | None = None  # the CPU threads of the last fit (deepae.threads)
        self._graph_key: tuple[str, int] | None = None  # the neighbour graph of the last fit
        self._graph_cache = None
        # Where neighbour graphs are cached (deepae.neighbours); None: beside the data cache.
        self.graph_cache_dir: str | Path | None = None
        self._loaded = False  # weights read from a saved model: fitted, for scikit-learn

    # -- training -----------------------------------------------------------------------

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray | None = None,
        *,
        epochs: int | None = None,
        batch_size: int | None = None,
        validation_data: Any = None,
        validation_split: float = 0.0,
        shuffle: bool | None = None,
        verbose: int | str = "auto",
        callbacks: Sequence[Any] | None = None,
        initial_epoch: int = 0,
        validation_freq: int | None = None,
        progress: bool | None = None,
        on_epoch_end: Callable[[train.EpochRecord, train.TrainState], None] | None = None,
        stop: Callable[[], bool] | None = None,
        threads: int | str | None = None,
    ) -> History:
        """Train on images x, as Keras' `fit`: uint8 (N, H, W) or float (N, D) in [0, 1].

        `y`, if given, must be x itself (an autoencoder's target is its input: the
        article's `fit(X, X, ...)`), or labels, one per image, which are not used (as
        scikit-learn's pipelines pass them to every step). Each call trains `epochs` more
        epochs (default: the config's), continuing weights, optimizer state and the epoch
        count, so two fits of 2 epochs train 4; Keras' own way to continue,
        `initial_epoch=k`, trains epochs k..epochs-1 and k must be the epochs already
        trained. `epochs`, `batch_size`,
        `shuffle` and `validation_freq` hold for this call only (None: the config's); the
        config (`get_params`) is left as it was. Validation: `validation_data`
        (x_val, or Keras' (x_val, x_val)), else the last `validation_split` of x, as Keras
        takes it, every `validation_freq` epochs (default: the config's, 1 but for umap2d)
        and after the last. `verbose` 1 (or Keras' default "auto"): Keras' epoch lines and
        one progress bar over the whole training (`progress` overrides the bar alone); 2:
        the lines only; 0: silence.
        `callbacks`: deepae.callbacks (EarlyStopping, CSVLogger, or any object with their
        hooks). For the run pipeline: `on_epoch_end(record, state)` after each epoch, and
        `stop()`, polled before each step (`train_state.interrupted` then says so).
        `threads`: PyTorch's CPU threads while training (torch.set_num_threads, the caller's
        count restored after; `self.threads` keeps it): default DEEPAE_THREADS, else 1 for
        small steps and the usable cores for big ones (deepae.threads).
        Returns a `History` of this call's epochs (also kept as `self.history`)."""
        level = fit_args.verbosity(verbose)  # "auto" -> 1; History.params keeps what was given
        x_train, x_val = fit_args.fit_data(self._as_source, x, y, validation_data,
                                           validation_split)  # fmt: skip
        n_threads = thread_policy.for_training(  # a bad count is refused before training
            self.model_config, batch_size or self.train_config.batch_size, threads)  # fmt: skip
        done = self.train_state.epoch
        begun = self.trainer.cfg if self.trainer is not None and done else None
        first, target = fit_args.epoch_span(done, self.train_config.epochs, epochs,
                                            initial_epoch, begun)  # fmt: skip
        history = History(self, {"verbose": verbose, "epochs": target, "initial_epoch": first})
        if target <= first:  # Keras trains nothing when initial_epoch >= epochs
            self._fitted_on(history, x, n_threads)
            return history
        # This call's settings; `epochs` is the total trained, which shapes a schedule.
        run_config = cfg.replace(self.train_config, epochs=target, batch_size=batch_size,
                                 shuffle=shuffle, validation_freq=validation_freq)  # fmt: skip
        show_bar = level == 1 if progress is None else progress
        trainer = self.trainer_for(x_train, config=run_config, log=print if level else None,
                                   progress=show_bar)  # fmt: skip
        history.params.update(steps=trainer.steps_per_epoch,
                              validation_freq=run_config.validation_freq,
                              do_validation=x_val is not None and run_config.validate)  # fmt: skip
        hooks = CallbackList(callbacks, self, history.params)
        self.stop_training = False  # callbacks set it to end training after an epoch

        def report(record: train.EpochRecord, state: train.TrainState) -> None:
            logs = history.add(record)
            if level:
                print(train.format_epoch(record, target), flush=True)
            if on_epoch_end is not None:
                on_epoch_end(record, state)
            hooks.call("on_epoch_end", record.epoch - 1, logs)

        hooks.call("on_train_begin", {})  # may refuse (EarlyStopping without its metric)
        # A fit refused above leaves the model's weights, epoch count, history and images as
        # they were; from here on it trains. A fresh model given initial_epoch starts there.
        self._fitted_on(history, x, n_threads)
        self.train_state.epoch = first
        stop = trainer.world.agreed_stop(stop)  # data-parallel ranks stop after the same step
        with thread_policy.using(n_threads):
            self.train_state = train.fit(
                trainer, x_train, x_val, state=self.train_state, on_epoch_end=report,
                progress=show_bar,
                stop=lambda: self.stop_training or (stop is not None and stop()),
            )  # fmt: skip
        if self.stop_training and self.train_state.step == 0:  # stopped between epochs
            self.train_state.interrupted, self.train_state.partial_losses = False, None
        hooks.call("on_train_end", epoch_logs(history.records[-1]) if history.records else {})
        return history

    def _fitted_on(self, history: History, x: Any, n_threads: int) -> None:
        # What a fit keeps of its call: its History, the images (plot_manifold's range), the
        # shape they came in (inverse_transform's, as scikit-learn's) and its threads.
        self.history, self._fit_images, self.threads = history, x, n_threads
        self._sample_shape = _sample_shape(self.model_config, np.shape(x))

    def trainer_for(
        self, x: Any, *, config: cfg.TrainConfig | None = None,
        log: Callable[[str], None] | None = None, progress: bool = False,
        graph_sha256: str | None = None,
    ) -> train.Trainer:  # fmt: skip
        """The trainer (optimizer state included) for training images x under `config`
        (default: the model's); built on first use and rebuilt when the settings or the
        number of images changed, going on from the old one's optimizer state
        (`train.Trainer.continue_from`). With a neighbour loss it gets the images' graph
        (built or taken from the cache, deepae.neighbours; `log` hears about it, `progress`
        shows a bar); `graph_sha256`: the graph a resumed run began on, found by its hash
        among the graph versions (neighbours.graph_for)."""
        config = config or self.train_config
        given = isinstance(x, torch.Tensor | batches.MappedImages)
        x_train = x if given else self._as_source(x, "x")
        n_train = len(x_train)
        trainer = self.trainer
        graph = None
        if config.neighbour_weight:
            graph = self._graph(x_train, config, log, progress, graph_sha256)
        # Other images of the same count need their own graph: a trainer holding the old
        # one would draw edges between images that are no neighbours.
        stale = graph is not None and (trainer is None or trainer.neighbour is None
                                       or trainer.neighbour.graph is not graph)  # fmt: skip
        if trainer is None or trainer.cfg != config or trainer.n_train != n_train or stale:
            new = train.Trainer(self.net, config, n_train, graph=graph)
            if trainer is not None and self.train_state.epoch:
                new.continue_from(trainer)
            self.trainer = new
        return self.trainer

    def _graph(self, x_train: torch.Tensor, config: cfg.TrainConfig, log, progress: bool,
               sha256: str | None):  # fmt: skip
        from deepae import neighbours

        flat = batches.as_array(x_train)  # (N, D) float32 in [0, 1]: the graph needs all
        key = neighbours.images_key(flat)
        k = config.neighbours
        # The graph it has for these images stays, unless a resume names another (sha256).
        have = self._graph_cache if self._graph_key == (key, k) else None
        if have is None or sha256 not in (None, have.sha256):
            options = {"log": log, "progress": progress, "cache_dir": self.graph_cache_dir,
                       "sha256": sha256}  # fmt: skip
            build = functools.partial(neighbours.graph_for, flat, k, key, **options)
            # Data-parallel: rank 0 builds it (or reads its cache) and sends it to the others.
            self._graph_cache = neighbours.shared_graph(build, distributed.world())
            self._graph_key = (key, k)
        return self._graph_cache

    # -- the verbs ----------------------------------------------------------------------

    def encode(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Images (N, H, W) uint8 or (N, D) float -> codes (N, latent) float32; one image,
        (H, W) or (D,), gives (1, latent)."""
        return self._run(self.net.encoder, self._as_source(x, "x"), batch_size)

    def decode(self, z: np.ndarray | list, batch_size: int = 8192) -> np.ndarray:
        """Codes (N, latent), e.g. [[0.0, 5.0]] -> images (N, H, W) float32 in [0, 1]."""
        try:
            z_arr = np.asarray(z, dtype=np.float32)
        except (ValueError, TypeError) as e:  # ragged, or not numbers
            raise ConfigError(f"codes must be numbers of shape (N, {self.model_config.latent_size})"
                              f" ({e})", field="z") from None  # fmt: skip
        latent = self.model_config.latent_size
        if z_arr.ndim == 1 and z_arr.shape[0] == latent:
            z_arr = z_arr[None]
        if z_arr.ndim != 2 or z_arr.shape[1] != latent or not np.isfinite(z_arr).all():
            raise ConfigError(
                f"codes must be finite numbers of shape (N, {latent}), got shape {z_arr.shape}",
                field="z",
            )
        # A copy (codes are small): z may be read-only (a DataFrame's values), which
        # torch.from_numpy warns about.
        out = self._run(self.net.decoder, torch.tensor(z_arr), batch_size)
        return out.reshape(len(out), *self.model_config.image_shape)

    def reconstruct(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Images -> their reconstructions (N, H, W) float32 in [0, 1]."""
        out = self._run(self.net, self._as_source(x, "x"), batch_size)
        return out.reshape(len(out), *self.model_config.image_shape)

    # Keras' and scikit-learn's names for the same verbs.

    def predict(self, x: np.ndarray, batch_size: int | None = None,
                verbose: int | str = "auto") -> np.ndarray:  # fmt: skip
        """Keras' predict: the reconstructions of x, float32 shaped like x ((N, 784) in,
        (N, 784) out; (N, 28, 28) in, (N, 28, 28) out). Keras' `batch_size=None` and
        `verbose` are taken (verbose checked as fit's; no progress bar is shown)."""
        fit_args.verbosity(verbose)
        return self.reconstruct(x, _batch(batch_size)).reshape(np.shape(x))

    def evaluate(self, x: np.ndarray, y: np.ndarray | None = None,
                 batch_size: int | None = None, verbose: int | str = "auto") -> float:  # fmt: skip
        """Keras' evaluate: the mean loss (the config's, BCE by default) of reconstructing
        x, per pixel and image; `y`, if given, must be x itself. `batch_size` and `verbose`
        as predict's."""
        fit_args.verbosity(verbose)
        batch_size = _batch(batch_size)
        flat = fit_args.not_empty(self._as_source(x, "x"), "x")  # (N, D)
        fit_args.check_target(self._as_source, x, y, flat, "y")
        loss_fn = train.loss_function(self.train_config.loss, self.model_config)
        self.net.eval()
        device = next(self.net.parameters()).device
        total = 0.0
        with torch.no_grad():
            for chunk in batches.chunks(flat, batch_size):
                xb = chunk.to(device)
                total += loss_fn(self.net.logits(xb), xb).double().item() * xb.numel()
        return total / flat.numel()

    def _untrained(self) -> None:
        """A new network from the configs, and no training behind it."""
        self.net = model.build(self.model_config, seed=self.train_config.seed)
        self.train_state, self.trainer, self.history = train.TrainState(), None, None
        self._sample_shape = None
        self._loaded = False  # no longer the saved weights: not fitted, for scikit-learn

    def compile(self, optimizer: str = "adam", loss: str = "binary_crossentropy") -> None:
        """Keras' compile, for the article's code: sets `optimizer` and `loss` (Keras' names
        'binary_crossentropy' and 'mean_squared_error' / 'mse')."""
        names = {"binary_crossentropy": "bce", "mean_squared_error": "mse", "mse": "mse",
                 "bce": "bce"}  # fmt: skip
        if loss not in names:
            raise ConfigError(f"loss must be one of {', '.join(names)}; got {loss!r}", field="loss")
        self.set_params(optimizer=optimizer, loss=names[loss])

    @property
    def encoder(self) -> _Half:
        """The encoder as a Keras model: `ae.encoder.predict(x)` = `ae.encode(x)`."""
        return _Half(self.encode)  # (N, latent)

    @property
    def decoder(self) -> _Half:
        """The decoder as a Keras model: `ae.decoder.predict(z)` gives flat images (N, D),
        as the article's Keras decoder does."""
        return _Half(lambda z, batch_size: self.decode(z, batch_size).reshape(
            len(np.atleast_2d(z)), -1))  # fmt: skip

    def get_weights(self) -> list[np.ndarray]:
        """Copies of every weight and buffer, in `state_dict` order (Keras' get_weights)."""
        return [t.detach().cpu().numpy().copy() for t in self.net.state_dict().values()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Load what `get_weights` returned, in place (the trainer keeps its optimizer)."""
        tensors = list(self.net.state_dict().values())
        if len(weights) != len(tensors) or any(
            np.shape(w) != tuple(t.shape) for w, t in zip(weights, tensors, strict=False)
        ):
            raise ConfigError("weights do not match this model's layers; give what get_weights"
                              " of the same architecture returned", field="weights")  # fmt: skip
        if not all(np.isfinite(np.asarray(w, dtype=np.float64)).all() for w in weights):
            raise ConfigError("weights hold NaN or infinite values", field="weights")
        with torch.no_grad():
            for t, w in zip(tensors, weights, strict=True):
                t.copy_(torch.as_tensor(np.asarray(w)))  # in place: fused views stay views

    def summary(self, print_fn: Callable[[str], None] | None = print) -> str | None:
        """The Keras-style summary table, given to `print_fn` (print) and, as in Keras,
        nothing returned: a notebook shows the table once. `print_fn=None` returns the
        text instead."""
        text = model.summary(self.net)
        if print_fn is None:
            return text
        print_fn(text)
        return None

    # -- pictures (deepae.plots; pyplot figures: a notebook shows them) ------------------

    def plot_latent(self, x: np.ndarray, y: np.ndarray | None = None, *, class_names=None,
                    ax=None, title: str | None = None):  # fmt: skip
        """The article's scatter: the codes of images x coloured by labels y (N,) or None,
        on the plane (a PCA plane of the codes for latent sizes other than 2). Returns the
        figure."""
        codes = self.encode(x)
        if y is not None and len(y) != len(codes):
            raise ConfigError(f"y has {len(y)} labels for {len(codes)} images; give one label "
                              "per image, or none", field="y")  # fmt: skip
        view = latent.fit_plane(codes)
        return plots.plot_latent(view.project(codes), y, class_names=class_names, ax=ax,
                                 title=title or f"{len(codes):,} codes{view.note}",
                                 axis_labels=view.axis_labels)  # fmt: skip

    def plot_manifold(self, x: np.ndarray | None = None, *, codes: np.ndarray | None = None,
                      size: int = latent.MANIFOLD_SIZE, ax=None, title=None):  # fmt: skip
        """The decoder on a size x size grid over the 1st-99th percentile of the codes of
        images x (default: the images of the last fit; or give their `codes` (N, latent)).
        Returns the figure."""
        if codes is None:
            x = self._fit_images if x is None else x
            if x is None:
                raise ConfigError("plot_manifold needs images x to choose the range of the "
                                  "grid (this model has not been fit here)", field="x")  # fmt: skip
            codes = self.encode(x)
        view = latent.fit_plane(codes)
        us, vs = latent.manifold_grid(view.project(codes), size)
        return plots.plot_manifold(latent.decode_grid(self, view, us, vs), us, vs, ax=ax,
                                   axis_labels=view.axis_labels, title=title)  # fmt: skip

    def plot_reconstructions(self, x: np.ndarray, labels: Sequence | None = None, *,
                             max_columns: int | None = plots.MAX_COLUMNS):  # fmt: skip
        """Images x above their reconstructions, titled with `labels`; more than
        `max_columns` wrap into further row pairs. Returns the figure."""
        flat = batches.as_images(self.model_config, x, "x").numpy()  # (N, D) in [0, 1]
        if labels is not None and len(labels) != len(flat):
            raise ConfigError(f"labels has {len(labels)} entries for {len(flat)} images; give "
                              "one per image, or none", field="labels")  # fmt: skip
        originals = flat.reshape(len(flat), *self.model_config.image_shape)
        return plots.plot_reconstructions(originals, self.reconstruct(x), labels,
                                          max_columns=max_columns)  # fmt: skip

    # -- persistence --------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write config.json and model.safetensors into `folder`; returns the folder."""
        storage.save_model(folder, self.net, self.train_config)
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path) -> Autoencoder:
        """A model saved by `save` (or by `deepae train`)."""
        net, train_config = storage.load_model(folder)
        ae = cls._from_configs(net.config, train_config)
        ae.net, ae._loaded = net, True
        return ae

    @classmethod
    def _from_configs(cls, model_config: cfg.ModelConfig, train_config: cfg.TrainConfig):
        """An untrained model of these configs (a subclass with other constructor
        arguments says how it is built from them)."""
        return cls(model_config, train_config)

    # -- helpers ------------------------------------------------------------------------

    def _as_source(self, x: Any, name: str) -> torch.Tensor | batches.MappedImages:
        # What the verbs read: deepae.batches.as_source, checked against this model.
        return batches.as_source(self.model_config, x, name)

    @torch.no_grad()
    def _run(self, module: torch.nn.Module, x, batch_size: int) -> np.ndarray:
        self.net.eval()
        device = next(self.net.parameters()).device
        parts = [module(xb.to(device)).cpu() for xb in batches.chunks(x, batch_size)]
        if not parts:
            empty = torch.zeros(0, x.shape[1], device=device)  # (0, D)
            return np.zeros((0, module(empty).shape[1]), np.float32)
        return torch.cat(parts).numpy()


class _Half:
    """One half of the autoencoder as the article's Keras models use it: `predict`."""

    def __init__(self, run: Callable[[Any, int], np.ndarray]):
        self._run = run

    def predict(self, x: Any, batch_size: int | None = None, verbose: int | str = "auto"):
        """Keras' Model.predict of this half; `batch_size` and `verbose` as the model's."""
        fit_args.verbosity(verbose)
        return self._run(x, _batch(batch_size))


# The verbs' images per forward pass when Keras' predict and evaluate get batch_size=None
# (Keras' 32 gives the same values, more slowly): memory bounded, few calls.
PREDICT_BATCH = 8192


def _batch(batch_size: int | None) -> int:
    return PREDICT_BATCH if batch_size is None else batch_size


def _sample_shape(config: cfg.ModelConfig, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of one image in images of `shape`: a batch (N, H, W) or (N, D), or one
    image, (H, W) or (D,), which the verbs take as a batch of one (deepae.batches)."""
    shape = tuple(shape)
    return shape if shape in (tuple(config.image_shape), (config.input_size,)) else shape[1:]
