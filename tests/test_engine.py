"""The fused engine's hand-written backward pass against autograd (the oracle), in
float64 so any formula error shows far above rounding noise."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from deepae.config import ModelConfig
from deepae.engine import (
    FusedDenseEngine,
    adam_pieces,
    flatten_parameters,
    fused_adam_step,
    relu_backward,
    supports,
)
from deepae.errors import ConfigError
from deepae.model import build

CASES = [
    (ModelConfig(), "bce"),
    (ModelConfig(latent_activation="linear", hidden_sizes=(16, 8)), "bce"),
    (ModelConfig(hidden_activation="tanh", latent_activation="sigmoid"), "bce"),
    (ModelConfig(hidden_activation="sigmoid"), "mse"),
    (ModelConfig(output_activation="linear", latent_size=3), "mse"),
]


def autograd_reference(net, x, loss):
    logits = net.logits(x)
    if loss == "bce":
        value = torch.nn.functional.binary_cross_entropy_with_logits(logits, x)
    else:
        out = torch.sigmoid(logits) if net.config.output_activation == "sigmoid" else logits
        value = torch.nn.functional.mse_loss(out, x)
    grads = torch.autograd.grad(value, list(net.parameters()))
    return value.item() * x.numel(), grads


@pytest.mark.parametrize(("config", "loss"), CASES)
@pytest.mark.parametrize("batch", [32, 7])
def test_fused_gradients_equal_autograd(config, loss, batch):
    torch.manual_seed(0)
    reference = build(config, seed=3).double()
    fused = build(config, seed=3).double()
    # Spread the biases so ReLUs are neither all on nor all off.
    with torch.no_grad():
        for a, b in zip(reference.parameters(), fused.parameters(), strict=True):
            a.add_(0.05 * torch.randn_like(a))
            b.copy_(a)
    x = torch.rand(batch, 784, dtype=torch.float64)
    expected_loss, expected = autograd_reference(reference, x, loss)
    engine = FusedDenseEngine(fused, loss)
    got_loss = engine.loss_and_grad(x).item()
    assert got_loss == pytest.approx(expected_loss, rel=1e-12)
    for (name, p), g in zip(fused.named_parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-9, atol=1e-12, msg=name)


def test_bce_loss_equals_a_hand_computation():
    net = build(ModelConfig(), seed=0).double()
    x = torch.rand(4, 784, dtype=torch.float64)
    with torch.no_grad():
        p = torch.sigmoid(net.logits(x)).numpy()
    xn = x.numpy()
    hand = -(xn * np.log(p) + (1 - xn) * np.log(1 - p)).sum()  # Keras' formula, summed
    assert FusedDenseEngine(net, "bce").loss_and_grad(x).item() == pytest.approx(hand, rel=1e-10)


def test_parameters_become_views_of_one_flat_tensor():
    net = build(ModelConfig())
    engine = FusedDenseEngine(net, "bce")
    assert engine.flat.numel() == 51_154
    with torch.no_grad():
        engine.flat.zero_()
    assert all(torch.count_nonzero(p) == 0 for p in net.parameters())


def test_unsupported_models_are_left_to_autograd():
    assert supports(build(ModelConfig()), "bce")
    assert not supports(build(ModelConfig(batch_norm=True)), "bce")
    assert not supports(build(ModelConfig(hidden_activation="gelu")), "bce")
    assert not supports(build(ModelConfig(output_activation="linear")), "bce")
    with pytest.raises(ConfigError, match="engine=.autograd."):
        FusedDenseEngine(build(ModelConfig(batch_norm=True)), "bce")


@pytest.mark.parametrize("changes", [{"hidden_activation": "gelu"}, {"batch_norm": True}])
def test_a_net_without_hidden_layers_is_fused_whatever_its_hidden_settings(changes):
    """784 -> 2 -> 784 has no hidden layer, so neither a hidden activation nor batch norm
    (the net holds no GELU and no BatchNorm): the fused engine trains it, with autograd's
    gradients, where it was refused."""
    config = ModelConfig(hidden_sizes=(), latent_activation="tanh", **changes)
    net = build(config, seed=1).double()
    assert not any(isinstance(m, nn.GELU | nn.BatchNorm1d) for m in net.modules())
    assert supports(net, "bce")
    x = torch.rand(6, 784, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    expected_sum, expected = autograd_reference(net, x, "bce")
    engine = FusedDenseEngine(net, "bce")
    assert engine.loss_and_grad(x).item() == pytest.approx(expected_sum, rel=1e-12)
    torch.testing.assert_close(engine.grad, torch.cat([g.reshape(-1) for g in expected]),
                               rtol=1e-10, atol=1e-14)  # fmt: skip
    hidden = ModelConfig(hidden_sizes=(), decoder_hidden_sizes=(8,), **changes)
    assert not supports(build(hidden), "bce")  # the decoder's hidden layer has them


# -- private PyTorch calls against their public fallbacks: the same bits ----------------


def float_bits(t: torch.Tensor) -> torch.Tensor:
    """The raw IEEE bits of a float32 tensor, so +0.0 and -0.0 differ."""
    return t.contiguous().view(torch.int32)


def test_relu_backwardprivate_and_public_give_the_same_bits():
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(64, 33, generator=gen)
    g[0, :8] = -0.0  # signed zeros in the incoming gradient, some where out > 0
    out = torch.relu(torch.randn(64, 33, generator=gen))  # exact zeros where x <= 0
    out[1, :8] = -0.0
    assert (out == 0).sum() > 500 and (out > 0).sum() > 500
    # Oracle: g where out > 0, else +0.0 (numpy, independent of both torch paths).
    expected = torch.from_numpy(np.where(out.numpy() > 0, g.numpy(), np.float32(0.0)))
    assert (g[0, :8][out[0, :8] > 0] == 0).any()  # a -0.0 that must pass through
    private = relu_backward(g.clone(), out, private=True)
    public = relu_backward(g.clone(), out, private=False)
    for got in (private, public):
        assert torch.equal(got, expected)
        assert torch.equal(float_bits(got), float_bits(expected))
    assert torch.equal(float_bits(private), float_bits(public))
    assert (float_bits(private)[out <= 0] == 0).all()  # +0.0, never -0.0


def two_identical_optimizers(cls, weight_decay):
    gen = torch.Generator().manual_seed(1)
    start = torch.randn(1000, generator=gen)
    params = [nn.Parameter(start.clone()) for _ in range(2)]
    opts = [
        cls([p], lr=1e-3, betas=(0.9, 0.99), eps=1e-7, weight_decay=weight_decay, fused=True)
        for p in params
    ]
    return params, opts, gen


def set_same_grad(params, gen):
    g = torch.randn(params[0].shape, generator=gen)
    for p in params:
        p.grad = g.clone()


def assert_same_bits(a: torch.Tensor, b: torch.Tensor, what: str):
    assert a.dtype == b.dtype, what
    assert torch.equal(float_bits(a), float_bits(b)), what


def assert_same_state(params, opts):
    (pa, pb), (oa, ob) = params, opts
    assert_same_bits(pa.detach(), pb.detach(), "parameter")
    sa, sb = oa.state[pa], ob.state[pb]
    assert set(sa) == set(sb) == {"step", "exp_avg", "exp_avg_sq"}
    for key in ("step", "exp_avg", "exp_avg_sq"):
        assert_same_bits(sa[key], sb[key], key)


OPTIMIZERS = [
    (torch.optim.Adam, 0.0),
    (torch.optim.Adam, 0.01),  # L2 in the gradient
    (torch.optim.AdamW, 0.01),  # decoupled decay
]


@pytest.mark.parametrize(("cls", "weight_decay"), OPTIMIZERS)
def test_fused_adam_step_private_and_public_give_the_same_bits(cls, weight_decay, monkeypatch):
    params, opts, gen = two_identical_optimizers(cls, weight_decay)
    start = params[0].detach().clone()
    # The private path must not fall back to step(): make that fail loudly.
    monkeypatch.setattr(opts[0], "step", lambda *a, **k: pytest.fail("fell back to step()"))
    for _ in range(5):
        set_same_grad(params, gen)
        fused_adam_step(opts[0], private=True)
        fused_adam_step(opts[1], private=False)
        assert_same_state(params, opts)
    assert opts[0].state[params[0]]["step"].item() == 5
    assert not torch.equal(params[0].detach(), start)  # the steps did move the parameter


@pytest.mark.parametrize(("cls", "weight_decay"), OPTIMIZERS)
def test_fused_adam_step_drives_a_one_cycle_schedule_like_step(cls, weight_decay):
    params, opts, gen = two_identical_optimizers(cls, weight_decay)
    schedules = [
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=10) for opt in opts
    ]
    lrs = []
    with warnings.catch_warnings():
        # A scheduler stepped without a recorded optimizer step warns (and skips a value).
        warnings.simplefilter("error")
        for _ in range(5):
            set_same_grad(params, gen)
            fused_adam_step(opts[0], private=True)
            fused_adam_step(opts[1], private=False)
            for s in schedules:
                s.step()
            assert schedules[0].get_last_lr() == schedules[1].get_last_lr()
            assert opts[0].param_groups[0]["betas"] == opts[1].param_groups[0]["betas"]
            assert_same_state(params, opts)
            lrs.append(schedules[0].get_last_lr()[0])
    assert len(set(lrs)) == 5  # the rate did change each step, so the schedule ran


def test_flatten_parameters_makes_every_parameter_a_view_of_one_tensor():
    net = build(ModelConfig(input_size=12, image_shape=(3, 4), hidden_sizes=(5, 4)), seed=0)
    before = [p.detach().clone() for p in net.parameters()]
    flat, grad = flatten_parameters(net)
    params = list(net.parameters())
    assert flat.numel() == grad.numel() == sum(p.numel() for p in params)
    assert flat.grad is grad
    offset = 0
    for p, old in zip(params, before, strict=True):
        n = p.numel()
        assert torch.equal(p.detach(), old)  # values kept
        assert p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
        assert p.grad.untyped_storage().data_ptr() == grad.untyped_storage().data_ptr()
        assert torch.equal(p.detach().reshape(-1), flat.detach()[offset : offset + n])
        offset += n
    with torch.no_grad():
        flat.copy_(torch.arange(flat.numel(), dtype=flat.dtype))
        grad.copy_(-torch.arange(flat.numel(), dtype=grad.dtype))
    offset = 0
    for p in params:
        n = p.numel()
        expected = torch.arange(offset, offset + n, dtype=flat.dtype).view(p.shape)
        assert torch.equal(p.detach(), expected)  # writing flat wrote the module's weight
        assert torch.equal(p.grad, -expected)
        offset += n
    w = net.encoder[0].weight
    with torch.no_grad():
        w[0, 0] = 123.0
    assert flat[0].item() == 123.0  # and the other way round


@pytest.mark.parametrize("private", [True, False])
def test_relu_backward_writes_into_the_incoming_gradient(private):
    gen = torch.Generator().manual_seed(2)
    g, out = torch.randn(16, 9, generator=gen), torch.relu(torch.randn(16, 9, generator=gen))
    expected = torch.where(out > 0, g, torch.zeros(()))
    got = relu_backward(g, out, private=private)
    assert got.data_ptr() == g.data_ptr()  # no tensor allocated per layer and step
    assert torch.equal(float_bits(g), float_bits(expected))


@pytest.mark.parametrize(("cls", "weight_decay"), OPTIMIZERS)
def test_fused_adam_step_reads_a_tensor_rate_with_the_same_bits(cls, weight_decay):
    # deepae.cuda_graph's step reads the rate from a tensor; on the CPU a float64 one gives
    # exactly the param group's number, so a schedule's rates are followed bit for bit.
    params, opts, gen = two_identical_optimizers(cls, weight_decay)
    rate = torch.zeros((), dtype=torch.float64)
    for lr in (1e-3, 3e-3, 7e-4):
        opts[1].param_groups[0]["lr"] = lr
        rate.fill_(lr)
        set_same_grad(params, gen)
        fused_adam_step(opts[0], lr=rate)
        fused_adam_step(opts[1])
        assert_same_state(params, opts)


# (pieces asked for, pieces of 1000 elements made): 2 of 512 or less; 7 of 144 (143
# rounded up to 16s) or less; 36 asks for 28, rounded up to 32: 32 pieces.
@pytest.mark.parametrize(("pieces", "made"), [(2, 2), (7, 7), (36, 32)])
@pytest.mark.parametrize(("cls", "weight_decay"), OPTIMIZERS)
def test_fused_adam_step_in_pieces_gives_the_same_bits(cls, weight_decay, pieces, made):
    # On CUDA the kernel gets the flat parameter in pieces (one thread block per piece);
    # each element's update is the same, so the bits are, here on the CPU's kernel (whose
    # vectors of 16 floats split the pieces as the whole: pieces are multiples of 16). Each
    # step brings a new gradient tensor, so the kept pieces must follow it.
    params, opts, gen = two_identical_optimizers(cls, weight_decay)
    rate = torch.tensor(2e-3, dtype=torch.float64)
    for _ in range(4):
        set_same_grad(params, gen)
        fused_adam_step(opts[0], lr=rate, pieces=pieces)
        fused_adam_step(opts[1], lr=rate, pieces=1)
        assert_same_state(params, opts)
    views = opts[0]._deepae_pieces[1][0]  # the parameter's pieces: what the kernel got
    assert len(views) == made
    starts = [v.data_ptr() - params[0].data_ptr() for v in views]
    assert all(start % 64 == 0 for start in starts)  # 16 floats
    assert torch.equal(torch.cat(views), params[0].detach())  # all of it, once, in order


def test_adam_pieces_are_one_per_1024_elements_on_cuda_only():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert adam_pieces(51154, cpu) == 1  # the article's weights, on the CPU: whole
    assert adam_pieces(51154, cuda) == 36  # ceil(51154 / 1024) = 50, capped at one launch's
    assert [adam_pieces(n, cuda) for n in (1, 1024, 1025, 3000)] == [1, 1, 2, 3]


def test_a_tensor_rate_needs_the_fused_kernel():
    sgd = torch.optim.SGD([nn.Parameter(torch.zeros(3))], lr=0.1)
    with pytest.raises(ValueError, match="fused kernel"):
        fused_adam_step(sgd, lr=torch.tensor(0.1))
