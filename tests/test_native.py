"""The compiled training step (deepae.native, native_step.cpp) against autograd in float64
(the oracle), against PyTorch's BCE, and against the fused engine's Python step.

On an x86-64 machine with AVX2 these tests need the step to build: `make test` installs a
C++ compiler (scripts/ensure-test-deps.sh) and ninja comes with deepae, so a failure to
build fails here rather than skipping. Elsewhere the native step does not exist, and the
engine's Python step (tests/test_engine.py) is what trains."""

import contextlib
import os
import subprocess
import sys

import pytest
import torch

from deepae import engine, native
from deepae.cli import main
from deepae.config import ModelConfig, TrainConfig, resolve
from deepae.errors import ConfigError
from deepae.model import build
from deepae.train import Trainer, TrainingDiverged, fit
from test_engine import autograd_reference  # pytest puts tests/ on sys.path
from test_losses import fitted_images

CASES = [
    (ModelConfig(), "bce"),  # the article's: relu, relu latent
    (ModelConfig(latent_activation="linear", hidden_sizes=(16, 8)), "bce"),
    (ModelConfig(hidden_activation="tanh", latent_activation="sigmoid"), "bce"),
    (ModelConfig(hidden_activation="sigmoid", latent_activation="tanh", latent_size=3), "bce"),
    (ModelConfig(), "mse"),  # a sigmoid output
    (ModelConfig(output_activation="linear", latent_activation="linear"), "mse"),
]


@pytest.fixture(scope="module")
def module():
    if (why := native.unsupported()) is not None:
        pytest.skip(f"no native step on this machine: {why}")
    loaded = native.load()
    assert loaded is not None, "the native step did not build on a machine that supports it"
    return loaded


def spread(net, seed=0):
    """Biases and weights nudged, so ReLUs are neither all on nor all off."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return net


def autograd_grads(net, x, loss="bce"):
    """(summed loss, gradients of the mean loss) by autograd in float64: the oracle, as
    tests/test_engine.py computes it for the Python step."""
    return autograd_reference(net.double(), x.double(), loss)


@pytest.mark.parametrize(("config", "loss"), CASES)
@pytest.mark.parametrize("batch", [32, 5])
def test_native_step_equals_autograd_in_float64(module, config, loss, batch):
    net = spread(build(config, seed=1))
    reference = spread(build(config, seed=1))
    x = torch.rand(batch, 784, generator=torch.Generator().manual_seed(batch))
    fused = engine.FusedDenseEngine(net, loss)
    assert fused.native is module
    got = fused.loss_and_grad(x).item()
    expected, grads = autograd_grads(reference, x, loss)
    assert got == pytest.approx(expected, rel=2e-6)
    for (name, p), g in zip(net.named_parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad.double(), g, rtol=2e-4, atol=1e-7, msg=name)


@pytest.mark.parametrize(("config", "loss"), [CASES[0], CASES[1], CASES[4], CASES[5]])
def test_native_step_equals_the_python_step(module, config, loss):
    """Same weights, same batches, several batch sizes: the gradients agree to float32
    rounding (the output's sigmoid is computed by the same formula)."""
    native_net, python_net = build(config, seed=2), build(config, seed=2)
    a = engine.FusedDenseEngine(native_net, loss)
    b = engine.FusedDenseEngine(python_net, loss, use_native=False)
    assert a.native is module and b.native is None
    gen = torch.Generator().manual_seed(0)
    for batch in (32, 32, 17, 1):
        x = torch.rand(batch, 784, generator=gen)
        la, lb = a.loss_and_grad(x).item(), b.loss_and_grad(x).item()
        assert la == pytest.approx(lb, rel=1e-6)
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(("config", "loss"), [CASES[1], CASES[2], CASES[5]])
def test_the_mixed_native_step_equals_the_mixed_python_step(module, config, loss):
    """bfloat16 products (mixed precision): the same casts and products as the Python
    step. With ReLUs only the float32 loss's formula differs (<= 1 float32 ulp at the
    output), which bfloat16's rounding of the output gradient almost always hides; tanh
    and sigmoid derivatives are one op here (one bfloat16 rounding, as autograd's) and
    two in Python, so their bits differ more often (tests/test_precision.py holds both
    to autocast's)."""
    a = engine.FusedDenseEngine(spread(build(config, seed=3)), loss, torch.bfloat16)
    b = engine.FusedDenseEngine(spread(build(config, seed=3)), loss, torch.bfloat16,
                                use_native=False)  # fmt: skip
    assert a.native is module and b.native is None and a.mixed and b.mixed
    gen = torch.Generator().manual_seed(3)
    for batch in (64, 64, 9):
        x = torch.rand(batch, 784, generator=gen)
        la, lb = a.loss_and_grad(x).item(), b.loss_and_grad(x).item()
        assert la == pytest.approx(lb, rel=1e-6)
        assert a.grad.dtype == torch.float32
        ulp = 2.0**-7  # bfloat16's relative spacing
        torch.testing.assert_close(a.grad, b.grad, rtol=ulp, atol=ulp * b.grad.abs().max().item())
        if {config.hidden_activation, config.latent_activation} <= {"relu", "linear"}:
            assert (a.grad == b.grad).float().mean() > 0.99  # mostly the very same bits


@pytest.mark.parametrize(("batch", "width"), [(3, 37), (32, 784), (4, 7), (2, 2000)])
def test_native_bce_equals_pytorch(module, batch, width):
    """Against binary_cross_entropy_with_logits in float64, saturated logits included;
    widths that are not a multiple of the vector length run the scalar tail, and 2,000
    pixels a row cross the 96-vector chunk of the logs' products."""
    gen = torch.Generator().manual_seed(width)
    logits = torch.randn(batch, width, generator=gen) * 8
    logits[0, :3] = torch.tensor([100.0, -100.0, 0.0])
    x = torch.rand(batch, width, generator=gen)
    g = torch.empty_like(logits)
    scale = 1.0 / logits.numel()
    got = module.output_loss(native.LOSSES[("bce", True)], logits, x, g, scale)
    l64, x64 = logits.double(), x.double()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(l64, x64, reduction="sum")
    assert got == pytest.approx(expected.item(), rel=1e-6)
    # y - x in float32: y's rounding (<= 6e-8) is absolute, and x may cancel y's digits
    torch.testing.assert_close(g.double(), (torch.sigmoid(l64) - x64) * scale,
                               rtol=1e-6, atol=2e-7 * scale)  # fmt: skip


@pytest.mark.parametrize("sigmoid", [True, False])
def test_native_mse_equals_a_float64_computation(module, sigmoid):
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 37, generator=gen) * 4
    x = torch.rand(3, 37, generator=gen)
    g = torch.empty_like(logits)
    scale = 1.0 / logits.numel()
    got = module.output_loss(native.LOSSES[("mse", sigmoid)], logits, x, g, scale)
    l64 = logits.double().requires_grad_()
    out = torch.sigmoid(l64) if sigmoid else l64
    expected = (out - x.double()).pow(2).sum()
    (grad,) = torch.autograd.grad(expected * scale, l64)
    assert got == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(g.double(), grad, rtol=1e-5, atol=1e-7 * scale)


@pytest.mark.parametrize("batch", [32, 512])
def test_native_bce_holds_where_the_model_fits_the_images(module, batch):
    """Images at and near 1 under large logits, where relu(l) and x l summed apart
    cancel (tests/test_losses.py): each pixel's relu(l) - x l is summed instead."""
    logits, x = fitted_images(batch)
    got = module.output_loss(native.LOSSES[("bce", True)], logits, x, torch.empty_like(x), 1.0)
    l64, x64 = logits.double(), x.double()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(l64, x64, reduction="sum")
    assert got == pytest.approx(expected.item(), rel=2e-6)


def test_a_loss_past_float32s_range_is_inf_and_training_diverges(module):
    """A step whose summed loss passes 3.4e38 while each row's stays below (MSE of logits
    ~1e17: 7.8e36 a row, 64 rows) returns inf, as the Python step's float32 sum does, so
    training stops with its one-line message; the compiled step's double sum raised "value
    cannot be converted to type float without overflow"."""
    model = ModelConfig(output_activation="linear", latent_activation="linear")
    nets = [build(model, seed=0) for _ in range(3)]
    for net in nets:
        with torch.no_grad():
            net.decoder.body[-1].bias.fill_(1e17)
    x = torch.rand(64, 784, generator=torch.Generator().manual_seed(0))
    compiled = engine.FusedDenseEngine(nets[0], "mse")
    python = engine.FusedDenseEngine(nets[1], "mse", use_native=False)
    assert compiled.native is module and python.native is None
    assert compiled.loss_and_grad(x).item() == python.loss_and_grad(x).item() == float("inf")
    trainer = Trainer(nets[2], TrainConfig(loss="mse", epochs=1, batch_size=64, device="cpu"), 64)
    assert trainer.whole_step is not None  # the compiled whole step trains
    with pytest.raises(TrainingDiverged, match=r"^the loss became inf at epoch 1, step 1;"):
        fit(trainer, x)


def test_native_loss_rejects_wrong_tensors(module):
    x = torch.rand(4, 8)
    with pytest.raises(RuntimeError, match="contiguous float32"):
        module.output_loss(0, x.double(), x.double(), x.double(), 1.0)
    with pytest.raises(RuntimeError, match="contiguous float32"):
        module.output_loss(0, x.t(), x.t(), torch.empty(8, 4), 1.0)
    with pytest.raises(RuntimeError, match="unknown loss 7"):
        module.output_loss(7, x, x, torch.empty_like(x), 1.0)


def test_native_step_does_not_depend_on_the_thread_count(module):
    """Rows of the loss run in parallel when the batch is large; each row's sum is kept
    apart and added in order, so 1 and 2 threads give the same bits."""
    net = spread(build(ModelConfig(), seed=4))
    fused = engine.FusedDenseEngine(net, "bce")
    x = torch.rand(256, 784, generator=torch.Generator().manual_seed(4))
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append((fused.loss_and_grad(x).item(), fused.grad.clone()))
    finally:
        torch.set_num_threads(before)
    assert results[0][0] == results[1][0]
    assert torch.equal(results[0][1], results[1][1])


def test_training_with_the_native_step_follows_the_python_step(module, mnist_small):
    """The article's recipe for 50 steps on real digits: the weights stay together."""
    from deepae.data import flatten_images

    x = torch.from_numpy(flatten_images(mnist_small.x_train[:1600]))
    model_config, train_config = resolve("article")
    runs = []
    for use_native in (True, False):
        trainer = Trainer(build(model_config, seed=0), train_config, len(x))
        if not use_native:
            trainer.engine.native = None
        assert (trainer.engine.native is not None) == use_native
        _, losses = trainer.train_epoch(x, 0)
        runs.append((losses, trainer.engine.flat.detach().clone()))
    (losses_a, flat_a), (losses_b, flat_b) = runs
    torch.testing.assert_close(losses_a, losses_b, rtol=1e-4, atol=0)
    torch.testing.assert_close(flat_a, flat_b, rtol=1e-3, atol=1e-4)


def test_where_the_native_step_is_not_used(module):
    """float64 takes the Python step; float32 and mixed bfloat16 products the native."""
    assert engine.FusedDenseEngine(build(ModelConfig()), "bce", torch.bfloat16).native is module
    assert engine.FusedDenseEngine(build(ModelConfig()).double(), "bce").native is None
    assert engine.FusedDenseEngine(build(ModelConfig()), "mse").native is module


@pytest.mark.parametrize(("value", "expected"), [("0", "0"), ("1", "1"), ("auto", "auto"),
                                                 ("", "auto"), (" AUTO ", "auto")])  # fmt: skip
def test_mode_reads_the_environment(value, expected):
    assert native.mode({native.ENV: value}) == expected
    assert native.mode({}) == "auto"


def test_mode_rejects_other_values():
    with pytest.raises(ConfigError, match="DEEPAE_NATIVE='yes' is not 0, 1 or auto"):
        native.mode({native.ENV: "yes"})


def test_a_bad_deepae_native_is_one_line_before_a_run_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(native.ENV, "yes")
    code = main(["train", "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["deepae: error: DEEPAE_NATIVE='yes' is not 0, 1 or auto"], err
    assert not (tmp_path / "runs").exists()


def test_off_unsupported_failed_and_required(monkeypatch, capsys, tmp_path):
    load = native.load.__wrapped__  # the uncached function
    monkeypatch.setenv(native.ENV, "0")
    assert load() is None
    # A CPU it cannot exist on: quietly the Python step, unless it was required.
    monkeypatch.setattr(native, "unsupported", lambda: "needs a CPU with AVX2 (test)")
    monkeypatch.setenv(native.ENV, "auto")
    assert load() is None
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(native.ENV, "1")
    with pytest.raises(ConfigError, match=r"DEEPAE_NATIVE=1 but .* \(needs a CPU with AVX2"):
        load()
    # A build that fails (here: no compiler on PATH): one line, then the Python step.
    monkeypatch.setattr(native, "unsupported", lambda: None)
    monkeypatch.setattr(native, "_ninja_on_path", contextlib.nullcontext)
    monkeypatch.setenv(native.DIR_ENV, str(tmp_path / "native"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv(native.ENV, "auto")
    assert load() is None
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(
        "deepae: training uses the Python step; the native one is unavailable (no C++ compiler"
    ), err
    assert err[0].endswith("DEEPAE_NATIVE=0 skips trying"), err
    assert not (tmp_path / "native").exists()  # nothing made for a build that cannot run


def test_openmp_only_where_the_compiler_builds_it(module, tmp_path, monkeypatch):
    """On Linux the step is built with OpenMP (its loss on PyTorch's threads: without it
    at::parallel_for runs serially), when the compiler PyTorch runs can build an OpenMP
    program; one that cannot (here a wrapper refusing -fopenmp, as clang without libomp
    fails) gets no flag, so the step still builds, its loss on one thread."""
    built = native.folder() / f"{native.NAME}-{native.build_key()}.so"
    if not native.OPENMP:  # not Linux, or a PyTorch without OpenMP
        assert native.openmp_flags(tmp_path) == ()
        return
    assert native.openmp_flags(tmp_path) == ("-fopenmp",)
    assert b"libgomp" in built.read_bytes()  # linked against OpenMP's runtime
    wrapper = tmp_path / "cxx"
    wrapper.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && exit 1; done\n'
                       'exec c++ "$@"\n')  # fmt: skip
    wrapper.chmod(0o755)
    monkeypatch.setenv("CXX", str(wrapper))
    assert native.openmp_flags(tmp_path) == ()
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    assert native.openmp_flags(tmp_path) == ()


def test_a_damaged_build_is_rebuilt_not_loaded(module, tmp_path):
    """A cached file that is not a loadable module (a truncated copy, another file) is
    built again and replaced; what loads then computes the loss. ~30 s: a real build."""
    path = tmp_path / "native" / f"{native.NAME}-test.so"
    path.parent.mkdir()
    path.write_bytes(b"not a shared library")
    rebuilt = native._load_or_build(path)
    assert path.read_bytes()[:4] == b"\x7fELF"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no build folder left
    x = torch.rand(2, 9)
    g = torch.empty_like(x)
    got, expected = rebuilt.output_loss(0, x, x, g, 1.0), module.output_loss(0, x, x, g, 1.0)
    assert got == pytest.approx(expected, rel=1e-7)


# -- what a user sees where it cannot build: run in a subprocess, so that PyTorch's own
# logging (to the real stderr, past capsys) is seen, and a hang ends in a timeout ----------

LOAD = ("import sys; from deepae import native; native.unsupported = lambda: None; "
        "sys.exit(0 if native.load() is None else 3)")  # fmt: skip


def _load_in_a_subprocess(tmp_path, **env):
    """stderr's lines of a process that loads the step into an empty folder, with `env`."""
    environ = {k: v for k, v in os.environ.items() if k not in ("CXX", native.ENV)}
    environ |= {native.DIR_ENV: str(tmp_path / "native"), "OMP_NUM_THREADS": "1", **env}
    proc = subprocess.run([sys.executable, "-c", LOAD], env=environ, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode == 0, proc.stderr  # the Python step, not a crash
    return proc.stderr.splitlines()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX PATH and shell")
def test_without_a_compiler_training_says_so_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    err = _load_in_a_subprocess(tmp_path, PATH=str(tmp_path / "empty"))
    assert err == ["deepae: training uses the Python step; the native one is unavailable "
                   "(no C++ compiler: c++ is not on PATH; install g++ or clang++, or set CXX); "
                   "DEEPAE_NATIVE=0 skips trying"], err  # fmt: skip
    assert not (tmp_path / "native").exists()  # nothing made for a build that cannot run


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell")
def test_a_failed_compile_says_the_compilers_error_in_one_line(tmp_path):
    """A compiler PyTorch does not know by name (it would log a wall of text about ABI
    compatibility) that fails as g++ does without Python's headers: the line names the
    error, not ninja's "build stopped"."""
    cxx = tmp_path / "my-cxx"
    cxx.write_text('#!/bin/sh\nfor a in "$@"; do if [ "$a" = -c ]; then\n'
                   '  echo "native_step.cpp:12:10: fatal error: Python.h: No such file" >&2\n'
                   '  echo "compilation terminated." >&2; exit 1; fi; done\n'
                   'echo "My C++ 1.0"\n')  # fmt: skip
    cxx.chmod(0o755)
    err = _load_in_a_subprocess(tmp_path, CXX=str(cxx))
    assert len(err) == 2 and err[0].startswith("deepae: compiling the native"), err
    assert err[1] == ("deepae: training uses the Python step; the native one is unavailable "
                      "(RuntimeError: native_step.cpp:12:10: fatal error: Python.h: No such "
                      "file); DEEPAE_NATIVE=0 skips trying"), err  # fmt: skip
    assert [p.name for p in (tmp_path / "native").iterdir()] == []  # no build folder left


def test_a_build_folder_it_cannot_write_names_the_variable(tmp_path):
    """DEEPAE_NATIVE_DIR a file (or read-only): one line that says what to set."""
    (tmp_path / "native").write_text("a file, not a folder")
    err = _load_in_a_subprocess(tmp_path, CXX=sys.executable)  # a compiler on PATH: not run
    assert err == [f"deepae: training uses the Python step; the native one is unavailable "
                   f"(cannot build in {tmp_path / 'native'} (File exists: {tmp_path / 'native'}); "
                   f"set DEEPAE_NATIVE_DIR to a folder you can write to); "
                   f"DEEPAE_NATIVE=0 skips trying"], err  # fmt: skip


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Error building extension 'x': [1/2] c++ -c a.cpp\nFAILED: a.o\n"
         "a.cpp:3:1: error: 'foo' was not declared\na.cpp:9:1: error: second\n"
         "ninja: build stopped: subcommand failed.\n", "a.cpp:3:1: error: 'foo' was not declared"),
        ("/usr/bin/ld: cannot find -lgomp\ncollect2: error: ld returned 1 exit status\n",
         "collect2: error: ld returned 1 exit status"),
        ("[Errno 13] Permission denied: '/x'", "[Errno 13] Permission denied: '/x'"),
        ("", ""),
    ],
)  # fmt: skip
def test_the_reason_is_the_first_error_else_the_last_line(output, expected):
    assert native.reason(output) == expected
