"""umap-learn's face on deepae's map: switch by changing one import.

    # from umap import UMAP
    from deepae import UMAP

    reducer = UMAP(n_neighbors=15, min_dist=0.1, random_state=42)
    embedding = reducer.fit_transform(x_train)   # (N, 2), also reducer.embedding_
    codes = reducer.transform(x_test)            # new images onto the same map
    images = reducer.inverse_transform(codes)    # and back: a decoder as good as best2d's

`UMAP` is an `Autoencoder` with the `umap2d` preset (docs/umap2d.md), whose constructor
takes umap-learn's names for the settings they share. Unlike umap-learn's, `transform`
is one pass of the encoder and `inverse_transform` one of the decoder: milliseconds for
thousands of points.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from typing import Any

import numpy as np

from deepae.api import Autoencoder
from deepae.config import resolve
from deepae.errors import ConfigError

# umap-learn's name -> deepae's config field, for the settings both have.
NAMES = {
    "n_neighbors": "neighbours",
    "n_components": "latent_size",
    "min_dist": "min_dist",
    "negative_sample_rate": "negative_rate",
    "random_state": "seed",
    "n_epochs": "epochs",
}

# umap-learn's UMAP settings (0.5's signature) that deepae's has not: it trains a network
# on the neighbour graph, with its own optimizer, instead of laying out the points. Named
# as such when given, not as an unknown option.
UMAP_LEARN_ONLY = frozenset({
    "a", "angular_rp_forest", "b", "dens_frac", "dens_lambda", "dens_var_shift", "densmap",
    "disconnection_distance", "force_approximation_algorithm", "init", "learning_rate",
    "local_connectivity", "low_memory", "metric_kwds", "n_jobs", "output_dens",
    "output_metric", "output_metric_kwds", "precomputed_knn", "repulsion_strength",
    "set_op_mix_ratio", "spread", "target_metric", "target_metric_kwds", "target_n_neighbors",
    "target_weight", "tqdm_kwds", "transform_mode", "transform_queue_size", "transform_seed",
    "unique",
})  # fmt: skip


class UMAP(Autoencoder):
    """The `umap2d` preset under umap-learn's names: n_neighbors -> neighbours,
    n_components -> latent_size, min_dist, negative_sample_rate -> negative_rate,
    random_state -> seed (None: 0, so runs are reproducible by default; a NumPy
    RandomState gives a seed drawn from it), n_epochs -> epochs. `verbose` as umap-learn's
    (quiet by default; True prints an epoch line each epoch and a progress bar); `metric`
    can only be 'euclidean' (the graph's, on pixels). Any other keyword sets a deepae
    config field, as for `Autoencoder`. `get_params` and `set_params` speak umap-learn's
    names, so scikit-learn's `clone` and grid searches work.

    Unset (None), n_neighbors, min_dist, negative_sample_rate and n_epochs take the
    preset's values (10, 0.0, 10 and 130), not umap-learn's defaults (15, 0.1, 5 and
    200 or 500): with a reconstruction loss beside the graph, those gave the better map
    here (docs/umap2d.md). Pass umap-learn's values to get its settings."""

    def __init__(
        self,
        n_neighbors: int | None = None,
        n_components: int = 2,
        min_dist: float | None = None,
        negative_sample_rate: int | None = None,
        random_state: Any = None,
        n_epochs: int | None = None,
        metric: str = "euclidean",
        verbose: bool = False,
        **options: Any,
    ):
        _refuse_our_names(options)
        if metric != "euclidean":
            raise ConfigError(f"metric must be 'euclidean' (the neighbour graph's, between "
                              f"pixel vectors), got {metric!r}", field="metric")  # fmt: skip
        self.metric, self.verbose = metric, verbose
        with _umap_learns_names():
            super().__init__(
                preset="umap2d", neighbours=n_neighbors, latent_size=n_components,
                min_dist=min_dist, negative_rate=negative_sample_rate,
                seed=_seed(random_state), epochs=n_epochs, **options,
            )  # fmt: skip
        self.embedding_: np.ndarray | None = None

    def fit(self, x: np.ndarray, y: np.ndarray | None = None, **fit_options: Any):
        """Train a map on images x and keep the codes of x as `embedding_` (N,
        n_components); returns self. As umap-learn's `fit`, each call trains a new map from
        scratch (a loaded map too). Labels `y` are accepted, as scikit-learn's pipelines
        pass them, but not used, with a warning: the map is unsupervised, where umap-learn
        would make a supervised one. `fit_options` are `Autoencoder.fit`'s. A fit that
        fails (bad images or options, a diverged loss) leaves a fitted map as it was."""
        if y is not None:
            warnings.warn("UMAP.fit ignores y: deepae's map is unsupervised (umap-learn's "
                          "fit(x, y) makes a supervised map)", stacklevel=2)  # fmt: skip
        before = dict(vars(self))  # a fit that fails gives the map back as it was
        if self.train_state.epoch or self._loaded:
            self._untrained()  # replaces the network, trainer and state: `before` keeps them
        fit_options.setdefault("verbose", int(bool(self.verbose)))
        k = self.train_config.neighbours
        n = _training_count(x, fit_options.get("validation_split"))
        try:
            if 3 <= n <= k:  # as umap-learn's UMAP.fit: fewer neighbours, said, setting kept
                self._as_source(x, "x")  # images it cannot take: refused first, as umap-learn
                warnings.warn("n_neighbors is larger than the dataset size; truncating to "
                              "X.shape[0] - 1", stacklevel=2)  # fmt: skip
                self.train_config = dataclasses.replace(self.train_config, neighbours=n - 1)
            with _umap_learns_names():
                Autoencoder.fit(self, x, **fit_options)
        except Exception:
            vars(self).update(before)  # umap-learn checks x before it changes anything
            raise
        finally:
            if self.train_config.neighbours != k:  # get_params shows what was asked for
                self.train_config = dataclasses.replace(self.train_config, neighbours=k)
        self.embedding_ = self.encode(x)
        return self

    def fit_transform(self, x: np.ndarray, y: np.ndarray | None = None, **fit_options: Any):
        """`fit`, then `embedding_`: the codes of x (N, n_components), or the DataFrame
        `set_output` asks for."""
        return self._as_output(self.fit(x, y, **fit_options).embedding_, x)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The settings under umap-learn's names where it has them, deepae's elsewhere:
        `UMAP(**params)` builds the same (untrained) map."""
        params = super().get_params(deep)
        ours = {name: params.pop(field) for name, field in NAMES.items()}
        return {**ours, "metric": self.metric, "verbose": self.verbose, **params}

    def set_params(self, **params: Any) -> UMAP:
        """Change settings, by umap-learn's names or deepae's fields. Returns self. A value
        refused (a ConfigError) leaves every setting as it was, as scikit-learn's
        set_params checks nothing it has set."""
        _refuse_our_names(params)
        metric = params.pop("metric", self.metric)
        if metric != "euclidean":
            raise ConfigError(f"metric must be 'euclidean', got {metric!r}", field="metric")
        verbose = params.pop("verbose", self.verbose)
        if "random_state" in params:
            params["random_state"] = _seed(params["random_state"])
        # Autoencoder.set_params checks every value before it changes anything; ours after.
        with _umap_learns_names():
            super().set_params(**{NAMES.get(k, k): v for k, v in params.items()})
        self.metric, self.verbose = metric, verbose
        return self

    @classmethod
    def _default_params(cls) -> dict[str, Any]:
        model_config, train_config = resolve("umap2d")
        params = {**dataclasses.asdict(model_config), **dataclasses.asdict(train_config)}
        ours = {name: params.pop(field) for name, field in NAMES.items()}
        return {**ours, "metric": "euclidean", "verbose": False, **params}

    @classmethod
    def _from_configs(cls, model_config, train_config) -> UMAP:
        umap = cls(n_components=model_config.latent_size)
        Autoencoder.__init__(umap, model_config, train_config)
        return umap


@contextlib.contextmanager
def _umap_learns_names():
    """A ConfigError about a setting umap-learn names otherwise ("neighbours must be ...")
    says the name the user gave first: "n_neighbors: neighbours must be ...", field
    n_neighbors."""
    try:
        yield
    except ConfigError as e:
        name = {field: name for name, field in NAMES.items()}.get(e.field, e.field)
        if name == e.field:
            raise
        raise ConfigError(f"{name}: {e}", field=name) from None


def _refuse_our_names(options: dict[str, Any]) -> None:
    """deepae's field names for what umap-learn names otherwise would set it twice; and a
    preset, which UMAP is already (umap2d)."""
    if "preset" in options:
        raise ConfigError("UMAP is the umap2d preset; for another preset use "
                          "Autoencoder(preset=...)", field="preset")  # fmt: skip
    lacking = sorted(set(options) & UMAP_LEARN_ONLY)
    if lacking:
        raise ConfigError(f"{lacking[0]} is a setting of umap-learn's UMAP that deepae's does "
                          "not have (it trains a network on the neighbour graph instead of "
                          "laying out points); leave it out", field=lacking[0])  # fmt: skip
    umap_name = {field: name for name, field in NAMES.items() if field != name}
    taken = sorted(set(options) & set(umap_name))
    if taken:
        raise ConfigError(f"{taken[0]} is {umap_name[taken[0]]} here, umap-learn's name: give "
                          f"that", field=taken[0])  # fmt: skip


def _training_count(x: Any, validation_split: Any) -> int:
    """The images fit trains on (its neighbour graph's), as fit_args holds the split out:
    the first floor(N x (1 - validation_split)) of x's N; 0 when x has no length."""
    n = np.shape(x)[0] if np.ndim(x) else 0
    if isinstance(validation_split, int | float) and 0 < validation_split < 1:
        n = math.floor(n * (1 - validation_split))
    return n


def _seed(random_state: Any) -> int:
    """umap-learn's random_state as deepae's seed: None -> 0, an int as it is, a NumPy
    RandomState or Generator -> a seed drawn from it (as scikit-learn's check_random_state
    would draw from it)."""
    if random_state is None:
        return 0
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    return random_state
