"""Binary cross-entropy from logits, summed with one transcendental function per pixel.

`torch.nn.functional.binary_cross_entropy_with_logits` computes log-sigmoid per pixel, and
its backward a sigmoid per pixel again: two transcendental functions where the loss and
its gradient need only one. For a 784-pixel output that was ~0.07 ms of the article's
0.28 ms step and ~0.6 ms of best2d's 7.2 ms (docs/benchmarks.md). Here both come from
y = sigmoid(l):

    BCE(sigmoid(l), x) = softplus(l) - x l,   softplus(l) = relu(l) - log(max(y, 1 - y)),
    d BCE / dl = y - x

(l >= 0: l - log y; l < 0: -log(1 - y); both logs of a number in [0.5, 1], so nothing is
lost where y rounds to 1 in float32, unlike -log(1 - y) alone). The sum of those logs is
the log of products over chunks of `log_chunk` numbers, each product >= 2**-chunk and still
a normal float: one log per chunk instead of one per pixel. The products' rounding (a few
ulps per chunk, 7e-6 relative in float32) is below that of the float32 sum itself.
tests/test_losses.py checks values and gradients against PyTorch's own function in
float64, saturated logits included.

Used by the fused engine (`bce_sum_and_grad`, into its buffers) and by the autograd
engine (`bce_with_logits`, a torch.autograd.Function).
"""

from __future__ import annotations

import functools
import math

import torch


def bce_sum_and_grad(logits: torch.Tensor, x: torch.Tensor, g: torch.Tensor,
                     scale: torch.Tensor | None, work: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """The summed BCE(sigmoid(logits), x) (a 0-d tensor), and its gradient times `scale`
    (a 0-d tensor, e.g. 1 / numel for the mean; None: 1) written into g. `work`: a scratch
    buffer like logits. g and work may not alias logits or x."""
    y = torch.sigmoid(logits, out=g)
    torch.mul(y, -1, out=work).add_(1)  # 1 - y
    torch.maximum(y, work, out=work)  # max(y, 1 - y), in [0.5, 1]
    logs = torch.prod(work.view(-1, log_chunk(work)), 1).log_().sum()
    # relu(l) - x l per pixel, then one sum: each term is >= 0 (l (1 - x) or -x l), so
    # nothing cancels. Summed apart, sum(relu(l)) and x . l cancel where the images are
    # near 1 and the model fits them (relu(l) = x l): 3% off on all-one images.
    torch.clamp_min(logits, 0, out=work).addcmul_(x, logits, value=-1)
    fit_sum = work.sum()
    g.sub_(x)  # d/dl BCE(sigmoid(l), x) = sigmoid(l) - x
    if scale is not None:
        g.mul_(scale)
    return fit_sum.sub_(logs)


def log_chunk(t: torch.Tensor) -> int:
    """The largest divisor of t.numel() whose product of that many numbers in [0.5, 1] is a
    normal float of t's dtype (>= 2**-chunk >= finfo.tiny) and whose rounding stays below
    2**-13 (chunk * eps: float32 allows 1,024, bfloat16 and float16 1); 1 (a log per number)
    at worst."""
    info = torch.finfo(t.dtype)
    top = min(-int(math.log2(info.tiny)) - 1, int(2**-13 / info.eps))
    return _largest_divisor(t.numel(), max(1, top))


@functools.cache
def _largest_divisor(n: int, top: int) -> int:
    return next(c for c in range(min(n, top), 0, -1) if n % c == 0)


class _BCEWithLogits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits, x = logits.contiguous(), x.contiguous()
        y, work = torch.empty_like(logits), torch.empty_like(logits)
        loss_sum = bce_sum_and_grad(logits, x, y, None, work)  # y now holds y - x
        ctx.save_for_backward(y, logits if ctx.needs_input_grad[1] else None)
        return loss_sum / logits.numel()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        y_minus_x, logits = ctx.saved_tensors
        share = grad / y_minus_x.numel()
        dx = -logits * share if ctx.needs_input_grad[1] else None  # d/dx (-x l) = -l
        return y_minus_x * share if ctx.needs_input_grad[0] else None, dx


def bce_with_logits(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The mean of BCE(sigmoid(logits), x): what binary_cross_entropy_with_logits(logits, x)
    gives, computed as above."""
    if logits.shape != x.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(x.shape)} differ")
    return _BCEWithLogits.apply(logits, x.to(logits.dtype))
