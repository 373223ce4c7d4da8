"""Where a fused training step's time goes, and the BCE loss against PyTorch's, in one process.

    python scripts/bench_step.py                        # article and best2d, ~2 minutes
    python scripts/bench_step.py --models best2d --trained-epochs 5
    python scripts/bench_step.py --models umap2d       # its step: autograd vs fused engine

Whole-process timings on a shared machine drift by more than a small change gains (see
docs/benchmarks.md), so this compares inside one process, on the same weights and
batches, in alternating rounds. For each preset it trains `--trained-epochs` epochs with
the preset's recipe first (a trained model's saturated logits are what most of training
sees), then prints:
1. the step's ops (torch.profiler over `--profile-steps` steps: self time per op, top 12),
   for the Python step and, where it runs, the native one (deepae.native: its ATen calls
   show, its loss loop is the gap between the ops' sum and the step);
2. milliseconds per step (loss, gradients and the Adam step) and for the loss alone (its
   value and gradient on one batch's float32 logits), for: the Python step with the BCE
   as PyTorch computes it (`torch`: binary_cross_entropy_with_logits, then sigmoid(l) - x
   for the gradient, what the engine did before deepae.losses), the Python step with
   `deepae`'s (deepae.losses.bce_sum_and_grad), and the `native` step (deepae.native's
   compiled one, where it builds: BCE with float32 or mixed bfloat16 products, so best2d's
   bfloat16 step too); median [min-max] over `--rounds` rounds, and each row's ratio per
   round to the row before it.

A preset with a graph loss (umap2d) gets its step on the autograd engine and on the fused
engine's step on edges instead, alternating, on a random graph of its size (a step's cost
does not depend on which images an edge links).

The images come from deepae's own loader, as in `deepae train`; what the process did
before moves PyTorch's large temporaries between fresh and reused memory (glibc's malloc
adapts where it puts them), so a loss that allocates them costs more or less from one
process to the next. docs/benchmarks.md has the numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn

from deepae import data, engine, losses, model, native, neighbours, threads
from deepae.cli_values import positive_int
from deepae.config import resolve
from deepae.errors import ConfigError
from deepae.train import Trainer


def torch_bce(logits, x, g, scale, work):
    """The reference: PyTorch's BCE-with-logits for the value, sigmoid(l) - x for g."""
    loss_sum = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    torch.sigmoid(logits, out=g)
    g.sub_(x).mul_(scale)
    return loss_sum


LOSSES = {"torch": torch_bce, "deepae": losses.bce_sum_and_grad}


def trained(preset: str, x: torch.Tensor, epochs: int) -> Trainer:
    model_config, train_config = resolve(preset)
    trainer = Trainer(model.build(model_config, seed=0), train_config, len(x))
    if trainer.engine is None:
        raise ConfigError(f"preset {preset!r} does not train on the fused engine", field="models")
    for epoch in range(epochs):
        trainer.train_epoch(x, epoch)
    return trainer


def step_seconds(trainer: Trainer, batches: list[torch.Tensor], steps: int) -> float:
    start = time.perf_counter()
    for i in range(steps):
        trainer.engine.loss_and_grad(batches[i % len(batches)])
        engine.fused_adam_step(trainer.opt)
    return (time.perf_counter() - start) / steps


def profile(trainer: Trainer, batches: list[torch.Tensor], steps: int) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    with profiler(activities=[ProfilerActivity.CPU]) as prof:
        step_seconds(trainer, batches, steps)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"{'op':<34}{'calls/step':>11}{'us/step':>10}{'share':>8}")
    for e in events[:12]:
        us, share = e.self_cpu_time_total / steps, e.self_cpu_time_total / total
        print(f"{e.key:<34}{e.count / steps:>11.0f}{us:>10.1f}{share:>8.0%}")
    print(f"{'all ops (profiled)':<34}{'':>11}{total / steps:>10.1f}")


def loss_seconds(loss, logits: torch.Tensor, x: torch.Tensor, steps: int) -> float:
    """The loss alone on one batch's (B, D) logits: its value and gradient into buffers."""
    g, work = torch.empty_like(logits), torch.empty_like(logits)
    scale = logits.new_tensor(1.0 / logits.numel())
    start = time.perf_counter()
    for _ in range(steps):
        loss(logits, x, g, scale, work)
    return (time.perf_counter() - start) / steps


# Whole-step contenders: (name, BCE of the Python step, native step on?, the row it is
# compared with). "native" is deepae.native's compiled step, the default where it builds.
STEPS = [
    ("python, torch BCE", "torch", False, None),
    ("python, deepae BCE", "deepae", False, "python, torch BCE"),
    ("native", "deepae", True, "python, deepae BCE"),
]


def native_bce(logits, x, g, scale, work):
    """The compiled step's loss (native_step.cpp), in the loss's signature."""
    return native.load().output_loss(native.LOSSES[("bce", True)], logits, x, g, scale.item())


def compare(trainer: Trainer, batches, rounds: int, steps: int) -> None:
    """Whole steps of each contender, then each loss alone; alternating rounds."""
    with torch.no_grad():
        logits = trainer.net.logits(batches[0])  # float32, the trained model's
    engine_, built = trainer.engine, trainer.engine.native
    saved = engine_.output_grad
    contenders = [c for c in STEPS if built is not None or not c[2]]
    loss_fns = dict(LOSSES, **({"native": native_bce} if built is not None else {}))
    times: dict[tuple[str, str], list[float]] = {}
    try:
        for r in range(rounds):
            for name, bce, on, _ in contenders if r % 2 == 0 else reversed(contenders):
                engine_.output_grad, engine_.native = LOSSES[bce], built if on else None
                step_seconds(trainer, batches, max(2, steps // 10))  # warm the caches
                times.setdefault(("step", name), []).append(step_seconds(trainer, batches, steps))
            for name in loss_fns if r % 2 == 0 else reversed(loss_fns):
                alone = loss_seconds(loss_fns[name], logits, batches[0], steps)
                times.setdefault(("loss alone", name), []).append(alone)
    finally:
        engine_.output_grad, engine_.native = saved, built
    rows = [("step", name, base) for name, _, _, base in contenders]
    rows += [("loss alone", name, None if name == "torch" else prev)
             for prev, name in zip([None, *loss_fns], loss_fns, strict=False)]  # fmt: skip
    print(f"{'timed':<12}{'what':<20}{'ms, median [min-max]':>24}   ratio per round, to")
    for what, name, base in rows:
        ts = times[(what, name)]
        span = f"{_ms(statistics.median(ts))} [{_ms(min(ts))}-{_ms(max(ts))}]"
        ratio = ""
        if base is not None:
            r = [a / b for a, b in zip(times[(what, base)], ts, strict=True)]
            ratio = f"{statistics.median(r):.3f}x [{min(r):.3f}-{max(r):.3f}] to {base}"
        print(f"{what:<12}{name:<20}{span:>24}   {ratio}")


def random_graph(n: int, k: int) -> neighbours.Graph:
    """n images, k * n edges between random pairs, weight 1. A step's cost depends on how
    many images and edges it touches, not on which, so the benchmark needs no umap-learn
    graph build (~1-2 minutes for MNIST)."""
    rng = np.random.default_rng(0)
    head, tail = rng.integers(0, n, k * n), rng.integers(0, n, k * n)
    return neighbours.Graph(head, tail, np.ones(k * n, np.float32), k, n, f"random-{n}-{k}")


def edges(preset: str, x: torch.Tensor, rounds: int, seconds: float) -> None:
    """A preset with a graph loss (umap2d): its step on the autograd engine (what it trained
    on before 2026-11-30) against the fused engine's step on edges, alternating rounds."""
    model_config, train_config = resolve(preset)
    count = threads.for_training(model_config, train_config.batch_size)
    torch.set_num_threads(count)
    graph = random_graph(len(x), train_config.neighbours)
    engines = ("autograd", "fused")
    trainers = {e: Trainer(model.build(model_config, seed=0),
                           dataclasses.replace(train_config, engine=e), len(x), graph=graph)
                for e in engines}  # fmt: skip
    torch.set_flush_denormal(True)  # as training does (deepae.train)
    steps_fns = {e: t._epoch_plan(x, 0) for e, t in trainers.items()}
    for fn in steps_fns.values():  # warm up: buffers, oneDNN's kernels
        for s in range(5):
            fn(s)
    start = time.perf_counter()
    for s in range(5, 10):
        steps_fns["fused"](s)
    steps = max(10, int(seconds / ((time.perf_counter() - start) / 5)))
    print(f"\n== {preset}: {train_config.batch_size} edges a step ({2 * train_config.batch_size} "
          f"images through the encoder), {count} thread(s), precision "
          f"{trainers['fused'].precision}, a random graph of {len(graph.head):,} edges; "
          f"{steps} steps per round")  # fmt: skip
    times: dict[str, list[float]] = {e: [] for e in engines}
    at = 10
    for r in range(rounds):
        for e in engines if r % 2 == 0 else reversed(engines):
            start = time.perf_counter()
            for s in range(at, at + steps):
                steps_fns[e](s % trainers[e].steps_per_epoch)
            times[e].append((time.perf_counter() - start) / steps)
        at += steps
    torch.set_flush_denormal(False)
    print(f"{'engine':<12}{'ms a step, median [min-max]':>30}   ratio per round, to autograd")
    for e in engines:
        ts = times[e]
        span = f"{_ms(statistics.median(ts))} [{_ms(min(ts))}-{_ms(max(ts))}]"
        ratio = ""
        if e != "autograd":
            q = [a / b for a, b in zip(times["autograd"], ts, strict=True)]
            ratio = f"{statistics.median(q):.3f}x [{min(q):.3f}-{max(q):.3f}]"
        print(f"{e:<12}{span:>30}   {ratio}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="article,best2d",
                        help="presets (article,best2d; umap2d: both engines' steps)")  # fmt: skip
    parser.add_argument("--trained-epochs", type=int, default=2,
                        help="epochs trained before measuring (2)")  # fmt: skip
    parser.add_argument("--rounds", type=positive_int, default=9, help="alternating rounds (9)")
    parser.add_argument("--seconds", type=float, default=0.5,
                        help="about this long per round and loss (0.5)")  # fmt: skip
    parser.add_argument("--profile-steps", type=positive_int, default=100,
                        help="steps under the profiler (100)")  # fmt: skip
    args = parser.parse_args(argv)
    presets = [p.strip() for p in args.models.split(",") if p.strip()]
    try:
        for preset in presets:
            resolve(preset)
    except ConfigError as e:
        parser.error(str(e))
    x = torch.from_numpy(data.flatten_images(data.load_mnist()[0][0]))  # (60000, 784)
    cores = threads.usable_cores()
    for preset in presets:
        model_config, train_config = resolve(preset)
        if train_config.neighbour_weight > 0:
            edges(preset, x, args.rounds, 4 * args.seconds)
            continue
        count = threads.for_training(model_config, train_config.batch_size)
        torch.set_num_threads(count)
        trainer = trained(preset, x, args.trained_epochs)
        gen = torch.Generator().manual_seed(1)
        batches = [x[torch.randperm(len(x), generator=gen)[: train_config.batch_size]]
                   for _ in range(8)]  # fmt: skip
        torch.set_flush_denormal(True)  # as training does (deepae.train)
        per_step = step_seconds(trainer, batches, 20)
        steps = max(10, int(args.seconds / per_step))
        print(f"\n== {preset}: batch {train_config.batch_size}, {count} thread(s) of {cores} "
              f"core(s), precision {trainer.precision}, after {args.trained_epochs} "
              f"epoch(s); {steps} steps per round")  # fmt: skip
        built = trainer.engine.native
        for name, step in (("python", None), ("native", built)):
            if name == "python" or built is not None:
                trainer.engine.native = step
                print(f"-- the {name} step's ops")
                profile(trainer, batches, args.profile_steps)
        trainer.engine.native = built
        print()
        compare(trainer, batches, args.rounds, steps)
        torch.set_flush_denormal(False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
