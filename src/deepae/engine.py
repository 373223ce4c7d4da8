"""The fused engine: a hand-written forward and backward pass for plain dense stacks.

Why by hand: at batch 32 one epoch of the article's model is 1,875 tiny steps, and
autograd's bookkeeping (graph building, `zero_grad`, per-tensor optimizer loops) costs
more than the arithmetic. Here every step is ~25 kernel calls into preallocated buffers,
all parameters live in one flat tensor so the optimizer updates them in one call, and
nothing allocates. `tests/test_engine.py` checks the gradients against autograd.

Supported: Linear layers with the activations of `FUSED_ACTIVATIONS` (no BatchNorm), a
sigmoid output with BCE or MSE, or a linear output with MSE. Anything else trains on the
autograd engine (`deepae.train`). With float32 weights on an x86-64 CPU the same step
runs as C++ where it could be compiled (`deepae.native`); this Python step is its oracle
and the path for everything else.

Private PyTorch calls live here and nowhere else, each wrapped once with a fallback to
the public API (see `fused_adam_step` and `relu_backward`); tests check that both paths
agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from deepae import losses, native, triton_step
from deepae.errors import ConfigError
from deepae.model import AutoencoderNet

# -- activations: name -> (in-place forward, in-place backward from the output) -------------


def relu_backward(g: torch.Tensor, out: torch.Tensor, *, private: bool | None = None):
    """dL/dx of relu given dL/dy `g` and the output y = `out`: g where out > 0, else +0,
    written into `g` in place; returns `g`.

    `aten.threshold_backward` does it in one kernel (what autograd itself calls for relu),
    here its out= form writing into g, so no tensor is allocated per step; it is a private
    op of torch 2.13.0, the pinned version. Where it is missing, the public `masked_fill_`
    gives the same bits (+0 where out <= 0) in two kernels."""
    if private is None:
        private = _HAS_THRESHOLD_BACKWARD
    if private:
        return torch.ops.aten.threshold_backward.grad_input(g, out, 0, grad_input=g)
    return g.masked_fill_(out <= 0, 0.0)


_HAS_THRESHOLD_BACKWARD = hasattr(getattr(torch.ops.aten, "threshold_backward", None),
                                  "grad_input")  # fmt: skip


def _from_output(g: torch.Tensor, out: torch.Tensor, op: str, slope) -> torch.Tensor:
    """g times the activation's slope, from its output, into g. `aten.tanh_backward` and
    `aten.sigmoid_backward` (what autograd and the native step call) round once, in one
    kernel; `g.mul_(slope())` rounds three times, which in bfloat16 moves a third of the
    gradients off autocast's. Private ops of torch 2.13.0: the formula where they are
    missing."""
    kernel = getattr(torch.ops.aten, op, None)
    if kernel is not None and hasattr(kernel, "grad_input"):
        return kernel.grad_input(g, out, grad_input=g)
    return g.mul_(slope())


# Each derivative is written in terms of the activation's output, which is what we keep,
# and works in place on the incoming gradient g (the engine's buffer), returning it.
_FORWARD: dict[str, Callable[[torch.Tensor], object]] = {
    "relu": torch.Tensor.relu_,
    "linear": lambda h: None,
    "sigmoid": torch.Tensor.sigmoid_,
    "tanh": torch.Tensor.tanh_,
}
_BACKWARD: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "relu": relu_backward,
    "linear": lambda g, out: g,
    "sigmoid": lambda g, out: _from_output(g, out, "sigmoid_backward", lambda: out * (1 - out)),
    "tanh": lambda g, out: _from_output(g, out, "tanh_backward", lambda: 1 - out * out),
}
FUSED_ACTIVATIONS = tuple(_FORWARD)


def supports(net: AutoencoderNet, loss: str) -> bool:
    """Whether the fused engine can train `net` with `loss`."""
    cfg = net.config
    # The hidden activation and batch norm apply to hidden layers only: a net without any
    # (input -> latent -> output) has neither, whatever the config names.
    hidden = bool(cfg.hidden_sizes or cfg.decoder_sizes)
    return (
        not (hidden and cfg.batch_norm)
        and (not hidden or cfg.hidden_activation in FUSED_ACTIVATIONS)
        and cfg.latent_activation in FUSED_ACTIVATIONS
        and (loss == "mse" or cfg.output_activation == "sigmoid")
    )


def flatten_parameters(net: nn.Module) -> tuple[nn.Parameter, torch.Tensor]:
    """Move all parameters of `net` into one flat Parameter; each module parameter becomes
    a view of it. Returns (flat parameter, flat gradient buffer whose views are the .grad).
    """
    params = list(net.parameters())
    flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    grad = torch.zeros_like(flat)
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            # Public `set_` rather than `p.data = ...`: p now shares flat's storage.
            p.set_(flat.untyped_storage(), offset, p.shape, p.stride())
            p.grad = grad[offset : offset + n].view_as(p)
            offset += n
    flat.grad = grad
    return flat, grad


class FusedDenseEngine:
    """Computes the loss and writes the gradient of a dense autoencoder into `self.grad`."""

    def __init__(self, net: AutoencoderNet, loss: str, compute: torch.dtype | None = None,
                 use_native: bool = True):  # fmt: skip
        if not supports(net, loss):
            raise ConfigError(
                f"the fused engine runs plain dense stacks ({'/'.join(FUSED_ACTIVATIONS)}, no "
                "batch norm); use engine='autograd'",
                field="engine",
            )
        cfg = net.config
        self.linears = [m for m in (*net.encoder, *net.decoder.body) if isinstance(m, nn.Linear)]
        self.n_enc = n_enc = len(cfg.hidden_sizes) + 1  # the encoder's layers come first
        acts = [cfg.hidden_activation] * (n_enc - 1) + [cfg.latent_activation]
        acts += [cfg.hidden_activation] * (len(self.linears) - n_enc - 1) + ["linear"]
        self.activations = acts  # each layer's, first to last
        self.kind = (loss, cfg.output_activation == "sigmoid")  # (loss, sigmoid output?)
        self.forward_ = [_FORWARD[a] for a in acts]
        self.backward_ = [_BACKWARD[a] for a in acts]
        self.output_grad = _OUTPUT_GRAD[self.kind]
        self.flat, self.grad = flatten_parameters(net)
        # `compute` None: the parameters' dtype. bfloat16 is Keras' mixed_bfloat16
        # (deepae.precision), as torch.autocast runs it: each step the weights are cast
        # into `low` once; the products, activations and their gradients are in that
        # dtype, the loss and its gradient at the output in float32, and the gradient
        # lands in float32 `self.grad`.
        self.mixed = compute is not None and compute != self.flat.dtype
        self.low, self.low_grad = (
            (torch.empty_like(self.flat, dtype=compute), torch.empty_like(self.grad, dtype=compute))
            if self.mixed
            else (self.flat.detach(), self.grad)
        )

        def low(t: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:  # t's view in `flat`
            offset = t.storage_offset()
            return flat[offset : offset + t.numel()].view_as(t)

        # Plain tensor views, looked up once: nn.Module attribute access is slow per step.
        self.layers = []
        for m in self.linears:
            w, b = low(m.weight, self.low), low(m.bias, self.low)
            self.layers.append((w, w.t(), b, low(m.weight, self.low_grad),
                                low(m.bias, self.low_grad)))  # fmt: skip
        self._buffers: dict[int, tuple] = {}
        # The compiled step (deepae.native) where it computes exactly this: float32
        # parameters on the CPU, with float32 or mixed products. `use_native=False`: always
        # the Python calls below.
        self.native = (
            native.load()
            if use_native
            and self.flat.dtype == torch.float32
            and self.flat.device.type == "cpu"
            and self.kind in native.LOSSES
            and set(acts) <= set(native.ACTIVATIONS)
            else None
        )
        self._native_codes = [native.ACTIVATIONS.get(a, -1) for a in acts]
        self._native_loss = native.LOSSES.get(self.kind, -1)
        self._native_steps: dict[int, object] = {}
        # The whole step as one kernel on CUDA where it computes exactly this
        # (deepae.triton_step: the article's shape of net, float32).
        self.gpu_step = triton_step.for_engine(self)

    def native_step(self, batch: int, x: torch.Tensor):
        """The compiled Step (deepae.native) for batches of `batch` rows like x, made once
        per batch size over the same buffers as the Python path. Only where `self.native`."""
        if batch not in self._native_steps:
            acts, grads, grads_t, scale, _, mixed = self._buffers_for(batch, x)
            w, w_t, b, gw, gb = (list(t) for t in zip(*self.layers, strict=True))
            step = self.native.Step(w, w_t, b, gw, gb, acts, grads, grads_t, self._native_codes,
                                    self._native_loss, scale.item())  # fmt: skip
            if mixed is not None:  # the casts and the float32 loss of `loss_and_grad`
                step.set_mixed(self.flat.detach(), self.low, self.grad, self.low_grad, *mixed)
            self._native_steps[batch] = step
        return self._native_steps[batch]

    def _buffers_for(self, batch: int, like: torch.Tensor, inputs: int | None = None):
        # One set of activation and gradient buffers per batch size (the last batch of an
        # epoch may be smaller), allocated once. Also made once: the gradients' transposed
        # views and the 1 / (B * D) of the mean as a 0-d tensor; per step, each view is a
        # dispatcher call and a Python float becomes a tensor inside every op it enters.
        # Mixed: also the input in the low dtype, and the output's logits and gradient in
        # float32 (B, D) for the loss. `work`: a (B, D) scratch buffer for the loss.
        # `inputs`: the encoder's rows when it sees more than the decoder (a step on edges:
        # heads and tails in, heads out); `batch` is then the decoder's.
        key = batch if inputs is None else ("edges", batch)
        if key not in self._buffers:
            inputs = batch if inputs is None else inputs
            low = self.low.dtype
            acts = [like.new_empty(inputs if i < self.n_enc else batch, m.out_features,
                                   dtype=low) for i, m in enumerate(self.linears)]  # fmt: skip
            grads = [torch.empty_like(a) for a in acts]
            scale = like.new_tensor(1.0 / (batch * like.shape[1]))  # 0-d, like's dtype
            work = like.new_empty(batch, like.shape[1])  # the loss's scratch, like's dtype
            mixed = [like.new_empty(inputs, like.shape[1], dtype=low),
                     like.new_empty(batch, like.shape[1]),
                     like.new_empty(batch, like.shape[1])] if self.mixed else None  # fmt: skip
            self._buffers[key] = (acts, grads, [g.t() for g in grads], scale, work, mixed)
        return self._buffers[key]

    def _output_loss(self, logits, x, g, scale, work, mixed) -> torch.Tensor:
        # g = dLoss/dlogits (B, D). The mean over B * D elements is folded into `scale`, so
        # it is the gradient of the mean loss, which is what Keras (and the autograd
        # engine) minimise. Mixed: the loss in float32 on a copy of the logits.
        if mixed is None:
            return self.output_grad(logits, x, g, scale, work)
        loss_sum = self.output_grad(mixed[1].copy_(logits), x, mixed[2], scale, work)
        g.copy_(mixed[2])
        return loss_sum

    @torch.no_grad()
    def loss_and_grad(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, D) in [0, 1]. Returns the summed loss over the batch (0-d tensor, not
        synchronised); the gradient of the *mean* loss is left in `self.grad`."""
        batch, _ = x.shape
        if self.native is not None and x.dtype == torch.float32 and x.is_contiguous():
            return self.native_step(batch, x).run(x)
        if self.gpu_step is not None and self.gpu_step.accepts(x):
            try:
                return self.gpu_step(x)
            except Exception as e:  # Triton's build and launch errors share no other base
                triton_step.fail(self.gpu_step, e)
        acts, grads, grads_t, scale, work, mixed = self._buffers_for(batch, x)
        x_in = x
        if mixed is not None:
            self.low.copy_(self.flat)  # the weights, cast once a step
            x_in = mixed[0].copy_(x)
        h = x_in
        for (_, w_t, b, _, _), forward_, out in zip(self.layers, self.forward_, acts, strict=True):
            torch.addmm(b, h, w_t, out=out)  # (B, out)
            forward_(out)
            h = out
        loss_sum = self._output_loss(h, x, grads[-1], scale, work, mixed)
        for i in range(len(self.layers) - 1, -1, -1):
            w, _, _, gw, gb = self.layers[i]
            inp = x_in if i == 0 else acts[i - 1]
            torch.mm(grads_t[i], inp, out=gw)  # (out, in)
            torch.sum(grads[i], 0, out=gb)  # (out,)
            if i > 0:
                torch.mm(grads[i], w, out=grads[i - 1])  # (B, in)
                self.backward_[i - 1](grads[i - 1], acts[i - 1])  # in place
        if mixed is not None:
            self.grad.copy_(self.low_grad)
        return loss_sum

    @torch.no_grad()
    def edges_loss_and_grad(
        self, both: torch.Tensor, code_loss: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """A step's loss on a batch of edges, as deepae.train's neighbour step defines it:
        both (2B, D) in [0, 1], the B edges' heads, then their tails. The loss is the
        reconstruction loss of the heads (mean over B * D, as `loss_and_grad`) plus
        `code_loss(z)`, a 0-d float32 function of the codes z (2B, latent) of heads and
        tails (float32), which autograd differentiates (it is small: the codes are 2-D).
        Returns the loss times B * D (0-d, as `loss_and_grad` returns the summed loss);
        its gradient is left in `self.grad`. The encoder runs on all 2B images, the
        decoder on the heads' codes only; the codes' gradient is the decoder's (heads)
        plus code_loss's (both), as autograd sums them."""
        rows, width = both.shape
        heads = rows // 2
        acts, grads, grads_t, scale, work, mixed = self._buffers_for(heads, both, rows)
        x_head, x_in = both[:heads], both
        if mixed is not None:
            self.low.copy_(self.flat)  # the weights, cast once a step
            x_in = mixed[0].copy_(both)
        h = x_in
        for i, ((_, w_t, b, _, _), forward_, out) in enumerate(
            zip(self.layers, self.forward_, acts, strict=True)
        ):
            if i == self.n_enc:
                h = h[:heads]  # the decoder reconstructs the heads
            torch.addmm(b, h, w_t, out=out)
            forward_(out)
            h = out
        loss_sum = self._output_loss(h, x_head, grads[-1], scale, work, mixed)
        codes = acts[self.n_enc - 1]  # (2B, latent)
        with torch.enable_grad():
            z = codes.to(torch.float32, copy=True).requires_grad_(True)
            extra = code_loss(z)
            (dz,) = torch.autograd.grad(extra, z)
        dz = dz.to(codes.dtype)  # as autograd casts it back through `.float()`
        for i in range(len(self.layers) - 1, -1, -1):
            w, _, _, gw, gb = self.layers[i]
            inp = x_in if i == 0 else acts[i - 1][:heads] if i == self.n_enc else acts[i - 1]
            torch.mm(grads_t[i], inp, out=gw)  # (out, in)
            torch.sum(grads[i], 0, out=gb)  # (out,)
            if i == self.n_enc:  # the codes: the decoder's gradient (heads) + code_loss's
                torch.mm(grads[i], w, out=grads[i - 1][:heads])
                grads[i - 1][:heads].add_(dz[:heads])
                grads[i - 1][heads:].copy_(dz[heads:])
            elif i > 0:
                torch.mm(grads[i], w, out=grads[i - 1])
            if i > 0:
                self.backward_[i - 1](grads[i - 1], acts[i - 1])  # in place
        if mixed is not None:
            self.grad.copy_(self.low_grad)
        return loss_sum + extra.detach() * (heads * width)


# -- the loss at the output: (logits, x, g to fill, scale, work) -> summed loss ------------
# scale: 0-d tensor, 1 / (B * D); work: a (B, D) scratch buffer of logits' dtype.


def _mse_sigmoid_grad(logits, x, g, scale: torch.Tensor, work: torch.Tensor) -> torch.Tensor:
    y = torch.sigmoid(logits, out=g)
    diff = torch.sub(y, x, out=work)  # (B, D)
    loss_sum = torch.dot(diff.view(-1), diff.view(-1))
    g.mul_(1 - g).mul_(diff).mul_(2 * scale)  # d/dl (y - x)^2 = 2 (y - x) y (1 - y)
    return loss_sum


def _mse_linear_grad(logits, x, g, scale: torch.Tensor, work: torch.Tensor) -> torch.Tensor:
    diff = torch.sub(logits, x, out=work)  # (B, D)
    loss_sum = torch.dot(diff.view(-1), diff.view(-1))
    torch.mul(diff, 2 * scale, out=g)
    return loss_sum


# (loss, sigmoid output?) -> output gradient; BCE needs a sigmoid output (checked earlier).
_OUTPUT_GRAD = {
    ("bce", True): losses.bce_sum_and_grad,  # one transcendental per pixel (its docstring)
    ("mse", True): _mse_sigmoid_grad,
    ("mse", False): _mse_linear_grad,
}


# -- the optimizer step --------------------------------------------------------------------


def fused_adam_step(opt: torch.optim.Optimizer, *, private: bool | None = None,
                    lr: torch.Tensor | None = None, pieces: int | None = None) -> None:  # fmt: skip
    """One step of `opt`; Adam/AdamW over one flat parameter call the fused kernel directly.

    torch.optim's `step()` wraps the kernel in ~25 us of Python bookkeeping per call, more
    than the kernel itself costs at the article's sizes. `torch._fused_adam_` and
    `torch._fused_adamw_` (and the `_opt_called` flag that lr schedulers read) are private
    to torch 2.13.0, the pinned version; where they are missing, or for `private=False`,
    the public `opt.step()` runs the same kernel (the optimizer is built with fused=True),
    so both paths give the same bits (tests/test_engine.py). The state tensors are the
    optimizer's own, so checkpoints stay in torch's format.

    `lr`: a 0-d tensor on the parameter's device that the kernel reads the rate from,
    instead of the param group's number (a CUDA graph's replay reads it anew each time;
    deepae.cuda_graph). It needs the private kernel (`direct_adam(opt)`).

    `pieces`: how many consecutive views of the parameter (and of its gradient and state)
    the kernel gets, default `adam_pieces`: on CUDA the kernel gives each tensor of its
    list its own thread blocks, so one flat parameter of the article's 51,154 weights ran
    on one multiprocessor, 60 us a step on an H200, a third of the whole step's time
    (docs/gpu.md). Every element's update is the same whatever the pieces, so the bits are
    too (tests/test_engine.py)."""
    if private is None:
        private = _HAS_FUSED_ADAM
    if not (private and direct_adam(opt)):
        if lr is not None:
            raise ValueError("a tensor lr needs the fused kernel; check direct_adam(opt)")
        opt.step()
        return
    p, state = adam_state(opt)
    group = opt.param_groups[0]
    state["step"] += 1
    opt._opt_called = True  # what Optimizer.step records, so lr schedulers see a step
    kernel = torch._fused_adamw_ if isinstance(opt, torch.optim.AdamW) else torch._fused_adam_
    beta1, beta2 = group["betas"]
    if pieces is None:
        pieces = adam_pieces(p.numel(), p.device) if p.is_contiguous() else 1
    params, grads, avgs, squares = _pieces(opt, p, state, pieces)
    kernel(
        params, grads, avgs, squares, [], [state["step"]] * len(params),  # read, not written
        amsgrad=False, lr=group["lr"] if lr is None else lr, beta1=beta1, beta2=beta2,
        weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
    )  # fmt: skip


ADAM_PIECE = 1024  # elements per piece on CUDA: within one pass of a block (512 threads x 4)
MAX_PIECES = 36  # the most tensors PyTorch's fused Adam takes in one launch (4 lists each)


def adam_pieces(numel: int, device: torch.device) -> int:
    """How many pieces `fused_adam_step` hands the kernel a parameter of `numel` elements
    on `device` in: on CUDA one per ADAM_PIECE elements, at most MAX_PIECES (one launch);
    1 elsewhere (the CPU kernel runs its threads over each tensor: pieces only add work)."""
    if device.type != "cuda":
        return 1
    return max(1, min(MAX_PIECES, -(-numel // ADAM_PIECE)))


def _pieces(opt: torch.optim.Optimizer, p: torch.Tensor, state: dict,
            n: int) -> tuple[list[torch.Tensor], ...]:  # fmt: skip
    """([p's pieces], [its gradient's], [exp_avg's], [exp_avg_sq's]), up to n consecutive
    views each, kept on the optimizer: making 4n views costs ~1 us each, a step's time."""
    tensors = (p, p.grad, state["exp_avg"], state["exp_avg_sq"])
    if n == 1:
        return tuple([t] for t in tensors)
    key = (n, *(t.data_ptr() for t in tensors))
    cached = getattr(opt, "_deepae_pieces", None)
    if cached is None or cached[0] != key:
        # At most n pieces of a multiple of 16 elements, the last one shorter: each starts
        # 64-byte aligned, as the CUDA kernel's vector loads (16 bytes) want, and the CPU
        # kernel's 16-float vectors split them as they split the whole.
        size = -(-p.numel() // n)  # ceil
        size = -(-size // 16) * 16
        lists = tuple(list(t.detach().view(-1).split(size)) for t in tensors)
        cached = opt._deepae_pieces = (key, lists)
    return cached[1]


def direct_adam(opt: torch.optim.Optimizer) -> bool:
    """Whether `fused_adam_step` can call the fused kernel itself for `opt`: Adam or AdamW
    over one parameter, without amsgrad or maximize, and the private kernels present."""
    group = opt.param_groups[0]
    return (
        _HAS_FUSED_ADAM
        and isinstance(opt, torch.optim.Adam | torch.optim.AdamW)
        and not group["amsgrad"]
        and not group["maximize"]
        and len(opt.param_groups) == 1
        and len(group["params"]) == 1
    )


def adam_state(opt: torch.optim.Optimizer) -> tuple[torch.Tensor, dict]:
    """(the one parameter, its Adam state), the state made as torch's fused Adam makes it on
    its first step (a float32 step count on the parameter's device, zero moments)."""
    (p,) = opt.param_groups[0]["params"]
    state = opt.state[p]
    if not state:
        state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
        state["exp_avg"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p)
    return p, state


_HAS_FUSED_ADAM = hasattr(torch, "_fused_adam_") and hasattr(torch, "_fused_adamw_")
