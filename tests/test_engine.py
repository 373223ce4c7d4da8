"""The fused engine's hand-written backward pass against autograd (the oracle), in
float64 so any formula error shows far above rounding noise."""

import numpy as np
import pytest
import torch

from deepae.config import ModelConfig
from deepae.engine import FusedDenseEngine, supports
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
    with pytest.raises(ValueError):
        FusedDenseEngine(build(ModelConfig(batch_norm=True)), "bce")
