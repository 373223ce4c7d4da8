"""README.md's Python snippets run as written, and say what they do.

Every ```python block of the README is either run here verbatim (in a temporary working
folder, figures on Matplotlib's Agg backend) and its comments checked against what it
made, or listed in NOT_RUN with the reason; a new block fails
`test_every_readme_block_is_run_or_listed` until it is decided on. The blocks are known
by their first line.
"""

import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from deepae import Autoencoder

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> dict[str, str]:
    """The ```python blocks of a Markdown text, keyed by their first line."""
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)
    firsts = [b.splitlines()[0] if b.strip() else "" for b in blocks]
    assert len(set(firsts)) == len(firsts), f"two README blocks share a first line: {firsts}"
    return dict(zip(firsts, blocks, strict=True))


def run_folder_table(text: str) -> set[str]:
    """The file names in the first column of the README's table of run-folder files."""
    section = text.split("## What a run gives you", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for cell in rows for name in re.findall(r"`([^`]+)`", cell)}


def check_python_block(ns: dict, out: str) -> None:
    """The first block: the article's model trained 10 epochs, saved and loaded back."""
    history, z, images = ns["history"], ns["z"], ns["images"]
    assert history.epoch == list(range(10))  # Keras' History, 0-based
    assert len(history.history["val_loss"]) == 10 and history.history["val_loss"][-1] < 0.23
    assert z.shape == (60000, 2) and z.dtype == np.float32
    assert ns["ae"].encode(ns["x_train"][0]).shape == (1, 2)  # one image (28, 28)
    assert images.shape == (2, 28, 28) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    assert "Total params: 51,154" in out  # ae.summary() prints the article's table
    assert isinstance(ns["ae"], Autoencoder)  # Autoencoder.load gave a model back
    assert {p.name for p in Path("runs/x").iterdir()} >= {"config.json", "model.safetensors"}


def check_run_block(ns: dict, out: str) -> None:
    """The deepae.run block: 5 epochs, resumed to 10, reloaded, its test codes written."""
    folder = Path("runs/mine")
    assert Path(ns["result"].folder) == folder
    assert "resuming runs/mine after epoch 5" in out
    assert len(folder.joinpath("history.csv").read_text().splitlines()) == 1 + 10
    assert ns["ae"].train_config.epochs == 10 and len(ns["data"].x_test) == 10000
    lines = Path("codes.csv").read_text().splitlines()
    assert lines[0] == "index,label,z0,z1" and len(lines) == 1 + 10000
    # What `deepae train` writes is what the README's table of run-folder files lists.
    made = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    assert made == run_folder_table(README.read_text())


# First line -> the check of what the block made (its namespace, its printed output).
RUN = {
    "from deepae import Autoencoder, load_mnist": check_python_block,
    "from deepae import run": check_run_block,
}
# First line -> why the block is not run (user files, minutes of training, ...).
NOT_RUN: dict[str, str] = {}


def test_every_readme_block_is_run_or_listed():
    firsts = set(python_blocks(README.read_text()))
    assert not RUN.keys() & NOT_RUN.keys()
    undecided = firsts - RUN.keys() - NOT_RUN.keys()
    assert not undecided, f"README blocks neither run nor listed in NOT_RUN: {undecided}"
    stale = (RUN.keys() | NOT_RUN.keys()) - firsts
    assert not stale, f"RUN or NOT_RUN name blocks the README no longer has: {stale}"


@pytest.mark.parametrize("first", list(RUN))
def test_readme_block_runs_as_written(first, tmp_path, monkeypatch, capsys):
    matplotlib.use("Agg")
    code = python_blocks(README.read_text()).get(first)
    assert code is not None, f"README has no ```python block starting {first!r}"
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "__readme__"}
    exec(compile(code, f"README.md block {first!r}", "exec"), ns)
    RUN[first](ns, capsys.readouterr().out)
