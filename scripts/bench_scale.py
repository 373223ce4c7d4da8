"""Data-parallel scaling: training images per second with 1 and with N processes.

    make bench-scale                              # MNIST, 1 vs 2 processes on the CPU
    python scripts/bench_scale.py --procs 1,2,4 --batch-sizes 32,512 --epochs 5
    python scripts/bench_scale.py --quick         # the test fixture, 1 epoch: a smoke run

Each condition is one `deepae train` in fresh processes (`--nproc N` above 1: torchrun's
launcher, gloo on the CPU), one thread each (OMP_NUM_THREADS=1, DEEPAE_THREADS=1), on the
same global batch. Speed is the training images of an epoch over the median epoch's
training seconds (metrics.json: `median_epoch_seconds`, validation and figures left out);
scaling efficiency = images/s with N / (N x images/s with 1). Where CUDA has two GPUs or
more, the same runs on `--device cuda` (NCCL, one GPU per process) follow. The machine
should be otherwise idle: processes that share cores measure the sharing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from deepae.cli_values import positive_int

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "mnist-small.npz"
RUN_TIMEOUT = 3600  # seconds one training run may take


def positive_ints(text: str) -> list[int]:
    """An argparse type: '1,2,4' -> [1, 2, 4], each a whole number >= 1."""
    return [positive_int(v.strip()) for v in text.split(",")]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist", help="what deepae train --dataset takes")
    p.add_argument("--procs", type=positive_ints, default="1,2",
                   help="process counts, e.g. 1,2,4 (default: 1,2)")  # fmt: skip
    p.add_argument("--batch-sizes", type=positive_ints, default="32,512",
                   help="global batch sizes (default: 32,512: article, best2d)")  # fmt: skip
    p.add_argument("--epochs", type=positive_int, default=3, help="epochs per run (default: 3)")
    p.add_argument("--quick", action="store_true",
                   help="the test fixture's 2,000 digits, 1 epoch, batch 64: smoke")  # fmt: skip
    return p.parse_args(argv)


def train_speed(dataset: str, procs: int, batch: int, epochs: int, device: str) -> dict:
    """One `deepae train` run; its metrics.json and images/s."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DEEPAE_THREADS": "1", "MPLBACKEND": "agg"}
    with tempfile.TemporaryDirectory() as runs:
        cmd = [sys.executable, "-m", "deepae", "train", "--dataset", dataset, "--epochs",
               str(epochs), "--batch-size", str(batch), "--device", device, "--no-evaluate",
               "--no-progress", "--latent-activation", "linear", "--runs-dir", runs,
               "--name", "bench", "--nproc", str(procs)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT)
        if done.returncode:
            raise SystemExit(f"bench_scale: {' '.join(cmd)} failed:\n{done.stderr}")
        metrics = json.loads((Path(runs) / "bench" / "metrics.json").read_text())
        run = json.loads((Path(runs) / "bench" / "run.json").read_text())
    images = run["data"]["n_train"]
    return {"seconds": metrics["median_epoch_seconds"],
            "images_per_s": images / metrics["median_epoch_seconds"]}  # fmt: skip


def gpus() -> int:
    """CUDA devices, asked of a child process (this one stays free of PyTorch)."""
    probe = [sys.executable, "-c", "import torch; print(torch.cuda.device_count())"]
    done = subprocess.run(probe, capture_output=True, text=True, timeout=300)
    return int(done.stdout.strip() or 0) if done.returncode == 0 else 0


def table(device: str, dataset: str, procs: list[int], batches: list[int], epochs: int) -> None:
    print(f"\n{device}: {dataset}, {epochs} epoch(s) a run, one thread per process")
    print(f"{'batch':>6} {'procs':>5} {'per proc':>8} {'epoch s':>8} {'images/s':>10} "
          f"{'efficiency':>10}")  # fmt: skip
    for batch in batches:
        base = None
        for n in procs:
            if batch % n:
                print(f"{batch:>6} {n:>5}   (batch does not split over {n} processes)")
                continue
            got = train_speed(dataset, n, batch, epochs, device)
            base = base or (got["images_per_s"] if n == 1 else None)
            eff = f"{got['images_per_s'] / (n * base):>10.2f}" if base else f"{'-':>10}"
            print(f"{batch:>6} {n:>5} {batch // n:>8} {got['seconds']:>8.2f} "
                  f"{got['images_per_s']:>10,.0f} {eff}", flush=True)  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    dataset, epochs, procs, batches = args.dataset, args.epochs, args.procs, args.batch_sizes
    if args.quick:
        dataset, epochs, batches = str(FIXTURE), 1, [64]
    cores = len(os.sched_getaffinity(0))
    if max(procs) > cores:
        print(f"note: {max(procs)} processes on {cores} cores: they share cores")
    table("cpu", dataset, procs, batches, epochs)
    count = gpus()
    if count >= 2:
        table("cuda", dataset, sorted({1, count}), batches, epochs)
    else:
        print(f"\ncuda: {count} GPU(s) here; NCCL scaling needs two or more (one per process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
