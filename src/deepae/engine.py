"""The fused engine: a hand-written forward and backward pass for plain dense stacks.

Why by hand: at batch 32 one epoch of the article's model is 1,875 tiny steps, and
autograd's bookkeeping (graph building, `zero_grad`, per-tensor optimizer loops) costs
more than the arithmetic. Here every step is ~25 kernel calls into preallocated buffers,
all parameters live in one flat tensor so the optimizer updates them in one call, and
nothing allocates. `tests/test_engine.py` checks the gradients against autograd.

Supported: Linear layers with relu / linear / sigmoid / tanh activations (no BatchNorm),
a sigmoid output with BCE or MSE, or a linear output with MSE. Anything else trains on the
autograd engine (`deepae.train`).
"""

from __future__ import annotations

import torch
from torch import nn

from deepae.model import AutoencoderNet

FUSED_ACTIVATIONS = ("relu", "linear", "sigmoid", "tanh")


def supports(net: AutoencoderNet, loss: str) -> bool:
    """Whether the fused engine can train `net` with `loss`."""
    cfg = net.config
    return (
        not cfg.batch_norm
        and cfg.hidden_activation in FUSED_ACTIVATIONS
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
    for p in params:
        n = p.numel()
        p.data = flat.data[offset : offset + n].view_as(p)
        p.grad = grad[offset : offset + n].view_as(p)
        offset += n
    flat.grad = grad
    return flat, grad


class FusedDenseEngine:
    """Computes the loss and writes the gradient of a dense autoencoder into `self.grad`."""

    def __init__(self, net: AutoencoderNet, loss: str):
        if not supports(net, loss):
            raise ValueError("the fused engine does not support this model/loss")
        cfg = net.config
        self.linears = [m for m in (*net.encoder, *net.decoder.body) if isinstance(m, nn.Linear)]
        n_enc = len(cfg.hidden_sizes) + 1
        self.acts = [cfg.hidden_activation] * (n_enc - 1) + [cfg.latent_activation]
        self.acts += [cfg.hidden_activation] * (len(self.linears) - n_enc - 1) + ["linear"]
        self.loss = loss
        self.sigmoid_out = cfg.output_activation == "sigmoid"
        self.flat, self.grad = flatten_parameters(net)
        # Plain tensor views, looked up once: nn.Module attribute access is slow per step.
        self.layers = [
            (m.weight, m.weight.t(), m.bias, m.weight.grad, m.bias.grad) for m in self.linears
        ]
        self._buffers: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    def _buffers_for(self, batch: int, like: torch.Tensor):
        # One set of activation and gradient buffers per batch size (the last batch of an
        # epoch may be smaller), allocated once.
        if batch not in self._buffers:
            widths = [m.out_features for m in self.linears]
            acts = [like.new_empty(batch, w) for w in widths]
            grads = [like.new_empty(batch, w) for w in widths]
            self._buffers[batch] = (acts, grads)
        return self._buffers[batch]

    @torch.no_grad()
    def loss_and_grad(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, D) in [0, 1]. Returns the summed loss over the batch (0-d tensor, not
        synchronised); the gradient of the *mean* loss is left in `self.grad`."""
        batch, dim = x.shape
        acts, grads = self._buffers_for(batch, x)
        h = x
        for (_, w_t, b, _, _), act, out in zip(self.layers, self.acts, acts, strict=True):
            torch.addmm(b, h, w_t, out=out)  # (B, out)
            _activate_(out, act)
            h = out
        g = grads[-1]  # dLoss/dlogits, (B, D)
        loss_sum = self._output_grad(h, x, g, scale=1.0 / (batch * dim))
        for i in range(len(self.layers) - 1, -1, -1):
            w, _, _, gw, gb = self.layers[i]
            inp = x if i == 0 else acts[i - 1]
            torch.mm(g.t(), inp, out=gw)  # (out, in)
            torch.sum(g, 0, out=gb)  # (out,)
            if i > 0:
                torch.mm(g, w, out=grads[i - 1])  # (B, in)
                g = _activation_backward_(grads[i - 1], acts[i - 1], self.acts[i - 1])
        return loss_sum

    def _output_grad(self, logits, x, g, scale: float) -> torch.Tensor:
        # The mean over B * D elements is folded into `scale`, so g is the gradient of the
        # mean loss, which is what Keras (and the autograd engine) minimise.
        if self.loss == "bce":  # d/dl BCE(sigmoid(l), x) = sigmoid(l) - x
            loss_sum = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
            torch.sigmoid(logits, out=g)
            g.sub_(x).mul_(scale)
            return loss_sum
        y = torch.sigmoid(logits, out=g) if self.sigmoid_out else logits.clone()
        diff = y - x  # (B, D)
        loss_sum = torch.dot(diff.view(-1), diff.view(-1))
        if self.sigmoid_out:  # d/dl (y - x)^2 = 2 (y - x) y (1 - y)
            g.mul_(1 - g).mul_(diff).mul_(2 * scale)
        else:
            torch.mul(diff, 2 * scale, out=g)
        return loss_sum


def _activate_(h: torch.Tensor, act: str) -> None:
    if act == "relu":
        h.relu_()
    elif act == "sigmoid":
        h.sigmoid_()
    elif act == "tanh":
        h.tanh_()


def _activation_backward_(g: torch.Tensor, out: torch.Tensor, act: str) -> torch.Tensor:
    # Each derivative is written in terms of the activation's output, which is what we keep.
    if act == "relu":
        return torch.ops.aten.threshold_backward(g, out, 0)
    if act == "sigmoid":
        return g.mul_(out * (1 - out))
    if act == "tanh":
        return g.mul_(1 - out * out)
    return g
