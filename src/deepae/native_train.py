"""The fused engine's whole training step on the CPU as one compiled call: the batch's
gather, its loss and gradient, and Adam.

Why: with the loss and gradient compiled (deepae.native), what Python did around them
became an eighth of the article's step: `index_select` for the batch, the optimizer call
(its state lookups, the step count, the kernel's arguments), the trainer's own calls.
`Step.train` in native_step.cpp does the same work in one call: it copies the batch's rows
(what `index_select` does), runs the compiled step, adds 1 to Adam's step count and calls
the fused Adam (or AdamW) kernel that `deepae.engine.fused_adam_step` calls, with the
param group's numbers read on each step, so schedules (OneCycle's lr and beta1 too) act
as they do on the ordinary path. It is the ordinary path's arithmetic, in the same order:
tests/test_native_train.py checks that both train to the same bits.

Used where the compiled step is (float32 weights on an x86-64 CPU, deepae.native), the
optimizer is Adam or AdamW over the one flat parameter (`deepae.engine.direct_adam`), one
process trains (a data-parallel step all-reduces between backward and Adam) and the
images are a float32 tensor in memory (a memory-mapped file is read a batch at a time by
deepae.batches). The same protocol as deepae.cuda_graph's StaticStep: `accepts(x)`, then
`plan(x, order)` once an epoch, which returns step s -> its summed loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from deepae import engine as fused


def for_trainer(trainer) -> NativeTrainStep | None:
    """The compiled whole step for a deepae.train.Trainer where it applies, else None."""
    eng = trainer.engine
    if (eng is None or eng.native is None or trainer.world.size > 1
            or not fused.direct_adam(trainer.opt)):  # fmt: skip
        return None
    return NativeTrainStep(eng, trainer.opt, trainer.schedule, trainer.cfg.batch_size)


class NativeTrainStep:
    """Step s of an epoch: rows order[s * B : (s + 1) * B] of x, loss and gradient, Adam's
    fused kernel, then `schedule` (or None) steps."""

    name = "compiled"  # what metrics.json calls it

    def __init__(self, engine: fused.FusedDenseEngine, opt: torch.optim.Optimizer, schedule,
                 batch_size: int):  # fmt: skip
        if engine.native is None or not fused.direct_adam(opt):
            raise ValueError("NativeTrainStep needs the compiled step and Adam or AdamW")
        self.engine, self.opt, self.schedule, self.bs = engine, opt, schedule, batch_size
        self.adamw = isinstance(opt, torch.optim.AdamW)
        self._steps: dict[int, object] = {}  # batch size -> the engine's compiled Step
        self._n = 0

    def accepts(self, x) -> bool:
        """Whether the step can read the training images x: a contiguous float32 (N, D)
        tensor on the CPU (not a memory-mapped deepae.batches.MappedImages), while the
        engine has its compiled step."""
        return (self.engine.native is not None and isinstance(x, torch.Tensor)
                and x.dim() == 2 and x.is_contiguous() and x.dtype == torch.float32
                and x.device.type == "cpu")  # fmt: skip

    def plan(self, x: torch.Tensor, order: torch.Tensor) -> Callable[[int], torch.Tensor]:
        """step s -> the summed loss (0-d) of step s of the epoch whose shuffle is `order`
        (N,) over x (N, D). Steps may start anywhere (a resumed epoch)."""
        order = order.contiguous()
        p, state = fused.adam_state(self.opt)  # made now if training has not stepped yet
        self.opt._opt_called = True  # what Optimizer.step records, so lr schedulers see steps
        self._n = len(order)
        sizes = {self.bs, self._n % self.bs} - {0}
        self._steps = {b: self.engine.native_step(b, x) for b in sizes}
        for step in self._steps.values():
            step.set_data(x, order)
            step.set_adam(p, self.engine.grad, state["exp_avg"], state["exp_avg_sq"],
                          state["step"], self.adamw)  # fmt: skip
        return self.step

    def step(self, s: int) -> torch.Tensor:
        """Step s of the planned epoch; returns its summed loss (0-d)."""
        first = s * self.bs
        group = self.opt.param_groups[0]
        beta1, beta2 = group["betas"]
        loss = self._steps[min(self.bs, self._n - first)].train(
            first, group["lr"], beta1, beta2, group["weight_decay"], group["eps"])  # fmt: skip
        if self.schedule is not None:
            self.schedule.step()
        return loss
