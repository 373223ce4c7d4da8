"""A run never ends in a state that lies about itself: refused resumes change nothing,
interrupted extensions finish, other data is refused, overwrite starts empty, one trainer
per folder, and leftovers of a kill -9 are cleaned. Each test checks the bytes of the run's
files before and after (deepae.run.pipeline, resume, files)."""

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from deepae import run
from deepae.errors import ConfigError, DataError, DeepAEError, RunError
from deepae.run import files

CLI = [sys.executable, "-m", "deepae.cli"]
WATCHED = ("run.json", "history.csv", "model.safetensors", "config.json", "checkpoint.safetensors")


@pytest.fixture(scope="module")
def tiny(mnist_small):
    """400 training and 100 validation digits: an epoch is 13 steps."""
    return dataclasses.replace(
        mnist_small, x_train=mnist_small.x_train[:400], y_train=mnist_small.y_train[:400],
        x_test=mnist_small.x_test[:100], y_test=mnist_small.y_test[:100],
    )  # fmt: skip


def start(runs_dir, name, data, **options):
    options = {"epochs": 2, "latent_activation": "linear", "device": "cpu", **options}
    return run.start(runs_dir, name, data=data, log=lambda _: None, progress=False,
                     evaluate=False, **options)  # fmt: skip


def snapshot(folder):
    return {n: (folder / n).read_bytes() for n in WATCHED if (folder / n).exists()}


def status(folder):
    return json.loads((folder / "run.json").read_text())


@pytest.fixture
def done(tmp_path, tiny):
    """A complete 2-epoch run, and its files' bytes."""
    start(tmp_path, "r", tiny)
    return tmp_path / "r"


# -- 1. a refused resume changes nothing -----------------------------------------------------


def test_resume_with_images_of_another_size_is_refused_and_changes_nothing(done, tmp_path):
    before = snapshot(done)
    other = tmp_path / "other14x14.npz"
    rng = np.random.default_rng(0)
    np.savez(other, images=rng.integers(0, 256, (60, 14, 14), np.uint8))
    proc = subprocess.run(
        [*CLI, "train", "--resume", str(done), "--epochs", "3", "--dataset", str(other)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert snapshot(done) == before  # run.json still says complete, with its own data
    assert status(done)["status"] == "complete"


def test_a_failed_checkpoint_write_leaves_history_and_model_behind_nothing(done, tiny, monkeypatch):
    # A full disk while extending: the checkpoint is written first, so when it fails,
    # history.csv is not ahead of the model (it used to gain the epoch the model lacked).
    before = snapshot(done)

    def full_disk(*args, **kwargs):
        raise DeepAEError("cannot write checkpoint.safetensors: No space left on device")

    monkeypatch.setattr(run.pipeline.checkpoint, "save", full_disk)
    with pytest.raises(DeepAEError, match="No space left"):
        run.resume(done, tiny, epochs=3, log=lambda _: None, progress=False, evaluate=False)
    after = snapshot(done)
    assert after["history.csv"] == before["history.csv"]
    assert after["model.safetensors"] == before["model.safetensors"]
    assert after["checkpoint.safetensors"] == before["checkpoint.safetensors"]
    monkeypatch.undo()
    result = run.resume(done, tiny, log=lambda _: None, progress=False, evaluate=False)
    assert result.metrics["epochs"] == 3 and status(done)["epochs_done"] == 3


def test_a_full_disk_while_training_says_how_to_go_on(tmp_path, tiny, monkeypatch):
    # It said "free disk space or choose a writable folder", not that the run resumes: the
    # same command again is refused (the folder exists), and a new one starts over.
    real_save, saves = run.pipeline.checkpoint.save, []

    def full_at_the_second(*args, **kwargs):
        saves.append(1)
        if len(saves) == 2:
            raise DeepAEError("cannot write checkpoint.safetensors: No space left on device")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(run.pipeline.checkpoint, "save", full_at_the_second)
    with pytest.raises(DeepAEError, match="No space left") as info:
        start(tmp_path, "r", tiny, epochs=3)
    message = str(info.value)
    assert f"last good epoch (1) is kept in {tmp_path / 'r'}" in message, message
    assert f"deepae train --resume {tmp_path / 'r'}" in message and "\n" not in message
    monkeypatch.undo()
    run.resume(tmp_path / "r", tiny, log=lambda _: None, progress=False, evaluate=False)
    assert status(tmp_path / "r")["status"] == "complete"


# -- 2. an interrupted extension finishes every epoch ----------------------------------------


def test_interrupted_extension_then_plain_resume_finishes_all_epochs(done, tiny):
    polls = {"n": 0}

    def stop_in_epoch_4():  # 13 steps an epoch: epoch 3 runs polls 1-13, epoch 4 from 14
        polls["n"] += 1
        return polls["n"] > 13 + 5

    quiet = {"log": lambda _: None, "progress": False, "evaluate": False}
    result = run.resume(done, tiny, epochs=5, stop=stop_in_epoch_4, **quiet)
    assert result.interrupted
    assert (status(done)["epochs_done"], status(done)["step"], status(done)["epochs"]) == (3, 5, 5)
    result = run.resume(done, tiny, **quiet)  # no --epochs: the run's own target, 5
    assert not result.interrupted and result.metrics["epochs"] == 5
    assert (status(done)["status"], status(done)["epochs_done"]) == ("complete", 5)
    assert len(run.read_history(done)) == 5
    saved = json.loads((done / "config.json").read_text())["train"]
    assert saved["epochs"] == 5  # config.json agrees with the run it describes


def test_resume_below_the_epochs_done_is_refused(done):
    before = snapshot(done)
    proc = subprocess.run([*CLI, "train", "--resume", str(done), "--epochs", "1"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "below the 2 epochs" in proc.stderr
    assert snapshot(done) == before


def test_resume_to_the_epochs_done_of_a_run_stopped_mid_epoch_is_refused(tmp_path, tiny):
    # Stopped 5 steps into epoch 3 of 3: the checkpoint holds those steps. --epochs 2 would
    # train nothing and save the mid-epoch weights as a "complete" 2-epoch model.
    polls = iter(range(1, 10**6))
    result = start(tmp_path, "m", tiny, epochs=3, stop=lambda: next(polls) > 2 * 13 + 5)
    assert result.interrupted
    folder = tmp_path / "m"
    assert (status(folder)["epochs_done"], status(folder)["step"]) == (2, 5)
    before = snapshot(folder)
    with pytest.raises(ConfigError, match="stopped inside epoch 3; give epochs of at least 3"):
        run.resume(folder, tiny, epochs=2, log=lambda _: None, progress=False)
    assert snapshot(folder) == before


@pytest.mark.parametrize("record", [None, {}, {"source": "npz file"}])
def test_resume_without_a_data_record_is_refused_not_run_on_mnist(done, record):
    # Without the data's SHA-256 or counts, a resume would load the default, MNIST, with
    # nothing to check it against.
    raw = json.loads((done / "run.json").read_text())
    raw["status"], raw["data"] = "interrupted", record
    (done / "run.json").write_text(json.dumps(raw))
    before = snapshot(done)
    proc = subprocess.run([*CLI, "train", "--resume", str(done), "--epochs", "3"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "does not say what data the run trained on" in proc.stderr
    assert "Traceback" not in proc.stderr and snapshot(done) == before


# -- 3. resume with other data is refused ----------------------------------------------------


@pytest.mark.parametrize("n_train", [300, 500])  # smaller and larger than the run's 400
def test_resume_on_other_data_of_the_same_shape_is_refused(done, tiny, mnist_small, n_train):
    other = dataclasses.replace(tiny, x_train=mnist_small.x_train[:n_train],
                                y_train=mnist_small.y_train[:n_train])  # fmt: skip
    before = snapshot(done)
    with pytest.raises(DataError, match="trained on other data"):
        run.resume(done, other, epochs=3, log=lambda _: None, progress=False)
    assert snapshot(done) == before


@pytest.mark.parametrize("dropped", [(), ("sha256", "n_train", "n_test")])
def test_resume_on_its_own_data_reloaded_from_the_record_works(tmp_path, dropped):
    # The run's data record (name, load arguments, SHA-256) is enough to reload it; so is
    # the record of an earlier deepae, which named the data without a SHA-256 or counts.
    fixture = "tests/fixtures/mnist-small.npz"
    args = ["--dataset", fixture, "--epochs", "1", "--runs-dir", str(tmp_path), "--name", "a"]
    common = ["--no-evaluate", "--no-progress", "--latent-activation", "linear"]
    assert subprocess.run([*CLI, "train", *args, *common], capture_output=True,
                          timeout=300).returncode == 0  # fmt: skip
    raw = status(tmp_path / "a")
    raw["data"] = {k: v for k, v in raw["data"].items() if k not in dropped}
    (tmp_path / "a" / "run.json").write_text(json.dumps(raw))
    proc = subprocess.run([*CLI, "train", "--resume", str(tmp_path / "a"), "--epochs", "2",
                           "--no-progress", "--no-evaluate"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert status(tmp_path / "a")["epochs_done"] == 2


def test_resume_after_its_data_file_changed_or_moved_says_so(tmp_path, tiny):
    # Both used to blame options the user never gave: "leave out the data options", and
    # "check the spelling or the path" of a --dataset taken from run.json.
    npz = tmp_path / "digits.npz"
    np.savez(npz, x_train=tiny.x_train, y_train=tiny.y_train, x_test=tiny.x_test,
             y_test=tiny.y_test)  # fmt: skip
    run.start(tmp_path, "r", data_options={"dataset": str(npz)}, epochs=1, device="cpu",
              latent_activation="linear", log=lambda _: None, progress=False,
              evaluate=False)  # fmt: skip
    folder, before = tmp_path / "r", snapshot(tmp_path / "r")
    x = tiny.x_train.copy()
    x[0, 0, 0] ^= 1
    np.savez(npz, x_train=x, y_train=tiny.y_train, x_test=tiny.x_test, y_test=tiny.y_test)
    with pytest.raises(DataError, match="digits.npz no longer holds the data") as info:
        run.resume(folder, epochs=2, log=lambda _: None, progress=False)
    assert "data options" not in str(info.value) and info.value.field == "dataset"
    npz.rename(tmp_path / "moved.npz")
    with pytest.raises(DataError, match="digits.npz, the data the run trained on") as info:
        run.resume(folder, epochs=2, log=lambda _: None, progress=False)
    assert "spelling" not in str(info.value)
    assert snapshot(folder) == before


# -- 4. --overwrite starts from an empty folder ----------------------------------------------


def test_overwrite_leaves_nothing_of_the_old_run(done, tiny):
    (done / "evaluation.json").write_text('{"split": "test", "stale": true}')
    (done / "notes.txt").write_text("old")
    old_checkpoint = (done / "checkpoint.safetensors").read_bytes()
    result = start(done.parent, done.name, tiny, overwrite=True, epochs=1,
                   stop=lambda: True)  # fmt: skip
    assert result.interrupted  # stopped before its first step
    names = {p.name for p in done.iterdir()} - {files.LOCK_FILE}
    assert "evaluation.json" not in names and "notes.txt" not in names
    assert (done / "checkpoint.safetensors").read_bytes() != old_checkpoint
    assert (status(done)["epochs"], status(done)["epochs_done"]) == (1, 0)


def test_a_killed_overwrite_can_be_overwritten_not_resumed(done, tmp_path, monkeypatch):
    # The folder was emptied in directory order: a kill could leave the old checkpoint
    # alone, in a folder --overwrite then refused as "no deepae run".
    import shutil

    real_unlink, n_files = Path.unlink, len(list(done.iterdir())) - 1  # the lock stays
    for kill_after in range(1, n_files):
        folder = Path(shutil.copytree(done, tmp_path / f"k{kill_after}"))

        def unlink(self, *args, calls=[], kill_after=kill_after, **kwargs):  # noqa: B006
            calls.append(self)  # one list per iteration: a new function each time
            if len(calls) > kill_after:
                raise KeyboardInterrupt
            return real_unlink(self, *args, **kwargs)

        with monkeypatch.context() as m:
            m.setattr(Path, "unlink", unlink)
            with pytest.raises(KeyboardInterrupt):
                files.empty_folder(folder)
        assert not (folder / "checkpoint.safetensors").exists(), kill_after
        assert run.new_run_folder(tmp_path, folder.name, overwrite=True) == folder


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"pairs": [(0, 99_999)]},
            "two test-image indices",
        ),  # checked with the data, after the folder's
        ({"engine": "fused", "hidden_activation": "gelu"}, "fused engine"),  # the trainer's
        ({"device": "cuda"}, "no CUDA GPU"),
    ],  # fmt: skip
)
def test_a_refused_overwrite_leaves_the_old_run_whole(done, tiny, options, message):
    if message == "no CUDA GPU" and torch.cuda.is_available():
        options = {"batch_size": 0}  # refused just as late on a machine with a GPU
        message = "batch_size"
    before = {p.name: p.read_bytes() for p in done.iterdir() if p.is_file()}
    with pytest.raises(DeepAEError, match=message):
        start(done.parent, done.name, tiny, overwrite=True, **options)
    assert {p.name: p.read_bytes() for p in done.iterdir() if p.is_file()} == before


def test_a_refused_new_run_leaves_no_folder_behind(tmp_path, tiny):
    with pytest.raises(DeepAEError, match="two test-image indices"):
        start(tmp_path, "new", tiny, pairs=[(0, 99_999)])
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()  # a folder the user made: left alone
    with pytest.raises(DeepAEError, match="two test-image indices"):
        start(tmp_path, "kept", tiny, pairs=[(0, 99_999)])
    assert (tmp_path / "kept").is_dir()


def test_without_overwrite_an_existing_run_is_refused(done, tiny):
    before = snapshot(done)
    with pytest.raises(ConfigError, match="already exists"):
        start(done.parent, done.name, tiny)
    assert snapshot(done) == before


# -- 5. one trainer per run folder -----------------------------------------------------------


def test_the_lock_is_exclusive_and_released(tmp_path):
    with files.locked(tmp_path / "r"):  # noqa: SIM117 (the inner lock must be tried inside)
        with pytest.raises(RunError, match="another deepae process is training or reading"):
            with files.locked(tmp_path / "r"):
                pass
    with files.locked(tmp_path / "r"):  # released when the first one ended
        pass


def test_a_second_training_with_the_same_name_gets_one_line_and_exit_2(tmp_path):
    fixture = "tests/fixtures/mnist-small.npz"
    args = [*CLI, "train", "--dataset", fixture, "--runs-dir", str(tmp_path), "--name", "same",
            "--no-progress", "--no-evaluate", "--overwrite"]  # fmt: skip
    first = subprocess.Popen([*args, "--epochs", "200"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "same" / "history.csv").exists():  # training has started
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        before = snapshot(tmp_path / "same")
        second = subprocess.run([*args, "--epochs", "1"], capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1 and "another deepae process" in second.stderr
        assert snapshot(tmp_path / "same")["config.json"] == before["config.json"]
        assert first.poll() is None  # the first one goes on
    finally:
        first.kill()
        first.wait(timeout=60)


def test_a_run_refused_the_lock_leaves_the_holders_folder_alone(tmp_path, tiny, monkeypatch):
    # Two runs of one name: B finds no folder, then A makes it and takes its lock just
    # before B tries. B, refused, used to tidy "its" empty folder: A's lock and folder.
    import contextlib

    from deepae.run import pipeline

    rival, real = contextlib.ExitStack(), pipeline.locked

    def a_wins_the_race(folder, **options):
        rival.enter_context(files.locked(folder))
        return real(folder, **options)

    monkeypatch.setattr(pipeline, "locked", a_wins_the_race)
    with rival:
        with pytest.raises(RunError, match="another deepae process"):
            start(tmp_path, "same", tiny)
        assert (tmp_path / "same" / files.LOCK_FILE).exists()


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, tiny, monkeypatch):
    from deepae.run import pipeline

    monkeypatch.setattr(
        pipeline.time, "strftime", lambda fmt: fmt.replace("%Y%m%d-%H%M%S", "20261130-103358")
    )
    taken = tmp_path / "article-20261130-103358"
    with files.locked(taken):  # a run of that second, training: its files written already
        (taken / "config.json").write_text("{}")
        result = start(tmp_path, None, tiny, epochs=1, stop=lambda: True)
    assert result.folder == tmp_path / "article-20261130-103358-2"
    assert status(result.folder)["status"] == "interrupted"


@pytest.mark.parametrize("kind", ["other files", "a link to a run"])
def test_overwrite_empties_only_a_run_folder_never_through_a_link(done, tmp_path, tiny, kind):
    if kind == "other files":
        target = tmp_path / "thesis"
        target.mkdir()
        (target / "thesis.tex").write_text("three years of work")
        name, message = "thesis", "holds files but no deepae run"
    else:
        target, name, message = done, "link", "is a link"
        (tmp_path / "link").symlink_to(done)
    before = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match=message):
        start(tmp_path, name, tiny, overwrite=True)
    assert {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} == before


def test_a_lock_file_that_is_a_fifo_blocks_no_command(done, tmp_path, tiny):
    # Opening a FIFO waits for a writer: a planted one would hang every reader (in a
    # process of its own, so that a hang is a failed test, not a stuck suite).
    import os

    (done / files.LOCK_FILE).unlink()
    os.mkfifo(done / files.LOCK_FILE)
    proc = subprocess.run([*CLI, "encode", str(done), "--out", str(tmp_path / "codes.npy")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(RunError, match="is not a regular file"):
        run.resume(done, tiny, epochs=3, log=lambda _: None, progress=False)


def test_a_lock_file_that_is_a_link_is_refused_and_followed_nowhere(done, tmp_path, tiny):
    (done / files.LOCK_FILE).unlink()
    outside = tmp_path / "outside"
    outside.mkdir()
    (done / files.LOCK_FILE).symlink_to(outside / "created-by-deepae")
    before = snapshot(done)
    with pytest.raises(RunError, match="is not a regular file"):
        run.resume(done, tiny, epochs=3, log=lambda _: None, progress=False)
    assert not (outside / "created-by-deepae").exists() and snapshot(done) == before


def test_evaluate_and_plot_wait_for_a_training_of_the_run(done, tiny, capsys):
    with files.locked(done):  # a training of the run (an extension) holds its lock
        with pytest.raises(RunError, match="another deepae process is training in"):
            run.evaluate_run(done)
        with pytest.raises(RunError, match="another deepae process is training in"):
            run.redraw(done)
    from deepae.cli import main

    with files.locked(done):  # the command line's readers that write into the run, too
        for command in ("encode", "reconstruct", "explore"):
            assert main([command, str(done)]) == 2
            assert "another deepae process is training in" in capsys.readouterr().err
    with files.reading(done):  # readers run beside each other, but not beside a training
        assert run.redraw(done)
        with pytest.raises(RunError, match="another deepae process is training or reading"):
            run.resume(done, tiny, epochs=3, log=lambda _: None, progress=False)


def test_an_extension_whose_config_write_fails_reads_as_unfinished(done, tiny, monkeypatch):
    # run.json, holding the new target, comes before config.json: a full disk at the
    # config leaves a run that says it is unfinished, not a complete 2-epoch run whose
    # config.json says 4.
    from deepae.errors import DeepAEError
    from deepae.run import pipeline

    def full_disk(*args, **kwargs):
        raise DeepAEError("cannot write config.json: No space left on device")

    monkeypatch.setattr(pipeline.storage, "save_config", full_disk)
    with pytest.raises(DeepAEError, match="No space left"):
        run.resume(done, tiny, epochs=4, log=lambda _: None, progress=False, evaluate=False)
    monkeypatch.undo()
    assert (status(done)["status"], status(done)["epochs"]) == ("training", 4)
    assert json.loads((done / "config.json").read_text())["train"]["epochs"] == 2
    with pytest.raises(RunError, match="incomplete"):
        files.require_complete(done)
    run.resume(done, tiny, log=lambda _: None, progress=False, evaluate=False)
    assert (status(done)["status"], status(done)["epochs_done"]) == ("complete", 4)
    assert json.loads((done / "config.json").read_text())["train"]["epochs"] == 4


# -- 6. leftovers of a kill -9 are cleaned up on resume --------------------------------------


def test_resume_removes_leftover_temporary_files(tmp_path, tiny):
    result = start(tmp_path, "r", tiny, epochs=2, stop=lambda: True)
    assert result.interrupted
    folder = tmp_path / "r"
    leftovers = []  # named as atomic_path names them: the process died before the rename
    for target, tail in (("checkpoint.safetensors", ".tmp"), ("latent.png", ".tmp.png")):
        fd, name = tempfile.mkstemp(prefix=f".{target}.", suffix=tail, dir=folder)
        os.write(fd, b"half a file")
        os.close(fd)
        leftovers.append(os.path.basename(name))
    users = [".notes", ".notes.tmp", ".my.draft.tmp", ".plan.v2.tmp.txt"]  # not deepae's
    for name in users:
        (folder / name).write_text("not ours")
    run.resume(folder, tiny, log=lambda _: None, progress=False, evaluate=False)
    names = {p.name for p in folder.iterdir()}
    assert not names & set(leftovers) and set(users) <= names


# -- 6. what a resumed run says about itself -----------------------------------------------


def test_a_resumed_run_keeps_its_preset_and_drops_stale_evaluations(tmp_path, tiny):
    start(tmp_path, "r", tiny, preset="article", epochs=1)
    folder = tmp_path / "r"
    (folder / "evaluation.json").write_text('{"split": "test", "of": "epoch 1"}')
    (folder / "evaluation-train.json").write_text('{"split": "train", "of": "epoch 1"}')
    logs = []
    run.resume(folder, tiny, epochs=2, log=logs.append, progress=False, evaluate=False)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert (metrics["preset"], metrics["epochs"]) == ("article", 2)
    assert not list(folder.glob("evaluation*.json"))  # they described the 1-epoch model
    assert any(line.startswith("removed evaluation-train.json") for line in logs)


def test_a_resume_that_evaluates_does_not_send_the_user_to_deepae_evaluate(tmp_path, tiny):
    start(tmp_path, "r", tiny, epochs=1)
    folder = tmp_path / "r"
    (folder / "evaluation.json").write_text('{"split": "test", "of": "epoch 1"}')
    (folder / "evaluation-train.json").write_text('{"split": "train", "of": "epoch 1"}')
    logs = []
    run.resume(folder, tiny, epochs=2, log=logs.append, progress=False)
    removed = {line.split()[1].rstrip(","): line for line in logs if line.startswith("removed ")}
    # evaluation.json is written again by this very run: no command to run for it.
    assert "deepae evaluate" not in removed["evaluation.json"]
    assert "of" not in json.loads((folder / "evaluation.json").read_text())
    # evaluation-train.json is not: deepae evaluate --split train writes it again.
    assert "deepae evaluate writes it again" in removed["evaluation-train.json"]
    assert not (folder / "evaluation-train.json").exists()


def test_evaluating_on_other_data_keeps_the_runs_own_evaluation(tmp_path, mnist_small):
    fixture = "tests/fixtures/mnist-small.npz"
    common = ["--no-progress", "--latent-activation", "linear"]
    proc = subprocess.run([*CLI, "train", "--dataset", fixture, "--epochs", "1", "--runs-dir",
                           str(tmp_path), "--name", "r", *common],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    own = (tmp_path / "r" / "evaluation.json").read_bytes()
    other = tmp_path / "other.npz"  # the same images under another name: other data
    other.write_bytes(Path(fixture).read_bytes())
    proc = subprocess.run([*CLI, "evaluate", str(tmp_path / "r"), "--dataset", str(other)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r" / "evaluation.json").read_bytes() == own
    written = json.loads((tmp_path / "r" / "evaluation-other-test.json").read_text())
    assert written["dataset"] == "other"
    assert proc.stdout.rstrip().endswith("evaluation-other-test.json")
