"""Compile deepae.triton_step's kernels for NVIDIA GPUs on a machine without one, and say
what each needs: registers, shared memory, and local memory (registers spilled).

    python scripts/triton_compile.py                 # the article's step, sm_90 and sm_80
    python scripts/triton_compile.py --arch 90 --batch 32,20 --block 32,64,128

Why: Triton's CPU interpreter (what the tests run the kernels in) checks what they
compute, not whether Triton's compiler accepts them (tl.dot's shapes, layouts, types) nor
how they fit a multiprocessor. Triton compiles for a named target without a GPU, through
its own LLVM and the ptxas it ships (triton/backends/nvidia/bin), so a kernel that would
fail to build on the GPU, or spill, shows here first. sm_90 is the H100's and H200's
architecture, sm_80 the A100's.

Each launch is compiled from `Step.launches`, the same list of kernels, arguments and
compile-time values that a step runs. One difference: at a launch Triton also specialises
on its integer arguments (a 1, a multiple of 16) and on the pointers' alignment; here every
integer is a plain i32 and no alignment is assumed, which can only cost registers.

Prints a table; exits 1 if a kernel fails to compile or spills, 2 on bad input or where
Triton is missing. Run it without TRITON_INTERPRET set (the interpreter's kernels cannot
be compiled).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from deepae import model, triton_step
from deepae.cli_values import positive_int
from deepae.config import ModelConfig
from deepae.engine import FusedDenseEngine

ARCHS = {90: "H100, H200", 80: "A100"}


def signature(fn, args: tuple, meta: dict) -> tuple[dict[str, str], dict[str, object]]:
    """The kernel's typed signature and compile-time values for a launch's arguments."""
    names = fn.arg_names
    constexprs = {name: meta[name] for name in names if name in meta}
    sig = {}
    for name, value in zip((n for n in names if n not in meta), args, strict=True):
        if isinstance(value, torch.Tensor):
            sig[name] = {torch.float32: "*fp32"}[value.dtype]
        elif isinstance(value, bool):
            sig[name] = "i1"
        elif isinstance(value, int):
            sig[name] = "i32"
        elif isinstance(value, float):
            sig[name] = "fp32"
        else:
            raise TypeError(f"{name}: an argument of type {type(value).__name__}")
    return {**sig, **dict.fromkeys(constexprs, "constexpr")}, constexprs


def resource_usage(cubin: bytes) -> dict[str, int]:
    """REG, SHARED, LOCAL, ... of the one kernel in `cubin`, as cuobjdump reports them."""
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        out = subprocess.run([str(tool), "--dump-resource-usage", str(path)],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    return {key: int(value) for key, value in re.findall(r"\b([A-Z]+):(\d+)", out)}


def compile_step(config: ModelConfig, batch: int, arch: int, block: int) -> list[dict]:
    """One row per kernel of the step: its name and resource usage on sm_`arch`."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    net = model.build(config, seed=0)
    step = triton_step.Step(FusedDenseEngine(net, "bce", use_native=False))
    step.block = block
    x = torch.zeros(batch, config.input_size)
    rows = []
    for kernel, grid, args, meta in step.launches(x):
        options = {key: meta[key] for key in ("num_warps",) if key in meta}
        sig, constexprs = signature(kernel, args, meta)
        source = ASTSource(fn=kernel, signature=sig, constexprs=constexprs)
        compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
        usage = resource_usage(compiled.asm["cubin"])
        rows.append({"kernel": kernel.__name__, "programs": grid[0], **usage})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--arch", default="90,80", help="sm_ versions, comma-separated (90,80)")
    parser.add_argument("--batch", default="32", help="batch sizes, comma-separated (32)")
    block = triton_step.BLOCK_D
    parser.add_argument("--block", default=str(block),
                        help=f"pixels a program, comma-separated ({block})")  # fmt: skip
    args = parser.parse_args(argv)
    lists = {}
    for option in ("arch", "batch", "block"):
        try:
            lists[option] = [positive_int(v) for v in getattr(args, option).split(",")]
        except argparse.ArgumentTypeError as e:
            parser.error(f"--{option}: {e}")
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        parser.error("TRITON_INTERPRET=1 is set: interpreted kernels cannot be compiled; unset it")
    if importlib.util.find_spec("triton") is None:
        parser.error("Triton is not installed: pip install the dev extras (x86-64 Linux)")
    archs, batches, blocks = lists["arch"], lists["batch"], lists["block"]
    print("| arch | batch | pixels a program | kernel | programs | registers | shared bytes "
          "| local bytes (spills) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    ok = True
    for arch in archs:
        for batch in batches:
            for block in blocks:
                try:
                    rows = compile_step(ModelConfig(), batch, arch, block)
                except Exception as e:  # noqa: BLE001 - a compile error is this script's finding
                    # Triton's message: where (line:column), the source, a caret, then why
                    lines = [line for line in str(e).splitlines() if line.strip()] or [""]
                    print(f"| sm_{arch} | {batch} | {block} | failed to compile: "
                          f"{type(e).__name__} ({lines[0].rstrip(':')}): {lines[-1]} "
                          f"| | | | |")  # fmt: skip
                    ok = False
                    continue
                for row in rows:
                    print(f"| sm_{arch} | {batch} | {block} | {row['kernel']} | "
                          f"{row['programs']} | {row['REG']} | {row['SHARED']} | "
                          f"{row['LOCAL']} |")  # fmt: skip
                    ok &= row["LOCAL"] == 0
    print("OK" if ok else "FAILED: a kernel failed to compile or spilled")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
