"""Mixed precision: matrix products in bfloat16 where the hardware runs them natively.

Why: a step of umap2d is ~2.8 GFLOP of matrix products (1,024 images through best2d's
encoder, 512 through its decoder, forward and backward). On a CPU with AVX512-BF16 or
AMX, oneDNN multiplies bfloat16 matrices about twice as fast as float32 ones (measured on
the project's 2-core AMD EPYC: ~400 against ~190 GFLOP/s at these shapes), and a step
takes ~13 ms instead of ~19 ms. Where there is no such instruction, PyTorch emulates
bfloat16 and is slower than float32, so 'auto' asks the hardware first.

The names are Keras' mixed-precision policies (`keras.mixed_precision.Policy`):
'float32' computes everything in float32; 'mixed_bfloat16' keeps the weights, the
optimizer and the losses in float32 and runs the layers' products in bfloat16: through
`torch.autocast` on the autograd engine, by hand on the fused one (deepae.engine casts
what autocast casts). 'auto' is 'mixed_bfloat16' where the device has native bfloat16
products (`native_bfloat16`) and 'float32' elsewhere: the one config value whose meaning
depends on the machine, so metrics.json records what it resolved to. Only training steps
use it; validation, encoding and decoding stay in float32.
"""

from __future__ import annotations

import contextlib

import torch


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` multiplies bfloat16 matrices natively (so faster than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        # torch.cpu's cpuinfo checks, private in torch 2.13: without them, say no (float32
        # is never the slow choice).
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def resolve(name: str, device: torch.device) -> str:
    """'float32' or 'mixed_bfloat16': what precision `name` means on `device`."""
    if name == "auto":
        return "mixed_bfloat16" if native_bfloat16(device) else "float32"
    return name


def compute_dtype(policy: str) -> torch.dtype | None:
    """The dtype of the products under `policy` (resolved), the fused engine's `compute`:
    None for the parameters' own."""
    return torch.bfloat16 if policy == "mixed_bfloat16" else None


def autocast(policy: str, device: torch.device):
    """The context a training step's forward pass runs in under `policy` (resolved)."""
    if policy == "mixed_bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
