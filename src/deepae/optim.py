"""The optimizer and learning-rate schedule a TrainConfig asks for, with Keras' defaults,
and what of their state goes on when a model's settings change between two fits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from deepae.config import TrainConfig
from deepae.errors import ConfigError

# The optimizers whose step divides by sqrt(running mean of squared gradients) + eps, with
# nothing else keeping the denominator above 0 (Adagrad's accumulator starts at 0.1).
DIVIDED_BY_A_ROOT = frozenset({"adam", "adamw", "adadelta", "rmsprop"})

# What a schedule drives, or was shaped by, which cannot change once it has begun.
SCHEDULED = ("schedule", "optimizer", "lr", "adam_betas", "momentum", "batch_size")
# The param group entries a schedule sets (PyTorch's OneCycleLR cycles betas or momentum too).
SCHEDULE_KEYS = frozenset({"lr", "initial_lr", "max_lr", "min_lr", "betas", "momentum",
                           "max_momentum", "base_momentum"})  # fmt: skip


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of `cfg` over `params`, with Keras' defaults for epsilon and learning
    rate (deepae.config.DEFAULT_LR)."""
    lr, eps, wd = cfg.learning_rate, cfg.eps, cfg.weight_decay
    if eps == 0 and cfg.optimizer in DIVIDED_BY_A_ROOT:
        # Their step is a ratio whose denominator is sqrt(a running mean of squared
        # gradients) + eps: a gradient that is exactly 0 from the start (a pixel that is 0 in
        # every image, a dead ReLU) makes it 0 / 0, so the weights turn NaN at once and
        # training stops saying "lower the learning rate", which would not help.
        raise ConfigError(f"eps must be > 0 for {cfg.optimizer}: with eps 0 a gradient that "
                          "stays 0 divides 0 by 0 (NaN weights); Keras' is 1e-7",
                          field="eps")  # fmt: skip
    # fused=True runs Adam as one kernel per tensor; supported on CPU and CUDA float32.
    table: dict[str, Callable[[], torch.optim.Optimizer]] = {
        "adam": lambda: torch.optim.Adam(
            params, lr=lr, betas=cfg.adam_betas, eps=eps, weight_decay=wd, fused=True
        ),
        "adamw": lambda: torch.optim.AdamW(
            params, lr=lr, betas=cfg.adam_betas, eps=eps, weight_decay=wd, fused=True
        ),
        # Keras' Adagrad starts its accumulator at 0.1 (keras.optimizers.Adagrad).
        "adagrad": lambda: torch.optim.Adagrad(
            params, lr=lr, eps=eps, weight_decay=wd, initial_accumulator_value=0.1
        ),
        # Keras' Adadelta: rho 0.95, lr 1e-3 (Keras >= 2.3).
        "adadelta": lambda: torch.optim.Adadelta(params, lr=lr, rho=0.95, eps=eps, weight_decay=wd),
        "sgd": lambda: torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=wd),
        # Keras' RMSprop: rho 0.9.
        "rmsprop": lambda: torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=eps, weight_decay=wd),
    }
    return table[cfg.optimizer]()


def make_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """A per-step learning-rate scheduler over `total_steps`, or None for a constant rate."""
    table: dict[str, Callable[[], object]] = {
        "constant": lambda: None,
        # Smith & Topin's one-cycle policy with PyTorch's defaults (warm-up 30%, lr/25 start,
        # momentum or beta1 cycled between 0.95 and 0.85 where the optimizer has one; Adagrad
        # and Adadelta have none, and PyTorch refuses to cycle what is not there). SGD with
        # momentum 0 (Keras' default) and RMSprop (momentum 0, as Keras') are left without:
        # PyTorch would cycle theirs from 0.95, momentum the run never asked for.
        "onecycle": lambda: torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=cfg.learning_rate,
            total_steps=total_steps,
            cycle_momentum="betas" in opt.defaults or opt.defaults.get("momentum", 0) > 0,
        ),  # fmt: skip
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps),
    }
    return table[cfg.schedule]()


def check_schedule_kept(old: TrainConfig, new: TrainConfig, old_images: int, new_images: int,
                        *, scheduled: bool) -> None:  # fmt: skip
    """A schedule fixed its steps and what it drives when training began: with one under
    way (`scheduled`, or `new` asking for one), a change to those, or to the number of
    training images, is a ConfigError."""
    if not scheduled and new.schedule == "constant":
        return
    changed = [name for name in SCHEDULED if getattr(old, name) != getattr(new, name)]
    if changed or old_images != new_images:
        what = ", ".join(changed) or "the number of training images"
        raise ConfigError(
            f"the {old.schedule} schedule fixed its steps and rates when training began, so "
            f"{what} cannot change between fits: build a new Autoencoder, or train with "
            "schedule 'constant'",
            field=changed[0] if changed else "x",
        )


def carry_over(state: dict[str, Any], trainer, *, scheduled: bool) -> None:
    """Load another trainer's `state` (its optimizer's moments and step counts, its
    schedule's position) into `trainer`, which keeps its own settings (rate, betas, weight
    decay...), as a Keras model keeps its optimizer across fits; with a schedule, what the
    schedule drives comes from `state`."""
    own = [{k: v for k, v in g.items() if k != "params"} for g in trainer.opt.param_groups]
    trainer.load_state_dict(state)  # brings back the other's settings too
    keep = SCHEDULE_KEYS if scheduled else frozenset()
    for group, settings in zip(trainer.opt.param_groups, own, strict=True):
        group.update({k: v for k, v in settings.items() if k not in keep})


def in_layout(state: dict[str, Any], params: list[torch.Tensor], count: int) -> dict[str, Any]:
    """An optimizer's state_dict (one param group) in the layout of an optimizer over
    `count` tensors: the fused engine's one flat parameter (`params`, the net's parameters,
    concatenated) or the autograd engine's one per parameter. Every slot is per element and
    the step counts are equal, so the numbers are the same either way; the state is
    returned as it is when the layouts agree. (A checkpoint's slots are converted alike,
    deepae.run.checkpoint._in_trainers_layout.)"""
    (group,) = state["param_groups"]
    have, slots = len(group["params"]), state["state"]
    if have == count:
        return state
    if (have, count) == (len(params), 1):  # one per parameter -> flat
        moved = {0: {k: v if k == "step" else torch.cat([slots[i][k].reshape(-1)
                                                        for i in range(have)])
                     for k, v in slots[0].items()}} if slots else {}  # fmt: skip
    elif (have, count) == (1, len(params)):  # flat -> one per parameter
        sizes = [p.numel() for p in params]
        moved = {i: {} for i in range(count)} if slots else {}
        for k, v in slots.get(0, {}).items():
            parts = [v] * count if k == "step" else v.split(sizes)
            for i, (part, p) in enumerate(zip(parts, params, strict=True)):
                moved[i][k] = part.clone() if k == "step" else part.reshape(p.shape).clone()
    else:
        raise ValueError(f"no layout of {have} optimizer tensors as {count}")
    return {"state": moved, "param_groups": [{**group, "params": list(range(count))}]}
