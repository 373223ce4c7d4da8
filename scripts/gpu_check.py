"""GPU check: `--device cuda` trains the same model as the CPU, to float tolerance, and
the CUDA-graph step (deepae.cuda_graph) trains as the eager one; then how fast it is.

    python scripts/gpu_check.py --data-dir DIR      # on a machine with an NVIDIA GPU

1. Gradient parity: one batch, the same weights, CPU vs CUDA, for both engines (the fused
   one runs its default step on CUDA: the Triton step where it applies); the fused
   engine's step on edges (umap2d's), both devices against a float64 oracle
   (`edges_parity` says why); the Triton step against float64 autograd (relative 1e-5);
   and Adam's kernel given the flat parameter in pieces (deepae.engine.adam_pieces, the
   default on CUDA) against it whole: the same bits.
2. Trajectory parity: 1 epoch from the same seed on CPU and on CUDA (same batches, since
   the shuffle comes from a CPU generator): losses agree to 1e-3 relative. (Rounding
   differences between the devices' kernels grow over thousands of Adam steps, so later
   epochs agree less tightly; that is float arithmetic, not a bug.)
3. The article's full recipe (10 epochs) on both: final losses agree to 1%. Training on
   CUDA captures its steps as CUDA graphs, so this compares the CPU with the graphs (and
   the Triton step in them, the default where Triton is installed).
4. The captured step against autograd: its loss and gradient on the batch it gathered on
   the device, for the warm-up steps, the captured one and replays (relative 1e-4); with
   PyTorch's step, and with the Triton step where Triton is installed.
5. CUDA graphs against eager CUDA steps (DEEPAE_CUDA_GRAPH=0's path), the article's recipe
   (Adam inside the graph), best2d's (one-cycle: Adam after it) and umap2d's (steps on
   sampled edges, UMAP's loss differentiated by autograd inside the graph; its neighbour
   graph from the cache, else built: ~1 minute): epoch losses agree to 1e-3 relative (the
   graph reads the rate as float32, eager Adam as a double). Where Triton is installed,
   also the article's recipe with the Triton step recorded in the graphs against PyTorch's
   eager steps.
6. Timing (not a check): the article's epoch, best2d's training and umap2d's epoch, graphs
   and eager, with PyTorch's step (DEEPAE_TRITON=0); where Triton is installed, also the
   article's with the Triton step (deepae.triton_step, the default) at a few sizes of its
   programs.
7. Profile (not a check): the article's captured step's kernels by time, with PyTorch's
   step and with the Triton step, and umap2d's, each beside the wall time a step (what the
   kernels leave is gaps between them and the host's time).
Prints a report; exits non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import os
import statistics
import sys
import time

import numpy as np
import torch

from deepae import cuda_graph, data, model, neighbours, threads, train, triton_step
from deepae.cli_values import positive_int
from deepae.config import ModelConfig, TrainConfig, resolve
from deepae.engine import FusedDenseEngine, fused_adam_step
from deepae.errors import MissingExtraError


def has_triton() -> bool:
    """Whether Triton is importable (PyTorch's CUDA builds carry it): the Triton step's
    checks and timings run only then."""
    return importlib.util.find_spec("triton") is not None


def triton_missing(engine: FusedDenseEngine) -> bool:
    """True, saying why, where `engine` was asked for the Triton step and did not get it."""
    if engine.gpu_step is None:
        print(f"  the Triton step does not run here: {triton_step.why_not(engine)}")
        return True
    return False


def engine_gradients(x: torch.Tensor, engine: str, device: str) -> list[torch.Tensor]:
    """The gradients of seed 0's net on x[:32], computed on `device` by the fused engine or
    autograd; copied to the CPU."""
    net = model.build(ModelConfig(latent_activation="linear"), seed=0).to(device)
    xb = x[:32].to(device)
    if engine == "fused":
        FusedDenseEngine(net, "bce").loss_and_grad(xb)
        return [p.grad.detach().cpu().clone() for p in net.parameters()]
    loss = torch.nn.functional.binary_cross_entropy_with_logits(net.logits(xb), xb)
    return [g.cpu() for g in torch.autograd.grad(loss, list(net.parameters()))]


def gradient_parity(x: torch.Tensor) -> float:
    """Largest relative gradient difference, CPU vs CUDA, fused and autograd engines: each
    engine's own on its line, the larger of the two returned."""
    worst = {}
    for engine in ("fused", "autograd"):
        cpu, cuda = (engine_gradients(x, engine, dev) for dev in ("cpu", "cuda"))
        worst[engine] = max(((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()
                            for a, b in zip(cpu, cuda, strict=True))  # fmt: skip
        print(f"  {engine:8s} gradient max relative difference CPU vs CUDA: {worst[engine]:.2e}")
    return max(worst.values())


def adam_pieces_parity(device: str = "cuda") -> int:
    """How many elements of the parameter and Adam's state differ, after 5 steps of the
    fused kernel given the article's 51,154 weights in pieces (deepae.engine.adam_pieces)
    and whole, from the same start and gradients: 0 passes."""
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(51154, generator=gen)
    params = [torch.nn.Parameter(start.clone().to(device)) for _ in range(2)]
    opts = [torch.optim.Adam([p], lr=1e-3, eps=1e-7, fused=True) for p in params]
    for _ in range(5):
        grad = torch.randn(51154, generator=gen).to(device)
        for p in params:
            p.grad = grad.clone()
        fused_adam_step(opts[0])  # the default: in pieces on CUDA
        fused_adam_step(opts[1], pieces=1)
    kept = getattr(opts[0], "_deepae_pieces", None)  # (key, lists) where cut in pieces
    pieces = len(kept[1][0]) if kept else 1
    (a, b), (sa, sb) = params, (opts[0].state[params[0]], opts[1].state[params[1]])
    pairs = [(a.detach(), b.detach())] + [(sa[k], sb[k]) for k in ("exp_avg", "exp_avg_sq")]
    differ = sum(int((x.view(torch.int32) != y.view(torch.int32)).sum()) for x, y in pairs)
    print(f"  Adam in {pieces} pieces vs whole, 5 steps: {differ} of {3 * 51154} values differ")
    return differ if pieces > 1 else 1 << 30  # no pieces made: nothing was compared


def edges_gradients(x: torch.Tensor, dtype: torch.dtype, device: str) -> list[torch.Tensor]:
    """The gradient of a step on a batch of edges (umap2d's: the heads' mean BCE + UMAP's
    loss of the codes), float64 on the CPU: by the fused engine in `dtype` on `device`, or
    for float64 by autograd throughout (the oracle: the engine takes UMAP's loss of its
    codes in float32 whatever its dtype)."""
    n, heads = 64, 32
    head = np.arange(n).repeat(2)
    tail = (head + np.tile([1, 2], n)) % n  # a ring: image i linked to i + 1 and i + 2
    graph = neighbours.Graph(head, tail, np.ones(2 * n, np.float32), 2, n, "ring")
    umap = neighbours.NeighbourLoss(graph, min_dist=0.0, negative_rate=10, seed=0)
    negatives = torch.randint(0, heads, (10 * heads,), generator=torch.Generator().manual_seed(0))
    config = ModelConfig(hidden_sizes=(256, 256, 128), latent_activation="linear")
    net = model.build(config, seed=0).to(device, dtype)
    neg = negatives.to(device)

    def code_loss(z):
        return 10.0 * umap(z[:heads], z[heads:], neg)

    both = x[: 2 * heads].to(device, dtype)
    if dtype == torch.float64:
        z, logits = net.codes_and_logits(both, heads)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, both[:heads])
        return [g.cpu() for g in torch.autograd.grad(bce + code_loss(z), list(net.parameters()))]
    FusedDenseEngine(net, "bce").edges_loss_and_grad(both, code_loss)
    return [p.grad.detach().cpu().double() for p in net.parameters()]


def edges_parity(x: torch.Tensor, device: str = "cuda") -> float:
    """How far `device`'s float32 gradient of the step on edges is from a float64 oracle,
    against how far the CPU's own float32 gradient is: the worst, over the parameter
    tensors, of err(device) / max(4 err(CPU), 1e-4), where err is the largest difference
    from the oracle relative to the tensor's largest gradient. At most 1 passes.

    Why not CPU vs CUDA directly, as for the other steps: UMAP's loss does not change when
    every code moves by the same vector, so the latent bias's gradient is a sum that cancels
    to near 0, and float32 gets it only to ~7e-3 of its size on either device (the first GPU
    run failed a plain 1e-4 check on that tensor alone, at 5.5e-4). Every other tensor stays
    within 1e-4 of the oracle."""
    oracle = edges_gradients(x, torch.float64, "cpu")
    errors = {}
    for dev in ("cpu", device):
        got = edges_gradients(x, torch.float32, dev)
        errors[dev] = [((a - b).abs().max() / a.abs().max().clamp_min(1e-30)).item()
                       for a, b in zip(oracle, got, strict=True)]  # fmt: skip
    ratios = [e / max(4 * c, 1e-4) for c, e in zip(errors["cpu"], errors[device], strict=True)]
    worst = max(range(len(ratios)), key=ratios.__getitem__)
    print(f"  fused step on edges, float32 vs a float64 oracle: {device} {max(errors[device]):.2e}"
          f", CPU {max(errors['cpu']):.2e} (worst tensor: #{worst}, {device} "
          f"{errors[device][worst]:.2e} vs CPU {errors['cpu'][worst]:.2e}; ratio "
          f"{ratios[worst]:.2f}, at most 1 passes)")  # fmt: skip
    return ratios[worst]


def trained(x, v, device: str, epochs: int, log: bool) -> tuple[list, float]:
    net = model.build(ModelConfig(), seed=0)
    trainer = train.Trainer(net, TrainConfig(device=device, epochs=epochs), len(x))

    def show(record, state):
        if log:
            print(f"  [{device}] {train.format_epoch(record, epochs)} "
                  f"(train {record.train_seconds:.2f}s)")  # fmt: skip

    start = time.perf_counter()
    state = train.fit(trainer, x, v, on_epoch_end=show)
    return state.history, time.perf_counter() - start


def graph_step_parity(x: torch.Tensor, triton: bool) -> float:
    """Largest relative difference of the captured step's loss and gradient from autograd's
    on the same weights and the batch the step should have gathered; `triton`: the Triton
    step recorded (else PyTorch's)."""
    config = ModelConfig(latent_activation="linear")
    net, reference = (model.build(config, seed=0).cuda() for _ in range(2))
    with _environ(triton_step.ENV, "1" if triton else "0"):
        engine = FusedDenseEngine(net, "bce")
    if triton and triton_missing(engine):
        return float("inf")
    print(f"  {'the Triton step' if triton else 'PyTorch step'}:")
    opt = torch.optim.Adam([engine.flat], lr=1e-3, eps=1e-7, fused=True)
    static = cuda_graph.StaticStep(engine, opt, None, 32, capture=True)
    xs = x[:4096].cuda()
    order = torch.randperm(len(xs), generator=torch.Generator().manual_seed(0)).cuda()
    step = static.plan(xs, order)
    worst = 0.0
    for s in range(cuda_graph.WARMUP_STEPS + 3):  # eager warm-ups, the captured step, replays
        with torch.no_grad():
            for a, b in zip(reference.parameters(), net.parameters(), strict=True):
                a.copy_(b)
        got = step(s).item()
        xb = xs[order[s * 32 : (s + 1) * 32]]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(reference.logits(xb), xb)
        want = loss.item() * xb.numel()
        rel = abs(got - want) / want
        for p, g in zip(net.parameters(), torch.autograd.grad(loss, list(reference.parameters())),
                        strict=True):  # fmt: skip
            rel = max(rel, ((p.grad - g).abs().max() / g.abs().max().clamp_min(1e-12)).item())
        kind = "eager" if s < cuda_graph.WARMUP_STEPS else "replayed"
        print(f"  step {s} ({kind}): loss {got:.4f} vs autograd {want:.4f}, max rel diff {rel:.1e}")
        worst = max(worst, rel)
    if len(static._graphs) != 1:
        print("  the step was not captured")
        return float("inf")
    if triton and engine.gpu_step.failed:
        print("  the Triton step failed: PyTorch's ran")
        return float("inf")
    return worst


def neighbour_graph(x: torch.Tensor, preset: str) -> neighbours.Graph | None:
    """The preset's neighbour graph of images x (N, D) where it trains with one (umap2d):
    from deepae's cache (DEEPAE_CACHE), else built and cached, as `deepae train` does."""
    train_config = resolve(preset)[1]
    if train_config.neighbour_weight == 0:
        return None
    flat = x.numpy()
    return neighbours.graph_for(flat, train_config.neighbours, neighbours.images_key(flat),
                                log=print)  # fmt: skip


def graph_vs_eager(x: torch.Tensor, preset: str, epochs: int, triton: bool = False) -> float:
    """Largest relative difference of the epoch losses, CUDA graphs vs eager CUDA steps.
    `triton`: the graphs record the Triton step (DEEPAE_TRITON=1), the eager steps run
    PyTorch's; inf where the Triton step did not run."""
    means = {}
    graph = neighbour_graph(x, preset)
    for graphs in (True, False):
        model_config, train_config = resolve(preset)
        train_config = dataclasses.replace(train_config, device="cuda", epochs=epochs,
                                           validate=False)  # fmt: skip
        with _environ(triton_step.ENV, "1" if triton and graphs else "0"):
            trainer = train.Trainer(model.build(model_config, seed=0), train_config, len(x),
                                    graph=graph)  # fmt: skip
        if triton and graphs and triton_missing(trainer.engine):
            return float("inf")
        if not graphs:
            trainer.whole_step = None  # what DEEPAE_CUDA_GRAPH=0 gives
        elif trainer.whole_step is None:
            print("  CUDA graphs were not chosen for this trainer")
            return float("inf")
        xs = x.cuda()
        means[graphs] = [trainer.train_epoch(xs, e)[1].sum().item() / xs.numel()
                         for e in range(epochs)]  # fmt: skip
        if triton and graphs and trainer.engine.gpu_step.failed:
            print("  the Triton step failed: PyTorch's ran in the graphs")
            return float("inf")
    if triton and trainer.engine.gpu_step is not None:
        print("  the eager run used the Triton step too")
        return float("inf")
    worst = 0.0
    kind = "graphs, Triton" if triton else "graphs"
    for epoch, (a, b) in enumerate(zip(means[True], means[False], strict=True), 1):
        rel = abs(a - b) / b
        worst = max(worst, rel)
        print(f"  {preset} epoch {epoch}: loss {a:.6f} ({kind}) vs {b:.6f} (eager), "
              f"rel diff {rel:.1e}")  # fmt: skip
    return worst


def triton_parity(x: torch.Tensor, device: str = "cuda") -> float:
    """Largest relative difference of the Triton step's loss and gradient (deepae.triton_step,
    on CUDA) from autograd's in float64 on the CPU, for the article's net and a linear code,
    on a full batch and a last batch of 20; inf where the step did not run."""
    worst = 0.0
    for config, batch in ((ModelConfig(), 32), (ModelConfig(latent_activation="linear"), 20)):
        net = model.build(config, seed=0).to(device)
        with _environ(triton_step.ENV, "1"):  # (the compiled CPU step never runs on CUDA)
            engine = FusedDenseEngine(net, "bce", use_native=False)
        if triton_missing(engine):
            return float("inf")
        xb = x[:batch]
        got = engine.loss_and_grad(xb.to(device)).item()
        ref = model.build(config, seed=0).double()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            ref.logits(xb.double()), xb.double(), reduction="sum"
        )
        want = torch.autograd.grad(loss / xb.numel(), list(ref.parameters()))
        rel = abs(got - loss.item()) / loss.item()
        for p, g in zip(net.parameters(), want, strict=True):
            rel = max(rel, ((p.grad.cpu().double() - g).abs().max() / g.abs().max()).item())
        used = not engine.gpu_step.failed
        print(f"  Triton step, batch {batch}, latent {config.latent_activation}: loss {got:.4f}"
              f" vs float64 {loss.item():.4f}, max rel diff {rel:.1e}"
              f"{'' if used else ' (it failed: the PyTorch step ran)'}")  # fmt: skip
        worst = max(worst, rel if used else float("inf"))
    return worst


@contextlib.contextmanager
def _environ(name: str, value: str | None):
    old = os.environ.pop(name, None)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)
        if old is not None:
            os.environ[name] = old


def timing(x, v, preset: str, epochs: int, graphs: bool, triton: bool = False,
           device: str = "cuda") -> tuple[float, float, float, str]:  # fmt: skip
    """(median training seconds of an epoch, all epochs' training seconds, last val_loss,
    "" or what did not run as asked, to print beside the time); `triton`: with
    DEEPAE_TRITON=1 (deepae.triton_step, where it applies), else DEEPAE_TRITON=0."""
    model_config, train_config = resolve(preset)
    train_config = dataclasses.replace(train_config, device=device, epochs=epochs)
    with _environ(triton_step.ENV, "1" if triton else "0"):
        trainer = train.Trainer(model.build(model_config, seed=0), train_config, len(x),
                                graph=neighbour_graph(x, preset))  # fmt: skip
    if not graphs:
        trainer.whole_step = None
    state = train.fit(trainer, x, v)
    seconds = [r.train_seconds for r in state.history]
    missing = []
    if graphs and getattr(trainer.whole_step, "name", None) != "cuda_graph":
        missing.append("no CUDA graphs: eager steps ran")
    gpu_step = trainer.engine.gpu_step if trainer.engine else None
    if triton and (gpu_step is None or gpu_step.failed):
        missing.append("the Triton step did not run: PyTorch's did")
    note = f" ({'; '.join(missing)})" if missing else ""
    return statistics.median(seconds), sum(seconds), state.history[-1].val_loss, note


def kernel_profile(x: torch.Tensor, triton: bool, device: str = "cuda", top: int = 12,
                   preset: str = "article") -> float:  # fmt: skip
    """Where a step of the preset's recipe goes: one epoch (after one of warm-up and
    capture) under torch.profiler, its kernels (on the CPU: its ops) by time a step, the
    `top` largest printed; returns the profiled time a step in us. `triton`: with
    DEEPAE_TRITON=1 (deepae.triton_step, where it applies), else 0."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    model_config, train_config = resolve(preset)
    train_config = dataclasses.replace(train_config, device=device, epochs=3, validate=False)
    with _environ(triton_step.ENV, "1" if triton else "0"):
        trainer = train.Trainer(model.build(model_config, seed=0), train_config, len(x),
                                graph=neighbour_graph(x, preset))  # fmt: skip
    xs = x.to(device)
    on_gpu = device == "cuda"
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    trainer.train_epoch(xs, 0)  # the warm-up steps and the capture
    sync()
    start = time.perf_counter()  # an epoch unprofiled: its wall time a step, beside the kernels'
    trainer.train_epoch(xs, 1)
    sync()
    wall = (time.perf_counter() - start) / trainer.steps_per_epoch * 1e6
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as prof:
        trainer.train_epoch(xs, 2)
        sync()
    kind = DeviceType.CUDA if on_gpu else DeviceType.CPU

    def us(e) -> float:  # self time, us, over the epoch
        if on_gpu:
            return getattr(e, "self_device_time_total", None) or e.self_cuda_time_total
        return e.self_cpu_time_total

    events = sorted((e for e in prof.key_averages() if e.device_type == kind), key=us,
                    reverse=True)  # fmt: skip
    steps = trainer.steps_per_epoch
    total = sum(us(e) for e in events) / steps
    print(f"    {'kernel' if on_gpu else 'op':<58}{'calls/step':>11}{'us/step':>9}")
    for e in events[:top]:
        print(f"    {e.key[:58]:<58}{e.count / steps:>11.1f}{us(e) / steps:>9.2f}")
    print(f"    {'all (' + str(len(events)) + ' kinds)':<58}{'':>11}{total:>9.2f}")
    print(f"    {'wall time a step, unprofiled (the rest: gaps and the host)':<69}{wall:>9.2f}")
    return total


def speed(x: torch.Tensor, v: torch.Tensor, args: argparse.Namespace) -> None:
    """Sections 6 and 7: timings and profiles, no checks."""
    print(
        "6. timing on the GPU (targets on an H200: article epoch <= 0.15 s, best2d <= 15 s,"
        " umap2d as fast as the engine allows)"
    )
    for graphs, epochs in ((True, args.full_epochs), (False, args.eager_epochs)):
        median, _, _, note = timing(x, v, "article", epochs, graphs)
        print(f"  article, {'graphs' if graphs else 'eager '}, PyTorch's step: {median:.3f} s per "
              f"epoch (median of {epochs}){note}")  # fmt: skip
    if has_triton():
        default = triton_step.BLOCK_D, triton_step.WARPS
        for block, warps in ((32, 4), (64, 4), (128, 4), (64, 2), (64, 8), (32, 2)):
            triton_step.BLOCK_D, triton_step.WARPS = block, warps
            median, _, val, note = timing(x, v, "article", args.full_epochs, True, triton=True)
            print(f"  article, graphs, DEEPAE_TRITON=1, {block} pixels and {warps} warps a "
                  f"program: {median:.3f} s per epoch (median of {args.full_epochs}), last "
                  f"val_loss {val:.4f}{note}")  # fmt: skip
        triton_step.BLOCK_D, triton_step.WARPS = default
    for graphs, epochs in ((True, args.best2d_epochs), (False, args.eager_epochs)):
        median, total, val, note = timing(x, v, "best2d", epochs, graphs)
        print(f"  best2d, {'graphs' if graphs else 'eager '}: {total:.1f} s of training for "
              f"{epochs} epochs ({median:.3f} s per epoch), last val_loss {val:.4f}"
              f"{note}")  # fmt: skip
    full = resolve("umap2d")[1].epochs
    for graphs, epochs in ((True, args.full_epochs), (False, args.eager_epochs)):
        median, _, _, note = timing(x, v, "umap2d", epochs, graphs)
        print(f"  umap2d, {'graphs' if graphs else 'eager '}: {median:.3f} s per epoch (median "
              f"of {epochs}; x {full} epochs = {median * full:.1f} s){note}")  # fmt: skip
    print("7. where a captured step goes (torch.profiler, one epoch; kernels that overlap "
          "count in full)")  # fmt: skip
    for triton in (False, True) if has_triton() else (False,):
        print(f"  the article's, {'the Triton step' if triton else 'PyTorch step'}:")
        kernel_profile(x, triton)
    print("  umap2d's (its steps on edges):")
    kernel_profile(x, False, preset="umap2d")


def main() -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--data-dir", help="folder with the MNIST IDX files (.gz ok)")
    parser.add_argument("--full-epochs", type=positive_int, default=10,
                        help="epochs of the article's recipe on both devices (10)")  # fmt: skip
    parser.add_argument(
        "--best2d-epochs",
        type=positive_int,
        default=resolve("best2d")[1].epochs,
        help="best2d's training, timed with graphs (default: the preset's)",
    )
    parser.add_argument(
        "--eager-epochs",
        type=positive_int,
        default=10,
        help="epochs timed on eager steps, for comparison (10)",
    )
    args = parser.parse_args()
    # Each section names the step it runs, and sections 2+3 run the default (what `deepae
    # train` runs), whatever DEEPAE_TRITON the shell exported.
    os.environ.pop(triton_step.ENV, None)
    try:  # before any GPU work: the step on edges (section 1) needs it
        neighbours.require_umap()
    except MissingExtraError as e:
        print(f"gpu_check: {e}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("no CUDA GPU here", file=sys.stderr)
        return 2
    # CPU runs use the thread count `deepae train` would (deepae.threads): 1 for the article.
    torch.set_num_threads(threads.for_training(ModelConfig(), 32))
    print(f"torch {torch.__version__}, GPU {torch.cuda.get_device_name()}, "
          f"CPU threads {torch.get_num_threads()}")  # fmt: skip
    (xtr, _), (xte, _) = data.load_mnist(args.data_dir)
    x = torch.from_numpy(data.flatten_images(xtr))
    v = torch.from_numpy(data.flatten_images(xte))
    ok = True

    print("1. gradient parity")
    ok &= gradient_parity(x) < 1e-4
    ok &= edges_parity(x) <= 1.0
    if has_triton():
        ok &= triton_parity(x) < 1e-5
    ok &= adam_pieces_parity() == 0

    print(f"2+3. the article's recipe, {args.full_epochs} epochs, seed 0, on both devices")
    cpu, cpu_s = trained(x, v, "cpu", args.full_epochs, log=False)
    gpu, gpu_s = trained(x, v, "cuda", args.full_epochs, log=True)
    for a, b in zip(cpu, gpu, strict=True):
        rel = max(abs(a.loss - b.loss) / a.loss, abs(a.val_loss - b.val_loss) / a.val_loss)
        print(f"  epoch {a.epoch}: loss {a.loss:.6f} vs {b.loss:.6f}, "
              f"val_loss {a.val_loss:.6f} vs {b.val_loss:.6f}, max rel diff {rel:.1e}")  # fmt: skip
        ok &= rel < (1e-3 if a.epoch == 1 else 1e-2)
    print(f"  CPU {cpu_s:.1f}s, CUDA {gpu_s:.1f}s for {args.full_epochs} epochs")

    print("4. the captured step against autograd")
    for triton in (False, True) if has_triton() else (False,):
        ok &= graph_step_parity(x, triton) < 1e-4
    print("5. CUDA graphs against eager CUDA steps")
    ok &= graph_vs_eager(x, "article", 2) < 1e-3
    ok &= graph_vs_eager(x, "best2d", 2) < 1e-3
    ok &= graph_vs_eager(x, "umap2d", 2) < 1e-3
    if has_triton():
        ok &= graph_vs_eager(x, "article", 2, triton=True) < 1e-3

    speed(x, v, args)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
