"""How many CPU threads training uses: one for small steps, the usable cores for big ones.

Why: PyTorch's CPU kernels run each op in an OpenMP parallel region over all its threads
(default: one per core). A step of the article's model is ~30 such ops on a 32 x 784
batch, each a few microseconds of arithmetic, so every region ends in a barrier where the
threads wait for each other. On an idle machine two threads win a little (0.33 s against
0.41 s an epoch on the project's 2 cores); when another process holds a core, the threads
wait at every barrier for a thread that is not running, and an epoch took 21-53 s instead
of 1.9-2.7 s on one thread. A step needs enough arithmetic to pay for its barriers before
a second thread helps: `PARALLEL_WORK`.

Precedence: `threads=` (Python) or `--threads N` (command line), then the environment
variable `DEEPAE_THREADS`, then `choose_threads`. The cores a process may use are its CPU
affinity, capped by a container's CPU limit (a cgroup quota) and by `OMP_NUM_THREADS` when
that is set (a launcher such as torchrun sets it to share the cores out). This module
imports no torch: the command line reads it before PyTorch loads, which is when OpenMP's
wait policy can still be chosen.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deepae.errors import ConfigError

ENV = "DEEPAE_THREADS"  # the environment's override: a thread count, or "auto"

# Multiply-adds per training step that one more thread needs before it pays off. A step
# runs ~25 parallel regions, each ending in a barrier of a few microseconds (far more when
# another process holds a core), so a thread must bring a few hundred microseconds of
# arithmetic per step: 16M multiply-adds is ~0.3 ms on one core at ~50 GFLOP/s. The
# article's step (4.0M) gets 1 thread, best2d's (815M) every usable core, the article's
# model at batch 256 (32M) 2. A first estimate, not a measurement: `make bench` compares
# thread counts (--threads) on idle and busy machines; retune it from those numbers.
PARALLEL_WORK = 16_000_000

# How long a thread that reaches a barrier first spins before it sleeps, for `deepae
# train`: set before PyTorch loads, unless the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT.
# GNU OpenMP (PyTorch's on Linux) spins 300,000 rounds by default, so on a busy machine a
# waiting thread keeps a core from the thread it waits for. Measured by `make bench`
# (docs/benchmarks.md, best2d, 2 threads, s/epoch idle / beside a torch job / two at once):
# default 1.44 / 38 / 21; OMP_WAIT_POLICY=PASSIVE 1.77 / 3.7 / 2.6 (a wake-up per op costs
# 23% idle); GOMP_SPINCOUNT=10000 1.32 / 4.6 / 7.0; 1000 1.47 / 3.6 / 3.0: idle as fast as
# the default, and within 2.5x of it under both loads. {} leaves OpenMP's defaults alone.
SPIN_DEFAULTS: dict[str, str] = {"GOMP_SPINCOUNT": "1000"}

MAX_THREADS = 1024  # more is a typo, and would start that many OS threads

# A container's CPU limit (`docker run --cpus`, a Kubernetes CPU limit) is a quota of CPU
# time per period, not an affinity: the process sees every core of the host, and PyTorch
# and OpenMP start a thread per core it sees. 16 threads under a 1-CPU quota spend it in a
# sixteenth of each period and are all stopped for the rest, so every barrier waits for a
# stopped thread. The quota is read from the cgroup root a container sees, as joblib (loky)
# does: cgroup v2's cpu.max ("150000 100000", or "max ..." for none), else cgroup v1's
# cpu/cpu.cfs_quota_us and cpu.cfs_period_us (-1: none).
CGROUP = Path("/sys/fs/cgroup")


def step_work(model_config: Any, batch_size: int) -> int:
    """Multiply-adds of one training step of a dense autoencoder (a deepae.config.ModelConfig)
    at `batch_size`: the forward pass, the weight gradients, and the input gradients of all
    layers but the first (the engine skips it). BatchNorm and activations are left out."""
    encoder = (model_config.input_size, *model_config.hidden_sizes, model_config.latent_size)
    decoder = (model_config.latent_size, *model_config.decoder_sizes, model_config.input_size)
    weights = sum(a * b for sizes in (encoder, decoder)
                  for a, b in zip(sizes[:-1], sizes[1:], strict=True))  # fmt: skip
    per_image = 3 * weights - encoder[0] * encoder[1]
    return batch_size * per_image


def choose_threads(work_per_step: int, cores: int, override: int | None = None) -> int:
    """The intra-op thread count for steps of `work_per_step` multiply-adds on `cores`
    usable cores: `override` when given, else one thread per PARALLEL_WORK of work, at
    least 1 and at most `cores`."""
    if override is not None:
        return override
    return max(1, min(cores, work_per_step // PARALLEL_WORK))


def affinity_cores() -> int:
    """The CPU cores this process may run on (its affinity; the CPU count where the system
    has no affinity call)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def quota_cores(root: Path | None = None) -> int | None:
    """The CPUs a cgroup CPU quota under `root` (default CGROUP) allows, rounded up; None
    where there is no quota or none can be read."""
    root = CGROUP if root is None else root
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):  # not cgroup v2, or not a container's root
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text()
        except OSError:
            return None
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:  # "max": no quota
        return None
    return max(1, math.ceil(quota_us / period_us)) if quota_us > 0 and period_us > 0 else None


def allowed_cores() -> int:
    """`affinity_cores`, capped by a cgroup CPU quota (`quota_cores`) where there is one."""
    quota = quota_cores()
    return affinity_cores() if quota is None else min(affinity_cores(), quota)


def usable_cores(environ: Mapping[str, str] | None = None) -> int:
    """`allowed_cores`, capped by OMP_NUM_THREADS when it holds a count (its first item:
    OpenMP also takes a list, one count per nesting level)."""
    environ = os.environ if environ is None else environ
    cores = allowed_cores()
    first = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if first.isascii() and first.isdigit() and int(first) > 0:  # "²" is a digit, not an int
        cores = min(cores, int(first))
    return cores


def parse_threads(value: Any, *, field: str = "threads") -> int | None:
    """A thread count from an argument or the environment: a whole number from 1 to
    MAX_THREADS, or "auto" (or None) for the policy's choice. Raises ConfigError naming
    `field`."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.isascii() and text.isdigit():  # not "²"
        text = int(text)
    if isinstance(text, bool) or not isinstance(text, int) or not 1 <= text <= MAX_THREADS:
        where = f"{ENV} (the environment)" if field == ENV else field
        raise ConfigError(
            f"{where} must be a whole number from 1 to {MAX_THREADS}, or auto; got {value!r}",
            field=field,
        )
    return text


def requested(threads: Any = None, environ: Mapping[str, str] | None = None) -> int | None:
    """The thread count asked for: `threads` (an argument, or --threads), else DEEPAE_THREADS,
    else None (the policy chooses). Raises ConfigError for a bad value of either."""
    environ = os.environ if environ is None else environ
    asked = parse_threads(threads)
    if asked is None and threads is None:
        asked = parse_threads(environ.get(ENV), field=ENV)
    return asked


def for_training(model_config: Any, batch_size: int, threads: Any = None,
                 environ: Mapping[str, str] | None = None) -> int:  # fmt: skip
    """The thread count to train `model_config` at `batch_size` with: `threads` if given,
    else DEEPAE_THREADS, else `choose_threads` on the step's work and the usable cores."""
    work = step_work(model_config, batch_size)
    return choose_threads(work, usable_cores(environ), requested(threads, environ))


def oversubscribed(threads: int, processes: int = 1) -> str | None:
    """A warning when `threads` in each of `processes` processes (a data-parallel run's)
    exceed the cores this process may run on (`allowed_cores`), else None."""
    cores = allowed_cores()
    if threads * processes <= cores or threads == 1:  # 1: more processes than cores, said
        return None  # by deepae.distributed.check_nproc; fewer threads there are not
    if processes == 1:
        return (f"{threads} threads on {cores} usable core(s): threads will wait for each "
                "other at every step; give --threads at most the core count")  # fmt: skip
    return (f"{threads} threads in each of {processes} processes on {cores} usable core(s): "
            "threads will wait for each other at every step; give --threads at most "
            f"{max(1, cores // processes)}")  # fmt: skip


@contextmanager
def using(threads: int) -> Iterator[int]:
    """torch.set_num_threads(threads) for the block; the caller's count afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def default_wait_policy(environ: MutableMapping[str, str] | None = None) -> None:
    """Set SPIN_DEFAULTS unless the user chose how OpenMP waits (OMP_WAIT_POLICY or one of
    them); only takes effect when called before PyTorch (and with it OpenMP) loads, as the
    command line does."""
    environ = os.environ if environ is None else environ
    if not any(k in environ for k in ("OMP_WAIT_POLICY", *SPIN_DEFAULTS)):
        environ.update(SPIN_DEFAULTS)
