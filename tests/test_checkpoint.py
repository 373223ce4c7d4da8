"""Crafted checkpoints: every tensor and every metadata value is checked against the model
and the optimizer before use, so a hostile or damaged checkpoint.safetensors ends in one
RunError (one line and exit 2 on the command line), never in a crash of the fused Adam
kernel (SIGSEGV) or a traceback; and checkpoints are byte-reproducible."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from deepae import storage, train
from deepae.config import ModelConfig, TrainConfig
from deepae.errors import RunError
from deepae.model import build
from deepae.run import checkpoint
from test_resume import stop_after

FIXTURE = Path(__file__).parent / "fixtures" / "mnist-small.npz"
N_TRAIN = 2000  # training images of the fixture: ceil(2000 / 32) = 63 steps per epoch
CLI = [sys.executable, "-m", "deepae.cli"]


@pytest.fixture
def run(cli_run_copy):
    return cli_run_copy  # `deepae train --epochs 1` on the fixture, this test's own copy


def read(folder):
    """(tensors, metadata, state) of a checkpoint, read with safetensors itself."""
    raw = (folder / "checkpoint.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    meta = json.loads(raw[8 : 8 + n])["__metadata__"]
    return load_safetensors(raw), meta, json.loads(meta["state"])


def rewrite(folder, tensors, meta, state):
    data = save_safetensors(tensors, metadata={**meta, "state": json.dumps(state)})
    (folder / "checkpoint.safetensors").write_bytes(data)


def trainer_of(folder, **changes):
    model, cfg = storage.load_config(folder)
    cfg = TrainConfig(**{**vars(cfg), **changes})
    return train.Trainer(build(model, 7), cfg, N_TRAIN)


def test_a_real_checkpoint_still_loads(run):
    trainer = trainer_of(run)
    state = checkpoint.load(run, trainer)
    tensors, _, _ = read(run)
    assert (state.epoch, state.step, len(state.history)) == (1, 0, 1)
    for name, value in trainer.net.state_dict().items():
        assert torch.equal(value, tensors[f"model.{name}"]), name
    slots = trainer.opt.state_dict()["state"][0]
    assert torch.equal(slots["exp_avg"], tensors["optim.0.exp_avg"])
    assert slots["step"].item() == 63


def _wrong_size_exp_avg(t, m, s):
    t["optim.0.exp_avg"] = torch.zeros(10)


def _extra_param_id(t, m, s):
    t["optim.1.step"] = torch.tensor(1.0)
    t["optim.1.exp_avg"], t["optim.1.exp_avg_sq"] = torch.zeros(10), torch.zeros(10)


def _version_abc(t, m, s):
    m["version"] = "abc"


def _epoch_abc(t, m, s):
    s["epoch"] = "abc"


def _partial_losses_of_wrong_length(t, m, s):
    s["step"] = 5
    t["partial_losses"] = torch.zeros(10)


def _missing_slot(t, m, s):
    del t["optim.0.exp_avg_sq"]


def _step_slot_not_0d(t, m, s):
    t["optim.0.step"] = torch.ones(3)


def _exp_avg_float64(t, m, s):
    t["optim.0.exp_avg"] = t["optim.0.exp_avg"].double()


def _model_tensor_float64(t, m, s):
    t["model.encoder.0.bias"] = t["model.encoder.0.bias"].double()


def _stray_tensor(t, m, s):
    t["payload"] = torch.zeros(3)


def _epoch_past_the_end(t, m, s):
    s["epoch"] = 7


def _step_past_the_epoch(t, m, s):
    s["step"] = 63
    t["partial_losses"] = torch.zeros(63)


def _history_of_strings(t, m, s):
    s["history"][0]["loss"] = "low"


def _history_not_a_list(t, m, s):
    s["history"] = {"epoch": 1}


def _two_param_groups(t, m, s):
    s["param_groups"] = s["param_groups"] * 2


def _lr_abc(t, m, s):
    s["param_groups"][0]["lr"] = "abc"


def _lr_nan(t, m, s):
    s["param_groups"][0]["lr"] = float("nan")


def _lr_past_floats_range(t, m, s):
    s["param_groups"][0]["lr"] = 10**400  # JSON's ints are unbounded


def _history_loss_past_floats_range(t, m, s):
    s["history"][0]["loss"] = 10**400


def _one_beta(t, m, s):
    s["param_groups"][0]["betas"] = [0.9]


def _amsgrad_turned_on(t, m, s):
    s["param_groups"][0]["amsgrad"] = True


def _state_not_an_object(t, m, s):
    s.clear()


def _weight_nan(t, m, s):
    t["model.encoder.0.weight"][0, 0] = float("nan")  # resumed, it "diverged" at step 1


def _weight_infinite(t, m, s):
    t["model.decoder.body.0.bias"][0] = float("inf")


def _second_moment_negative(t, m, s):
    t["optim.0.exp_avg_sq"][0] = -1.0  # Adam takes its square root: NaN at the first step


def _first_moment_nan(t, m, s):
    t["optim.0.exp_avg"][3] = float("nan")


def _partial_loss_nan(t, m, s):
    s["step"] = 5
    t["partial_losses"] = torch.zeros(63)
    t["partial_losses"][2] = float("nan")


CRAFTED = [
    _wrong_size_exp_avg, _extra_param_id, _version_abc, _epoch_abc,
    _partial_losses_of_wrong_length, _missing_slot, _step_slot_not_0d, _exp_avg_float64,
    _model_tensor_float64, _stray_tensor, _epoch_past_the_end, _step_past_the_epoch,
    _history_of_strings, _history_not_a_list, _two_param_groups, _lr_abc, _lr_nan, _one_beta,
    _amsgrad_turned_on, _state_not_an_object, _lr_past_floats_range,
    _history_loss_past_floats_range, _weight_nan, _weight_infinite, _second_moment_negative,
    _first_moment_nan, _partial_loss_nan,
]  # fmt: skip


@pytest.mark.parametrize("craft", CRAFTED, ids=lambda f: f.__name__.strip("_"))
def test_a_crafted_checkpoint_is_a_run_error(run, craft):
    tensors, meta, state = read(run)
    craft(tensors, meta, state)
    rewrite(run, tensors, meta, state)
    with pytest.raises(RunError, match="cannot be resumed") as info:
        checkpoint.load(run, trainer_of(run, epochs=2))
    assert str(run / "checkpoint.safetensors") in str(info.value)
    assert "\n" not in str(info.value)


def test_state_nested_too_deeply_is_a_run_error(run):
    tensors, meta, _ = read(run)
    deep = "[" * 100_000 + "]" * 100_000
    data = save_safetensors(tensors, metadata={**meta, "state": deep})
    (run / "checkpoint.safetensors").write_bytes(data)
    with pytest.raises(RunError, match="cannot be resumed"):
        checkpoint.load(run, trainer_of(run, epochs=2))


def test_resume_with_fewer_epochs_than_done_names_epochs(run):
    # A checkpoint after epoch 3 of a run now set to 2 epochs: the fix is a larger epochs.
    tensors, meta, state = read(run)
    state["epoch"] = 3
    state["history"] = state["history"] * 3
    rewrite(run, tensors, meta, state)
    with pytest.raises(RunError, match="epochs") as info:
        checkpoint.load(run, trainer_of(run, epochs=2))
    assert info.value.field == "epochs"


def snapshot(folder):
    names = ("run.json", "history.csv", "model.safetensors", "checkpoint.safetensors")
    return {name: (folder / name).read_bytes() for name in names}


def test_wrong_size_optimizer_state_exits_2_instead_of_sigsegv(run):
    tensors, meta, state = read(run)
    tensors["optim.0.exp_avg"] = torch.zeros(10)  # the fused Adam kernel would write past it
    tensors["optim.0.exp_avg_sq"] = torch.zeros(10)
    rewrite(run, tensors, meta, state)
    before = snapshot(run)
    proc = subprocess.run([*CLI, "train", "--resume", str(run), "--epochs", "2",
                           "--no-progress", "--no-evaluate"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode != -11 and proc.returncode != 139, proc.stderr
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "cannot be resumed" in lines[0] and "checkpoint.safetensors" in lines[0]
    assert snapshot(run) == before


def test_a_checkpoint_with_nan_weights_is_refused_not_resumed_into_a_divergence(run):
    # It used to resume, "diverge" at its first step and turn the run's status to failed,
    # with advice to lower the rate and resume the same damaged file again.
    tensors, meta, state = read(run)
    tensors["model.encoder.0.weight"][0, 0] = float("nan")
    rewrite(run, tensors, meta, state)
    before = snapshot(run)
    proc = subprocess.run([*CLI, "train", "--resume", str(run), "--epochs", "2",
                           "--no-progress", "--no-evaluate"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "NaN" in proc.stderr, proc.stderr
    assert "cannot be resumed" in proc.stderr and "learning rate" not in proc.stderr
    assert snapshot(run) == before  # run.json still "complete"


def test_checkpoint_bytes_do_not_depend_on_the_save(tmp_path):
    cfg = TrainConfig(epochs=1, device="cpu")
    trainer = train.Trainer(build(ModelConfig(hidden_sizes=(8,)), 0), cfg, 64)
    state = train.fit(trainer, torch.rand(64, 784), stop=lambda: False)
    blobs = set()
    for _ in range(12):  # safetensors' metadata order changes from one save to the next
        blobs.add(checkpoint.save(tmp_path, trainer, state).read_bytes())
    assert len(blobs) == 1
    (raw,) = blobs
    n = int.from_bytes(raw[:8], "little")
    header = raw[8 : 8 + n]
    canonical = json.dumps(json.loads(header), sort_keys=True, separators=(",", ":"))
    assert header.rstrip(b" ") == canonical.encode()
    assert (8 + n) % 8 == 0


@pytest.mark.parametrize(
    ("model", "changes"),
    [
        ({}, {"optimizer": "adam", "schedule": "onecycle"}),
        ({}, {"optimizer": "adamw", "schedule": "cosine"}),
        ({}, {"optimizer": "adagrad"}),
        ({}, {"optimizer": "adadelta"}),
        ({}, {"optimizer": "rmsprop"}),
        ({}, {"optimizer": "sgd"}),
        ({}, {"optimizer": "sgd", "momentum": 0.9}),
        ({"batch_norm": True}, {"optimizer": "adam"}),  # autograd engine: one id per tensor
    ],
)
def test_every_optimizer_checkpoint_passes_the_checks(tmp_path, model, changes):
    # The checks must refuse crafted files only: a checkpoint each optimizer really writes,
    # mid-epoch (partial losses, schedule position), loads into a fresh trainer.
    config = ModelConfig(hidden_sizes=(8,), **model)
    cfg = TrainConfig(epochs=2, batch_size=16, device="cpu", **changes)
    x = torch.rand(64, 784)
    a = train.Trainer(build(config, 0), cfg, len(x))
    state = train.fit(a, x, stop=stop_after(4 + 3))  # epoch 2, step 3
    checkpoint.save(tmp_path, a, state)
    b = train.Trainer(build(config, 1), cfg, len(x))
    restored = checkpoint.load(tmp_path, b)
    assert (restored.epoch, restored.step, len(restored.history)) == (1, 3, 1)
    assert torch.equal(restored.partial_losses, state.partial_losses)
    sa, sb = a.opt.state_dict()["state"], b.opt.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for pid in sa:
        assert sa[pid].keys() == sb[pid].keys()
        for slot in sa[pid]:
            assert torch.equal(sa[pid][slot], sb[pid][slot]), (pid, slot)


def per_parameter(t: train.Trainer) -> list[dict[str, torch.Tensor]]:
    """Each parameter's optimizer slots (flattened; in net.parameters() order), whichever
    engine's layout the optimizer keeps them in."""
    state = t.opt.state_dict()["state"]
    sizes = [p.numel() for p in t.net.parameters()]
    if t.engine is None:  # one optimizer parameter per tensor
        return [{k: v if k == "step" else v.reshape(-1) for k, v in state.get(i, {}).items()}
                for i in range(len(sizes))]  # fmt: skip
    flat = state.get(0, {})  # one flat parameter
    return [{k: v if k == "step" else v.split(sizes)[i] for k, v in flat.items()}
            for i in range(len(sizes))]  # fmt: skip


@pytest.mark.parametrize(("saved", "resumed"), [("autograd", "fused"), ("fused", "autograd")])
@pytest.mark.parametrize("changes", [{}, {"optimizer": "sgd"}, {"optimizer": "rmsprop"}])
def test_a_checkpoint_of_the_other_engine_resumes(tmp_path, saved, resumed, changes):
    """A run checkpointed on one engine resumes on the other (umap2d moved from autograd to
    the fused engine): the optimizer's slots are joined into the flat parameter's, or
    split, and training then continues as it would have on the engine that wrote them."""
    config = ModelConfig(hidden_sizes=(8,), latent_activation="linear")
    x = torch.rand(64, 784)
    cfgs = {e: TrainConfig(epochs=2, batch_size=16, device="cpu", engine=e, **changes)
            for e in ("autograd", "fused")}  # fmt: skip
    a = train.Trainer(build(config, 0), cfgs[saved], len(x))
    state = train.fit(a, x, stop=stop_after(4 + 3))  # epoch 2, step 3
    checkpoint.save(tmp_path, a, state)
    b = train.Trainer(build(config, 1), cfgs[resumed], len(x))
    assert b.engine_name == resumed
    restored = checkpoint.load(tmp_path, b)
    assert (restored.epoch, restored.step) == (1, 3)

    # The same numbers in the other layout.
    for mine, theirs in zip(per_parameter(b), per_parameter(a), strict=True):
        assert mine.keys() == theirs.keys()
        for slot in mine:
            assert torch.equal(mine[slot], theirs[slot]), slot
    for p, q in zip(b.net.parameters(), a.net.parameters(), strict=True):
        assert torch.equal(p, q)
    # Both finish the run; their losses agree to float32 rounding.
    done_a = train.fit(a, x, state=state)
    done_b = train.fit(b, x, state=restored)
    assert done_b.history[-1].loss == pytest.approx(done_a.history[-1].loss, rel=1e-4)
