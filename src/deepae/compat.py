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

from typing import Any

import numpy as np

from deepae.api import Autoencoder


class UMAP(Autoencoder):
    """The `umap2d` preset under umap-learn's names: n_neighbors -> neighbours,
    n_components -> latent_size, min_dist, negative_sample_rate -> negative_rate,
    random_state -> seed (None: 0, so runs are reproducible by default). Any other keyword
    sets a deepae config field, as for `Autoencoder`.

    Unset (None), n_neighbors, min_dist and negative_sample_rate take the preset's values
    (10, 0.0 and 10), not umap-learn's defaults (15, 0.1 and 5): with a reconstruction
    loss beside the graph, those gave the better map here (docs/umap2d.md). Pass
    umap-learn's values to get its settings."""

    def __init__(
        self,
        n_neighbors: int | None = None,
        n_components: int = 2,
        min_dist: float | None = None,
        negative_sample_rate: int | None = None,
        random_state: int | None = None,
        **options: Any,
    ):
        super().__init__(
            preset="umap2d", neighbours=n_neighbors, latent_size=n_components,
            min_dist=min_dist, negative_rate=negative_sample_rate,
            seed=0 if random_state is None else random_state, **options,
        )  # fmt: skip
        self.embedding_: np.ndarray | None = None

    def fit(self, x: np.ndarray, y: np.ndarray | None = None, **fit_options: Any):
        """Train the map on images x (umap-learn's `fit`; labels are not used) and keep the
        codes of x as `embedding_` (N, n_components). Returns self, as umap-learn does."""
        super().fit(x, None if y is None or y is x else y, **fit_options)
        self.embedding_ = self.encode(x)
        return self

    def fit_transform(self, x: np.ndarray, y: np.ndarray | None = None, **fit_options: Any):
        """`fit`, then `embedding_`: the codes of x (N, n_components)."""
        return self.fit(x, y, **fit_options).embedding_
