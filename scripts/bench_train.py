"""Training speed benchmark: deepae's trainer against a plain PyTorch loop, side by side.

    make bench                       # or: python scripts/bench_train.py [--rounds 3]

Each round starts one fresh process per contender (so peak memory is its own) that
trains the article's model (784-32-2-32-784, batch 32, Adam) on the 60,000 MNIST
training images for a few epochs; rounds alternate the contenders so background load
hits both alike. Prints the median seconds per training epoch (validation excluded, the
first epoch of each process dropped as warm-up), the ratio, and the peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time


def worker(kind: str, epochs: int, device: str) -> dict:
    import torch

    from deepae import data, model, train
    from deepae.config import ModelConfig, TrainConfig

    x = torch.from_numpy(data.flatten_images(data.load_mnist()[0][0]))  # (60000, 784)
    cfg = TrainConfig(epochs=epochs, device=device, validate=False)
    net = model.build(ModelConfig(), seed=0)
    times = []
    if kind == "deepae":
        trainer = train.Trainer(net, cfg, len(x))
        x = x.to(trainer.device)
        for epoch in range(epochs):
            start = time.perf_counter()
            trainer.train_epoch(x, epoch)
            _sync(trainer.device)
            times.append(time.perf_counter() - start)
    else:  # the textbook loop: autograd, torch.optim.Adam with its default settings
        dev = train.resolve_device(device)
        net, x = net.to(dev), x.to(dev)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        for epoch in range(epochs):
            start = time.perf_counter()
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
            for i in range(0, len(x), 32):
                xb = x[order[i : i + 32].to(dev)]
                loss = bce(net.logits(xb), xb)
                opt.zero_grad()
                loss.backward()
                opt.step()
            _sync(dev)
            times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"times": times, "peak_mb": peak_mb, "threads": torch.get_num_threads()}


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="processes per contender (3)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per process (4)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cpu)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.epochs, args.device)))
        return 0

    results: dict[str, list[dict]] = {"deepae": [], "plain PyTorch": []}
    for r in range(args.rounds):
        for name, kind in (("deepae", "deepae"), ("plain PyTorch", "plain")):
            cmd = [sys.executable, __file__, "--worker", kind, "--epochs", str(args.epochs),
                   "--device", args.device]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}/{args.rounds}: {name} done", file=sys.stderr)

    rows = []
    for name, runs in results.items():
        epochs = [t for run in runs for t in run["times"][1:]]  # drop warm-up epochs
        rows.append((name, statistics.median(epochs), min(epochs), max(r["peak_mb"] for r in runs)))
    base = rows[1][1]
    print(f"\nmachine: {platform.processor() or platform.machine()}, "
          f"{results['deepae'][0]['threads']} torch threads, device {args.device}")  # fmt: skip
    print(
        f"{'trainer':<16}{'median s/epoch':>16}{'min s/epoch':>14}{'vs plain':>10}{'peak MB':>10}"
    )
    for name, med, low, peak in rows:
        print(f"{name:<16}{med:>16.3f}{low:>14.3f}{base / med:>9.2f}x{peak:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
