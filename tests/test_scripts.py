"""The developer scripts under scripts/ answer bad arguments with one clear line on stderr
and exit code 2, never a traceback, and before any slow work (loading data, training,
launching a browser); plus the few fixes that are not about arguments: gpu_check's
per-engine report, bench_train's exit code when a row failed, bench_datasets reusing its
folder."""

import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deepae import triton_step
from deepae.errors import MissingExtraError

ROOT = Path(__file__).parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "mnist-small.npz"
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def script(name: str, *args, timeout: int = 120) -> subprocess.CompletedProcess:
    """`python scripts/NAME.py ARGS` from the repository root, one thread, bounded in time."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "agg"}
    return subprocess.run([sys.executable, f"scripts/{name}.py", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def load_script(name: str):
    """scripts/NAME.py as a module, without running its main."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as importlib's recipe does: dataclasses look it up
    spec.loader.exec_module(module)
    return module


WHOLE = "is not a whole number >= 1"  # the scripts' positive-count type, in argparse's line
QUICK = "--quick --conditions idle --no-plain"  # bench_train: one short measurement a model
STEP = "--models article --trained-epochs 0 --seconds 0.01"  # bench_step: no training

BAD_ARGUMENTS = [  # (script, its arguments, a phrase of the error line)
    ("gpu_check", "--eager-epochs 0", f"--eager-epochs: '0' {WHOLE}"),
    ("gpu_check", "--full-epochs 0", f"--full-epochs: '0' {WHOLE}"),
    ("make_test_fixture", "--bogus", "unrecognized arguments: --bogus"),
    ("bench_train", "--rounds 0", f"--rounds: '0' {WHOLE}"),
    ("bench_train", "--rounds -1", f"--rounds: '-1' {WHOLE}"),
    ("bench_train", "--conditions idle --env FOO", "expected KEY=VALUE, got 'FOO'"),
    ("bench_train", "--interop default,0", "--interop: '0': expected default or a positive"),
    # (the arguments after the bad one bound what the scripts did before they checked it)
    ("bench_train", f"--models umap2d {QUICK}", "models timed here: article, best2d"),
    ("bench_train", f"--device bogus {QUICK} --models article", "invalid choice: 'bogus'"),
    pytest.param(
        "bench_train",
        f"--device cuda {QUICK} --models article",
        "--device cuda: no CUDA GPU",
        marks=NO_GPU,
    ),
    ("bench_step", f"--rounds 0 {STEP} --profile-steps 1", f"--rounds: '0' {WHOLE}"),
    ("bench_step", f"--profile-steps 0 {STEP} --rounds 1", f"--profile-steps: '0' {WHOLE}"),
    ("bench_memory", "--paths nosuch --count 10", "unknown path(s) nosuch"),
    ("bench_scale", "--procs x", f"--procs: 'x' {WHOLE}"),
    ("bench_scale", "--procs 0", f"--procs: '0' {WHOLE}"),
    ("bench_scale", "--batch-sizes 32,0", f"--batch-sizes: '0' {WHOLE}"),
    ("bench_datasets", "--repeats 0 --count 20", f"--repeats: '0' {WHOLE}"),
    ("bench_datasets", "--count 0", f"--count: '0' {WHOLE}"),
    ("bench_explorer", "--repeats 0", f"--repeats: '0' {WHOLE}"),
    ("bench_explorer", "/nonexistent/run", "bench_explorer.py: error: no run folder at"),
    ("quality", "--set nosuch=1", "unknown config field(s) nosuch"),
    ("quality", "--set epochs=0", "epochs must"),
    ("quality", "--set seed=3", "--set seed: the seeds are this script's"),
    ("quality", "--data-dir /nonexistent", "quality.py: error: data dir /nonexistent"),
    ("reproduce", "--device bogus", "reproduce.py: error: device must be one of"),
    ("reproduce", "--seed -1", "reproduce.py: error: seed must lie in"),
    pytest.param(
        "reproduce", "--device cuda", "reproduce.py: error: device 'cuda' was asked", marks=NO_GPU
    ),
    ("compare_runs", "/nonexistent/a /nonexistent/b", "/nonexistent/a is not a folder"),
    ("triton_compile", "--arch 90,0", f"--arch: '0' {WHOLE}"),
    ("triton_compile", "--block x", f"--block: 'x' {WHOLE}"),
]


@pytest.mark.parametrize(("name", "args", "phrase"), BAD_ARGUMENTS)
def test_bad_arguments_are_one_line_and_exit_2(name, args, phrase):
    done = script(name, *args.split())
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    # One line: the script's own, or argparse's error line after its usage lines.
    *usage, line = done.stderr.strip().splitlines()
    assert line.startswith(f"{name}.py: error: ") and phrase in line, done.stderr
    assert not usage or usage[0].startswith("usage: "), done.stderr


def test_make_test_fixture_help_writes_nothing():
    before = FIXTURE.stat().st_mtime_ns, FIXTURE.read_bytes()
    done = script("make_test_fixture", "--help")
    assert done.returncode == 0, done.stderr
    assert "mnist-small.npz" in done.stdout
    assert (FIXTURE.stat().st_mtime_ns, FIXTURE.read_bytes()) == before


def test_gpu_check_reports_each_engine_on_its_own(monkeypatch, capsys):
    """The autograd line is autograd's largest difference, not the largest of both."""
    gpu_check = load_script("gpu_check")
    grads = {  # (engine, device) -> gradients: fused differs by 0.5, autograd by 0.01
        ("fused", "cpu"): [torch.tensor([2.0]), torch.tensor([1.0])],
        ("fused", "cuda"): [torch.tensor([2.0]), torch.tensor([1.5])],
        ("autograd", "cpu"): [torch.tensor([1.0]), torch.tensor([4.0])],
        ("autograd", "cuda"): [torch.tensor([1.01]), torch.tensor([4.0])],
    }
    monkeypatch.setattr(gpu_check, "engine_gradients", lambda x, engine, dev: grads[engine, dev])
    worst = gpu_check.gradient_parity(torch.zeros(32, 784))
    lines = capsys.readouterr().out.splitlines()
    assert worst == pytest.approx(0.5)
    assert lines[0].split()[0] == "fused" and lines[0].endswith("5.00e-01")
    assert lines[1].split()[0] == "autograd" and lines[1].endswith("1.00e-02")


def test_gpu_check_edges_parity_is_measured_against_a_float64_oracle(monkeypatch, capsys):
    """A tensor float32 gets only roughly on the CPU too (umap2d's latent bias, whose
    gradient cancels) passes when the GPU is no worse; a 1% error where the CPU is exact
    fails."""
    gpu_check = load_script("gpu_check")
    t = functools.partial(torch.tensor, dtype=torch.float64)  # as edges_gradients returns
    oracle = [t([1.0, -2.0]), t([3e-3, -1e-3])]
    cpu = [t([1.0, -2.0]), t([3.01e-3, -1e-3])]  # 2e-3/3e-3 off: 3.3e-3
    grads = {("cpu", torch.float64): oracle, ("cpu", torch.float32): cpu}

    def fake(x, dtype, device):
        return grads[device, dtype]

    monkeypatch.setattr(gpu_check, "edges_gradients", fake)
    grads["cuda", torch.float32] = [oracle[0], t([2.99e-3, -1.02e-3])]  # 6.7e-3
    assert gpu_check.edges_parity(torch.zeros(64, 784)) == pytest.approx(0.02 / 3 / (4 * 0.01 / 3))
    assert "worst tensor: #1" in capsys.readouterr().out
    grads["cuda", torch.float32] = [t([1.0, -2.02]), oracle[1]]  # 1% where CPU is exact
    assert gpu_check.edges_parity(torch.zeros(64, 784)) == pytest.approx(0.01 / 1e-4)


def test_gpu_check_timing_says_when_graphs_or_the_triton_step_did_not_run(monkeypatch):
    """A timed line must not pass off eager steps as graphs, nor PyTorch's step as the
    Triton one: on the CPU neither runs, and the note says so."""
    gpu_check = load_script("gpu_check")
    with np.load(FIXTURE) as npz:
        x = torch.from_numpy(npz["x_train"][:256].reshape(256, 784) / np.float32(255))
    monkeypatch.setenv("DEEPAE_NATIVE", "0")  # the Python step: nothing to compile
    _, _, val, note = gpu_check.timing(x, x[:64], "article", 1, False, device="cpu")
    assert note == "" and val > 0  # eager steps, as asked
    note = gpu_check.timing(x, x[:64], "article", 1, True, triton=True, device="cpu")[3]
    assert note == (" (no CUDA graphs: eager steps ran; the Triton step did not run: "
                    "PyTorch's did)")  # fmt: skip


def test_gpu_check_profile_lists_the_steps_largest_items(capsys):
    """Section 7 on the CPU (its ops instead of CUDA kernels): a table of the largest items
    a step, the products among them, a total that covers them, and the wall time a step."""
    gpu_check = load_script("gpu_check")
    with np.load(FIXTURE) as npz:
        x = torch.from_numpy(npz["x_train"][:320].reshape(320, 784) / np.float32(255))
    total = gpu_check.kernel_profile(x, triton=False, device="cpu", top=5)
    lines = capsys.readouterr().out.splitlines()
    header, *rows, last, wall = lines
    assert header.split() == ["op", "calls/step", "us/step"] and len(rows) == 5
    times = [float(row.split()[-1]) for row in rows]
    assert times == sorted(times, reverse=True) and 0 < sum(times) <= total
    assert any(row.split()[0] in ("aten::addmm", "aten::mm") for row in rows), rows
    assert last.split()[0] == "all" and float(last.split()[-1]) == pytest.approx(total, abs=0.01)
    assert wall.split()[:2] == ["wall", "time"] and 0 < float(wall.split()[-1]) < 1e6  # < 1 s


def test_gpu_check_adam_pieces_parity_compares_pieces_with_the_whole(monkeypatch, capsys):
    """Section 1's Adam check, on the CPU: no pieces there by default (nothing compared, a
    failure); made to cut 36, the CPU kernel gives the same bits; and a piece that skips
    its update shows."""
    from deepae import engine

    gpu_check = load_script("gpu_check")
    assert gpu_check.adam_pieces_parity("cpu") > 0
    monkeypatch.setattr(engine, "adam_pieces", lambda numel, device: 36)
    assert gpu_check.adam_pieces_parity("cpu") == 0
    assert (
        "Adam in 36 pieces vs whole, 5 steps: 0 of 153462 values differ" in capsys.readouterr().out
    )
    real = engine._pieces

    def one_left_out(opt, p, state, n):  # cut in pieces, the last of each list dropped
        return tuple(pieces[: -1 if n > 1 else None] for pieces in real(opt, p, state, n))

    monkeypatch.setattr(engine, "_pieces", one_left_out)
    assert gpu_check.adam_pieces_parity("cpu") > 0


def test_gpu_check_edges_gradients_in_float32_cancel_only_in_the_latent_bias():
    """What edges_parity's docstring rests on: float32 on the CPU is within 1e-4 of the
    float64 oracle for every tensor but the latent layer's bias (UMAP's loss ignores a
    common shift of the codes, so that gradient is a sum that cancels)."""
    gpu_check = load_script("gpu_check")
    with np.load(FIXTURE) as npz:  # real digits, as the check runs on
        x = torch.from_numpy(npz["x_train"][:64].reshape(64, 784) / np.float32(255))
    oracle = gpu_check.edges_gradients(x, torch.float64, "cpu")
    got = gpu_check.edges_gradients(x, torch.float32, "cpu")
    pairs = zip(oracle, got, strict=True)
    errors = [((a - b).abs().max() / a.abs().max()).item() for a, b in pairs]
    latent_bias = 2 * 4 - 1  # 4 encoder layers (256, 256, 128, 2), weight then bias each
    assert oracle[latent_bias].shape == (2,)
    assert max(e for i, e in enumerate(errors) if i != latent_bias) < 1e-4
    assert errors[latent_bias] > 1e-4


def test_gpu_check_triton_parity_checks_the_kernels_it_ran(monkeypatch, capsys):
    """Run where a GPU would be, here in Triton's CPU interpreter: within 1e-5 of float64;
    a step that fell back to PyTorch's does not pass."""
    pytest.importorskip("triton", reason="Triton has wheels for x86-64 Linux only")
    gpu_check = load_script("gpu_check")  # the kernels run interpreted (conftest.py)
    monkeypatch.setattr(triton_step, "for_engine", triton_step.Step)  # the CPU, as if CUDA
    with np.load(FIXTURE) as npz:
        x = torch.from_numpy(npz["x_train"][:32].reshape(32, 784) / np.float32(255))
    assert gpu_check.triton_parity(x, "cpu") < 1e-5
    monkeypatch.setattr(triton_step, "kernels", lambda: None)  # every launch fails
    with pytest.warns(UserWarning, match="Triton training step failed"):
        assert gpu_check.triton_parity(x, "cpu") == float("inf")
    assert "(it failed: the PyTorch step ran)" in capsys.readouterr().out


def test_gpu_check_without_umap_says_so_before_any_gpu_work(monkeypatch, capsys):
    gpu_check = load_script("gpu_check")

    def missing():
        raise MissingExtraError("neighbour maps need umap-learn; pip install 'deepae[umap]'")

    monkeypatch.setattr(gpu_check.neighbours, "require_umap", missing)
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: pytest.fail("GPU asked"))
    monkeypatch.setattr(sys, "argv", ["gpu_check.py"])
    assert gpu_check.main() == 2
    assert capsys.readouterr().err == (
        "gpu_check: neighbour maps need umap-learn; pip install 'deepae[umap]'\n"
    )


def test_bench_memory_paths():
    bench_memory = load_script("bench_memory")
    assert bench_memory.path_names("both") == ["mapped", "memory"]
    assert bench_memory.path_names("memory") == ["memory"]
    assert bench_memory.path_names("mapped,memory") == ["mapped", "memory"]


def test_bench_train_window_measures_steady_steps_only():
    """A GPU worker's first step compiles the Triton kernels (seconds) after the data took
    as long to load: neither may fall in the measured window, however short the warm-up.
    Steps here take 10 ms after a first one of 5 s, on a fake clock."""
    bench_train = load_script("bench_train")
    now = [3.0]  # seconds: the data took 3 s to load after the window was made
    window = bench_train.Window(0.5, 1.0, sync=lambda: None, clock=lambda: now[0])
    now[0] = 6.0
    durations = iter([5.0] + [0.01] * 10_000)
    while not window():
        now[0] += next(durations)
    per_step = window.seconds / window.steps
    assert per_step == pytest.approx(0.01)  # not the 5 s step, nor the loading
    assert window.steps == pytest.approx(100, abs=1)


def test_bench_train_exits_1_when_a_row_failed(tmp_path):
    """A worker that cannot even import deepae: its row says so, and the script fails."""
    (tmp_path / "deepae").mkdir()
    (tmp_path / "deepae" / "__init__.py").write_text("raise ImportError('broken on purpose')\n")
    done = script("bench_train", "--source", tmp_path, "--models", "article", "--no-plain",
                  "--conditions", "idle", "--quick")  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "failed: ImportError: broken on purpose" in done.stdout
    assert "1 of 1 measurement(s) failed" in done.stderr
    assert "Traceback" not in done.stderr


def test_bench_datasets_reuses_its_folder(tmp_path):
    """A second run with fewer images into the same folder checks its own images, not the
    first run's left behind; and the budget of a few images is not '< 0 s'."""
    for count in (40, 20):
        done = script("bench_datasets", "--count", count, "--repeats", "1", "--folder", tmp_path)
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == 0 or "over budget" in done.stderr, done.stderr
        assert f"\n{count} 28 x 28 PNGs" in done.stdout and "; checked" in done.stdout
    assert sorted(int(p.stem) for p in tmp_path.glob("*/*.png")) == list(range(20))
    assert "| < 0.01 s |" in done.stdout  # 30 s for 60,000 images: 0.01 s for 20


def test_bench_memory_reuses_its_folder(tmp_path):
    """A --folder given again holds last time's run: the new one replaces it."""
    for _ in range(2):
        done = script("bench_memory", "--count", 300, "--paths", "mapped", "--folder", tmp_path)
        assert done.returncode == 0, done.stderr
        assert "| mapped | 270 |" in done.stdout  # 300 images, 10% of them for validation
