"""Training: the Keras `fit` loop of the article, on one of two engines.

- `fused` (default where it applies): hand-written forward/backward (`deepae.engine`), all
  parameters in one flat tensor, one optimizer kernel per step.
- `autograd`: the ordinary PyTorch loop, for every model (BatchNorm, other activations).

Both see the same batches in the same order: the shuffle of epoch `e` comes from a CPU
generator seeded with (seed, e), so it does not depend on the device, and a resumed run
draws exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from deepae import batches, cuda_graph, distributed, native_train, optim, precision
from deepae import engine as fused
from deepae.config import TrainConfig
from deepae.errors import ConfigError, TrainingDiverged
from deepae.losses import bce_with_logits
from deepae.model import AutoencoderNet


@dataclass
class EpochRecord:
    epoch: int  # 1-based, as Keras prints it
    loss: float  # mean training loss over the epoch's batches (Keras' running mean)
    val_loss: float | None
    seconds: float  # wall time of the epoch, validation included
    train_seconds: float  # the training steps alone


@dataclass
class TrainState:
    """Where training stands: everything a checkpoint needs besides weights and optimizer."""

    epoch: int = 0  # epochs completed
    step: int = 0  # steps completed within epoch `epoch` (> 0 only when interrupted)
    history: list[EpochRecord] = field(default_factory=list)
    partial_losses: torch.Tensor | None = None  # (steps_per_epoch,) of an unfinished epoch
    interrupted: bool = False  # fit() returned early because `stop()` said so


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' was asked for but no CUDA GPU is available; use cpu", field="device"
        )
    return torch.device(name)


class Trainer:
    """Owns the optimizer and the engine for one net; `fit` drives it epoch by epoch."""

    def __init__(self, net: AutoencoderNet, cfg: TrainConfig, n_train: int, graph=None):
        if cfg.loss == "bce" and net.config.output_activation != "sigmoid":
            raise ConfigError(
                "loss 'bce' needs output_activation 'sigmoid'; use loss 'mse'", field="loss"
            )
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.net = net.to(self.device)
        self.n_train = n_train
        self.steps_per_epoch = math.ceil(n_train / cfg.batch_size)
        # This process's place in a data-parallel run (deepae.distributed; alone: World())
        self.world = distributed.world()
        self.world.check_fits(cfg.batch_size, n_train, self.device,
                              batch_norm=net.config.batch_norm,
                              edges=cfg.neighbour_weight > 0)  # fmt: skip
        self.neighbour = _neighbour_loss(cfg, graph, n_train)
        use_fused = cfg.engine == "fused" or (
            cfg.engine == "auto" and fused.supports(net, cfg.loss)
        )
        self.precision = precision.resolve(cfg.precision, self.device)  # what 'auto' means here
        self.engine = (
            fused.FusedDenseEngine(net, cfg.loss, precision.compute_dtype(self.precision))
            if use_fused
            else None
        )
        params = [self.engine.flat] if self.engine else list(net.parameters())
        if self.engine:
            self.world.broadcast_(self.engine.flat.detach())  # every rank starts from rank 0's
        # DDP broadcasts rank 0's parameters now and averages gradients in backward()
        several = self.world.size > 1 and not self.engine
        self.ddp = (
            self.world.data_parallel(net, "codes_and_logits", self.device) if several else None
        )
        self.opt = optim.make_optimizer(params, cfg)
        self.schedule = optim.make_schedule(self.opt, cfg, self.steps_per_epoch * cfg.epochs)
        self.loss_fn = _loss_fn(cfg.loss, net.config.output_activation == "sigmoid")
        # The whole fused step (gather, loss and gradient, Adam) in one call: on CUDA as one
        # CUDA graph (deepae.cuda_graph; steps on edges too), on the CPU compiled
        # (deepae.native_train; plain batches only). None: the step below, a call at a time.
        self.whole_step = cuda_graph.for_trainer(self) or (
            native_train.for_trainer(self) if self.neighbour is None else None
        )

    @property
    def engine_name(self) -> str:
        return "fused" if self.engine else "autograd"

    def train_epoch(
        self,
        x: torch.Tensor,
        epoch: int,
        progress: bool = False,
        *,
        start_step: int = 0,
        losses: torch.Tensor | None = None,
        stop: Callable[[], bool] | None = None,
        bar=None,
    ) -> tuple[int, torch.Tensor]:
        """Steps `start_step`.. of epoch `epoch` (0-based) over x (N, D) on the device.

        Returns (steps completed, per-step summed losses (steps_per_epoch,)): all steps
        unless `stop()` turned true, checked before each step, so a resumed epoch can pick
        up at exactly the next batch. `losses` carries the sums of an interrupted epoch.
        `bar`: a tqdm bar to advance (`fit`'s, over the whole training), else with
        `progress` the epoch gets a bar of its own.
        """
        step_fn = self._epoch_plan(x, epoch)
        if losses is None:
            losses = torch.zeros(self.steps_per_epoch, device=self.device)
        losses = losses.to(self.device)
        self.net.train()
        own_bar = bar is None
        if own_bar:
            bar = progress_bar(self.steps_per_epoch - start_step, progress)
        check_every = 100  # a finite-loss check costs a device sync, so not every step
        step = shown = summed = start_step  # losses[:summed] are summed over the ranks
        # Once trained, background pixels get logits below -87, so sigmoid(logit) - x is a
        # subnormal float, and x86 matrix kernels slow down ~100x on subnormals: without
        # this an epoch of the article's model takes 0.55 s instead of 0.33 s. Flushing
        # them to 0 changes nothing visible (they are below 1.2e-38). Set back to PyTorch's
        # default (off) afterwards: PyTorch offers no way to read what it was before.
        flush = self.device.type == "cpu" and torch.set_flush_denormal(True)
        try:
            while step < self.steps_per_epoch:
                if stop is not None and stop():
                    break
                losses[step] = step_fn(step)
                step += 1
                if step % check_every == 0 or step == self.steps_per_epoch:
                    self.world.sum_(losses[summed:step])  # each rank's -> the global sums
                    summed = step
                    _check_finite(losses, step - 1, check_every, epoch)
                    bar.update(step - shown)
                    shown = step
        finally:
            if flush:
                torch.set_flush_denormal(False)
            if own_bar:
                bar.close()
        self.world.sum_(losses[summed:step])  # an interrupted epoch's last steps
        _check_finite(losses, step - 1, check_every, epoch)
        return step, losses

    def values_per_epoch(self, x) -> int:
        """How many values an epoch's summed losses cover, so that their sum over it is
        Keras' mean: every pixel of the N images x (N, D), or with a neighbour loss the
        pixels of every step's B sampled edge heads (steps x B, not N)."""
        if self.neighbour is None:
            return x.numel()
        return self.steps_per_epoch * self.cfg.batch_size * (x.numel() // len(x))

    def _epoch_plan(self, x: torch.Tensor, epoch: int) -> Callable[[int], torch.Tensor]:
        """step -> that step's summed loss, for epoch `epoch` of x (N, D): batches of the
        epoch's shuffle, or (with a neighbour loss) the epoch's sampled edges."""
        bs = self.cfg.batch_size
        if self.neighbour is not None:
            edges = self.neighbour.epoch_edges(epoch, self.steps_per_epoch, bs)
            edges = self.neighbour.share(edges, self.world.rows(bs))  # this rank's part
            heads, tails, negatives = edges
            # Each step's heads, then its tails: (steps, 2B), one gather a step.
            ends = torch.cat([heads, tails], 1).to(self.device)
            negatives = negatives.to(self.device)
            if self.whole_step is not None and self.whole_step.accepts(x):
                return self.whole_step.plan_edges(x, ends, negatives, self._edges_loss)
            return lambda s: self._neighbour_step(x, ends[s], negatives[s])
        order = _epoch_order(len(x), self.cfg, epoch).to(self.device)
        if self.whole_step is not None and self.whole_step.accepts(x):
            return self.whole_step.plan(x, order)
        gather = batches.gatherer(x)  # idx (B,) -> float32 (B, D); a memory map: per batch

        def plain_step(s: int) -> torch.Tensor:
            idx = order[s * bs : (s + 1) * bs]  # the global batch, as one process takes it
            rows = len(idx)
            if self.world.size > 1:
                idx = idx[self.world.rows(rows)]  # this rank's rows of it
            batch = gather(idx)  # (B, D)
            return self._step(batch, rows)

        return plain_step

    def _neighbour_step(self, x, ends, negatives) -> torch.Tensor:
        """One step of reconstruction + neighbour_weight * UMAP loss on a batch of edges:
        ends (2B,) image indices, the B edges' heads then their tails; negatives (R*B,)
        positions in the batch."""
        b = len(ends) // 2
        both = x[ends]  # (2B, D): heads, then tails
        share = 1.0 / self.world.size  # every rank has an equal share of the edges
        weight = self.cfg.neighbour_weight
        if self.engine is not None:
            loss_sum = self._edges_loss(both, negatives)
            self.world.reduce_gradient_(self.engine.grad, share)  # one all-reduce (alone: none)
            fused.fused_adam_step(self.opt)
        else:
            x_head = both[:b]
            # Reconstruction of the heads only: every image is a head as often as its edges
            # weigh, and decoding the tails too would double the decoder's cost for no gain.
            with precision.autocast(self.precision, self.device):
                z, logits = self._forward(both, b)  # (2B, l), (B, D)
            # The codes' loss in float32 as the fused engine's; the reconstruction's in
            # float32 at least (a float64 net's stays float64, as on the fused engine).
            z, logits = z.float(), _at_least_float32(logits)
            loss = self.loss_fn(logits, x_head) + weight * self.neighbour(z[:b], z[b:], negatives)
            self.opt.zero_grad(set_to_none=True)
            self._backward(loss, share)
            self.opt.step()
            loss_sum = loss.detach() * x_head.numel()
        if self.schedule is not None:
            self.schedule.step()
        return loss_sum

    def _edges_loss(self, both: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """The fused engine's loss on a batch of edges, both (2B, D) the heads then the
        tails, its gradient left in the engine: the heads' reconstruction plus
        neighbour_weight times UMAP's loss of the codes (summed, as `loss_and_grad`)."""
        b, weight = len(both) // 2, self.cfg.neighbour_weight

        def code_loss(z: torch.Tensor) -> torch.Tensor:  # z (2B, latent) float32
            return weight * self.neighbour(z[:b], z[b:], negatives)

        return self.engine.edges_loss_and_grad(both, code_loss)

    def _step(self, batch: torch.Tensor, rows: int) -> torch.Tensor:
        """One step on this rank's batch (b, D) of a global batch of `rows` images."""
        share = len(batch) / rows  # 1 alone; with N ranks 1/N (the last batch: about)
        if self.engine is not None:
            loss_sum = self.engine.loss_and_grad(batch)
            self.world.reduce_gradient_(self.engine.grad, share)  # one all-reduce (alone: none)
            fused.fused_adam_step(self.opt)
        else:
            with precision.autocast(self.precision, self.device):
                logits = self._forward(batch, len(batch))[1]
            loss = self.loss_fn(_at_least_float32(logits), batch)
            self.opt.zero_grad(set_to_none=True)
            self._backward(loss, share)
            self.opt.step()
            loss_sum = loss.detach() * batch.numel()
        if self.schedule is not None:
            self.schedule.step()
        return loss_sum

    def _forward(self, x: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes of x (N, latent) and logits (n, D) of its first n rows; through DDP when
        several ranks train."""
        return self.net.codes_and_logits(x, n) if self.ddp is None else self.ddp(x, n)

    def _backward(self, loss: torch.Tensor, share: float) -> None:
        # DDP averages the ranks' gradients: weighing each rank's loss by share * N makes the
        # average the global batch's gradient (a factor of exactly 1 when batches split evenly).
        (loss if self.ddp is None else loss * (share * self.world.size)).backward()

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, chunk: int = 4096) -> float:
        """Mean loss over x (N, D), in inference mode (BatchNorm uses running stats)."""
        self.net.eval()
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        mine = x[self.world.rows(len(x))]  # each rank scores its rows; the sums are added
        for xb in batches.chunks(mine, chunk):  # (b, D): views, or read from a memory map
            total += self.loss_fn(self.net.logits(xb), xb).double() * xb.numel()
        return self.world.sum_(total).item() / x.numel()

    def state_dict(self) -> dict:
        return {
            "optimizer": self.opt.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["optimizer"])
        if self.schedule is not None and state.get("schedule") is not None:
            self.schedule.load_state_dict(state["schedule"])

    def continue_from(self, other: Trainer) -> None:
        """Go on from `other`, the trainer of the same net before its settings changed (a
        set_params or compile between fits): its optimizer state and schedule position,
        with this trainer's own settings (deepae.optim.carry_over says what goes on and what
        is refused)."""
        optim.check_schedule_kept(other.cfg, self.cfg, other.n_train, self.n_train,
                                  scheduled=other.schedule is not None)  # fmt: skip
        if type(self.opt) is type(other.opt):  # another kind of optimizer starts afresh
            state = other.state_dict()
            count = len(self.opt.param_groups[0]["params"])  # another engine: another layout
            state["optimizer"] = optim.in_layout(state["optimizer"], list(self.net.parameters()),
                                                 count)  # fmt: skip
            optim.carry_over(state, self, scheduled=self.schedule is not None)


def fit(
    trainer: Trainer,
    x_train: torch.Tensor,
    x_val: torch.Tensor | None = None,
    *,
    state: TrainState | None = None,
    on_epoch_end: Callable[[EpochRecord, TrainState], None] | None = None,
    progress: bool = False,
    stop: Callable[[], bool] | None = None,
) -> TrainState:
    """Train for the remaining epochs of `trainer.cfg`; x_* are float (N, D) in [0, 1]:
    tensors, or deepae.batches.MappedImages (uint8 files, read and converted per batch).

    `state` continues a resumed run, mid-epoch included; `on_epoch_end` is called after
    each epoch (printing, checkpoints); `stop()` is polled before every step, and when it
    turns true fit returns at once with `state.interrupted` set (in a data-parallel run, on
    every rank at the same step: World.agreed_stop). Returns the final state.
    """
    state = state or TrainState()
    state.interrupted = False
    x_train = x_train.to(trainer.device)
    x_val = x_val.to(trainer.device) if x_val is not None else None
    n_values = trainer.values_per_epoch(x_train)
    epochs = trainer.cfg.epochs
    # One bar over every step still to run (tqdm's ETA covers the whole training).
    remaining = max(0, trainer.steps_per_epoch * (epochs - state.epoch) - state.step)
    bar = progress_bar(remaining, progress)
    try:
        for epoch in range(state.epoch, epochs):
            bar.set_description(f"epoch {epoch + 1}/{epochs}", refresh=False)
            start = time.perf_counter()
            good = _Snapshot(trainer, state)
            try:
                steps, losses = trainer.train_epoch(
                    x_train, epoch, start_step=state.step, losses=state.partial_losses,
                    stop=stop, bar=bar,
                )  # fmt: skip
            except TrainingDiverged:
                good.restore(trainer, state)
                raise
            if steps < trainer.steps_per_epoch:
                state.step, state.partial_losses, state.interrupted = steps, losses, True
                return state
            loss = losses.sum().item() / n_values  # Keras' running mean over the epoch
            train_seconds = time.perf_counter() - start
            val = (
                trainer.evaluate(x_val)
                if x_val is not None and _validates(trainer.cfg, epoch)
                else None
            )
            record = EpochRecord(epoch + 1, loss, val, time.perf_counter() - start, train_seconds)
            state.history.append(record)
            state.epoch, state.step, state.partial_losses = epoch + 1, 0, None
            if on_epoch_end is not None:
                with bar.external_write_mode():  # epoch lines print above the bar, not in it
                    on_epoch_end(record, state)
    finally:
        bar.close()
    return state


class _Snapshot:
    """Weights, optimizer state, schedule and position of a trainer at the start of an
    epoch, copied, so that an epoch that diverges gives the model back as it was before it
    (Keras' TerminateOnNaN leaves NaN weights, and a second fit of them diverges at once).
    A copy of the parameters and Adam's moments, ~3x the model (0.6 MB for the article's,
    a few MB for best2d's) once an epoch: nothing beside an epoch's steps."""

    def __init__(self, trainer: Trainer, state: TrainState):
        self.weights = {k: v.detach().clone() for k, v in trainer.net.state_dict().items()}
        self.trainer = copy.deepcopy(trainer.state_dict())
        self.step = state.step
        partial = state.partial_losses
        self.partial = partial.clone() if partial is not None else None

    def restore(self, trainer: Trainer, state: TrainState) -> None:
        trainer.net.load_state_dict(self.weights)  # copies into the (flat) parameters
        # New optimizer state tensors: every engine takes them up at its next epoch's plan
        # (the CUDA graphs are captured again, as after a checkpoint is loaded).
        trainer.load_state_dict(copy.deepcopy(self.trainer))
        state.step, state.partial_losses = self.step, self.partial


def progress_bar(total: int, progress: bool, desc: str | None = None):
    """A tqdm bar of `total` steps (with an ETA), shown only when `progress` is true and the
    output is a terminal (tqdm's disable=None): never in logs or files."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False,
                disable=None if progress else True)  # fmt: skip


def format_epoch(record: EpochRecord, epochs: int) -> str:
    """Keras' epoch line: `Epoch 3/10 - 0.6s - loss: 0.2133 - val_loss: 0.2098`."""
    line = f"Epoch {record.epoch}/{epochs} - {record.seconds:.1f}s - loss: {record.loss:.4f}"
    if record.val_loss is not None:
        line += f" - val_loss: {record.val_loss:.4f}"
    return line


def _at_least_float32(t: torch.Tensor) -> torch.Tensor:
    # Mixed precision's bfloat16 logits go up to float32 for the losses (no copy
    # when they already are); float64 stays float64, so that a float64 net's autograd step
    # stays the float64 oracle the fused engine is tested against.
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _validates(cfg: TrainConfig, epoch: int) -> bool:
    """Whether epoch `epoch` (0-based) ends with validation: every `validation_freq`
    epochs, as Keras' fit, and also after the last, so a run always ends with its val_loss."""
    last = epoch + 1 == cfg.epochs
    return cfg.validate and ((epoch + 1) % cfg.validation_freq == 0 or last)


def _epoch_order(n: int, cfg: TrainConfig, epoch: int) -> torch.Tensor:
    if not cfg.shuffle:
        return torch.arange(n)
    # A fresh CPU generator per (seed, epoch): device-independent and resumable.
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def _neighbour_loss(cfg: TrainConfig, graph, n_train: int):
    if cfg.neighbour_weight == 0:
        return None
    from deepae.neighbours import NeighbourLoss

    if graph is None or graph.n_images != n_train:
        raise ConfigError(
            "neighbour_weight > 0 needs the neighbour graph of the training images "
            "(deepae.neighbours.graph_for); Autoencoder.fit builds it",
            field="neighbour_weight",
        )
    return NeighbourLoss(graph, min_dist=cfg.min_dist, negative_rate=cfg.negative_rate,
                         seed=cfg.seed)  # fmt: skip


def _check_finite(losses: torch.Tensor, step: int, window: int, epoch: int) -> None:
    start = max(0, step - window + 1)
    bad = torch.nonzero(~torch.isfinite(losses[start : step + 1]))
    if len(bad):
        i = start + int(bad[0])
        raise TrainingDiverged(
            f"the loss became {losses[i].item()} at epoch {epoch + 1}, step {i + 1}; "
            "lower the learning rate (lr) or check the data for extreme values"
        )


def loss_function(name: str, model_config) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss `name` ('bce', 'mse') as a function of (logits, x) -> mean, for a model of
    `model_config` (BCE needs its sigmoid output)."""
    sigmoid_out = model_config.output_activation == "sigmoid"
    if (name, sigmoid_out) not in _LOSSES:
        raise ConfigError(f"loss {name!r} needs output_activation 'sigmoid'; use loss 'mse'",
                          field="loss")  # fmt: skip
    return _loss_fn(name, sigmoid_out)


def _loss_fn(name: str, sigmoid_out: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return _LOSSES[(name, sigmoid_out)]


# (loss, sigmoid output?) -> loss of (logits, x). All take logits: BCE from logits is stable,
# and equals Keras' binary_crossentropy on a sigmoid output (Keras recovers the logits from
# the sigmoid for this reason). BCE needs a sigmoid output (Trainer checks it). BCE is
# binary_cross_entropy_with_logits with one transcendental per pixel instead of two
# (deepae.losses).
_LOSSES: dict[tuple[str, bool], Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    ("bce", True): bce_with_logits,
    ("mse", True): lambda logits, x: nn.functional.mse_loss(torch.sigmoid(logits), x),
    ("mse", False): nn.functional.mse_loss,
}
