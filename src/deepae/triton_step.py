"""The article's training step (forward, BCE loss and backward) in five Triton kernels.

Why: on a GPU a step of the article's 784-32-2-32-784 model at batch 32 is ~40 tiny
kernels, and even recorded as one CUDA graph (deepae.cuda_graph) it kept an H200 busy for
123 us a step besides Adam, ~1.7 us of it between each two kernels (docs/gpu.md): 0.26 s
an epoch. `torch.compile` of the same step still took 124 us with Adam. Here the step is
five launches (deepae._triton_kernels says which): the three wide products, over the 784
pixels, run one program per chunk of pixels side by side, and the small layers in between
run in one program each, from registers. On the H200, captured with the gather and Adam:
30 us of kernels and 34 us a step in all, 0.063 s an epoch, 4x faster than PyTorch's step.

On by default where it applies; `DEEPAE_TRITON=0` turns it off. A first version ran the
whole step in one program, on one multiprocessor: correct (its gradient within 2.2e-7 of
float64's) but slower than PyTorch's step, since its ~70 small products ran one after
another. 32 pixels a program timed best of 32, 64 and 128, and of 2, 4 and 8 warps.

What it computes is exactly `FusedDenseEngine.loss_and_grad` (tests/test_triton_step.py
checks it against autograd in float64 and against the PyTorch step, running the kernels
in Triton's CPU interpreter): for x (B, D) and a net D -> H1 -> L -> H2 -> D (one hidden
layer each side, relu or linear hidden and latent activations, a sigmoid output and BCE),
the summed loss over the batch, and the gradient of the *mean* loss written into the
engine's gradient views. The loss is Keras' BCE on logits l, max(l, 0) - x l +
log1p(exp(-|l|)) per pixel, summed in float32 (in another order than the PyTorch step's
sum: the two agree to float32 rounding).

Where it applies (`why_not`): float32 weights on a CUDA device, Triton importable, the
shape above with H1, H2 <= 32 and L <= 16, batch <= 32: the shapes whose kernels fit in
registers (`scripts/triton_compile.py` compiles them for sm_90 and sm_80 without a GPU;
hidden layers of 64 spill on sm_80, a longer code or a batch of 64 on sm_90 too). A
kernel that fails to compile is reported once, and the engine goes back to the PyTorch
step.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import warnings
from collections.abc import Mapping

import torch

ENV = "DEEPAE_TRITON"  # "0": never use the kernels (default: where they apply, see above)
# The largest shapes that compile without spilling at BLOCK_D pixels and WARPS warps
# (scripts/triton_compile.py; tests/test_triton_step.py compiles the largest).
MAX_HIDDEN, MAX_LATENT, MAX_BATCH = 32, 16, 32
ACTIVATIONS = {"linear": 0, "relu": 1}  # the kernel's activation codes
BLOCK_D = 32  # pixels per program of the wide products (784 -> 25 programs; docs/gpu.md)
WARPS = 4


def _pow2(n: int) -> int:
    """The smallest power of 2 >= max(n, 16): tl.dot's tiles are at least 16 wide."""
    return max(16, 1 << (n - 1).bit_length())


def why_not(engine, environ: Mapping[str, str] | None = None) -> str | None:
    """Why `engine` (a deepae.engine.FusedDenseEngine) cannot use the kernel, or None."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV, "1").strip() == "0":
        return f"off ({ENV}=0)"
    if importlib.util.find_spec("triton") is None:  # PyTorch's CPU builds come without it
        return "Triton is not installed"
    if engine.mixed or engine.flat.dtype != torch.float32:
        return "it runs float32 weights and products only"
    if engine.kind != ("bce", True):
        return "it computes BCE with a sigmoid output only"
    sizes = [w.shape for w, *_ in engine.layers]  # (out, in) each
    if len(sizes) != 4 or engine.n_enc != 2:
        return "it runs one hidden layer on each side of the code only"
    (h1, d), (lat, _), (h2, _), (d_out, _) = sizes
    if d_out != d or max(h1, h2) > MAX_HIDDEN or lat > MAX_LATENT:
        return f"its layers are at most {MAX_HIDDEN} wide and the code {MAX_LATENT}"
    if not set(engine.activations[:3]) <= set(ACTIVATIONS):
        return f"its hidden and latent activations are {'/'.join(ACTIVATIONS)} only"
    return None


def for_engine(engine) -> Step | None:
    """The kernel's step for `engine` where it applies on its device (CUDA), else None."""
    if engine.flat.device.type != "cuda" or why_not(engine) is not None:
        return None
    return Step(engine)


class Step:
    """step(x) -> the summed loss (0-d) of batch x (B, D), the gradient of the mean loss
    left in the engine's gradient views. Runs on any device Triton runs on: CUDA, or the
    CPU under TRITON_INTERPRET=1 (the tests). The loss is a view of a buffer that the next
    step of the same batch size overwrites (as a CUDA graph's output is): callers copy it
    (deepae.train stores each step's at once), or `.clone()` it to keep it."""

    def __init__(self, engine):
        (w1, _, b1, g1, gb1), (w2, _, b2, g2, gb2), (w3, _, b3, g3, gb3), (w4, _, b4, g4, gb4) = (
            engine.layers
        )
        self.args = (w1, b1, w2, b2, w3, b3, w4, b4, g1, gb1, g2, gb2, g3, gb3, g4, gb4)
        self.h1, self.d = w1.shape
        self.lat, self.h2 = w2.shape[0], w3.shape[0]
        self.codes = tuple(ACTIVATIONS[a] for a in engine.activations[:3])
        self.block = BLOCK_D  # pixels per program, fixed for the buffers' sake
        self.buffers: dict[int, dict[str, torch.Tensor]] = {}  # batch size -> buffers
        self.failed = False

    def accepts(self, x: torch.Tensor) -> bool:
        """Whether the kernels can read x: (B, D) float32, 1 <= B <= MAX_BATCH, contiguous,
        on the weights' device (they read rows of D pixels, unchecked: any other batch goes
        to the PyTorch step, which raises where it must)."""
        return (not self.failed and x.dim() == 2 and 0 < x.shape[0] <= MAX_BATCH
                and x.shape[1] == self.d and x.dtype == torch.float32
                and x.device == self.args[0].device and x.is_contiguous())  # fmt: skip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for kernel, grid, args, meta in self.launches(x):
            kernel[grid](*args, **meta)
        return self.buffers[x.shape[0]]["loss"][0]

    def launches(self, x: torch.Tensor) -> list[tuple[object, tuple, tuple, dict]]:
        """The step on batch x as the five launches it makes, in order: (kernel, grid,
        arguments, compile-time values and options), so that scripts/triton_compile.py
        compiles exactly what runs."""
        batch = x.shape[0]
        if batch not in self.buffers:  # made once per batch size: CUDA graphs keep them
            self.buffers[batch] = self._buffers(batch, x)
        bufs = self.buffers[batch]
        k = kernels()
        (w1, b1, w2, b2, w3, b3, w4, b4, g1, gb1, g2, gb2, g3, gb3, g4, gb4) = self.args
        d, h1, lat, h2 = self.d, self.h1, self.lat, self.h2
        bb, hp1, lp, hp2 = (_pow2(n) for n in (batch, h1, lat, h2))
        chunks, block = -(-d // self.block), self.block
        sizes = {"BB": bb, "HP1": hp1, "num_warps": WARPS}
        act = {"ACT1": self.codes[0], "ACT2": self.codes[1], "ACT3": self.codes[2]}
        narrow = {"C": chunks, "LP": lp, "HP2": hp2, **sizes, **act}
        return [
            (k.wide_in, (chunks,), (x, w1, bufs["z1"], batch, h1), {"D": d, "BD": block, **sizes}),
            (k.narrow_forward, (1,),
             (bufs["z1"], b1, w2, b2, w3, b3, bufs["h1"], bufs["h2"], bufs["h3"], h1, lat, h2),
             narrow),
            (k.wide_out, (chunks,),
             (x, w4, b4, g4, gb4, bufs["h3"], bufs["dh3"], bufs["losses"], batch, h2,
              1.0 / (batch * d)),
             {"D": d, "BB": bb, "BD": block, "HP2": hp2, "num_warps": WARPS}),
            (k.narrow_backward, (1,),
             (w2, w3, g2, gb2, g3, gb3, gb1, bufs["h1"], bufs["h2"], bufs["h3"], bufs["dh3"],
              bufs["losses"], bufs["dz1"], bufs["loss"], h1, lat, h2),
             {**narrow, "CP": _pow2(chunks)}),
            (k.wide_grad, (chunks,), (x, bufs["dz1"], g1, batch, h1),
             {"D": d, "BD": block, **sizes}),
        ]  # fmt: skip

    def _buffers(self, batch: int, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the kernels pass between them, tiles padded as the kernels pad them."""
        bb, hp1, lp, hp2 = (_pow2(n) for n in (batch, self.h1, self.lat, self.h2))
        chunks = -(-self.d // self.block)
        shapes = {"z1": (chunks, bb, hp1), "h1": (bb, hp1), "h2": (bb, lp), "h3": (bb, hp2),
                  "dh3": (chunks, bb, hp2), "losses": (chunks,), "dz1": (bb, hp1),
                  "loss": (1,)}  # fmt: skip
        return {name: x.new_empty(shape) for name, shape in shapes.items()}


def fail(step: Step, error: Exception) -> None:
    """Stop using `step` after its kernel failed to build or launch, saying so once."""
    step.failed = True
    warnings.warn(
        f"the Triton training step failed ({type(error).__name__}: {error}); training goes "
        f"on with PyTorch's step (unset {ENV} to skip it)",
        stacklevel=3,
    )


@functools.cache
def kernels():
    """deepae._triton_kernels, imported on first use: importing Triton takes ~1 s, and only
    a CUDA run needs it."""
    return importlib.import_module("deepae._triton_kernels")
