"""Training checkpoints: everything needed to continue a run exactly where it stopped.

One file, `checkpoint.safetensors`, written atomically (deepae.fsio): the weights and the
optimizer's tensors as safetensors, and the rest (epoch, step within the epoch, history,
optimizer hyper-parameters, lr-schedule position, per-step losses of a partial epoch) as
JSON in the file's metadata. One file means there is no moment at which weights and
bookkeeping disagree; safetensors means a checkpoint can never run code when loaded.

The optimizer's tensors are stored as the optimizer keeps them: one flat parameter's on the
fused engine, one per parameter on autograd. A checkpoint of either resumes on either
(`_in_trainers_layout`), so a run whose engine changed between deepae versions resumes.

No random-number-generator state is stored because training draws none: the shuffle of
epoch e comes from a generator seeded with (seed, e) (deepae.train._epoch_order), and the
initial weights are in the checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from deepae import fsio
from deepae.errors import CheckpointMismatch, RunError
from deepae.run.files import CHECKPOINT_FILE
from deepae.storage import canonical_safetensors
from deepae.train import EpochRecord, Trainer, TrainState

MAX_CHECKPOINT_BYTES = 12 * 2**30  # weights + two Adam moments of the largest model we allow
FORMAT = "deepae-checkpoint"
FORMAT_VERSION = 1


def save(folder: str | Path, trainer: Trainer, state: TrainState) -> Path:
    """Write the checkpoint of `trainer` at `state` into `folder`; returns its path."""
    tensors = {f"model.{k}": _plain(v) for k, v in trainer.net.state_dict().items()}
    optim = trainer.opt.state_dict()
    for pid, slots in optim["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{pid}.{key}"] = _plain(torch.as_tensor(value))
    if state.partial_losses is not None:
        tensors["partial_losses"] = _plain(state.partial_losses)
    meta = {
        "epoch": state.epoch,
        "step": state.step,
        "history": [vars(r) for r in state.history],
        "param_groups": optim["param_groups"],
        "schedule": trainer.schedule.state_dict() if trainer.schedule else None,
    }
    if trainer.neighbour is not None:  # the graph the run trains on: a resume needs the same
        meta["graph_sha256"] = trainer.neighbour.graph.sha256
    data = save_safetensors(
        tensors,
        metadata={"format": FORMAT, "version": str(FORMAT_VERSION), "state": json.dumps(meta)},
    )
    data = canonical_safetensors(data)  # the same state always gives the same bytes
    path = Path(folder) / CHECKPOINT_FILE
    fsio.write_bytes(path, data)
    return path


def exists(folder: str | Path) -> bool:
    return (Path(folder) / CHECKPOINT_FILE).is_file()


def read(folder: str | Path) -> bytes:
    """The checkpoint file's bytes (RunError when it is missing or cannot be read)."""
    path = Path(folder) / CHECKPOINT_FILE
    try:
        return fsio.read_bytes(path, max_bytes=MAX_CHECKPOINT_BYTES, fix="it cannot be resumed",
                               within=folder)  # fmt: skip
    except FileNotFoundError:
        raise RunError(f"{path} is missing: the run has no checkpoint to resume from") from None


def graph_sha256(raw: bytes) -> str | None:
    """The SHA-256 of the neighbour graph a checkpoint's run trains on (its bytes, `read`);
    None without one, or when the file is damaged (`load` then says how)."""
    try:
        meta = _metadata(raw)
    except (ValueError, KeyError, TypeError, IndexError, RecursionError):
        return None
    value = _state_field(meta, "graph_sha256") if isinstance(meta, dict) else None
    return value if isinstance(value, str) else None


def load(folder: str | Path, trainer: Trainer, *, raw: bytes | None = None) -> TrainState:
    """Restore weights, optimizer and schedule into `trainer`; returns the TrainState.
    `raw`: the file's bytes, when they were read already (`read`: in a data-parallel run,
    rank 0 reads them and sends them to the others).

    Every tensor (name, shape, dtype) and every value of the metadata is checked against
    `trainer` before any is used: anything else is a RunError naming the file."""
    path = Path(folder) / CHECKPOINT_FILE
    raw = read(folder) if raw is None else raw
    try:
        tensors = load_safetensors(raw)
        meta = _metadata(raw)
    except (SafetensorError, ValueError, OSError, KeyError, TypeError, RecursionError) as e:
        raise RunError(f"{path} is unreadable ({_short(e)}); the run cannot be resumed") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RunError(f"{path} is not a deepae checkpoint; the run cannot be resumed")
    version = meta.get("version")
    if not isinstance(version, str) or not re.fullmatch(r"[0-9]{1,9}", version):
        raise RunError(
            f"{path} has format version {_short(version)}, not a whole number; it cannot be resumed"
        )
    if int(version) > FORMAT_VERSION:
        raise RunError(f"{path} is not a checkpoint this deepae can read; upgrade deepae")
    graph = trainer.neighbour.graph.sha256 if trainer.neighbour is not None else None
    if _state_field(meta, "graph_sha256") != graph:
        raise RunError(
            f"{path} was trained with another neighbour graph than the one built now (the "
            "graph's settings or its cached copy changed); it cannot be resumed"
        )
    try:
        state, model, optimizer, schedule = _checked(meta, tensors, trainer)
    except CheckpointMismatch as e:
        raise RunError(f"{path} {e}; it cannot be resumed", field=e.field) from None
    try:
        trainer.net.load_state_dict(model)  # copies into the (possibly flat) parameters
        trainer.load_state_dict({"optimizer": optimizer, "schedule": schedule})
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise RunError(
            f"{path} does not match the run's config.json ({e}); it cannot be resumed"
        ) from None
    return state


# -- what a checkpoint may hold ----------------------------------------------------------
# The fused Adam kernel (deepae.engine.fused_adam_step) trusts the sizes of the tensors it
# is given: a moment shorter than its parameter makes it write past the end (SIGSEGV). So
# nothing of a checkpoint is used before it has been checked against the trainer.

# The per-parameter state torch.optim keeps for each optimizer as deepae.train builds it
# (torch 2.13): "step" is a 0-d float32 count, the others have their parameter's shape.
# SGD keeps a momentum buffer only with momentum. tests/test_checkpoint.py checks this
# table against real optimizers.
OPTIMIZER_SLOTS = {
    "adam": ("step", "exp_avg", "exp_avg_sq"),
    "adamw": ("step", "exp_avg", "exp_avg_sq"),
    "adagrad": ("step", "sum"),
    "adadelta": ("step", "square_avg", "acc_delta"),
    "rmsprop": ("step", "square_avg"),
    "sgd": ("momentum_buffer",),
}
_STATE_KEYS = ("epoch", "step", "history", "param_groups", "schedule")


def _checked(meta: dict, tensors: dict[str, torch.Tensor], trainer: Trainer):
    """(TrainState, model state dict, optimizer state dict, schedule state) of a
    checkpoint, every value checked against `trainer`; CheckpointMismatch for anything else."""
    try:
        info = json.loads(meta.get("state"))
    except (TypeError, ValueError, RecursionError) as e:
        raise CheckpointMismatch(f"has unreadable training state ({_short(e)})") from None
    if not isinstance(info, dict) or any(k not in info for k in _STATE_KEYS):
        raise CheckpointMismatch(f"lacks the training state ({', '.join(_STATE_KEYS)})")
    tensors = _in_trainers_layout(info, tensors, trainer)
    epoch, step, spe = info["epoch"], info["step"], trainer.steps_per_epoch
    if not _is_int(epoch) or epoch < 0:
        raise CheckpointMismatch(f"has epoch {_short(epoch)}, not a whole number >= 0")
    if not _is_int(step) or not 0 <= step < spe:
        raise CheckpointMismatch(f"has step {_short(step)}, not a whole number in [0, {spe})")
    history = _history(info["history"], epoch)
    if epoch > trainer.cfg.epochs:
        raise CheckpointMismatch(
            f"is after epoch {epoch}, more than epochs {trainer.cfg.epochs} (give epochs of at "
            f"least {epoch})",
            field="epochs",
        )
    _like(info["param_groups"], trainer.opt.state_dict()["param_groups"], "param_groups")
    schedule = trainer.schedule.state_dict() if trainer.schedule else None
    _like(info["schedule"], schedule, "schedule")
    if schedule is not None and info["schedule"]["last_epoch"] != epoch * spe + step:
        at = _short(info["schedule"]["last_epoch"])
        raise CheckpointMismatch(f"has a schedule at step {at}, not at epoch {epoch} step {step}")
    model, slots, partial = _tensors(tensors, trainer)
    if step > 0 and partial is None:
        raise CheckpointMismatch(f"stops at step {step} of an epoch without its partial_losses")
    state = TrainState(epoch=epoch, step=step, history=history, partial_losses=partial)
    optimizer = {"state": slots, "param_groups": info["param_groups"]}
    return state, model, optimizer, info["schedule"]


def _in_trainers_layout(info: dict, tensors: dict[str, torch.Tensor], trainer: Trainer):
    """The optimizer's tensors of a checkpoint written by the other engine, in `trainer`'s
    layout: the fused engine's optimizer has one flat parameter (all weights, in
    net.parameters() order), the autograd engine's one per parameter, and the same
    arithmetic on the same numbers either way. So a run whose engine `auto` chose
    differently when it was checkpointed (umap2d trained on autograd before the fused
    engine took graph losses) resumes: the slots are concatenated or split, the step
    counts (all equal) kept. Anything else is returned as it is, for `_checked` to judge."""
    groups = info.get("param_groups")
    if not (isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], dict)):
        return tensors
    theirs = groups[0].get("params")
    ours = trainer.opt.state_dict()["param_groups"][0]["params"]
    params = list(trainer.net.parameters())
    names = OPTIMIZER_SLOTS[trainer.cfg.optimizer]
    slots = {k: v for k, v in tensors.items() if k.startswith("optim.")}
    if len(params) < 2 or not isinstance(theirs, list) or len(theirs) == len(ours):
        return tensors
    if len(ours) == 1 and theirs == list(range(len(params))):
        converted = _joined(slots, params, names)
    elif theirs == [0] and len(ours) == len(params):
        converted = _split(slots, params, names)
    else:
        return tensors
    if converted is None:
        return tensors
    groups[0]["params"] = ours
    return {**{k: v for k, v in tensors.items() if k not in slots}, **converted}


def _joined(slots: dict, params: list, names: tuple[str, ...]) -> dict | None:
    """Per-parameter slots "optim.<i>.<slot>" as the one flat parameter's, or None."""
    if not slots:  # no state yet (SGD without momentum)
        return {}
    if sorted(slots) != sorted(f"optim.{i}.{s}" for i in range(len(params)) for s in names):
        return None
    joined = {}
    for slot in names:
        parts = [slots[f"optim.{i}.{slot}"] for i in range(len(params))]
        if slot == "step":
            if not all(torch.equal(parts[0], q) for q in parts):
                return None
            joined[f"optim.0.{slot}"] = parts[0]
        elif all(q.shape == p.shape and q.dtype == p.dtype
                 for q, p in zip(parts, params, strict=True)):  # fmt: skip
            joined[f"optim.0.{slot}"] = torch.cat([q.reshape(-1) for q in parts])
        else:
            return None
    return joined


def _split(slots: dict, params: list, names: tuple[str, ...]) -> dict | None:
    """The flat parameter's slots "optim.0.<slot>" as one per parameter, or None."""
    if not slots:
        return {}
    if sorted(slots) != sorted(f"optim.0.{s}" for s in names):
        return None
    sizes = [p.numel() for p in params]
    split = {}
    for slot in names:
        flat = slots[f"optim.0.{slot}"]
        if slot == "step":
            split.update({f"optim.{i}.{slot}": flat for i in range(len(params))})
        elif flat.dim() == 1 and flat.numel() == sum(sizes):
            for i, (part, p) in enumerate(zip(flat.split(sizes), params, strict=True)):
                split[f"optim.{i}.{slot}"] = part.reshape(p.shape).clone()
        else:
            return None
    return split


def _tensors(tensors: dict[str, torch.Tensor], trainer: Trainer):
    """(model tensors, optimizer slots by param id, partial losses) of a checkpoint."""
    expected = trainer.net.state_dict()
    params = [p for group in trainer.opt.param_groups for p in group["params"]]
    names = OPTIMIZER_SLOTS[trainer.cfg.optimizer]
    if trainer.cfg.optimizer == "sgd" and trainer.cfg.momentum == 0:
        names = ()  # SGD without momentum keeps no state
    model: dict[str, torch.Tensor] = {}
    slots: dict[int, dict[str, torch.Tensor]] = {}
    partial = None
    for key, value in tensors.items():
        kind, _, rest = key.partition(".")
        if kind == "model" and rest in expected:
            _tensor(key, value, expected[rest].shape, expected[rest].dtype)
            if value.is_floating_point():
                _finite(key, value)
            model[rest] = value
        elif kind == "optim":
            pid, slot = _slot(key, value, params, names)
            slots.setdefault(pid, {})[slot] = value
        elif key == "partial_losses":
            _tensor(key, value, (trainer.steps_per_epoch,), torch.float32)
            _finite(key, value)
            partial = value
        else:
            raise CheckpointMismatch(f"holds an unexpected tensor {_short(key)}")
    missing = sorted(set(expected) - set(model))
    if missing:
        raise CheckpointMismatch(f"lacks the model tensor(s) {_short(', '.join(missing))}")
    for pid, found in slots.items():
        if set(found) != set(names):
            raise CheckpointMismatch(
                f"holds optimizer slots {sorted(found)} for parameter {pid}, not {list(names)}"
            )
    return model, slots, partial


def _slot(key: str, value: torch.Tensor, params: list, names: tuple[str, ...]) -> tuple[int, str]:
    """(param id, slot name) of the tensor "optim.<pid>.<slot>", checked."""
    _, pid, slot = (key.split(".", 2) + ["", ""])[:3]
    if not re.fullmatch(r"0|[1-9][0-9]{0,8}", pid) or int(pid) >= len(params):
        raise CheckpointMismatch(f"holds {_short(key)} for a parameter the model does not have")
    if slot not in names:
        raise CheckpointMismatch(
            f"holds {_short(key)}, not one of the optimizer's slots {list(names)}"
        )
    p = params[int(pid)]
    if slot == "step":
        _tensor(key, value, (), torch.float32)
    else:
        _tensor(key, value, p.shape, p.dtype)
    # Adam's sum of squares may overflow to inf and still train (its step is then 0), so
    # the moments are held to no NaN and no sign the optimizer never gives them.
    if bool(value.isnan().any()) or (slot in _NON_NEGATIVE and bool((value < 0).any())):
        raise CheckpointMismatch(f"holds {_short(key)} with NaN or negative values, which "
                                 "the optimizer never keeps (the file is damaged)")  # fmt: skip
    return int(pid), slot


# Step counts and sums of squares: a negative one makes the optimizer take its square root
# (NaN at the first step, read as a diverged run).
_NON_NEGATIVE = ("step", "exp_avg_sq", "sum", "square_avg", "acc_delta")


def _tensor(key: str, value: torch.Tensor, shape, dtype: torch.dtype) -> None:
    if tuple(value.shape) != tuple(shape) or value.dtype != dtype:
        raise CheckpointMismatch(
            f"holds {_short(key)} of shape {tuple(value.shape)} {value.dtype}, where the run "
            f"needs {tuple(shape)} {dtype}"
        )


def _finite(key: str, value: torch.Tensor) -> None:
    # Weights and losses are saved only after steps whose loss was finite: NaN or inf in
    # the file is damage, and resuming it would fail as a divergence (run.json "failed",
    # with advice to lower the rate and resume the same file again).
    if not bool(torch.isfinite(value).all()):
        raise CheckpointMismatch(f"holds {_short(key)} with NaN or infinite values, which no "
                                 "saved training state has (the file is damaged)")  # fmt: skip


def _history(value: Any, epochs: int) -> list[EpochRecord]:
    names = [f.name for f in dataclasses.fields(EpochRecord)]
    if not isinstance(value, list):
        raise CheckpointMismatch(f"has a history of {_short(value)}, not a list of epoch records")
    if len(value) != epochs:
        raise CheckpointMismatch(f"has {len(value)} history records for {epochs} epochs")
    for i, record in enumerate(value):
        ok = isinstance(record, dict) and sorted(record) == sorted(names)
        ok = ok and _is_int(record["epoch"])
        ok = ok and all(_is_number(record[k]) or (k == "val_loss" and record[k] is None)
                        for k in names)  # fmt: skip
        if not ok:
            raise CheckpointMismatch(f"has a malformed history record {i + 1} ({_short(record)})")
    return [EpochRecord(**r) for r in value]


def _like(theirs: Any, ours: Any, where: str) -> None:
    """Refuse `theirs` (from the file's JSON) unless it has the structure of `ours` (the
    trainer's own): the same keys and lengths, finite numbers where numbers are, and the
    same flags and names (booleans, None, strings); "params" lists must be equal."""
    if isinstance(ours, bool) or ours is None or isinstance(ours, str):
        ok = type(theirs) is type(ours) and theirs == ours
    elif isinstance(ours, int | float):
        ok = _is_number(theirs)
    elif isinstance(ours, list | tuple):
        ok = isinstance(theirs, list) and len(theirs) == len(ours)
        for i, (a, b) in enumerate(zip(theirs, ours, strict=False) if ok else ()):
            _like(a, b, f"{where}[{i}]")
    elif isinstance(ours, dict):
        ok = isinstance(theirs, dict) and set(theirs) == set(ours)
        for key in ours if ok else ():
            if key == "params" and theirs[key] != ours[key]:
                ok = False
                break
            _like(theirs[key], ours[key], f"{where}.{key}")
    else:
        ok = False
    if not ok:
        raise CheckpointMismatch(
            f"has {where} = {_short(theirs)}, where the run needs {_wanted(ours)}"
        )


def _wanted(ours: Any) -> str:
    if isinstance(ours, bool) or not isinstance(ours, int | float | list | tuple | dict):
        return _short(ours)
    if isinstance(ours, int | float):
        return "a finite number"
    if isinstance(ours, dict):
        return _short(f"the keys {', '.join(sorted(ours))}")
    return f"a list of {len(ours)}"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    """A finite int or float; JSON's ints are unbounded, and one past float's range (10**400)
    is no number a trainer can use."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _short(v: Any) -> str:
    # Values from a crafted file go into one-line messages: repr (no newlines), cut short.
    text = " ".join(str(v).split()) if isinstance(v, BaseException) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _metadata(raw: bytes) -> dict[str, Any]:
    # safetensors' header: 8-byte little-endian length, then JSON with "__metadata__".
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n])["__metadata__"]


def _plain(t: torch.Tensor) -> torch.Tensor:
    # Contiguous CPU copies: parameters may be views of one flat buffer (fused engine).
    return t.detach().cpu().contiguous().clone()


def _state_field(meta: dict, key: str):
    try:
        state = json.loads(meta.get("state", "{}"))
    except (TypeError, ValueError, RecursionError):
        return None  # a damaged state is refused by _checked, with its own message
    return state.get(key) if isinstance(state, dict) else None
