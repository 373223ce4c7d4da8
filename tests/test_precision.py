"""deepae.precision: Keras' mixed_bfloat16 policy. The autograd engine's mixed step gives
the loss and gradients of an explicitly bfloat16 copy of the net (the oracle: the same
products, written out by hand), and the fused engine's gives the autograd engine's bits;
'auto' follows the hardware."""

import copy

import pytest
import torch

from deepae import engine as fused
from deepae import precision, train
from deepae.cli import main
from deepae.config import ModelConfig, TrainConfig
from deepae.errors import ConfigError
from deepae.model import build

MODEL = ModelConfig(hidden_sizes=(64, 16), latent_activation="linear")


def test_auto_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    assert precision.resolve("float32", cpu) == "float32"
    assert precision.resolve("mixed_bfloat16", cpu) == "mixed_bfloat16"
    for native, expected in ((True, "mixed_bfloat16"), (False, "float32")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda n=native: n)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert precision.resolve("auto", cpu) == expected
    assert precision.resolve("auto", torch.device("meta")) == "float32"
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")  # a torch without the checks
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert precision.resolve("auto", cpu) == "float32"


def test_a_mixed_step_computes_what_a_bfloat16_net_computes():
    torch.manual_seed(0)
    net = build(MODEL, seed=1)
    x = torch.rand(48, 784)
    cfg = TrainConfig(precision="mixed_bfloat16", engine="autograd", device="cpu")
    trainer = train.Trainer(net, cfg, n_train=48)
    assert trainer.engine_name == "autograd" and trainer.precision == "mixed_bfloat16"
    with precision.autocast(trainer.precision, trainer.device):
        z, logits = trainer._forward(x, 48)
    loss = trainer.loss_fn(logits.float(), x)
    loss.backward()

    oracle = copy.deepcopy(net).to(torch.bfloat16)  # every layer in bfloat16, by hand
    for p in oracle.parameters():
        p.grad = None
    z_o = oracle.encoder(x.to(torch.bfloat16))
    logits_o = oracle.decoder.logits(z_o)
    loss_o = trainer.loss_fn(logits_o.float(), x)
    loss_o.backward()

    assert torch.equal(z, z_o) and torch.equal(logits, logits_o)
    assert loss.item() == loss_o.item()
    for (name, p), p_o in zip(net.named_parameters(), oracle.parameters(), strict=True):
        assert p.dtype == torch.float32 and p.grad.dtype == torch.float32, name
        assert torch.equal(p.grad, p_o.grad.float()), name
    # and it is bfloat16, not float32 by another name: the float32 loss differs a little
    with torch.no_grad():
        exact = trainer.loss_fn(net.logits(x), x).item()
    assert exact != loss.item() and abs(exact - loss.item()) < 1e-2 * exact


def test_mixed_training_learns_like_float32(mnist_small):
    x = torch.tensor(mnist_small.x_train[:512].reshape(512, -1) / 255.0, dtype=torch.float32)
    losses = {}
    for policy in ("float32", "mixed_bfloat16"):
        cfg = TrainConfig(precision=policy, engine="autograd", batch_size=64, epochs=3)
        trainer = train.Trainer(build(MODEL, seed=0), cfg, n_train=len(x))
        state = train.fit(trainer, x, x, progress=False)
        losses[policy] = [r.val_loss for r in state.history]
    assert losses["mixed_bfloat16"][-1] < losses["mixed_bfloat16"][0]
    assert abs(losses["mixed_bfloat16"][-1] - losses["float32"][-1]) < 0.02 * losses["float32"][-1]


@pytest.mark.parametrize(("model", "loss"), [
    (MODEL, "bce"),
    (ModelConfig(hidden_sizes=(32,), hidden_activation="tanh", output_activation="linear"), "mse"),
])  # fmt: skip
@pytest.mark.parametrize("use_native", [False, True])  # the Python step and the compiled one
def test_the_fused_mixed_step_gives_autocasts_bits(model, loss, use_native):
    """The fused engine casts by hand what autocast casts: the same ops on the same bf16
    tensors, so the autograd engine's mixed step's loss and gradient (bit for bit at batch
    48; at 40 oneDNN rounds a few sums differently: within one bfloat16 step of the
    gradient's scale)."""
    x = torch.rand(40, 784)
    net = build(model, seed=2)
    oracle = copy.deepcopy(net)
    engine = fused.FusedDenseEngine(net, loss, torch.bfloat16, use_native=use_native)
    if use_native and engine.native is None:
        pytest.skip("no compiled step on this machine (deepae.native); the Python step is used")
    loss_sum = engine.loss_and_grad(x)
    cfg = TrainConfig(loss=loss, precision="mixed_bfloat16", engine="autograd", device="cpu")
    trainer = train.Trainer(oracle, cfg, n_train=40)
    with precision.autocast(trainer.precision, trainer.device):
        logits = trainer._forward(x, 40)[1]
    mean = trainer.loss_fn(logits.float(), x)
    mean.backward()
    assert loss_sum.item() / x.numel() == pytest.approx(mean.item(), rel=1e-6)
    grad = torch.cat([p.grad.reshape(-1) for p in oracle.parameters()])
    assert engine.grad.dtype == torch.float32
    ulp = 2.0**-7  # bfloat16's relative spacing (8 significant bits)
    torch.testing.assert_close(engine.grad, grad, rtol=ulp, atol=ulp * grad.abs().max().item())
    float32 = fused.FusedDenseEngine(build(model, seed=2), loss)  # and bf16 is not float32:
    # the float32 gradient is further from autocast's
    float32.loss_and_grad(x)
    assert (engine.grad - grad).norm() < 0.5 * (float32.grad - grad).norm()


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_the_fused_derivatives_give_autograds_bits(name, dtype):
    """Each activation's backward, from its output, against autograd's own backward of
    the activation in the same dtype. In bfloat16 a slope computed by hand (1 - y*y,
    then times g) rounds three times where autograd rounds once: a third of the values
    came out one bfloat16 step off, more than the float32 gradient's own distance."""
    gen = torch.Generator().manual_seed(4)
    x = (3 * torch.randn(50_000, generator=gen)).to(dtype).requires_grad_()
    g = torch.randn(50_000, generator=gen).to(dtype)
    out = getattr(torch, name)(x)
    out.backward(g)
    got = fused._BACKWARD[name](g.clone(), out.detach())
    assert torch.equal(got, x.grad)


def test_the_engines_and_auto():
    net = build(MODEL)
    auto = train.Trainer(net, TrainConfig(precision="auto", device="cpu"), n_train=64)
    expected = "mixed_bfloat16" if precision.native_bfloat16(torch.device("cpu")) else "float32"
    assert (auto.engine_name, auto.precision) == ("fused", expected)
    assert auto.engine.mixed == (expected == "mixed_bfloat16")
    plain = train.Trainer(net, TrainConfig(device="cpu"), n_train=64)  # the default: float32
    assert (plain.precision, plain.engine.mixed) == ("float32", False)


def test_an_unknown_policy_is_one_line(capsys):
    with pytest.raises(ConfigError, match="precision must be one of float32, mixed_bfloat16"):
        TrainConfig(precision="float16")
    code = main(["train", "--precision", "half", "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "(--precision)" in err[0], err
