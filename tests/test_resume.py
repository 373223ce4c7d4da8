"""Never lose work: checkpoints, resume (bit-identical to an uninterrupted run), signals,
kill -9 of a real training process, divergence, and incomplete runs seen by every command."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from deepae import run as runs
from deepae import train
from deepae.config import ModelConfig, TrainConfig
from deepae.errors import RunError
from deepae.run import checkpoint
from deepae.run import files as status

CLI = [sys.executable, "-m", "deepae.cli"]


@pytest.fixture(scope="module")
def small(mnist_small):
    return dataclasses.replace(
        mnist_small, x_train=mnist_small.x_train[:1600], y_train=mnist_small.y_train[:1600],
        x_test=mnist_small.x_test[:300], y_test=mnist_small.y_test[:300],
    )  # fmt: skip


def run_small(folder, data, *, epochs=3, **kwargs):
    return runs.train_run(
        folder, ModelConfig(), TrainConfig(epochs=epochs, device="cpu"), data,
        log=lambda _: None, progress=False, **kwargs,
    )  # fmt: skip


def weights(folder, name="model.safetensors"):
    return load_file(folder / name)


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def stop_after(n_steps):
    """A stop() that turns true after n_steps polls: an interruption mid-epoch."""
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > n_steps

    return stop


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, small):
    straight = run_small(tmp_path / "a", small)
    stopped = run_small(tmp_path / "b", small, stop=stop_after(50 + 70))  # epoch 3, step 21
    assert stopped.interrupted
    record = status.read_status(tmp_path / "b")
    assert (record["status"], record["epochs_done"], record["step"]) == ("interrupted", 2, 20)
    with pytest.raises(RunError, match="--resume"):
        status.require_complete(tmp_path / "b")
    resumed = run_small(tmp_path / "b", small, resume=True)
    assert not resumed.interrupted
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert [(r.loss, r.val_loss) for r in runs.read_history(tmp_path / "a")] == [
        (r.loss, r.val_loss) for r in runs.read_history(tmp_path / "b")
    ]
    assert straight.metrics["loss"] == resumed.metrics["loss"]
    assert status.read_status(tmp_path / "b")["status"] == status.COMPLETE


def test_checkpoint_round_trip_restores_optimizer_and_position(tmp_path, small):
    cfg = TrainConfig(epochs=2, device="cpu", schedule="onecycle")
    from deepae.data import flatten_images
    from deepae.model import build

    x = torch.from_numpy(flatten_images(small.x_train))
    a = train.Trainer(build(ModelConfig(), 0), cfg, len(x))
    state = train.fit(a, x, stop=stop_after(30))
    checkpoint.save(tmp_path, a, state)
    b = train.Trainer(build(ModelConfig(), 99), cfg, len(x))  # other weights on purpose
    restored = checkpoint.load(tmp_path, b)
    assert (restored.epoch, restored.step) == (0, 30)
    assert torch.equal(restored.partial_losses, state.partial_losses)
    for pa, pb in zip(a.net.parameters(), b.net.parameters(), strict=True):
        assert torch.equal(pa, pb)
    sa, sb = a.opt.state_dict(), b.opt.state_dict()
    assert sa["param_groups"][0]["lr"] == sb["param_groups"][0]["lr"]
    assert torch.equal(sa["state"][0]["exp_avg_sq"], sb["state"][0]["exp_avg_sq"])
    assert a.schedule.state_dict()["last_epoch"] == b.schedule.state_dict()["last_epoch"] == 30


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, small, monkeypatch):
    good = run_small(tmp_path / "good", small, epochs=1)
    assert good.metrics["epochs"] == 1
    real_plan = train.Trainer._epoch_plan
    count = {"n": 0}
    steps_per_epoch = 1600 // 32

    def poisoned(self, x, epoch):  # each step's loss, whichever step trains
        step = real_plan(self, x, epoch)

        def poisoned_step(s):
            count["n"] += 1
            loss = step(s)
            return loss * float("nan") if count["n"] == steps_per_epoch + 6 else loss

        return poisoned_step

    monkeypatch.setattr(train.Trainer, "_epoch_plan", poisoned)
    with pytest.raises(train.TrainingDiverged, match=r"epoch 2, step 6.*last good epoch \(1\)"):
        run_small(tmp_path / "bad", small, epochs=2)
    assert status.read_status(tmp_path / "bad")["status"] == "failed"
    assert_same_weights(
        {k[6:]: v for k, v in weights(tmp_path / "bad", "checkpoint.safetensors").items()
         if k.startswith("model.")},
        weights(tmp_path / "good"),
    )  # fmt: skip


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, small):
    run_small(tmp_path / "r", small, stop=stop_after(10))
    path = tmp_path / "r" / "checkpoint.safetensors"
    path.write_bytes(path.read_bytes()[:200])
    from deepae.model import build

    trainer = train.Trainer(build(ModelConfig()), TrainConfig(device="cpu"), 1600)
    with pytest.raises(RunError, match="unreadable"):
        checkpoint.load(tmp_path / "r", trainer)


# -- real processes -------------------------------------------------------------------------


def start_training(runs_dir, name, *extra):
    args = [*CLI, "train", "--runs-dir", str(runs_dir), "--name", name, "--epochs", "3",
            "--no-progress", "--latent-activation", "linear", *extra]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epochs(folder, n, proc, timeout=180):
    """Poll run.json until `n` epochs are checkpointed; the process is then mid-epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads((folder / "run.json").read_text())["epochs_done"] >= n:
                return
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.kill()
    proc.communicate()
    pytest.fail("training did not reach the epoch in time")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, mnist_small):
    runs_dir = tmp_path_factory.mktemp("straight")
    proc = start_training(runs_dir, "s")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return weights(runs_dir / "s")


def resume(folder):
    proc = subprocess.run([*CLI, "train", "--resume", str(folder), "--no-progress"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc


def test_kill_9_mid_epoch_then_resume_is_bit_identical(tmp_path, uninterrupted):
    proc = start_training(tmp_path, "k")
    wait_for_epochs(tmp_path / "k", 1, proc)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert status.read_status(tmp_path / "k")["status"] == "training"  # it never got to say more
    code = subprocess.run([*CLI, "encode", str(tmp_path / "k")], capture_output=True, text=True)
    assert code.returncode == 2 and "deepae train --resume" in code.stderr
    assert "Traceback" not in code.stderr
    out = resume(tmp_path / "k")
    assert "resuming" in out.stdout
    assert_same_weights(weights(tmp_path / "k"), uninterrupted)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_a_checkpoint_and_resume_finishes_it(tmp_path, uninterrupted, sig, code):
    proc = start_training(tmp_path, "i")
    wait_for_epochs(tmp_path / "i", 1, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"deepae train --resume {tmp_path / 'i'}" in err
    assert "Traceback" not in err
    record = status.read_status(tmp_path / "i")
    assert record["status"] == "interrupted"
    resume(tmp_path / "i")
    assert_same_weights(weights(tmp_path / "i"), uninterrupted)


def test_resume_refuses_what_it_cannot_do(tmp_path, uninterrupted):
    def cli(*args):
        return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True)

    (tmp_path / "empty").mkdir()
    r = cli("train", "--resume", tmp_path / "empty")
    assert r.returncode == 2 and "no checkpoint to resume from" in r.stderr
    proc = start_training(tmp_path, "c", "--epochs", "1")
    proc.communicate(timeout=300)
    r = cli("train", "--resume", tmp_path / "c")
    assert r.returncode == 2 and "is complete (1 epochs)" in r.stderr
    r = cli("train", "--resume", tmp_path / "c", "--lr", "0.1")
    assert r.returncode == 2 and "only epochs and device may change" in r.stderr
    assert os.path.exists(tmp_path / "c" / "model.safetensors")


def test_divergence_in_the_first_epoch_says_there_is_nothing_to_resume(tmp_path, small,
                                                                        monkeypatch):  # fmt: skip
    real_plan = train.Trainer._epoch_plan

    def poisoned(self, x, epoch):
        step = real_plan(self, x, epoch)
        return lambda s: step(s) * float("nan") if s == 5 else step(s)

    monkeypatch.setattr(train.Trainer, "_epoch_plan", poisoned)
    with pytest.raises(train.TrainingDiverged, match="holds no checkpoint: start the run again"):
        run_small(tmp_path / "bad", small, epochs=2)
    assert not (tmp_path / "bad" / "checkpoint.safetensors").exists()
    with pytest.raises(RunError, match="no checkpoint to resume from: train it again"):
        status.require_complete(tmp_path / "bad")
    with pytest.raises(RunError, match="left no checkpoint to resume from: train it again"):
        runs.resume(tmp_path / "bad")


def test_resume_of_a_run_killed_in_its_first_epoch_says_to_train_it_again(tmp_path, small):
    # It used to say "give a run folder that `deepae train` wrote", of a folder it wrote.
    def killed():
        raise KeyboardInterrupt  # a second Ctrl-C (or a kill) before the first checkpoint

    with pytest.raises(KeyboardInterrupt):
        run_small(tmp_path / "k", small, epochs=2, stop=killed)
    assert status.read_status(tmp_path / "k")["epochs_done"] == 0
    with pytest.raises(RunError, match="first epoch .*train it again") as info:
        runs.resume(tmp_path / "k")
    assert "`deepae train` wrote" not in str(info.value)


def test_resume_without_run_json_says_it_is_missing(tmp_path, small):
    run_small(tmp_path / "r", small, epochs=1, stop=stop_after(5))
    (tmp_path / "r" / "run.json").unlink()  # as the advice for a damaged run.json says
    with pytest.raises(RunError, match="run.json is missing") as info:
        runs.resume(tmp_path / "r")
    assert "no checkpoint" not in str(info.value)
    (tmp_path / "r" / "run.json").write_text('{"status": "interrupted", "epochs_done": 0, '
                                             '"epochs": 1, "step": 5, "data": null}')  # fmt: skip
    (tmp_path / "r" / "checkpoint.safetensors").unlink()
    with pytest.raises(RunError, match="checkpoint.safetensors is missing"):
        runs.resume(tmp_path / "r")
