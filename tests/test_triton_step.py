"""deepae.triton_step: the article's step in five Triton kernels, run here in Triton's
CPU interpreter, against autograd in float64 (the oracle) and the PyTorch fused step; and
compiled for NVIDIA GPUs by Triton's own compiler (scripts/triton_compile.py), which
needs no GPU. On a GPU, scripts/gpu_check.py checks the compiled kernels the same way."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepae import cuda_graph, model, triton_step
from deepae.config import ModelConfig, TrainConfig
from deepae.engine import FusedDenseEngine
from deepae.train import Trainer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def interpreted():
    """triton_step's kernels as Triton's interpreter runs them: on the CPU, in NumPy
    (conftest.py sets TRITON_INTERPRET=1 before anything imports Triton)."""
    pytest.importorskip("triton", reason="Triton has wheels for x86-64 Linux only")
    assert os.environ["TRITON_INTERPRET"] == "1"
    return triton_step.kernels()


def images(batch: int, width: int, seed: int = 0) -> torch.Tensor:
    """Digit-like pixels: most exactly 0, some exactly 1, the rest in between."""
    x = torch.rand(batch, width, generator=torch.Generator().manual_seed(seed))
    return torch.where(x < 0.6, 0.0, torch.where(x > 0.9, 1.0, x))


def oracle(net: torch.nn.Module, x: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
    """Autograd in float64: the summed BCE and the gradient of its mean."""
    net = net.double()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        net.logits(x.double()), x.double(), reduction="sum"
    )
    grads = torch.autograd.grad(loss / x.numel(), list(net.parameters()))
    return loss.item(), grads


CASES = {  # name -> (config, batch)
    "the article, batch 32": (ModelConfig(), 32),
    "linear code of 5, hidden 16, a last batch of 20": (
        ModelConfig(hidden_sizes=(16,), latent_size=5, latent_activation="linear"), 20),
    "one image": (ModelConfig(), 1),
    "10x10 images (100 pixels, not a multiple of the chunk)": (
        ModelConfig(input_size=100, image_shape=(10, 10), hidden_sizes=(16,)), 32),
    "a wider decoder, linear hidden layers, a code of 16, batch 17": (
        ModelConfig(hidden_sizes=(24,), decoder_hidden_sizes=(32,), latent_size=16,
                    hidden_activation="linear"), 17),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_the_kernel_computes_autograds_loss_and_gradient(interpreted, name):
    config, batch = CASES[name]
    net = model.build(config, seed=0)
    engine = FusedDenseEngine(net, "bce", use_native=False)
    assert triton_step.why_not(engine, environ={"DEEPAE_TRITON": "1"}) is None
    x = images(batch, config.input_size)
    want_loss, want = oracle(model.build(config, seed=0), x)
    loss = triton_step.Step(engine)(x)
    assert loss.item() == pytest.approx(want_loss, rel=1e-6)
    for p, g in zip(net.parameters(), want, strict=True):
        assert p.grad.shape == g.shape
        assert ((p.grad.double() - g).abs().max() / g.abs().max()).item() < 1e-5


@pytest.mark.parametrize("block", [16, 32, 128])
def test_any_chunk_of_pixels_gives_the_same_step(interpreted, monkeypatch, block):
    """gpu_check times 32, 64 and 128 pixels a program; 784 divides by none but 16."""
    monkeypatch.setattr(triton_step, "BLOCK_D", block)
    net = model.build(ModelConfig(), seed=0)
    x = images(32, 784)
    want_loss, want = oracle(model.build(ModelConfig(), seed=0), x)
    step = triton_step.Step(FusedDenseEngine(net, "bce", use_native=False))
    assert step.block == block and step(x).item() == pytest.approx(want_loss, rel=1e-6)
    assert len(step.buffers[32]["losses"]) == -(-784 // block)
    for p, g in zip(net.parameters(), want, strict=True):
        assert ((p.grad.double() - g).abs().max() / g.abs().max()).item() < 1e-5


def test_the_kernel_agrees_with_the_pytorch_step_over_training(interpreted):
    """Ten Adam steps on each: the weights stay together to float32 rounding."""
    config = ModelConfig()
    nets = [model.build(config, seed=0) for _ in range(2)]
    engines = [FusedDenseEngine(net, "bce", use_native=False) for net in nets]
    steps = [triton_step.Step(engines[0]), engines[1].loss_and_grad]
    opts = [torch.optim.Adam([e.flat], lr=1e-3, eps=1e-7) for e in engines]
    for s in range(10):
        x = images(32, 784, seed=s)
        losses = [step(x).item() for step in steps]
        assert losses[0] == pytest.approx(losses[1], rel=1e-6)
        for opt in opts:
            opt.step()
    assert (engines[0].flat - engines[1].flat).abs().max().item() < 1e-5


def test_saturated_logits_keep_the_loss_exact(interpreted):
    """Logits far from 0 (a trained model's background): log1p(exp(-|l|)) is below
    float32's resolution of 1 + e, and the loss must still be the oracle's."""
    config = ModelConfig(hidden_sizes=(16,))
    net = model.build(config, seed=0)
    with torch.no_grad():
        net.decoder.body[-1].bias.fill_(-12.0)  # every logit ~ -12: e ~ 6e-6
    engine = FusedDenseEngine(net, "bce", use_native=False)
    x = torch.zeros(8, 784)
    net64 = model.build(config, seed=0).double()
    with torch.no_grad():
        net64.decoder.body[-1].bias.fill_(-12.0)
    want_loss = torch.nn.functional.binary_cross_entropy_with_logits(
        net64.logits(x.double()), x.double(), reduction="sum").item()  # fmt: skip
    assert triton_step.Step(engine)(x).item() == pytest.approx(want_loss, rel=1e-5)


@pytest.mark.parametrize("bias", [-6.0, -8.0, -20.0, 8.0])
def test_the_loss_is_float32_exact_where_1_plus_exp_rounds(interpreted, bias):
    """Logits of -6 to -9 (e = exp(-|l|) of 1e-4 to 3e-3): log(1 + e) in float32 loses up
    to 6e-4 of log1p(e) where 1 + e rounds; the summed loss must keep float32's accuracy."""
    config = ModelConfig(hidden_sizes=(16,))
    nets = [model.build(config, seed=0) for _ in range(2)]
    nets[1].double()
    for net in nets:
        with torch.no_grad():
            net.decoder.body[-1].bias.fill_(bias)
    x = torch.zeros(8, 784) if bias < 0 else torch.ones(8, 784)
    want = torch.nn.functional.binary_cross_entropy_with_logits(
        nets[1].logits(x.double()), x.double(), reduction="sum").item()  # fmt: skip
    got = triton_step.Step(FusedDenseEngine(nets[0], "bce", use_native=False))(x).item()
    assert got == pytest.approx(want, rel=1e-6)


def test_a_batch_the_kernels_cannot_read_goes_to_the_pytorch_step(interpreted):
    """The kernels read x as rows of D pixels, unchecked: a batch of another width (or
    device) must get the PyTorch step's error, not a read past its end."""
    engine = FusedDenseEngine(model.build(ModelConfig(), seed=0), "bce", use_native=False)
    engine.gpu_step = step = triton_step.Step(engine)
    for x in (images(32, 100), images(32, 1000)):
        assert not step.accepts(x)
        with pytest.raises(RuntimeError):
            engine.loss_and_grad(x)
    assert not step.failed and step.accepts(images(32, 784))
    assert not step.accepts(images(33, 784))  # its kernels would spill: the PyTorch step


@pytest.mark.parametrize(
    ("engine_args", "config", "reason"),
    [
        (("mse",), ModelConfig(), "BCE with a sigmoid output only"),
        (("bce", torch.bfloat16), ModelConfig(), "float32 weights and products only"),
        (("bce",), ModelConfig(hidden_sizes=(64, 32)), "one hidden layer on each side"),
        (("bce",), ModelConfig(hidden_sizes=(33,)), "at most 32 wide"),
        (("bce",), ModelConfig(latent_size=17), "the code 16"),
        (("bce",), ModelConfig(hidden_activation="tanh"), "linear/relu only"),
    ],
)
def test_nets_the_kernel_does_not_compute_keep_the_pytorch_step(engine_args, config, reason):
    engine = FusedDenseEngine(model.build(config, seed=0), *engine_args, use_native=False)
    assert reason in triton_step.why_not(engine, environ={"DEEPAE_TRITON": "1"})


def test_the_kernels_run_by_default_unless_turned_off_and_never_on_the_cpu(monkeypatch):
    engine = FusedDenseEngine(model.build(ModelConfig(), seed=0), "bce", use_native=False)
    for environ in ({}, {"DEEPAE_TRITON": "1"}):  # on where they apply: faster on an H200
        assert triton_step.why_not(engine, environ) is None
    assert triton_step.why_not(engine, {"DEEPAE_TRITON": "0"}) == "off (DEEPAE_TRITON=0)"
    monkeypatch.setenv("DEEPAE_TRITON", "1")
    assert triton_step.for_engine(engine) is None  # the CPU


def test_a_kernel_that_fails_warns_once_and_the_pytorch_step_goes_on(monkeypatch):
    engine = FusedDenseEngine(model.build(ModelConfig(), seed=0), "bce", use_native=False)
    x = images(32, 784)
    want = engine.loss_and_grad(x).item()
    want_grad = engine.grad.clone()

    class Broken:
        def __getattr__(self, name):
            raise RuntimeError("no GPU here")

    monkeypatch.setattr(triton_step, "kernels", lambda: Broken())
    engine.gpu_step = triton_step.Step(engine)
    engine.grad.zero_()
    with pytest.warns(UserWarning, match="Triton training step failed .*no GPU here"):
        assert engine.loss_and_grad(x).item() == want
    assert torch.equal(engine.grad, want_grad)
    assert engine.loss_and_grad(x).item() == want  # no second warning: pytest would fail


def compile_check(*args: str) -> subprocess.CompletedProcess:
    """scripts/triton_compile.py in a process of its own: kernels compile only outside
    Triton's interpreter, which conftest.py turns on for this one."""
    pytest.importorskip("triton", reason="Triton has wheels for x86-64 Linux only")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = str(ROOT / "scripts" / "triton_compile.py")
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_the_kernels_compile_for_hopper_and_ampere_without_spilling():
    """What the interpreter cannot say: that Triton's compiler and ptxas accept the kernels
    for the GPUs they are for (sm_90: H100, H200; sm_80: A100), that they fit in registers
    (no spills), and in a block's shared memory: for the largest net `why_not` accepts and
    smaller ones (the article's is 784-32-2-32-784), at the largest batch (a smaller one
    pads to the same tiles or smaller)."""
    hidden, latent = f"16,{triton_step.MAX_HIDDEN}", f"2,{triton_step.MAX_LATENT}"
    run = compile_check("--arch", "90,80", "--hidden", hidden, "--latent", latent,
                        "--batch", str(triton_step.MAX_BATCH))  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [line.split(" | ") for line in run.stdout.splitlines() if line.startswith("| sm_")]
    kernels = ["wide_in", "narrow_forward", "wide_out", "narrow_backward", "wide_grad"]
    assert [row[4] for row in rows] == kernels * 8  # 2 architectures x 2 x 2 nets
    assert rows[-1][1] == "784-32-16-32-784"
    chunks = str(-(-784 // triton_step.BLOCK_D))
    for row in rows:
        programs, registers, stores, loads = row[5], int(row[6]), row[7], row[8]
        shared = int(row[9].rstrip(" |"))
        assert programs == ("1" if row[4].startswith("narrow") else chunks), row
        assert 0 < registers <= 255 and stores == loads == "0", row
        assert 0 < shared <= 163 * 1024, row  # sm_80's limit, the lower of the two


def test_the_compile_check_fails_a_kernel_the_interpreter_runs(interpreted, monkeypatch):
    """8 pixels a program: the interpreter computes the right step, but tl.dot needs tiles
    at least 16 deep on a GPU, so the compiled check must fail it."""
    monkeypatch.setattr(triton_step, "BLOCK_D", 8)
    x = images(32, 784)
    want_loss, _ = oracle(model.build(ModelConfig(), seed=0), x)
    step = triton_step.Step(FusedDenseEngine(model.build(ModelConfig(), seed=0), "bce",
                                             use_native=False))  # fmt: skip
    assert step(x).item() == pytest.approx(want_loss, rel=1e-6)
    run = compile_check("--arch", "90", "--block", "8")
    assert run.returncode == 1
    assert "failed to compile" in run.stdout and "K >= 16" in run.stdout


def test_the_compile_check_fails_kernels_that_spill():
    """A batch of 64 at 784-64-2-64-784, beyond what `why_not` accepts: ptxas spills
    registers to the stack (which cuobjdump's LOCAL column does not show), and the check
    must say so."""
    run = compile_check("--arch", "90", "--hidden", "64", "--batch", "64")
    assert run.returncode == 1, run.stdout
    rows = [line.split(" | ") for line in run.stdout.splitlines() if line.startswith("| sm_")]
    assert any(int(row[7]) > 0 and int(row[8]) > 0 for row in rows), run.stdout


def test_the_kernels_train_through_the_static_step(interpreted):
    """The CUDA-graph path (deepae.cuda_graph.StaticStep: the batch gathered at a device
    index, the engine's step, Adam in the same body) with the kernels as the engine's step:
    an epoch's losses and the weights after it are the PyTorch step's, to float32 rounding.
    (Capture itself records these launches on a GPU: scripts/gpu_check.py.)"""
    x = images(160, 784)  # 5 steps of 32
    cfg = TrainConfig(device="cpu", epochs=1)
    reference = Trainer(model.build(ModelConfig(), seed=0), cfg, len(x))
    reference.whole_step = None  # the ordinary path, PyTorch's step
    t = Trainer(model.build(ModelConfig(), seed=0), cfg, len(x))
    t.engine.native, t.engine.gpu_step = None, triton_step.Step(t.engine)
    t.whole_step = cuda_graph.StaticStep(t.engine, t.opt, t.schedule, 32, capture=False)
    _, want = reference.train_epoch(x, 0)
    _, got = t.train_epoch(x, 0)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    assert t.whole_step.index.item() == 5 and not t.engine.gpu_step.failed
    assert list(t.engine.gpu_step.buffers) == [32]  # the kernels ran, at batch 32
    assert (t.engine.flat - reference.engine.flat).abs().max().item() < 1e-6
