"""The fused engine's training step as one CUDA graph: gather, forward, backward and Adam,
replayed with one launch per step.

Why: on a GPU a step of the article's model is ~30 tiny kernels, and launching them one by
one from Python costs more than running them (docs/gpu.md: ~0.5 ms a step on an H200, no
faster than two CPU cores). A CUDA graph records the kernels once and replays them with
one launch, as in PyTorch's "Accelerating PyTorch with CUDA Graphs" (whole-step capture:
static inputs, forward, backward and optimizer step, then `graph.replay()`).

A replay reruns the recorded kernels on the recorded memory with the recorded arguments,
so nothing a step reads may change its address, and no number may come from the host:
- the epoch's shuffle lives in one device buffer (`order`), refilled in place each epoch;
  the step gathers its batch from it at a device-side step index (`index`), which it
  increments itself, so nothing is copied in from the host per step;
- the batch, activations and gradients are preallocated buffers (the engine's); the
  summed loss is a tensor the graph overwrites on every replay, copied out by the trainer;
- Adam reads its step count from the device (the optimizer's own `state["step"]`, a
  float32 tensor there) and the learning rate from a device tensor (`lr`), which the host
  refreshes between replays when a schedule changed the param group's rate.
Learning-rate schedules: cosine only moves the rate, so its steps stay whole graphs.
OneCycle also cycles Adam's beta1 (Smith's momentum cycling, PyTorch's default), and the
fused kernel takes beta1 as a host number, which a graph would freeze: with it, the graph
ends at the gradient and Adam runs right after each replay, eagerly, as on the ordinary
path (one launch more per step).

umap2d's steps (a neighbour loss, deepae.neighbours) are captured the same way: the epoch's
sampled edges, each step's heads and tails as image indices and its negatives as positions
in the batch, live in device buffers refilled each epoch, and the step gathers its row of
both at the device-side index; the UMAP loss of the codes, which autograd differentiates
inside the engine's step on edges, is recorded with the rest (PyTorch's graphs record
autograd's backward kernels like any others).

Each batch size gets its own graph (the last batch of an epoch may be smaller), captured
after WARMUP_STEPS eager steps of that size (PyTorch's recipe: warm up on a side stream,
so that lazy initialisation, e.g. cuBLAS's workspace, happens outside the capture). The
graphs are dropped and captured again when the data or the optimizer's state tensors were
replaced (a resumed run loads new ones).

The same step runs without capture on any device (`capture=False`): tests run it on the
CPU and check that it gives the ordinary fused path's losses and parameters bit for bit.
`DEEPAE_CUDA_GRAPH=0` turns capture off (the ordinary eager step then runs on the GPU).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping

import torch

from deepae import engine as fused

ENV = "DEEPAE_CUDA_GRAPH"  # "0": never capture
WARMUP_STEPS = 3  # eager steps of a batch size before its capture (PyTorch's examples use 3)

# (step body) -> (replay, static output): how a step is recorded; CUDA's below, a test's own.
Recorder = Callable[[Callable[[], torch.Tensor]], tuple[Callable[[], object], torch.Tensor]]
# (both (2B, D), negatives (R*B,)) -> a step on edges' summed loss (StaticStep.plan_edges)
EdgesLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def wanted(device: torch.device, engine, opt: torch.optim.Optimizer, processes: int = 1,
           environ: Mapping[str, str] | None = None) -> bool:  # fmt: skip
    """Whether training should capture its steps: on CUDA, the fused engine with Adam or
    AdamW (the kernel `deepae.engine.fused_adam_step` calls itself), one process (a
    data-parallel step all-reduces between backward and Adam), and not turned off by
    DEEPAE_CUDA_GRAPH=0."""
    environ = os.environ if environ is None else environ
    return (
        device.type == "cuda"
        and engine is not None
        and fused.direct_adam(opt)
        and processes == 1
        and environ.get(ENV, "1").strip() != "0"
    )


def for_trainer(trainer) -> StaticStep | None:
    """The captured step for a deepae.train.Trainer where `wanted`, else None."""
    if not wanted(trainer.device, trainer.engine, trainer.opt, trainer.world.size):
        return None
    return StaticStep(trainer.engine, trainer.opt, trainer.schedule, trainer.cfg.batch_size,
                      capture=True)  # fmt: skip


class StaticStep:
    """The fused step over static buffers: step s gathers batch s of the epoch's order (or
    of its sampled edges) on the device, computes loss and gradient (`engine`), and updates
    the parameters with the fused Adam kernel of `opt`; then `schedule` (or None) steps on
    the host. With `capture` (CUDA), each batch size's step is recorded once by `recorder`
    and replayed after."""

    def __init__(self, engine: fused.FusedDenseEngine, opt: torch.optim.Optimizer, schedule,
                 batch_size: int, *, capture: bool, recorder: Recorder | None = None):  # fmt: skip
        if not fused.direct_adam(opt):
            raise ValueError("StaticStep needs Adam or AdamW on the fused kernel")
        self.engine, self.opt, self.schedule, self.bs = engine, opt, schedule, batch_size
        self.capture = capture
        self.record = recorder or _cuda_graph
        # OneCycle cycles beta1, a host number to the kernel: Adam then runs outside.
        self.adam_in_graph = not getattr(schedule, "cycle_momentum", False)
        device = engine.flat.device
        # The CUDA kernel reads a float32 rate; the CPU one reads any dtype as a double, so
        # there float64 keeps the param group's rate exactly (the same bits as a float).
        self.lr = torch.zeros((), dtype=torch.float32 if device.type == "cuda" else torch.float64,
                              device=device)  # fmt: skip
        self._lr_now: float | None = None  # the rate `lr` holds
        self.index = torch.zeros(1, dtype=torch.long, device=device)  # the next step, (1,)
        self._next = 0  # what `index` holds, known on the host
        self._side = torch.cuda.Stream(device) if capture and device.type == "cuda" else None
        self._key: tuple | None = None  # what the graphs were recorded on
        self._graphs: dict[int, tuple[Callable[[], object], torch.Tensor]] = {}
        self._runs: dict[int, int] = {}  # batch size -> eager steps so far
        self._losses: dict[int, torch.Tensor] = {}  # batch size -> warm-up steps' loss

    @property
    def name(self) -> str:
        """What metrics.json calls it: "cuda_graph" while it captures, else "static"."""
        return "cuda_graph" if self.capture else "static"

    def accepts(self, x) -> bool:
        """Whether the step can read the training images x: a float (N, D) tensor on the
        engine's device, of its dtype (not a memory-mapped deepae.batches.MappedImages)."""
        flat = self.engine.flat
        return (isinstance(x, torch.Tensor) and x.dim() == 2 and x.is_contiguous()
                and x.device == flat.device and x.dtype == flat.dtype)  # fmt: skip

    def plan(self, x: torch.Tensor, order: torch.Tensor) -> Callable[[int], torch.Tensor]:
        """step s -> the summed loss (0-d) of step s of the epoch whose shuffle is `order`
        (N,) over x (N, D). Steps run in order from any start (a resumed epoch)."""
        if self._renew(x, ("plain", tuple(order.shape))):
            self.order = torch.empty_like(order)
            n_full = len(x) // self.bs
            self.n_full, self.tail = n_full, self.order[n_full * self.bs :]  # (n mod B,)
            self.batches = self.order[: n_full * self.bs].view(n_full, self.bs)  # (S, B)
            self.width, self.edges = self.bs, False  # rows of a full step's batch
            sizes = {self.bs, len(self.tail)} - {0}
            self.buffers = {b: x.new_empty(b, x.shape[1]) for b in sizes}  # (B, D) each
        self.order.copy_(order)
        return self._start()

    def plan_edges(self, x: torch.Tensor, ends: torch.Tensor, negatives: torch.Tensor,
                   loss_of: EdgesLoss) -> Callable[[int], torch.Tensor]:  # fmt: skip
        """step s -> the summed loss (0-d) of step s of an epoch of sampled edges over x
        (N, D): ends (S, 2B) image indices, each step's B heads then its B tails, and
        negatives (S, R * B) positions in the step's batch (deepae.neighbours), on x's
        device. loss_of(both (2B, D), negatives (R * B,)) -> the step's summed loss, its
        gradient left in the engine (deepae.train's neighbour step); the same function
        every epoch, since a graph replays what it recorded of it."""
        if self._renew(x, ("edges", tuple(ends.shape), tuple(negatives.shape))):
            self.ends, self.negatives = torch.empty_like(ends), torch.empty_like(negatives)
            self.n_full, self.tail = len(ends), ends.new_empty(0)  # every step is full
            self.width, self.edges = ends.shape[1], True
            self.buffers = {self.width: x.new_empty(self.width, x.shape[1])}  # (2B, D)
        self.ends.copy_(ends)
        self.negatives.copy_(negatives)
        self.loss_of = loss_of
        return self._start()

    def _renew(self, x: torch.Tensor, kind: tuple) -> bool:
        """Whether the buffers must be made again (and the graphs recorded again): new
        data, a new kind or shape of epoch, or new optimizer state (a resumed run)."""
        _, state = fused.adam_state(self.opt)  # made now, so the graphs record its tensors
        key = (x.data_ptr(), tuple(x.shape), kind, *(state[k].data_ptr() for k in sorted(state)))
        if key == self._key:
            return False
        self._key, self._graphs, self._runs, self.x = key, {}, {}, x
        return True

    def _start(self) -> Callable[[int], torch.Tensor]:
        self.index.zero_()
        self._next = 0
        return self.step

    def step(self, s: int) -> torch.Tensor:
        """Step s of the planned epoch; returns its summed loss (0-d, on the device; with
        capture, the graph's output, which the next replay overwrites)."""
        if s != self._next:  # a resumed epoch starts mid-way
            self.index.fill_(s)
        self._next = s + 1
        rate = self.opt.param_groups[0]["lr"]
        if self.adam_in_graph and rate != self._lr_now:  # a schedule moved it: a fill, no sync
            self.lr.fill_(rate)
            self._lr_now = rate
        loss = self._run(self.width if s < self.n_full else len(self.tail))
        if not self.adam_in_graph:
            fused.fused_adam_step(self.opt)
        if self.schedule is not None:
            self.schedule.step()
        return loss

    def _run(self, batch: int) -> torch.Tensor:
        runs = self._runs.get(batch, 0)
        if not self.capture or runs < WARMUP_STEPS:
            self._runs[batch] = runs + 1
            return self._eager(batch)
        if batch not in self._graphs:
            try:
                self._graphs[batch] = self.record(lambda: self._body(batch))
            except RuntimeError as e:  # recording runs nothing, so the step can run eagerly
                message = f"CUDA graph capture failed ({e}); training goes on with eager steps"
                warnings.warn(f"{message} (set {ENV}=0 to skip capture)", stacklevel=2)
                self.capture = False
                return self._eager(batch)
        replay, loss = self._graphs[batch]
        replay()
        return loss

    def _eager(self, batch: int) -> torch.Tensor:
        if self._side is None:
            return self._body(batch)
        # On a side stream, as PyTorch's capture recipe warms up; the loss is copied into a
        # tensor kept for good, so no memory of the side stream is reused while in use.
        if batch not in self._losses:
            self._losses[batch] = self.lr.new_zeros((), dtype=self.engine.flat.dtype)
        self._side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._side):
            self._losses[batch].copy_(self._body(batch))
        torch.cuda.current_stream().wait_stream(self._side)
        return self._losses[batch]

    def _body(self, batch: int) -> torch.Tensor:
        # What a graph records: no host number may change between replays.
        if self.edges:
            rows = torch.index_select(self.ends, 0, self.index).view(batch)  # (2B,)
            both = torch.index_select(self.x, 0, rows, out=self.buffers[batch])  # (2B, D)
            negatives = torch.index_select(self.negatives, 0, self.index).view(-1)  # (R*B,)
            loss = self.loss_of(both, negatives)
        else:
            if batch == self.bs:
                rows = torch.index_select(self.batches, 0, self.index).view(batch)  # (B,)
            else:
                rows = self.tail  # the last, smaller batch: always the same positions
            images = torch.index_select(self.x, 0, rows, out=self.buffers[batch])  # (B, D)
            loss = self.engine.loss_and_grad(images)
        if self.adam_in_graph:
            fused.fused_adam_step(self.opt, lr=self.lr)
        self.index.add_(1)
        return loss


def _cuda_graph(body: Callable[[], torch.Tensor]) -> tuple[Callable[[], object], torch.Tensor]:
    # Capture records the kernels without running them: the step runs at the first replay.
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss = body()
    return graph.replay, loss
