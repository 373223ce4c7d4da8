"""Data-parallel training over PyTorch's own engine (torch.distributed), as torchrun runs it.

Every process (a rank) holds the whole model and trains on its contiguous rows of each
global batch (`World.rows`). The fused engine's flat gradient is weighted by the rank's
share and summed in one all-reduce per step (`World.reduce_gradient_`), the autograd
engine goes through DDP (`World.data_parallel`): either gives the global batch's mean-loss
gradient, as one process computes it. Losses are summed over the ranks (`World.sum_`),
stopping is agreed (`World.agreed_stop`), and rank 0 alone writes and prints (`joined`).
`launch` runs torchrun's launcher for `deepae train --nproc N`; `launched` tells a process
that torchrun started from its variables. docs/scale.md has the command lines and rules.

Nothing here imports PyTorch at module level: the command line imports this module.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import os
import re
import signal
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from deepae import threads
from deepae.errors import ConfigError, DeepAEError, DistributedError

ENV_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK")  # what torchrun gives each process it starts
TIMEOUT_ENV = "DEEPAE_DIST_TIMEOUT"  # seconds a rank waits for the others
# Long enough for what rank 0 does while the others wait: build a neighbour graph of 60,000
# images (a minute or two), write a checkpoint. A process that dies is noticed at once
# (its connections close); the timeout bounds only a hung process or an unreachable node.
DEFAULT_TIMEOUT_S = 600.0
STOP_EVERY = 50  # steps between the ranks' agreements on stopping (one tiny all-reduce)
STORE_TIMEOUT_S = 5.0  # for telling the others why a rank stopped (best effort)
EXIT_REPORTED = 2  # the command line's exit code for errors (cli.EXIT_USAGE)
PEER_ADDRESS = re.compile(r"\s*\[[^\]]*\]:\d+")  # in gloo's messages: "[127.0.0.1]:41110"


def launched() -> bool:
    """Whether torchrun (or anything that sets its variables) started this process."""
    return all(v in os.environ for v in ENV_VARS)


def quiet_native_logs() -> None:
    """Under torchrun, hide c10d's C++ log lines (multi-line stack traces for what deepae
    reports in one line: a lost process, an unreachable rendezvous). Call before PyTorch is
    imported; TORCH_CPP_LOG_LEVEL=INFO shows them again."""
    if launched():
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "FATAL")


def check_nproc(nproc: Any, warn: Callable[[str], None] | None = None) -> int:
    """`nproc` as a process count: a whole number >= 1 (else ConfigError); more than the
    cores this process may use gets a warning, not an error."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"nproc must be a whole number of processes >= 1, got {nproc!r}",
                          field="nproc")  # fmt: skip
    cores = threads.allowed_cores()  # affinity, capped by a container's CPU quota
    if nproc > cores and warn is not None:
        warn(f"warning: {nproc} processes on the {cores} cores this process may use: they "
             "will share cores, and each will train slower")  # fmt: skip
    return nproc


# -- this process's place in the run -------------------------------------------------------


@dataclass(frozen=True)
class World:
    """The ranks of a data-parallel run as one rank sees them. World() is a run of one
    process, in which every method below costs nothing and changes nothing."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the rank among this machine's processes: its GPU

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the run folder and prints."""
        return self.rank == 0

    def rows(self, n: int) -> slice:
        """This rank's contiguous rows of a global batch of n rows."""
        return slice(self.rank * n // self.size, (self.rank + 1) * n // self.size)

    def check_fits(self, batch_size: int, n_images: int, device, *, batch_norm: bool = False,
                   edges: bool = False):  # fmt: skip
        """ConfigError unless every batch of an epoch over n_images splits into shares of
        at least one image per rank (two with batch norm, which needs two to normalise;
        `edges`: batches of a neighbour loss's sampled edges, all of batch_size),
        and on CUDA each rank of this machine has a GPU of its own (as NCCL wants)."""
        if self.size == 1:
            return
        import torch

        gpus = torch.cuda.device_count() if device.type == "cuda" else self.local_rank + 1
        if self.local_rank >= gpus:
            raise ConfigError(f"{self.local_rank + 1} or more processes on a machine with {gpus} "
                              "GPU(s): start one process per GPU, or train on the cpu",
                              field="device")  # fmt: skip
        if batch_size % self.size:
            raise ConfigError(
                f"batch_size {batch_size} does not split evenly over {self.size} processes; "
                f"give a multiple of {self.size} (each process takes batch_size/{self.size} "
                "images of every batch)",
                field="batch_size",
            )
        if edges:  # every step of a neighbour loss is a whole batch of sampled edges
            return
        last = n_images % batch_size or batch_size
        need = 2 if batch_norm else 1
        if last // self.size < need:
            fits = max((p for p in range(1, self.size) if batch_size % p == 0
                        and last // p >= need), default=None)  # fmt: skip
            fewer = f"train in {fits} process(es) (--nproc {fits}), or " if fits else ""
            raise ConfigError(
                f"the last batch of each epoch holds {last} of the {n_images} images, fewer "
                f"than {need * self.size} for {self.size} processes; {fewer}give a batch_size "
                f"that divides {n_images} or leaves a larger remainder",
                field="batch_size",
            )

    def reduce_gradient_(self, grad, share: float) -> None:
        """grad (P,): this rank's gradient of its mean loss -> the global batch's, in place
        (each rank's weighted by its `share` of the batch, then summed: one all-reduce)."""
        if self.size == 1:
            return
        grad.mul_(share)
        self._all_reduce(grad)

    def sum_(self, t):
        """t summed over the ranks, in place (a no-op when empty); returns t."""
        if self.size > 1 and t.numel():
            self._all_reduce(t)
        return t

    def broadcast_(self, t):
        """Rank 0's values of t on every rank, in place; returns t."""
        if self.size > 1:
            self._run(_dist().broadcast, t, src=0)
        return t

    def share_bytes(self, data: bytes | None) -> bytes:
        """Rank 0's `data` on every rank (the others pass None)."""
        if self.size == 1:
            return data
        import numpy as np
        import torch

        size = int(self.broadcast_(torch.tensor([len(data) if self.is_main else 0])))
        if self.is_main:
            buf = torch.from_numpy(np.frombuffer(data, np.uint8).copy())  # (size,)
        else:
            buf = torch.empty(size, dtype=torch.uint8)
        return bytes(self.broadcast_(buf).numpy()) if size else b""

    def share_text(self, text: str | None) -> str:
        """Rank 0's `text` on every rank (the others pass None)."""
        return self.share_bytes(None if text is None else text.encode()).decode()

    def check_same(self, what: str, text: str) -> None:
        """ConfigError (printed by rank 0 alone) unless every rank gives the same `text`."""
        if self.size == 1:
            return
        import torch

        digest = torch.tensor(list(hashlib.sha256(text.encode()).digest()), dtype=torch.uint8)
        every = [torch.empty_like(digest) for _ in range(self.size)]
        self._run(_dist().all_gather, every, digest)
        odd = [r for r, d in enumerate(every) if not torch.equal(d, every[0])]
        if odd:
            message = (f"the processes of this run were started with different {what} "
                       f"(process {odd[0]} differs from process 0); start every process "
                       "with the same command line and the same data")  # fmt: skip
            if self.is_main:
                raise ConfigError(message)
            raise DistributedError(message, reported=True)

    def agreed_stop(self, stop: Callable[[], bool] | None) -> Callable[[], bool] | None:
        """`stop` as all ranks agree on it: polled before every step, it asks the others
        every STOP_EVERY steps (one tiny all-reduce) and turns true on every rank at once
        when one wants to stop, so all stop after the same step. A rank whose launcher is
        gone (killed -9: it cannot pass on a signal) stops as its SIGTERM would have it."""
        if self.size == 1 or stop is None:
            return stop
        polls = iter(range(sys.maxsize))

        def agreed() -> bool:
            if next(polls) % STOP_EVERY:
                return False
            if _orphaned():  # else the ranks, each in a session of its own, train on unseen
                signal.raise_signal(signal.SIGTERM)  # its handler runs now: stop() says so
            import torch

            flag = torch.tensor([1.0 if stop() else 0.0])
            self._run(_dist().all_reduce, flag, op=_dist().ReduceOp.MAX)
            return bool(flag.item())

        return agreed

    def data_parallel(self, module, method: str, device):
        """`module.<method>` as DistributedDataParallel calls it (its forward()): rank 0's
        parameters broadcast now, gradients averaged over the ranks in each backward()."""
        import torch
        from torch.nn.parallel import DistributedDataParallel

        ids = None  # a CPU module; on CUDA, this rank's GPU
        if device.type == "cuda":
            ids = [torch.cuda.current_device() if device.index is None else device.index]
        return self._run(DistributedDataParallel, _as_forward(module, method), device_ids=ids)

    def tell(self, e: DeepAEError) -> bool:
        """Leave this rank's error where the others look when they lose it; whether that
        worked (best effort: a store that is gone cannot be told)."""
        store = _store()
        with contextlib.suppress(RuntimeError, ValueError):
            if store is not None:
                store.set(_error_key(), f"process {self.rank} of {self.size}: {e}")
                return True
        return False

    # -- collectives: a failure is a peer lost, told in one line ---------------------------

    def _all_reduce(self, t) -> None:
        self._run(_dist().all_reduce, t)

    def _run(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RuntimeError as e:  # gloo/NCCL: a rank died or hung past the timeout
            raise self._lost(e) from None

    def _lost(self, e: Exception) -> DistributedError:
        told = _read_told()
        if told is not None:  # a rank said why it stopped: rank 0 passes it on, others are quiet
            return DistributedError(told, reported=not self.is_main)
        return DistributedError(
            f"process {self.rank} of {self.size} lost contact with the others ({_reason(e)}): "
            "another process stopped or cannot be reached (its own output says why)"
        )


def world() -> World:
    """This process's place in the default process group (torch.distributed's own), or
    World() when there is none: the trainer asks this, so a program that joined a group
    itself (init_process_group) trains data-parallel with deepae too."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return World()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return World(dist.get_rank(), dist.get_world_size(), local)


# -- joining and leaving ---------------------------------------------------------------------


def timeout_seconds() -> float:
    """DEEPAE_DIST_TIMEOUT as seconds (default DEFAULT_TIMEOUT_S); ConfigError if invalid."""
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ConfigError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds > 0; unset it "
                          f"or give one such as {DEFAULT_TIMEOUT_S:g}")  # fmt: skip
    return value


def join() -> World:
    """Join the process group torchrun's variables describe (rendezvous bounded by
    `timeout_seconds`); DistributedError in one line when the others cannot be reached."""
    import torch
    import torch.distributed as dist

    size, rank, local = (_env_int(v) for v in ENV_VARS)
    if torch.cuda.is_available() and local < torch.cuda.device_count():
        torch.cuda.set_device(local)  # one GPU per process: "cuda" is now this one
    # CPU tensors (control messages, CPU training) go through gloo, CUDA ones through NCCL.
    cuda = torch.cuda.is_available() and dist.is_nccl_available()
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    timeout = timeout_seconds()
    # PyTorch's optimizers import torch._dynamo on first use, and that import, made while a
    # process group exists, keeps references to the group: destroy_process_group then
    # cannot free it, and its gloo threads, still running at exit, now and then abort the
    # process ("terminate called without an active exception"). Imported first, it keeps none.
    import torch._dynamo  # noqa: F401

    try:
        dist.init_process_group(backend, rank=rank, world_size=size,
                                timeout=datetime.timedelta(seconds=timeout))  # fmt: skip
    except (RuntimeError, ValueError, TimeoutError) as e:
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        raise DistributedError(
            f"process {rank} of {size} could not join the others at {where} within "
            f"{timeout:g} s ({_reason(e)}); start every process with the same rendezvous "
            f"endpoint, check that it is reachable, or raise {TIMEOUT_ENV}"
        ) from None
    global _launcher
    _launcher = os.getppid()  # torchrun's agent, or deepae's --nproc launcher
    return World(rank, size, local)


def leave() -> None:
    """Leave the process group, if this process is in one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def joined() -> Iterator[World]:
    """For the command line: when torchrun started this process, be in the process group
    for the block, with rank 0 alone printing (its warnings too: a rank > 0 prints only
    errors); else World(), and nothing happens.

    An error the block raises is printed once: rank 0 prints its own and those the others
    told it of (`World.tell`); a rank > 0 that could tell rank 0, or whose error rank 0
    reports, exits quietly (SystemExit(2)). So a wrong setting that every rank meets gives
    one line, not one per process."""
    if not launched():
        yield World()
        return
    me = join()
    try:
        with _quiet_output(not me.is_main):
            yield me
    except DeepAEError as e:
        # The failed run's frames hold its trainer (a DDP holds the group): let them go, so
        # that leave() frees the group.
        traceback.clear_frames(e.__traceback__)
        said = e.reported if isinstance(e, DistributedError) else me.tell(e)
        if said and not me.is_main:
            raise SystemExit(EXIT_REPORTED) from None
        raise
    finally:
        leave()


# -- launching ---------------------------------------------------------------------------------


def launch(nproc: int, argv: Sequence[str], *, warn: Callable[[str], None] | None = None) -> int:
    """Run `deepae <argv>` in `nproc` processes on this machine through torchrun's launcher,
    and return the exit code for the command line (0: all succeeded).

    The launcher runs in this process (torch.distributed.run.run) rather than as a
    `python -m torch.distributed.run` child: a failure comes back as an exception, which
    becomes one line, instead of torchrun's multi-line report on a child's stderr. A
    process that dies by a signal is named; one that exited with an error printed its own
    line. Ctrl-C (or SIGTERM) reaches the launcher, which passes it to the processes (each
    runs in a session of its own): they stop together after the same step, and rank 0
    saves a checkpoint."""
    nproc = check_nproc(nproc, warn)
    timeout_seconds()  # a bad DEEPAE_DIST_TIMEOUT: one line here, not one per process
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    cores = threads.allowed_cores()  # affinity, capped by a container's CPU quota
    # torchrun would set 1 (with a banner); deepae shares this machine's cores between them.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // nproc)))
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "FATAL")  # see quiet_native_logs
    args = torchrun.parse_args([
        "--nnodes", "1", "--nproc-per-node", str(nproc), "--rdzv-backend", "c10d",
        "--rdzv-endpoint", "127.0.0.1:0", "--rdzv-id", uuid.uuid4().hex, "-m", "deepae",
    ])  # fmt: skip
    args.training_script_args = list(argv)  # as given: torchrun's parser would read them too
    logging.disable(logging.CRITICAL)  # torchrun's agent logs what the line below says
    try:
        torchrun.run(args)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        if failure.exitcode > 0:
            return failure.exitcode  # that process printed why
        raise DistributedError(
            f"process {rank} of {nproc} was killed by {failure.signal_name()}; the others were "
            "stopped: continue from the run's last checkpoint with deepae train --resume RUN"
        ) from None
    except SignalException as e:
        return 128 + int(e.sigval)
    finally:
        logging.disable(logging.NOTSET)
    return 0


# -- helpers -------------------------------------------------------------------------------------


def _dist():
    import torch.distributed as dist

    return dist


def _env_int(name: str) -> int:
    text = os.environ.get(name, "")
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number; start deepae with torchrun, "
                          "which sets it") from None  # fmt: skip


def _as_forward(module, method: str):
    """A module whose forward() is module.<method>: DDP syncs what forward() computes."""
    from torch import nn

    class Forward(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module

        def forward(self, *args):
            return getattr(self.inner, method)(*args)

    return Forward()


@contextlib.contextmanager
def _quiet_output(quiet: bool) -> Iterator[None]:
    """A rank > 0's stdout and stderr to nowhere: rank 0 says the run's lines and warnings
    (the data's, the compiler's) once, not once per process. An error leaving the block is
    printed after it, so a rank's errors are still heard."""
    if not quiet:
        yield
        return
    with (
        open(os.devnull, "w") as sink,
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        yield


_launcher: int | None = None  # the parent process of a rank that `join` made


def _orphaned() -> bool:
    """Whether the process that started this rank has gone (its children are then adopted)."""
    return _launcher is not None and os.getppid() != _launcher


def _error_key() -> str:
    # One key per attempt: torchrun's restarts (--max-restarts) share the store.
    return f"deepae/error/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"


def _store():
    """A client of the rendezvous' key-value store (torchrun's, or rank 0's), or None."""
    import torch.distributed as dist

    host, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not host or not (port or "").isdigit():
        return None
    try:
        return dist.TCPStore(host, int(port), is_master=False,
                             timeout=datetime.timedelta(seconds=STORE_TIMEOUT_S))  # fmt: skip
    except (RuntimeError, ValueError):
        return None


def _read_told() -> str | None:
    store = _store()
    with contextlib.suppress(RuntimeError, ValueError):
        if store is not None and store.check([_error_key()]):
            return store.get(_error_key()).decode(errors="replace")
    return None


def _reason(e: Exception) -> str:
    """The first sentence of a c10d/gloo message, without its source location."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    text = text.split(". ")[0].rstrip(".")
    # The peer's "[host]:port" goes, not what follows it: "Read error [h]:p: why" -> "why",
    # "Connection closed by peer [h]:p" -> "Connection closed by peer" (not the port).
    text = PEER_ADDRESS.sub("", text)
    return text.split(": ")[-1].strip()[:160]
