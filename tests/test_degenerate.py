"""A run whose latent units died (every code (0, 0)) says so: metrics.json, run.json, a
banner in report.html and explorer.html, and a terminal line with the command to run."""

import html
import json
import re
import shlex

import numpy as np
import pytest
import torch

from deepae import evaluate
from deepae.api import Autoencoder
from deepae.cli import main
from deepae.run import pipeline, write_pages

FIXTURE = "tests/fixtures/mnist-small.npz"


def kill_latent(ae: Autoencoder) -> None:
    """Weights 0 and bias -10 in the latent Dense: behind a ReLU, every code is exactly 0."""
    layer = [m for m in ae.net.encoder if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.fill_(-10.0)


def banner_of(page: str, pattern: str) -> str | None:
    found = re.search(pattern, page, re.S)
    return None if found is None else html.unescape(re.sub(r"<[^>]+>", "", found[1]))


def report_banner(page: str) -> str | None:
    return banner_of(page, r"<p class=banner role=alert>(.*?)</p>")


def explorer_banner(page: str) -> str | None:
    return banner_of(page, r'<p id="banner" class="banner" role="alert">(.*?)</p>')


def test_metrics_name_the_dead_units():
    ae = Autoencoder()
    codes = np.array([[0.0, 1.5], [0.0, 0.0], [0.0, 2.0]], np.float32)  # unit 0 always 0
    metrics = pipeline.run_metrics(ae, codes)
    assert metrics["degenerate"] is True and metrics["dead_units"] == [0]
    alive = pipeline.run_metrics(ae, codes + 1)
    assert alive["degenerate"] is False and alive["dead_units"] == []


@pytest.fixture(scope="module")
def dead_run(mnist_small, tmp_path_factory):
    """An untrained article model (ReLU latent) with its latent layer killed, and the pages
    the pipeline writes for it."""
    folder = tmp_path_factory.mktemp("dead") / "run"
    ae = Autoencoder(seed=0)
    kill_latent(ae)
    codes = ae.encode(mnist_small.x_train)
    assert not codes.any()
    metrics = pipeline.run_metrics(ae, codes)
    write_pages(folder, ae, mnist_small, codes=codes, history=[], metrics=metrics)
    return folder


def test_both_pages_carry_the_collapse_banner(dead_run):
    for text in (report_banner((dead_run / "report.html").read_text()),
                 explorer_banner((dead_run / "explorer.html").read_text())):  # fmt: skip
        assert text.startswith("Warning: The latent space collapsed: latent units 0, 1 are dead")
        assert "latent_activation 'linear'" in text
        assert "--latent-activation linear" in text


def test_a_healthy_model_has_no_banner(small_run):
    assert report_banner((small_run.folder / "report.html").read_text()) is None
    assert explorer_banner((small_run.folder / "explorer.html").read_text()) is None
    metrics = json.loads((small_run.folder / "metrics.json").read_text())
    assert metrics["degenerate"] is False and metrics["dead_units"] == []


def test_train_records_a_collapse_and_prints_the_command(tmp_path, monkeypatch, capsys):
    fit = Autoencoder.fit

    def fit_then_die(self, *args, **kwargs):
        history = fit(self, *args, **kwargs)
        kill_latent(self)
        return history

    monkeypatch.setattr(Autoencoder, "fit", fit_then_die)
    args = ["train", "--dataset", FIXTURE, "--epochs", "1", "--runs-dir", str(tmp_path),
            "--name", "dead", "--no-progress", "--no-evaluate",
            "--latent-activation", "relu"]  # fmt: skip
    assert main(args) == 0
    out, err = capsys.readouterr()
    run = tmp_path / "dead"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["degenerate"] is True and metrics["dead_units"] == [0, 1]
    assert metrics["dead_latent_fractions"] == [1.0, 1.0]
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "complete"
    assert status["message"].startswith("The latent space collapsed: latent units 0, 1")
    assert "warning: latent unit 0 is dead" in err and "latent_activation 'linear'" in err
    assert "warning" not in out  # warnings go to stderr, as other commands' do
    # The user's own arguments, a new folder (no --name), the fix in place of relu.
    expected = shlex.join(["deepae", *args[:7], "--no-progress", "--no-evaluate",
                           "--latent-activation", "linear"])  # fmt: skip
    assert f"warning: the latent space collapsed; train again with: {expected}" in err
    assert report_banner((run / "report.html").read_text()) is not None
    assert explorer_banner((run / "explorer.html").read_text()) is not None


def test_the_note_for_a_non_relu_latent_suggests_a_seed():
    note = evaluate.collapse_note([1], "elu")
    assert "latent unit 1 is dead" in note and "another seed" in note and "linear" not in note
    assert evaluate.collapse_note([], "relu") == ""
