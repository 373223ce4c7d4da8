"""--out of encode, decode, reconstruct and explore never overwrites a file of the run
folder (deepae.run.files.output_path): refused with exit code 2, every byte kept."""

import shutil
from pathlib import Path

import pytest

from deepae.cli import main
from deepae.errors import ConfigError
from deepae.run import files

# The run folder's own files, listed by hand from the docstring of deepae/run/files.py.
OWN = ["config.json", "model.safetensors", "checkpoint.safetensors", "run.json",
       "history.csv", "metrics.json", "evaluation.json", "evaluation-train.json",
       "report.html", "explorer.html", "latent.png", "reconstructions.png", "loss.png",
       "manifold.png", "interpolation.png"]  # fmt: skip
SUFFIXES = {"encode": (".csv", ".npy"), "decode": (".png", ".npy"),
            "reconstruct": (".png",), "explore": (".html",)}  # fmt: skip
DEFAULTS = {"encode": "codes-train.csv", "decode": "decoded.png",
            "reconstruct": "reconstructions-train.png", "explore": "explorer.html"}  # fmt: skip


@pytest.fixture(scope="module")
def run(small_run, tmp_path_factory):
    """A copy of the small run: a test that fails must not damage the shared one."""
    return Path(shutil.copytree(small_run.folder, tmp_path_factory.mktemp("out") / "run"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def command(name: str, run: Path, out: Path) -> list[str]:
    extra = ["0,0"] if name == "decode" else []
    return [name, str(run), *extra, "--out", str(out)]


REFUSED = [(c, n) for c in SUFFIXES for n in OWN if n != DEFAULTS[c]]


@pytest.mark.parametrize("cmd, name", REFUSED)
def test_out_naming_a_run_file_is_refused_and_the_run_kept(run, cmd, name, capsys):
    before = snapshot(run)
    assert main(command(cmd, run, run / name)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(--out)" in err[0] and name in err[0]
    assert snapshot(run) == before


@pytest.mark.parametrize("cmd", SUFFIXES)
def test_out_with_another_suffix_is_refused(run, cmd, tmp_path, capsys):
    assert main(command(cmd, run, tmp_path / "x.txt")) == 2
    err = capsys.readouterr().err
    assert all(s in err for s in SUFFIXES[cmd]) and "(--out)" in err
    assert not (tmp_path / "x.txt").exists()


def test_explore_may_rewrite_its_own_page(run, capsys):
    before = snapshot(run)
    assert main(["explore", str(run), "--out", str(run / "explorer.html")]) == 0
    after = snapshot(run)
    assert {k: v for k, v in after.items() if k != "explorer.html"} == {
        k: v for k, v in before.items() if k != "explorer.html"
    }
    assert after["explorer.html"].startswith(b"<!doctype html>")


@pytest.mark.parametrize("cmd", SUFFIXES)
def test_outputs_elsewhere_are_written(run, cmd, tmp_path):
    out = tmp_path / f"mine{SUFFIXES[cmd][-1]}"
    assert main(command(cmd, run, out)) == 0
    assert out.stat().st_size > 0


def test_output_path_in_the_library(tmp_path):
    assert files.output_path(None, tmp_path, "codes-test.csv", (".csv",)) == (
        tmp_path / "codes-test.csv"
    )
    assert files.output_path("a/b.npy", tmp_path, "x.csv", (".csv", ".npy")) == Path("a/b.npy")
    with pytest.raises(ConfigError, match="History.CSV is a file of a run folder") as e:
        files.output_path(tmp_path / "History.CSV", tmp_path, "x.csv", (".csv", ".CSV"))
    assert e.value.field == "out"
    with pytest.raises(ConfigError, match="use a .png file name") as e:
        files.output_path(tmp_path / "x.jpg", tmp_path, "x.png", (".png",))
    assert e.value.field == "out"
    assert set(OWN) - {"evaluation-train.json"} == set(files.RUN_FILES)
