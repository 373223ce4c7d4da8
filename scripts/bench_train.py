"""Training speed benchmark: deepae beside a plain PyTorch loop, on an idle and a busy machine.

    make bench                                  # ~4 minutes on 2 cores
    python scripts/bench_train.py --quick       # ~1 minute, rough numbers
    python scripts/bench_train.py --threads auto,1,2 --wait-policy cli,unset
    python scripts/bench_train.py --models best2d --precision float32,mixed_bfloat16
    git worktree add ../base HEAD~1 && python scripts/bench_train.py --source ../base/src,src

Every number comes from fresh processes, each of which loads MNIST's 60,000 training
images, trains for a warm-up window, then for a measured window, and reports seconds per
epoch = measured seconds / steps x steps per epoch (so a slow condition takes no longer to
measure than a fast one). Conditions:
- idle: the process alone;
- beside a torch job: while another process trains a small MLP in a loop with PyTorch's
  default threads (started here, bounded in time, killed at the end whatever happens);
- two at once: two processes of the same kind at the same time (both are reported).
Trainers: deepae on the article's model (784-32-2-32-784, batch 32: the fused engine and
deepae's thread policy), the plain PyTorch loop on the same model (autograd,
torch.optim.Adam, PyTorch's default threads: what a user gets) and deepae on best2d
(batch 512, one-cycle). Options to compare, for the deepae processes only: `--threads`
(DEEPAE_THREADS: auto is deepae.threads' policy), `--wait-policy` (OMP_WAIT_POLICY before
PyTorch loads: cli is what `deepae train` sets, unset leaves OpenMP's default),
`--interop` (torch.set_num_interop_threads; default leaves PyTorch's), `--precision`
(TrainConfig.precision),
`--env KEY=VALUE`, and `--source` (deepae's code itself: the `src` folders of two
checkouts, to measure a change against the commit before it in one run).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

from deepae.cli_values import positive_int

# deepae.threads and deepae.config import no torch: this parent process stays light.
from deepae.config import PRESETS, resolve
from deepae.errors import ConfigError

try:
    from deepae import threads
except ImportError:  # a --source checkout from before the thread policy (its workers only)
    threads = None

BACKGROUND_START = 1.5  # seconds the torch job runs before a measured process starts
CONDITIONS = {"idle": "idle", "beside": "beside a torch job", "pair": "two at once"}


# -- the worker processes ------------------------------------------------------------------


class Window:
    """Polled once before each training step: True once the measured window is over.
    The first `warmup` seconds of steps, and at least the first WARMUP_STEPS steps, are not
    counted: both from the first step, not from the process's start, since loading the
    data, a CUDA graph's capture and the Triton kernels' first compile (seconds, once per
    machine) come before steady steps. `sync` waits for a GPU's queue; `clock` is for tests."""

    WARMUP_STEPS = 20  # beyond deepae.cuda_graph's 3 eager steps and the capture

    def __init__(self, warmup: float, window: float, sync, clock=time.perf_counter):
        self.warmup, self.window, self.sync, self.clock = warmup, window, sync, clock
        self.start, self.t0, self.steps, self.seconds = None, None, 0, None
        self.polls = 0  # steps started, warm-up included

    def __call__(self) -> bool:
        now = self.clock()
        self.polls += 1
        if self.start is None:  # before the first step
            self.start = now
        if self.t0 is None:
            if now - self.start >= self.warmup and self.polls > self.WARMUP_STEPS:
                self.sync()
                self.t0 = self.clock()
            return False
        if self.seconds is not None:
            return True
        self.steps += 1  # polled before a step: the one before it is done
        if now - self.t0 >= self.window:
            self.sync()
            self.seconds = self.clock() - self.t0
            return True
        return False


def deepae_worker(preset: str, window: Window, device: str, precision: str) -> dict:
    import torch

    from deepae import data, model, train

    model_config, train_config = resolve(preset)
    # Many epochs, so one-cycle never runs past its end however many steps fit the window.
    train_config = dataclasses.replace(train_config, device=device, validate=False,
                                       epochs=1000)  # fmt: skip
    if precision != "preset":
        train_config = dataclasses.replace(train_config, precision=precision)
    if threads is not None:
        count = threads.for_training(model_config, train_config.batch_size)  # as Autoencoder.fit
        torch.set_num_threads(count)
    else:  # a --source checkout from before the thread policy: PyTorch's default, as it ran
        count = torch.get_num_threads()
    x = torch.from_numpy(data.flatten_images(data.load_mnist()[0][0]))  # (60000, 784)
    trainer = train.Trainer(model.build(model_config, seed=0), train_config, len(x))
    x = x.to(trainer.device)
    for epoch in itertools.count():
        steps, _ = trainer.train_epoch(x, epoch, stop=window)
        if steps < trainer.steps_per_epoch:
            break
    return {"threads": count, "steps_per_epoch": trainer.steps_per_epoch,
            "precision": getattr(trainer, "precision", "float32")}  # fmt: skip


def plain_worker(window: Window, device: str) -> dict:
    """The textbook loop: autograd, torch.optim.Adam, fancy indexing per batch."""
    import torch

    from deepae import data, model, train
    from deepae.config import ModelConfig

    dev = train.resolve_device(device)
    x = torch.from_numpy(data.flatten_images(data.load_mnist()[0][0])).to(dev)
    net = model.build(ModelConfig(), seed=0).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    for epoch in itertools.count():
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(x), 32):
            if window():
                return {"threads": torch.get_num_threads(), "steps_per_epoch": len(x) // 32,
                        "precision": "float32"}  # fmt: skip
            xb = x[order[i : i + 32].to(dev)]
            loss = bce(net.logits(xb), xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    raise AssertionError("unreachable")


def background_worker(seconds: float) -> None:
    """Another PyTorch job: a small MLP trained in a loop, PyTorch's default threads."""
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    opt = torch.optim.Adam(net.parameters())
    x, y = torch.rand(128, 784), torch.randint(0, 10, (128,))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def worker(args) -> dict:
    import torch

    from deepae.train import resolve_device

    if args.interop[0] != "default":
        torch.set_num_interop_threads(int(args.interop[0]))  # before any parallel work
    cuda = resolve_device(args.device).type == "cuda"
    window = Window(args.warmup, args.window, torch.cuda.synchronize if cuda else lambda: None)
    if args.worker == "plain":
        result = plain_worker(window, args.device)
    else:
        result = deepae_worker(args.worker, window, args.device, args.precision[0])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    seconds = window.seconds or 0.0
    per_epoch = seconds / window.steps * result["steps_per_epoch"] if window.steps else None
    import deepae

    return {**result, "s_per_epoch": per_epoch, "steps": window.steps, "peak_mb": peak_mb,
            "wait_policy": _waiting(os.environ), "deepae": deepae.__file__,
            "interop": torch.get_num_interop_threads()}  # fmt: skip


# -- the parent: who runs when, and the table ----------------------------------------------


def _waiting(environ) -> str:
    """How OpenMP waits in this environment, for the table: policy and spin count."""
    shown = [environ.get("OMP_WAIT_POLICY", "")]
    shown += [f"spin {environ['GOMP_SPINCOUNT']}"] if "GOMP_SPINCOUNT" in environ else []
    return " ".join(s for s in shown if s) or "unset"


@dataclasses.dataclass(frozen=True)
class Contender:
    trainer: str  # "deepae article", "plain article", "deepae best2d"
    kind: str  # the worker: a preset, or "plain"
    threads: str  # DEEPAE_THREADS for deepae; "-" for the plain loop (PyTorch's default)
    wait: str  # cli, unset, or an OMP_WAIT_POLICY value; "-" for the plain loop
    precision: str = "preset"  # TrainConfig.precision for deepae; "preset": the preset's
    source: str = ""  # a `src` folder to import deepae from (PYTHONPATH); "": as installed
    interop: str = "default"  # torch.set_num_interop_threads for deepae; default: PyTorch's

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        """The worker's environment: this one, with the contender's settings (deepae)."""
        env = dict(os.environ)
        if self.kind == "plain":
            return env
        env[threads.ENV] = self.threads
        if self.wait == "cli":
            threads.default_wait_policy(env)  # as `deepae train`: the user's, else deepae's
        elif self.wait == "unset":  # OpenMP's own defaults
            for key in ("OMP_WAIT_POLICY", *threads.SPIN_DEFAULTS):
                env.pop(key, None)
        else:
            env["OMP_WAIT_POLICY"] = self.wait
        if self.source:
            env["PYTHONPATH"] = os.pathsep.join(
                [os.path.abspath(self.source), *filter(None, [env.get("PYTHONPATH")])]
            )
        return {**env, **extra}


class Children:
    """Every process this benchmark starts; all are killed on leaving, errors included."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            self.stop(proc)


def measure(children: Children, contender: Contender, condition: str, args) -> list[dict]:
    """Run `contender` under `condition`; one result per measured process."""
    cmd = [sys.executable, __file__, "--worker", contender.kind, "--device", args.device,
           "--warmup", str(args.warmup), "--window", str(args.window)]  # fmt: skip
    cmd += ["--interop", contender.interop] if contender.kind != "plain" else []
    cmd += ["--precision", contender.precision] if contender.kind != "plain" else []
    limit = args.warmup + args.window + 120  # start-up and data loading included, generously
    background = None
    if condition == "beside":
        seconds = str(limit + BACKGROUND_START)  # it ends itself even if this script dies
        background = children.start([sys.executable, __file__, "--background", seconds])
        time.sleep(BACKGROUND_START)
    env = contender.env(dict(args.env))
    try:
        procs = [children.start(cmd, env) for _ in range(2 if condition == "pair" else 1)]
        return [_from_source(_result(proc, limit), contender.source) for proc in procs]
    finally:
        if background is not None:
            children.stop(background)


def _result(proc: subprocess.Popen, limit: float) -> dict:
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return {"error": f"no result within {limit:.0f} s"}
    if proc.returncode != 0:
        return {"error": (err.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.strip().splitlines()[-1])


def _from_source(result: dict, source: str) -> dict:
    """`result`, or an error when the worker imported deepae from elsewhere than `source`."""
    where = result.get("deepae")
    if source and where and not os.path.abspath(where).startswith(os.path.abspath(source)):
        return {"error": f"deepae came from {where}, not from {source}"}
    return result


def contenders(args) -> list[Contender]:
    found = []
    for preset in args.models:
        for source, count, wait, precision, interop in itertools.product(
            args.source, args.threads, args.wait_policy, args.precision, args.interop
        ):
            found.append(
                Contender(f"deepae {preset}", preset, count, wait, precision, source, interop)
            )
        if preset == "article" and not args.no_plain:
            found.append(Contender("plain article", "plain", "-", "-"))
    return found


def report(rows: dict[tuple[str, Contender], list[dict]], args) -> None:
    cores = threads.usable_cores()
    print(f"\nmachine: {platform.processor() or platform.machine()}, {cores} usable core(s), "
          f"device {args.device}; {args.warmup:g} s warm-up + {args.window:g} s measured per "
          f"process, {args.rounds} round(s)")  # fmt: skip
    for preset in args.models:
        model_config, train_config = resolve(preset)
        work = threads.step_work(model_config, train_config.batch_size)
        print(f"thread policy ({threads.ENV} unset): {preset}: {work / 1e6:,.1f}M multiply-adds "
              f"a step -> {threads.choose_threads(work, cores)} thread(s) on {cores} core(s) "
              f"(PARALLEL_WORK {threads.PARALLEL_WORK / 1e6:g}M)")  # fmt: skip
    print(f"\n{'condition':<20}{'trainer':<16}{'threads':>12}{'wait policy':>13}"
          f"{'precision':>16}{'s/epoch':>22}{'vs plain':>10}{'peak MB':>9}"
          + (f"{'interop':>14}" if args.interop != ["default"] else "")
          + ("  source" if _sources(args) else ""))  # fmt: skip
    for condition in args.conditions:
        plain = _median([r for (c, k), rs in rows.items() if c == condition
                         and k.kind == "plain" for r in rs])  # fmt: skip
        for (c, contender), results in rows.items():
            if c != condition:
                continue
            print(_row(CONDITIONS[condition], contender, results, plain, args))
    if "best2d" in args.models:
        epochs = resolve("best2d")[1].epochs
        print(f"\nbest2d trains {epochs} epochs: its training takes ~{epochs} x its s/epoch.")


def _median(results: list[dict]) -> float | None:
    values = [r["s_per_epoch"] for r in results if r.get("s_per_epoch")]
    return statistics.median(values) if values else None


def _row(condition: str, contender: Contender, results: list[dict], plain: float | None,
         args) -> str:  # fmt: skip
    """One line of the table: the median over processes, [min-max] when there are several."""
    head = f"{condition:<20}{contender.trainer:<16}"
    good = [r for r in results if r.get("s_per_epoch")]
    if not good:
        errors = [r["error"] for r in results if "error" in r] or ["no steps measured"]
        return f"{head}  failed: {errors[0]}"
    used = "/".join(str(n) for n in sorted({r["threads"] for r in good}))
    count = f"{used} ({'default' if contender.kind == 'plain' else contender.threads})"
    wait = good[0]["wait_policy"] if contender.wait in ("-", "cli") else contender.wait
    times = [r["s_per_epoch"] for r in good]
    med = statistics.median(times)
    seconds = _s(med) + (f" [{_s(min(times))}-{_s(max(times))}]" if len(times) > 1 else "")
    ratio = f"{plain / med:.2f}x" if plain and "article" in contender.trainer else "-"
    peak = max(r["peak_mb"] for r in good)
    precision = good[0]["precision"]
    source = f"  {contender.source}" if contender.source else ""
    interop = ""
    if args.interop != ["default"]:  # the count each worker had: PyTorch's own, or the set one
        used = "/".join(str(n) for n in sorted({r.get("interop", "?") for r in good}))
        interop = f"{used} ({'-' if contender.kind == 'plain' else contender.interop})"
        interop = f"{interop:>14}"
    line = f"{head}{count:>12}{wait:>13}{precision:>16}{seconds:>22}{ratio:>10}{peak:>9.0f}"
    return f"{line}{interop}{source}"


def _sources(args) -> bool:
    return any(args.source)


def _s(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.0f}"


def _listed(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def env_pair(text: str) -> tuple[str, str]:
    """An argparse type: KEY=VALUE -> (KEY, VALUE)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def interop_counts(text: str) -> list[str]:
    """An argparse type: "default,1" -> ["default", "1"]; each a positive count or default."""
    values = _listed(text)
    for value in values:
        if value != "default" and not (value.isascii() and value.isdigit() and int(value) > 0):
            raise argparse.ArgumentTypeError(f"{value!r}: expected default or a positive count")
    return values


def timed_presets() -> list[str]:
    """The presets this benchmark can time: those without a neighbour loss (umap2d's trains
    on the edges of a graph, which the workers do not build)."""
    # (getattr: a --source checkout from before the neighbour loss has none)
    return [p for p in PRESETS if getattr(resolve(p)[1], "neighbour_weight", 0) == 0]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    listed = _listed
    timed = timed_presets()
    parser.add_argument("--rounds", type=positive_int, help="repeats of every measurement (2)")
    parser.add_argument("--warmup", type=float, help="seconds before measuring (2)")
    parser.add_argument("--window", type=float, help="seconds measured (6)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="rough numbers in ~2 minutes: 1 round, 0.5 s + 2 s windows (unless given)",
    )
    parser.add_argument(
        "--conditions",
        type=listed,
        default=list(CONDITIONS),
        help="idle, beside, pair (default: all)",
    )
    parser.add_argument(
        "--models",
        type=listed,
        default=timed,
        help=f"deepae presets to train: {', '.join(timed)} (default: all)",
    )
    parser.add_argument(
        "--threads",
        type=listed,
        default=["auto"],
        help="DEEPAE_THREADS values for deepae, e.g. auto,1,2 (auto)",
    )
    parser.add_argument(
        "--wait-policy",
        type=listed,
        default=["cli"],
        help="OMP_WAIT_POLICY for deepae: cli (what deepae train sets), "
        "unset, PASSIVE, ACTIVE; e.g. cli,unset (cli)",
    )
    parser.add_argument(
        "--interop",
        type=interop_counts,
        default=["default"],
        help="torch.set_num_interop_threads for deepae: default (PyTorch's own) or a count; "
        "e.g. default,1 (default)",
    )
    parser.add_argument(
        "--precision",
        type=listed,
        default=["preset"],
        help="TrainConfig.precision for deepae: preset (the preset's own), float32, "
        "mixed_bfloat16, auto; e.g. float32,mixed_bfloat16 (preset)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        type=env_pair,
        help="more environment for deepae, e.g. GOMP_SPINCOUNT=10000",
    )
    parser.add_argument(
        "--source",
        type=listed,
        default=[""],
        help="src folders of deepae checkouts to compare, e.g. ../base/src,src "
        "(default: deepae as installed)",
    )
    parser.add_argument("--no-plain", action="store_true", help="leave out the plain loop")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="cpu or cuda (cpu)")  # fmt: skip
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--background", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = (1, 0.5, 2.0) if args.quick else (2, 2.0, 6.0)
    for name, default in zip(("rounds", "warmup", "window"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    unknown = set(args.conditions) - set(CONDITIONS)
    if unknown:
        parser.error(
            f"unknown condition(s) {', '.join(sorted(unknown))}; known: idle, beside, pair"
        )
    missing = [s for s in args.source if s and not os.path.isdir(os.path.join(s, "deepae"))]
    if missing:
        parser.error(f"--source {missing[0]}: no deepae package in that folder; give a "
                     "checkout's src folder")  # fmt: skip
    try:
        for value in args.threads if threads is not None else ():  # (None: an old worker)
            threads.parse_threads(value)
        _check_models(parser, args.models, timed)
        for value in set(args.precision) - {"preset"}:
            resolve(precision=value)
    except ConfigError as e:
        parser.error(str(e))
    if args.device == "cuda" and args.worker is None:  # (workers: the parent checked)
        _check_cuda(parser)
    return args


def _check_models(parser: argparse.ArgumentParser, models: list[str], timed: list[str]) -> None:
    for preset in models:
        resolve(preset)  # an unknown preset: ConfigError
        if preset not in timed:
            parser.error(f"--models {preset}: its neighbour loss needs a graph, which this "
                         f"benchmark does not build; models timed here: {', '.join(timed)} "
                         f"(scripts/bench_step.py --models {preset} times its step)")  # fmt: skip


def _check_cuda(parser: argparse.ArgumentParser) -> None:
    import torch  # only here: the parent process stays free of PyTorch otherwise

    if not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU here; use --device cpu")


def main() -> int:
    args = parse_args()
    if args.background is not None:
        background_worker(args.background)
        return 0
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    rows: dict[tuple[str, Contender], list[dict]] = {}
    plan = [(c, k) for c in args.conditions for k in contenders(args)]
    start = time.monotonic()
    with Children() as children:
        for r in range(args.rounds):
            # Alternate the order, so that slow drifts of the machine hit every row alike.
            for condition, contender in plan if r % 2 == 0 else plan[::-1]:
                results = measure(children, contender, condition, args)
                rows.setdefault((condition, contender), []).extend(results)
                done = ", ".join(_brief(x) for x in results)
                print(f"round {r + 1}/{args.rounds}: {CONDITIONS[condition]}, {contender.trainer} "
                      f"({contender.threads}, {contender.wait}, {contender.precision}"
                      f"{', ' + contender.source if contender.source else ''}): {done}",
                      file=sys.stderr, flush=True)  # fmt: skip
    rows = {key: rows[key] for key in plan}  # the table in plan order
    report(rows, args)
    print(f"({time.monotonic() - start:.0f} s in all)")
    # A measurement that failed shows in the table; the exit code says so too.
    results = [r for rs in rows.values() for r in rs]
    failed = sum(1 for r in results if not r.get("s_per_epoch"))
    if failed:
        print(f"bench_train.py: {failed} of {len(results)} measurement(s) failed (the round "
              "lines above say why)", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _brief(result: dict) -> str:
    if "error" in result:
        return f"failed: {result['error']}"
    return f"{result['s_per_epoch']:.3f} s/epoch" if result["s_per_epoch"] else "no steps"


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
