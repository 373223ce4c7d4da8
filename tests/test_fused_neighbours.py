"""The fused engine's step on a batch of edges (reconstruction of the heads + a loss of
the codes, deepae.engine.FusedDenseEngine.edges_loss_and_grad, what umap2d trains with)
against autograd: in float64, as the oracle; in bfloat16 against autocast; and whole
training runs against the autograd engine's neighbour step."""

import copy

import numpy as np
import pytest
import torch

from deepae import engine as fused
from deepae import neighbours, precision, train
from deepae.config import ModelConfig, TrainConfig
from deepae.model import build
from graph_helpers import ring

UMAPLIKE = ModelConfig(hidden_sizes=(64, 32), latent_activation="linear")
CASES = [
    (UMAPLIKE, "bce"),
    (ModelConfig(hidden_sizes=(16, 8)), "bce"),  # a ReLU latent: its backward sees both terms
    (ModelConfig(output_activation="linear", latent_activation="tanh", latent_size=3), "mse"),
]


def spread(net, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return net


def reference(net, both, heads, loss, code_loss):
    """What deepae.train's autograd neighbour step minimises: the heads' mean loss (in the
    net's dtype) + code_loss of the codes as float32. (loss x B x D, gradients)."""
    z, logits = net.codes_and_logits(both, heads)
    x = both[:heads]
    if loss == "bce":
        value = torch.nn.functional.binary_cross_entropy_with_logits(logits, x)
    else:
        value = torch.nn.functional.mse_loss(logits, x)
    value = value + code_loss(z.float())
    grads = torch.autograd.grad(value, list(net.parameters()))
    return value.item() * x.numel(), grads


@pytest.mark.parametrize(("config", "loss"), CASES)
@pytest.mark.parametrize("heads", [8, 5])
def test_edges_step_equals_autograd_in_float64(config, loss, heads):
    net = spread(build(config, seed=3).double())
    oracle = copy.deepcopy(net)
    umap = neighbours.NeighbourLoss(ring(10), min_dist=0.0, negative_rate=3, seed=0)
    negatives = torch.randint(0, heads, (3 * heads,), generator=torch.Generator().manual_seed(1))

    def code_loss(z):  # what train.Trainer passes: weight x UMAP's loss
        return 10.0 * umap(z[:heads], z[heads:], negatives)

    both = torch.rand(2 * heads, 784, dtype=torch.float64)
    expected_loss, expected = reference(oracle, both, heads, loss, code_loss)
    got = fused.FusedDenseEngine(net, loss).edges_loss_and_grad(both, code_loss)
    # The code loss is float32 on both sides, so the sums agree to its rounding.
    assert got.item() == pytest.approx(expected_loss, rel=1e-7)
    for (name, p), g in zip(net.named_parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-9, atol=1e-12, msg=name)


def test_edges_step_in_bfloat16_computes_what_autocast_computes():
    """As tests/test_precision.py checks the plain step: the fused engine casts by hand
    what autocast casts, so the autograd engine's mixed neighbour step's gradient, within
    one bfloat16 step of the gradient's scale."""
    heads = 24
    net = spread(build(UMAPLIKE, seed=2))
    oracle = copy.deepcopy(net)
    umap = neighbours.NeighbourLoss(ring(10), min_dist=0.0, negative_rate=3, seed=0)
    negatives = torch.randint(0, heads, (3 * heads,), generator=torch.Generator().manual_seed(2))

    def code_loss(z):
        return 10.0 * umap(z[:heads], z[heads:], negatives)

    both = torch.rand(2 * heads, 784)
    engine = fused.FusedDenseEngine(net, "bce", torch.bfloat16)
    loss_sum = engine.edges_loss_and_grad(both, code_loss)
    with precision.autocast("mixed_bfloat16", torch.device("cpu")):
        z, logits = oracle.codes_and_logits(both, heads)
    mean = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), both[:heads])
    mean = mean + code_loss(z.float())
    mean.backward()
    assert loss_sum.item() / (heads * 784) == pytest.approx(mean.item(), rel=1e-4)
    grad = torch.cat([p.grad.reshape(-1) for p in oracle.parameters()])
    ulp = 2.0**-7
    torch.testing.assert_close(engine.grad, grad, rtol=ulp, atol=ulp * grad.abs().max().item())


def trained(x, engine: str, **changes):
    cfg = TrainConfig(engine=engine, neighbour_weight=2.0, neighbours=2, negative_rate=3,
                      batch_size=50, lr=2e-3, device="cpu", **changes)  # fmt: skip
    t = train.Trainer(build(UMAPLIKE, seed=0), cfg, len(x), graph=ring(len(x)))
    losses = [t.train_epoch(x, epoch)[1].sum().item() / x.numel() for epoch in range(3)]
    return t, losses


def test_training_on_edges_follows_the_autograd_engine(mnist_small):
    """A graph loss now trains on the fused engine ('auto' picks it, as for any plain
    stack); three epochs on real digits follow the autograd engine's."""
    from deepae.data import flatten_images

    x = torch.from_numpy(flatten_images(mnist_small.x_train[:400]))
    auto, got = trained(x, "auto")
    assert auto.engine_name == "fused"
    reference_trainer, expected = trained(x, "autograd")
    assert reference_trainer.engine_name == "autograd"
    np.testing.assert_allclose(got, expected, rtol=2e-3)
    assert got[-1] < got[0]
    forced, again = trained(x, "fused")  # 'fused' with a graph loss is no longer refused
    assert forced.engine_name == "fused" and again == got


@pytest.mark.parametrize("engine", ["fused", "autograd"])
def test_the_epoch_loss_of_edges_is_the_mean_of_its_steps(engine):
    # 2 steps of 8 edge heads for 10 images: the epoch's sum covers 16 heads' pixels, not
    # 10 images'. The oracle: the mean of the steps' own means (each step's sum over its
    # 8 x 35 values), the same steps again at a rate too small to move the weights.
    x = torch.rand(10, 35, generator=torch.Generator().manual_seed(0))
    model = ModelConfig(input_size=35, image_shape=(5, 7), hidden_sizes=(9,),
                        latent_activation="linear")  # fmt: skip
    cfg = TrainConfig(engine=engine, neighbour_weight=1.0, neighbours=2, negative_rate=2,
                      batch_size=8, lr=1e-30, epochs=1)  # fmt: skip
    trainer = train.Trainer(build(model, 0), cfg, len(x), graph=ring(len(x)))
    state = train.fit(trainer, x)
    _, sums = trainer.train_epoch(x, 0)  # epoch 0's edges again, on the same weights
    assert trainer.steps_per_epoch == 2
    assert state.history[0].loss == pytest.approx((sums / (8 * 35)).mean().item(), rel=1e-6)
