"""Compile deepae.triton_step's kernels for NVIDIA GPUs on a machine without one, and say
what each needs: registers, spilled registers, shared memory.

    python scripts/triton_compile.py                 # the article's step, sm_90 and sm_80
    python scripts/triton_compile.py --arch 90 --batch 32,20 --block 32,64,128
    python scripts/triton_compile.py --hidden 32,64,128 --latent 2,16 --batch 32,64

Why: Triton's CPU interpreter (what the tests run the kernels in) checks what they
compute, not whether Triton's compiler accepts them (tl.dot's shapes, layouts, types) nor
how they fit a multiprocessor. Triton compiles for a named target without a GPU, through
its own LLVM and the ptxas it ships (triton/backends/nvidia/bin), so a kernel that would
fail to build on the GPU, spill registers to memory, or ask for more shared memory than a
block may have shows here first. sm_90 is the H100's and H200's architecture, sm_80 the
A100's. Registers and spills are `ptxas -v`'s for the PTX Triton made (spills count as
stores and loads of the stack frame: cuobjdump's LOCAL column does not show them); shared
memory is what Triton allocates at launch.

Each launch is compiled from `Step.launches`, the same list of kernels, arguments and
compile-time values that a step runs. One difference: at a launch Triton also specialises
on its integer arguments (a 1, a multiple of 16) and on the pointers' alignment; here every
integer is a plain i32 and no alignment is assumed, which can only cost registers.

Prints a table; exits 1 if a kernel fails to compile, spills or needs too much shared
memory, 2 on bad input or where Triton is missing. Run it without TRITON_INTERPRET set
(the interpreter's kernels cannot be compiled).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
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


# Shared memory a thread block may use, opted in (NVIDIA's CUDA C++ Programming Guide,
# "Technical Specifications per Compute Capability"): 227 KB on 9.0, 99 KB on 8.9 and 8.6,
# 163 KB on 8.0.
SHARED_LIMIT = {90: 227 * 1024, 89: 99 * 1024, 86: 99 * 1024, 80: 163 * 1024}


def ptxas_report(ptx: str, arch: int) -> dict[str, int]:
    """Registers, stack frame and spill bytes of the one kernel in `ptx`, as `ptxas -v`
    (Triton's own copy) reports them for sm_`arch` (sm_90a: what Triton builds for 9.0)."""
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.ptx"
        path.write_text(ptx)
        out = subprocess.run([str(tool), f"-arch={gpu}", "-v", str(path), "-o", os.devnull],
                             capture_output=True, text=True, check=True).stderr  # fmt: skip
    found = {
        "registers": re.search(r"Used (\d+) registers", out),
        "stack": re.search(r"(\d+) bytes stack frame", out),
        "spill_stores": re.search(r"(\d+) bytes spill stores", out),
        "spill_loads": re.search(r"(\d+) bytes spill loads", out),
    }
    missing = [key for key, match in found.items() if match is None]
    if missing:
        raise RuntimeError(f"ptxas -v printed no {', '.join(missing)}:\n{out}")
    return {key: int(match.group(1)) for key, match in found.items()}


def compile_step(config: ModelConfig, batch: int, arch: int, block: int) -> list[dict]:
    """One row per kernel of the step: its name, programs, and what it needs on sm_`arch`:
    registers, spills (ptxas), shared memory (Triton's, allocated at launch)."""
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
        usage = ptxas_report(compiled.asm["ptx"], arch)
        rows.append({"kernel": kernel.__name__, "programs": grid[0],
                     "shared": compiled.metadata.shared, **usage})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    known = ", ".join(map(str, SHARED_LIMIT))
    parser.add_argument("--arch", default="90,80",
                        help=f"sm_ versions, comma-separated, of {known} (90,80)")  # fmt: skip
    parser.add_argument("--batch", default="32", help="batch sizes, comma-separated (32)")
    block = triton_step.BLOCK_D
    parser.add_argument("--block", default=str(block),
                        help=f"pixels a program, comma-separated ({block})")  # fmt: skip
    parser.add_argument("--hidden", default="32", help="hidden widths (both sides) (32)")
    parser.add_argument("--latent", default="2", help="code sizes (2)")
    args = parser.parse_args(argv)
    lists = {}
    for option in ("arch", "batch", "block", "hidden", "latent"):
        try:
            lists[option] = [positive_int(v) for v in getattr(args, option).split(",")]
        except argparse.ArgumentTypeError as e:
            parser.error(f"--{option}: {e}")
    unknown = [a for a in lists["arch"] if a not in SHARED_LIMIT]
    if unknown:
        parser.error(f"--arch: {unknown[0]} is not one of {known}")
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        parser.error("TRITON_INTERPRET=1 is set: interpreted kernels cannot be compiled; unset it")
    if importlib.util.find_spec("triton") is None:
        parser.error("Triton is not installed: pip install the dev extras (x86-64 Linux)")
    print("| arch | net | batch | pixels a program | kernel | programs | registers "
          "| spill stores | spill loads | shared bytes |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    shapes = itertools.product(lists["arch"], lists["hidden"], lists["latent"], lists["batch"],
                               lists["block"])  # fmt: skip
    for arch, hidden, latent, batch, block in shapes:
        config = ModelConfig(hidden_sizes=(hidden,), latent_size=latent)
        head = f"| sm_{arch} | 784-{hidden}-{latent}-{hidden}-784 | {batch} | {block} |"
        try:
            rows = compile_step(config, batch, arch, block)
        except Exception as e:  # noqa: BLE001 - a compile error is this script's finding
            # Triton's message: where (line:column), the source, a caret, then why
            lines = [line for line in str(e).splitlines() if line.strip()] or [""]
            print(f"{head} failed to compile: {type(e).__name__} ({lines[0].rstrip(':')}): "
                  f"{lines[-1]} | | | | | |")  # fmt: skip
            ok = False
            continue
        for row in rows:
            print(f"{head} {row['kernel']} | {row['programs']} | {row['registers']} | "
                  f"{row['spill_stores']} | {row['spill_loads']} | {row['shared']} |")  # fmt: skip
            ok &= row["spill_stores"] == row["spill_loads"] == 0
            ok &= row["shared"] <= SHARED_LIMIT[arch]
    print("OK" if ok else "FAILED: a kernel failed to compile, spilled or needs too much "
          "shared memory")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
