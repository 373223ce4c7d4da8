"""Training checkpoints: everything needed to continue a run exactly where it stopped.

One file, `checkpoint.safetensors`, written atomically (deepae.fsio): the weights and the
optimizer's tensors as safetensors, and the rest (epoch, step within the epoch, history,
optimizer hyper-parameters, lr-schedule position, per-step losses of a partial epoch) as
JSON in the file's metadata. One file means there is no moment at which weights and
bookkeeping disagree; safetensors means a checkpoint can never run code when loaded.

No random-number-generator state is stored because training draws none: the shuffle of
epoch e comes from a generator seeded with (seed, e) (deepae.train._epoch_order), and the
initial weights are in the checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from deepae import fsio
from deepae.errors import RunError
from deepae.run.files import CHECKPOINT_FILE
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
    data = save_safetensors(
        tensors,
        metadata={"format": FORMAT, "version": str(FORMAT_VERSION), "state": json.dumps(meta)},
    )
    path = Path(folder) / CHECKPOINT_FILE
    fsio.write_bytes(path, data)
    return path


def exists(folder: str | Path) -> bool:
    return (Path(folder) / CHECKPOINT_FILE).is_file()


def load(folder: str | Path, trainer: Trainer) -> TrainState:
    """Restore weights, optimizer and schedule into `trainer`; returns the TrainState."""
    path = Path(folder) / CHECKPOINT_FILE
    try:
        raw = fsio.read_bytes(path, max_bytes=MAX_CHECKPOINT_BYTES, fix="it cannot be resumed")
        tensors = load_safetensors(raw)
        meta = _metadata(raw)
    except FileNotFoundError:
        raise RunError(f"{path} is missing: the run has no checkpoint to resume from") from None
    except (SafetensorError, ValueError, OSError, KeyError) as e:
        raise RunError(f"{path} is unreadable ({e}); the run cannot be resumed") from None
    if meta.get("format") != FORMAT or int(meta.get("version", 0)) > FORMAT_VERSION:
        raise RunError(f"{path} is not a checkpoint this deepae can read; upgrade deepae")
    try:
        info = json.loads(meta["state"])
        model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        trainer.net.load_state_dict(model)  # copies into the (possibly flat) parameters
        optim_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, slot = key.split(".", 2)
                optim_state.setdefault(int(pid), {})[slot] = value
        trainer.load_state_dict(
            {
                "optimizer": {"state": optim_state, "param_groups": info["param_groups"]},
                "schedule": info["schedule"],
            }
        )
        history = [EpochRecord(**r) for r in info["history"]]
        return TrainState(
            epoch=info["epoch"],
            step=info["step"],
            history=history,
            partial_losses=tensors.get("partial_losses"),
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise RunError(
            f"{path} does not match the run's config.json ({e}); it cannot be resumed"
        ) from None


def _metadata(raw: bytes) -> dict[str, Any]:
    # safetensors' header: 8-byte little-endian length, then JSON with "__metadata__".
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n])["__metadata__"]


def _plain(t: torch.Tensor) -> torch.Tensor:
    # Contiguous CPU copies: parameters may be views of one flat buffer (fused engine).
    return t.detach().cpu().contiguous().clone()
