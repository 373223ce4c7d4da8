"""`--dataset PATH` end to end (train on a folder of 16 x 16 PNGs, then every command of the
run reloads the same data without options), and each bad input: exit code 2, one line on
stderr, no traceback, and nothing already saved changed."""

import csv
import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from PIL import Image

from deepae.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")  # the subprocess imports this tree
FAST = ["--epochs", "1", "--no-progress", "--hidden-sizes", "8", "--latent-activation", "linear"]


def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A folder of 48 16 x 16 PNGs in classes dark/ and light/, a private cache, and a run
    trained on it for one epoch (`deepae train --dataset FOLDER --image-size 16`)."""
    root = tmp_path_factory.mktemp("cli-data")
    rng = np.random.default_rng(0)
    for i in range(24):
        save_png(root / "shapes" / "dark" / f"{i:02}.png", rng.integers(0, 90, (16, 16), np.uint8))
        save_png(
            root / "shapes" / "light" / f"{i:02}.png", rng.integers(160, 256, (16, 16), np.uint8)
        )
    mp = pytest.MonkeyPatch()
    mp.setenv("DEEPAE_CACHE", str(root / "cache"))
    cwd = os.getcwd()
    os.chdir(root)  # a relative --dataset: the run must record the absolute path
    try:
        code = main(["train", "--dataset", "shapes", "--image-size", "16", "--runs-dir", "runs",
                     "--name", "r", *FAST])  # fmt: skip
    finally:
        os.chdir(cwd)
    assert code == 0
    yield root
    mp.undo()


def one_error_line(err: str) -> str:
    """The error line of a failed command's stderr: the last line, the only error, no
    traceback (progress lines such as "data: ..." may come before it)."""
    lines = err.strip().splitlines()
    assert [ln for ln in lines if "error" in ln] == lines[-1:], err
    assert lines[-1].startswith("deepae: error: ") and "Traceback" not in err
    return lines[-1]


def tree_hash(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_train_takes_sizes_and_labels_from_the_folder(env):
    run = env / "runs" / "r"
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["input_size"] == 256 and config["model"]["image_shape"] == [16, 16]
    data = json.loads((run / "run.json").read_text())["data"]
    assert data["dataset"] == str(env / "shapes") and data["image_size"] == [16, 16]
    assert (data["name"], data["val_fraction"], data["seed"]) == ("shapes", 0.1, 0)
    assert imread(run / "reconstructions.png").shape[:2] == (460, 2000)  # 10 columns


def test_every_command_reloads_the_run_data(env, capsys):
    run = env / "runs" / "r"
    (run / "latent.png").unlink()
    assert main(["plot", str(run)]) == 0
    assert (run / "latent.png").exists()
    assert main(["encode", str(run), "--split", "test", "--out", str(env / "z.csv")]) == 0
    with open(env / "z.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and {r["label"] for r in rows} <= {"0", "1"}  # round(48 * 0.1)
    assert main(["reconstruct", str(run), "--indices", "0-3", "--out", str(env / "r.png")]) == 0
    assert imread(env / "r.png").shape[:2] == (460, 800)
    assert main(["explore", str(run), "--out", str(env / "e.html")]) == 0
    assert main(["evaluate", str(run)]) == 0
    assert json.loads((run / "evaluation.json").read_text())["n"] == 5  # the held-out images
    assert '"image_shape":[16,16]' in (env / "e.html").read_text().replace(" ", "")


def test_data_info_describes_a_folder(env, capsys):
    assert main(["data", "info", "--dataset", str(env / "shapes"), "--image-size", "8x12"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^train +\(43, 8, 12\) uint8$", out, re.M)
    assert re.search(r"^dark +\d+$", out, re.M) and re.search(r"^light +\d+$", out, re.M)


def test_unlabelled_float_arrays_end_to_end(env, tmp_path, capsys):
    x = np.random.default_rng(1).random((40, 10, 10))  # float64 in [0, 1): no labels
    np.save(tmp_path / "x.npy", x)
    args = [
        "train",
        "--dataset",
        str(tmp_path / "x.npy"),
        "--runs-dir",
        str(tmp_path),
        "--name",
        "u",
    ]
    assert main(args + FAST) == 0
    assert main(["plot", str(tmp_path / "u")]) == 0
    assert imread(tmp_path / "u" / "latent.png").shape[:2] == (1000, 1300)
    assert main(["encode", str(tmp_path / "u"), "--out", str(tmp_path / "z.csv")]) == 0
    with open(tmp_path / "z.csv") as f:
        assert {r["label"] for r in csv.DictReader(f)} == {"-1"}  # unlabelled


# -- bad input ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad(env):
    """Files that are wrong in one way each, by name."""
    folder = env / "bad"
    folder.mkdir()
    (folder / "empty").mkdir()
    save_png(folder / "messy" / "ok.png", np.zeros((16, 16), np.uint8))
    save_png(folder / "messy" / "ok2.png", np.zeros((16, 16), np.uint8))
    (folder / "messy" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    np.save(folder / "rank.npy", np.zeros((10, 4, 4, 3), np.uint8))
    np.save(folder / "int.npy", np.zeros((10, 4, 4), np.int64))
    np.save(folder / "range.npy", np.full((10, 4, 4), 255.0))
    np.savez(folder / "count.npz", images=np.zeros((10, 4, 4), np.uint8), labels=np.zeros(9, int))
    np.savez(folder / "other.npz", images=np.zeros((10, 12, 12), np.uint8))
    blob = (folder / "count.npz").read_bytes()
    (folder / "trunc.npz").write_bytes(blob[: len(blob) - 30])
    (folder / "magic.npz").write_bytes(b"GIF89a" + blob[6:])
    liar = bytearray((folder / "rank.npy").read_bytes())
    liar[liar.index(b"(10, 4, 4, 3)") : liar.index(b"(10, 4, 4, 3)") + 13] = b"(99, 4, 4, 3)"
    (folder / "liar.npy").write_bytes(bytes(liar))
    idx = folder / "idx"
    idx.mkdir()
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        (idx / name).write_bytes(b"\x00\x00\x08\x03" + (60000).to_bytes(4, "big") * 3 + bytes(99))
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        (idx / name).write_bytes(b"\x00\x00\x08\x01" + (60000).to_bytes(4, "big") + bytes(9))
    (folder / "a-file").write_text("in the way")
    (folder / "codes.npy").mkdir()  # a folder where a file should be written
    return folder


TRAIN = ["train", "--runs-dir", "{runs}", "--name", "r", "--overwrite", *FAST,
         "--dataset", "{shapes}"]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (TRAIN + ["--dataset", "{bad}/missing"], "missing: neither a dataset name"),
        (TRAIN + ["--dataset", "{bad}/empty"], "empty: no image files in it"),
        (TRAIN + ["--dataset", "{bad}/messy", "--strict"], "broken.png: not an image file"),
        (TRAIN + ["--dataset", "{bad}/rank.npy"], r"rank.npy: images of shape (10, 4, 4, 3)"),
        (TRAIN + ["--dataset", "{bad}/int.npy"], "int.npy: images of dtype int64"),
        (TRAIN + ["--dataset", "{bad}/range.npy"], "(the BCE loss needs it), got [255, 255]"),
        (TRAIN + ["--dataset", "{bad}/count.npz"], "count.npz[labels]: 9 labels for 10 images"),
        (TRAIN + ["--dataset", "{bad}/trunc.npz"], "trunc.npz: not a readable .npz"),
        (TRAIN + ["--dataset", "{bad}/magic.npz"], "magic.npz"),
        (TRAIN + ["--dataset", "{bad}/liar.npy"], "liar.npy: header claims shape (99, 4, 4, 3)"),
        (TRAIN + ["--dataset", "mnist", "--data-dir", "{bad}/idx"], "idx3-ubyte: sha256"),
        (TRAIN + ["--dataset", "{bad}/a-file"], "a-file: not a folder, .npz or .npy"),
        (TRAIN + ["--image-size", "0"], "image size '0'"),
        (TRAIN + ["--val-fraction", "1.5"], "val_fraction"),
        # Options a named dataset cannot honour (it has its own test split, and no folder).
        (
            TRAIN + ["--dataset", "mnist", "--val-fraction", "0.2"],
            "val_fraction is for data without a test split; mnist has its own",
        ),
        (
            ["evaluate", "{run}", "--dataset", "fashion-mnist", "--strict"],
            "strict is for image folders; fashion-mnist is not one",
        ),
        (TRAIN + ["--indices", "47"], "indices [47] out of range"),
        (["plot", "{run}", "--dataset", "{bad}/other.npz"], "12x12 images but the model"),
        (["plot", "{run}", "--dataset", "{bad}/missing"], "missing: neither"),
        (["encode", "{run}", "--out", "{bad}/a-file/z.npy"], "cannot write"),
        (["encode", "{run}", "--out", "{bad}/codes.npy"], "cannot write"),
        (["decode", "{run}", "0,0", "--out", "{bad}/a-file/d.png"], "cannot write"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(env, bad, capsys, args, message):
    fill = {"runs": env / "runs", "run": env / "runs" / "r", "bad": bad, "shapes": env / "shapes"}
    before = tree_hash(env / "runs")
    assert main([a.format(**fill) for a in args]) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert tree_hash(env / "runs") == before


def test_runs_dir_that_is_a_file(env, bad, capsys):
    shapes = str(env / "shapes")
    assert main(["train", "--dataset", shapes, "--runs-dir", str(bad / "a-file"), *FAST]) == 2
    assert f"cannot write {bad / 'a-file'}/" in one_error_line(capsys.readouterr().err)
    assert (bad / "a-file").read_text() == "in the way"


def test_runs_dir_without_write_permission(env, tmp_path, capsys, monkeypatch):
    # A read-only folder, simulated at the system call: the tests run as root, and root
    # may write anywhere, so chmod alone would prove nothing here.
    from deepae import fsio

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(fsio.tempfile, "mkstemp", denied)
    code = main(["train", "--dataset", str(env / "shapes"), "--runs-dir", str(tmp_path / "r"),
                 *FAST])  # fmt: skip
    assert code == 2
    assert "Permission denied" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("where", ["mkstemp", "fsync"])
def test_a_full_disk_leaves_the_old_file(env, tmp_path, capsys, monkeypatch, where):
    out = tmp_path / "codes.npy"
    out.write_bytes(b"old codes")
    from deepae import fsio

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fsio.tempfile if where == "mkstemp" else fsio.os, where, full)
    assert main(["encode", str(env / "runs" / "r"), "--out", str(out)]) == 2
    assert "No space left on device" in one_error_line(capsys.readouterr().err)
    assert out.read_bytes() == b"old codes"
    assert [p.name for p in tmp_path.iterdir()] == ["codes.npy"]  # no temporary file left


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda run: (run / "model.safetensors").write_bytes(b"\x00" * 7), "not a readable"),
        (lambda run: (run / "config.json").write_text("{"), "config.json is corrupt"),
    ],
)
def test_corrupt_model_files(env, tmp_path, capsys, damage, message):
    run = tmp_path / "run"
    shutil.copytree(env / "runs" / "r", run)
    damage(run)
    assert main(["encode", str(run), "--out", str(tmp_path / "z.npy")]) == 2
    assert message in one_error_line(capsys.readouterr().err)


def test_the_real_entry_point(env, bad):
    """As a user runs it: a subprocess, one line on stderr, exit code 2, no traceback."""
    for args in (
        ["train", "--dataset", str(bad / "liar.npy"), "--runs-dir", str(env / "runs")],
        ["encode", str(env / "runs" / "r"), "--out", str(bad / "a-file" / "z.csv")],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "deepae.cli", *args], capture_output=True, text=True,
            timeout=120, env={**os.environ, "PYTHONPATH": SRC},
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        one_error_line(proc.stderr)


def test_the_explorer_shows_float_images_as_their_8_bit_values():
    from deepae import Autoencoder
    from deepae.explorer import build_explorer

    ae = Autoencoder(input_size=16, image_shape=(4, 4), hidden_sizes=(4,))
    x8 = np.random.default_rng(2).integers(0, 256, (30, 4, 4), dtype=np.uint8)
    codes = ae.encode(x8)
    pages = [build_explorer(ae, x, None, points=30, codes=codes) for x in (x8, x8 / 255.0)]
    assert pages[0] == pages[1]


def test_the_runs_own_dataset_by_a_relative_path_keeps_its_recorded_split(tmp_path, monkeypatch,
                                                                          mnist_small):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    np.savez("u.npz", x=mnist_small.x_train[:600], y=mnist_small.y_train[:600])  # no split
    assert (
        main(
            [
                "train",
                "--dataset",
                "u.npz",
                "--val-fraction",
                "0.3",
                "--epochs",
                "1",
                "--runs-dir",
                "runs",
                "--name",
                "r",
                "--no-progress",
                "--no-evaluate",
            ]
        )
        == 0
    )
    counts = {}
    for spelling in (None, "u.npz", "./u.npz", str(tmp_path / "u.npz")):
        out = tmp_path / f"codes-{len(counts)}.npy"
        given = [] if spelling is None else ["--dataset", spelling]
        assert main(["encode", "runs/r", "--split", "test", "--out", str(out), *given]) == 0
        counts[spelling] = len(np.load(out))
    assert set(counts.values()) == {180}, counts  # the run's 30%, however the path is written


RUN_COMMANDS = ["train", "encode", "reconstruct", "plot", "explore", "evaluate"]


def help_text(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal


def test_help_says_a_runs_own_val_fraction_is_the_default(env, tmp_path, capsys):
    # The oracle: a run trained with --val-fraction 0.25 is evaluated on its own 25%
    # without the option, so 0.1 is the default only where no run is read.
    shapes = str(env / "shapes")  # 48 images
    args = ["train", "--dataset", shapes, "--image-size", "16", "--runs-dir", str(tmp_path),
            "--name", "q", "--val-fraction", "0.25", "--no-evaluate", *FAST]  # fmt: skip
    assert main(args) == 0
    assert main(["evaluate", str(tmp_path / "q")]) == 0
    assert json.loads((tmp_path / "q" / "evaluation.json").read_text())["n"] == 12  # 48 / 4
    capsys.readouterr()
    for command in RUN_COMMANDS:
        text = help_text(command, capsys)
        assert "split (default: 0.1; or the run's)" in text, command
        assert "(default: 28x28 for image folders, else the data's own size; or the run's)" in text
    text = help_text("data", capsys)  # reads no run
    assert "split (default: 0.1)" in text and "the run's" not in text
