"""Names and files a run folder did not write itself: class and run names that look like
HTML, PNGs someone dropped into the folder, and run files that are links out of it."""

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from deepae import fsio, storage
from deepae.cli import main
from deepae.errors import RunError
from deepae.explorer import explorer
from deepae.model import AutoencoderNet
from deepae.run import files, report
from explorer_helpers import make_model, page_data
from test_report import links_of

NASTY = (
    "<!--<script>",
    "</script><script>window.pwned = 1</script>",
    "a & b \u2028 c",
    "__DEEPAE_IMAGES__",
    "'\"`${x}`",
)
RUN_NAME = "<!--<script>__DEEPAE_DATA__"  # a legal folder name on POSIX


# -- explorer.html: names reach the page as text, never as markup -------------------------


@pytest.fixture
def nasty_page(tmp_path, mnist_small):
    data = dataclasses.replace(mnist_small, x_train=mnist_small.x_train[:300],
                               y_train=mnist_small.y_train[:300] % len(NASTY),
                               class_names=NASTY)  # fmt: skip
    folder = tmp_path / RUN_NAME
    path = explorer.write_explorer(folder, make_model({}), data)
    return path, f"deepae explorer: {RUN_NAME}"


def test_nasty_names_are_data_in_the_page_json(nasty_page):
    path, title = nasty_page
    html = path.read_text()
    meta, _ = page_data(html)
    assert meta["classes"] == list(NASTY) and meta["title"] == title
    data = re.search(r'id="deepae-data">(.*?)</script>', html, re.S)[1]
    assert "<" not in data  # nothing in it can open a comment or close the element
    head = html[: html.index("<main>")]
    assert "__DEEPAE_DATA__" not in head and "<!--<script>" not in head
    # test_explorer_browser.py loads this page in Chromium.


# -- report.html: only deepae's figures, escaped names ------------------------------------


def test_report_links_only_its_own_figures_and_escapes_the_run_name(small_run, tmp_path):
    folder = Path(shutil.copytree(small_run.folder, tmp_path / "<img src=x onerror=alert(1)>"))
    for name in ("javascript:alert(1).png", "evil.png"):
        (folder / name).write_bytes((folder / "latent.png").read_bytes())
    html = report.build_report(folder, report.read_inputs(folder))
    links = links_of(html)
    assert "latent.png" in links
    assert not any("javascript" in link or "evil" in link for link in links)
    assert "javascript:" not in html and "evil.png" not in html
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


# -- run files that are links out of the run folder are not followed ------------------------


def outside_files(tmp_path) -> dict[str, Path]:
    """Valid files of every kind, in a folder beside the run: what a link could point at."""
    out = tmp_path / "outside"
    net = AutoencoderNet(make_model({}).model_config)
    storage.save_model(out, net, make_model({}).train_config)
    fsio.write_json(out / "secret.json", {"status": "complete", "secret": "s3cret"})
    fsio.write_text(out / "secret.csv", "epoch,loss,val_loss,seconds\n1,0.5,,1.0\n")
    return {"json": out / "secret.json", "csv": out / "secret.csv",
            "config": out / "config.json", "weights": out / "model.safetensors"}  # fmt: skip


READERS = {
    "run.json": ("json", files.read_status),
    "metrics.json": ("json", files.read_metrics),
    "evaluation.json": ("json", files.read_evaluation),
    "history.csv": ("csv", files.read_history),
    "config.json": ("config", storage.load_config),
    "model.safetensors": (
        "weights",
        lambda folder: storage.load_weights(folder, AutoencoderNet(make_model({}).model_config)),
    ),
}


@pytest.mark.parametrize("name", READERS)
def test_a_run_file_linking_outside_the_folder_is_refused(tmp_path, name):
    kind, reader = READERS[name]
    target = outside_files(tmp_path)[kind]
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(target, run / name)
    with pytest.raises(RunError, match="links outside the run folder"):
        reader(run)
    os.symlink(os.path.relpath(target, run), run / "relative")
    with pytest.raises(RunError, match="links outside the run folder"):
        fsio.read_bytes(run / "relative", max_bytes=2**30, fix="-", within=run)


def test_links_inside_the_run_folder_still_work(tmp_path):
    run = tmp_path / "run"
    fsio.write_json(run / "metrics-v1.json", {"loss": 0.25})
    os.symlink("metrics-v1.json", run / "metrics.json")
    assert files.read_metrics(run) == {"loss": 0.25}
    # A run folder reached through a link is still itself.
    os.symlink(run, tmp_path / "latest")
    assert files.read_metrics(tmp_path / "latest") == {"loss": 0.25}


def test_dangling_and_looping_links_are_run_errors(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(tmp_path / "gone.json", run / "metrics.json")
    with pytest.raises(RunError, match="links outside the run folder"):
        files.read_metrics(run)
    os.symlink("b", run / "a")
    os.symlink("a", run / "b")
    with pytest.raises(RunError, match="cannot be"):
        fsio.read_json(run / "a", within=run)


def test_plot_stops_at_an_evaluation_linked_from_outside(small_run, tmp_path, capsys):
    run = Path(shutil.copytree(small_run.folder, tmp_path / "run"))
    secret = outside_files(tmp_path)["json"]
    (run / "evaluation.json").unlink()
    os.symlink(secret, run / "evaluation.json")
    before = (run / "report.html").read_bytes()
    assert main(["plot", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "links outside the run folder" in err
    assert "Traceback" not in err
    assert (run / "report.html").read_bytes() == before
    assert "s3cret" not in (run / "report.html").read_text()
    assert json.loads(secret.read_text())["secret"] == "s3cret"  # untouched


def test_history_is_read_through_fsio(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / "history.csv")  # open() would block here; fsio refuses at once
    with pytest.raises(RunError, match="not a regular file"):
        files.read_history(run)
    np.testing.assert_equal(files.read_history(tmp_path), [])
