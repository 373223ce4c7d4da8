"""The compiled whole training step (deepae.native_train: gather, loss and gradient, Adam in
one call) against the ordinary fused path, a PyTorch call at a time: the same bits."""

import dataclasses

import pytest
import torch

from deepae import native, native_train
from deepae.config import ModelConfig, TrainConfig, resolve
from deepae.data import flatten_images
from deepae.model import build
from deepae.train import Trainer


@pytest.fixture(scope="module")
def images(mnist_small):
    if (why := native.unsupported()) is not None:
        pytest.skip(f"no native step on this machine: {why}")
    assert native.load() is not None, "the native step did not build on a machine that supports it"
    return torch.from_numpy(flatten_images(mnist_small.x_train[:1000]))  # 1000 = 31 * 32 + 8


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(torch.int32)


def trainer(train_config: TrainConfig, n: int, model_config=None, *, whole: bool):
    t = Trainer(build(model_config or ModelConfig(), seed=0), train_config, n)
    assert isinstance(t.whole_step, native_train.NativeTrainStep)
    if not whole:
        t.whole_step = None  # the ordinary path: index_select, the step, fused_adam_step
    return t


RECIPES = [
    {},  # the article's: Adam at a constant rate
    {"schedule": "onecycle", "lr": 4e-3, "adam_betas": (0.9, 0.99)},  # lr and beta1 move
    {"schedule": "cosine", "optimizer": "adamw", "weight_decay": 0.01},
    {"weight_decay": 0.01, "shuffle": False, "batch_size": 64},  # Adam's L2; a tail of 40
]


@pytest.mark.parametrize("recipe", RECIPES)
def test_the_whole_step_trains_as_the_ordinary_path_bit_for_bit(images, recipe):
    cfg = dataclasses.replace(TrainConfig(), epochs=2, **recipe)
    a, b = (trainer(cfg, len(images), whole=w) for w in (True, False))
    for epoch in range(2):
        (steps_a, losses_a), (steps_b, losses_b) = (t.train_epoch(images, epoch) for t in (a, b))
        assert steps_a == steps_b == a.steps_per_epoch
        assert torch.equal(bits(losses_a), bits(losses_b))
    assert torch.equal(bits(a.engine.flat), bits(b.engine.flat))
    sa, sb = a.opt.state[a.engine.flat], b.opt.state[b.engine.flat]
    for key in ("step", "exp_avg", "exp_avg_sq"):
        assert torch.equal(bits(sa[key]), bits(sb[key])), key
    assert sa["step"].item() == 2 * a.steps_per_epoch
    if a.schedule is not None:
        assert a.opt.param_groups[0]["lr"] == b.opt.param_groups[0]["lr"]


def test_a_resumed_epoch_picks_up_at_its_next_batch(images):
    """Stopped after 10 steps and resumed from step 10 (as a checkpoint resumes), the
    whole step ends where the ordinary path does without a stop."""
    cfg = TrainConfig(epochs=1)
    a, b = trainer(cfg, len(images), whole=True), trainer(cfg, len(images), whole=False)
    calls = iter(range(100))
    steps, losses = a.train_epoch(images, 0, stop=lambda: next(calls) >= 10)
    assert steps == 10
    a.train_epoch(images, 0, start_step=10, losses=losses)
    b.train_epoch(images, 0)
    assert torch.equal(bits(a.engine.flat), bits(b.engine.flat))


def test_a_bigger_network_mixed_precision_and_a_linear_output(images):
    """Other stacks, precisions and losses through the same call: best2d's shape in
    float32 and in mixed bfloat16 (its preset's on CPUs with bfloat16), and MSE with a
    linear output (the compiled loss's other branches)."""
    model_config, _ = resolve("best2d")
    for mc, loss, precision in (
        (model_config, "bce", "float32"),
        (model_config, "bce", "mixed_bfloat16"),
        (ModelConfig(output_activation="linear", latent_activation="linear"), "mse", "float32"),
    ):
        cfg = TrainConfig(batch_size=100, loss=loss, precision=precision)
        a, b = (trainer(cfg, 300, mc, whole=w) for w in (True, False))
        for t in (a, b):
            t.train_epoch(images[:300].contiguous(), 0)
        assert torch.equal(bits(a.engine.flat), bits(b.engine.flat))


def test_where_the_whole_step_is_not_used(images, monkeypatch):
    x = images[:64].contiguous()
    t = trainer(TrainConfig(), len(x), whole=True)
    step = t.whole_step
    assert step.accepts(x)
    assert not step.accepts(x.double())
    assert not step.accepts(images[:64, ::2])  # not contiguous
    assert not step.accepts(object())  # e.g. deepae.batches.MappedImages
    t.engine.native = None  # the compiled step switched off after the trainer was made
    assert not step.accepts(x)
    # SGD, the autograd engine, DEEPAE_NATIVE=0: no whole step.
    for cfg in (
        TrainConfig(optimizer="sgd"),
        TrainConfig(engine="autograd"),
    ):
        assert Trainer(build(ModelConfig(), seed=0), cfg, 64).whole_step is None, cfg
    monkeypatch.setattr(native, "load", lambda: None)
    assert Trainer(build(ModelConfig(), seed=0), TrainConfig(), 64).whole_step is None


def test_the_compiled_call_checks_what_it_reads(images):
    """Positions outside the images are refused before any row is copied, and a step
    outside the epoch's order is refused."""
    t = trainer(TrainConfig(), 64, whole=True)
    step = t.engine.native_step(32, images[:32])
    with pytest.raises(RuntimeError, match="before set_data|set_data and set_adam first"):
        step.train(0, 1e-3, 0.9, 0.999, 0.0, 1e-7)
    with pytest.raises(RuntimeError, match="order holds a position outside images"):
        step.set_data(images[:64].contiguous(), torch.tensor([0, 64]))
    with pytest.raises(RuntimeError, match="order holds a position outside images"):
        step.set_data(images[:64].contiguous(), torch.tensor([-1, 3]))
    with pytest.raises(RuntimeError, match="contiguous float32"):
        step.set_data(images[:64].double(), torch.arange(64))
    plan = t.whole_step.plan(images[:64].contiguous(), torch.arange(64))
    plan(1)  # rows 32..63
    with pytest.raises(RuntimeError, match="outside the order"):
        step.train(40, 1e-3, 0.9, 0.999, 0.0, 1e-7)
