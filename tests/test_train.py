"""Training: the optimizer step against torch.optim, learning on real MNIST,
reproducibility, both engines agreeing, divergence detection, the dead-latent check."""

import math

import numpy as np
import pytest
import torch

from deepae import optim, train
from deepae.config import ModelConfig, TrainConfig
from deepae.data import flatten_images
from deepae.engine import fused_adam_step
from deepae.errors import ConfigError
from deepae.evaluate import zero_fractions
from deepae.model import build


@pytest.fixture(scope="module")
def subset(mnist_small):
    """2,000 real training images and 500 test images, float (N, 784)."""
    x = torch.from_numpy(flatten_images(mnist_small.x_train[:2000]))
    v = torch.from_numpy(flatten_images(mnist_small.x_test[:500]))
    return x, v


def trained(x, v, *, model=None, **train_options):
    net = build(model or ModelConfig(), seed=train_options.get("seed", 0))
    cfg = TrainConfig(device="cpu", **train_options)
    trainer = train.Trainer(net, cfg, len(x))
    state = train.fit(trainer, x, v)
    return net, trainer, state


def test_direct_adam_step_equals_torch_optim_bit_for_bit():
    torch.manual_seed(0)
    p_ref = torch.nn.Parameter(torch.randn(1000))
    p_ours = torch.nn.Parameter(p_ref.detach().clone())
    kwargs = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-7, "fused": True}
    ref = torch.optim.Adam([p_ref], **kwargs)
    ours = torch.optim.Adam([p_ours], **kwargs)
    for _ in range(5):
        g = torch.randn(1000)
        p_ref.grad, p_ours.grad = g.clone(), g.clone()
        ref.step()
        fused_adam_step(ours)
        assert torch.equal(p_ref, p_ours)
    # and the state is torch's own, so a checkpoint of either is interchangeable
    assert torch.equal(ref.state[p_ref]["exp_avg_sq"], ours.state[p_ours]["exp_avg_sq"])
    assert ref.state[p_ref]["step"].item() == ours.state[p_ours]["step"].item() == 5


def test_training_lowers_the_loss_on_real_digits(subset):
    x, v = subset
    net = build(ModelConfig(latent_activation="linear"), seed=0)
    trainer = train.Trainer(net, TrainConfig(device="cpu", epochs=3), len(x))
    before = trainer.evaluate(v)
    state = train.fit(trainer, x, v)
    losses = [r.loss for r in state.history]
    assert before == pytest.approx(0.693, abs=0.02)  # sigmoid(~0) against pixels
    assert losses[0] > losses[1] > losses[2]
    assert state.history[-1].val_loss < before - 0.2


def test_same_seed_gives_bit_identical_weights_and_history(subset):
    x, v = subset
    a, _, sa = trained(x, v, epochs=2, seed=5)
    b, _, sb = trained(x, v, epochs=2, seed=5)
    c, _, _ = trained(x, v, epochs=2, seed=6)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)
    assert [(r.loss, r.val_loss) for r in sa.history] == [(r.loss, r.val_loss) for r in sb.history]
    assert not torch.equal(a.encoder[0].weight, c.encoder[0].weight)


@pytest.mark.parametrize("options", [{}, {"schedule": "onecycle"}, {"optimizer": "sgd"}])
def test_fused_and_autograd_engines_follow_the_same_path(subset, options):
    x, v = subset
    fused, tf, sf = trained(x[:640], v, epochs=1, engine="fused", **options)
    plain, ta, sa = trained(x[:640], v, epochs=1, engine="autograd", **options)
    assert (tf.engine_name, ta.engine_name) == ("fused", "autograd")
    assert sf.history[0].loss == pytest.approx(sa.history[0].loss, rel=1e-5)
    for pf, pa in zip(fused.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(pf, pa, rtol=1e-4, atol=1e-5)


def test_batch_norm_models_train_on_autograd(subset):
    x, v = subset
    model = ModelConfig(hidden_sizes=(64,), batch_norm=True, latent_activation="linear")
    _, trainer, state = trained(x, v, model=model, epochs=2, batch_size=64)
    assert trainer.engine_name == "autograd"
    assert state.history[1].val_loss < state.history[0].val_loss


@pytest.mark.parametrize("engine", ["fused", "autograd"])
def test_divergence_names_the_epoch_and_step(subset, engine):
    x, v = subset
    x = x.clone()
    x[100, 5] = float("nan")  # without shuffling, sample 100 is in step 4 (96-127)
    with pytest.raises(train.TrainingDiverged, match=r"nan at epoch 1, step 4;"):
        trained(x, v, epochs=1, shuffle=False, engine=engine)


def test_fused_engine_refuses_what_it_cannot_train(subset):
    x, v = subset
    with pytest.raises(ConfigError, match="engine='autograd'"):
        trained(x, v, model=ModelConfig(batch_norm=True), engine="fused")
    with pytest.raises(ConfigError, match="'bce' needs"):
        trained(x, v, model=ModelConfig(output_activation="linear"))


def test_zero_fractions_by_hand():
    codes = np.array([[0.0, 1.0], [0.0, 0.0], [0.0, 2.0], [3.0, 0.0]], np.float32)
    assert zero_fractions(codes) == [0.75, 0.5]


def test_epoch_order_is_a_seeded_permutation():
    cfg = TrainConfig(seed=1)
    a, b = train._epoch_order(100, cfg, 0), train._epoch_order(100, cfg, 0)
    assert torch.equal(a, b)
    assert torch.equal(a.sort().values, torch.arange(100))
    assert not torch.equal(a, train._epoch_order(100, cfg, 1))  # reshuffled every epoch
    assert torch.equal(train._epoch_order(5, TrainConfig(shuffle=False), 3), torch.arange(5))


def test_epoch_line_reads_like_keras():
    record = train.EpochRecord(3, 0.21334, 0.20981, 0.62, 0.5)
    assert train.format_epoch(record, 10) == "Epoch 3/10 - 0.6s - loss: 0.2133 - val_loss: 0.2098"


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert train.resolve_device("auto").type == "cpu"
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        train.resolve_device("cuda")


# Keras' defaults (keras.optimizers, Keras 3): epsilon 1e-7 everywhere; learning rate
# 0.001, SGD's 0.01; Adagrad's accumulator starts at 0.1; RMSprop's rho 0.9; Adadelta's
# rho 0.95. Typed here from Keras' documentation, not read from deepae.
KERAS = {
    "adam": (torch.optim.Adam, {"lr": 1e-3, "eps": 1e-7, "betas": (0.9, 0.999)}),
    "adagrad": (torch.optim.Adagrad, {"lr": 1e-3, "eps": 1e-7, "initial_accumulator_value": 0.1}),
    "rmsprop": (torch.optim.RMSprop, {"lr": 1e-3, "eps": 1e-7, "alpha": 0.9, "momentum": 0}),
    "adadelta": (torch.optim.Adadelta, {"lr": 1e-3, "eps": 1e-7, "rho": 0.95}),
    "sgd": (torch.optim.SGD, {"lr": 1e-2, "momentum": 0, "nesterov": False}),
}


@pytest.mark.parametrize("name", list(KERAS))
def test_optimizers_have_kerass_defaults(name):
    kind, defaults = KERAS[name]
    opt = optim.make_optimizer([torch.zeros(3, requires_grad=True)], TrainConfig(optimizer=name))
    assert type(opt) is kind
    group = opt.param_groups[0]
    assert {key: group[key] for key in defaults} == defaults


@pytest.mark.parametrize(
    ("schedule", "optimizer"),
    [("onecycle", "adam"), ("cosine", "adam"), ("onecycle", "adagrad"), ("onecycle", "adadelta")],
)
def test_schedules_span_the_whole_run(schedule, optimizer):
    """The rate ends where the schedule ends after exactly epochs x steps_per_epoch steps:
    one-cycle at max_lr / (25 * 1e4) (PyTorch's div_factor and final_div_factor), cosine at
    0, having peaked at lr (one-cycle, 30% of the way) or started there (cosine). Adagrad
    and Adadelta have no momentum for one-cycle to cycle: their rate alone follows it."""
    cfg = TrainConfig(schedule=schedule, lr=4e-3, epochs=3, optimizer=optimizer)
    p = torch.zeros(3, requires_grad=True)
    opt = optim.make_optimizer([p], cfg)
    total = cfg.epochs * 20  # 20 steps an epoch
    sched = optim.make_schedule(opt, cfg, total)
    rates = [opt.param_groups[0]["lr"]]
    for _ in range(total - 1):
        opt.step()
        sched.step()
        rates.append(opt.param_groups[0]["lr"])
    if schedule == "onecycle":
        assert rates[0] == pytest.approx(4e-3 / 25)
        assert (
            max(rates) == pytest.approx(4e-3) and rates.index(max(rates)) == round(0.3 * total) - 1
        )
        assert rates[-1] == pytest.approx(4e-3 / 25 / 1e4)
    else:
        assert rates[0] == 4e-3 and rates[-1] == pytest.approx(
            4e-3 * (1 + math.cos(math.pi * (total - 1) / total)) / 2
        )


@pytest.mark.parametrize(
    ("optimizer", "momentum", "cycled"),
    [("sgd", 0.0, False), ("rmsprop", 0.0, False), ("sgd", 0.9, True)],
)
def test_one_cycle_cycles_momentum_only_where_the_run_has_some(optimizer, momentum, cycled):
    """SGD without momentum (Keras' default) and RMSprop (whose momentum deepae leaves at
    Keras' 0) keep none under one-cycle; SGD with some moves between PyTorch's 0.85 and
    0.95."""
    cfg = TrainConfig(schedule="onecycle", lr=4e-3, optimizer=optimizer, momentum=momentum)
    p = torch.zeros(3, requires_grad=True)
    opt = optim.make_optimizer([p], cfg)
    sched = optim.make_schedule(opt, cfg, 20)
    seen = []
    for _ in range(19):
        p.grad = torch.ones(3)
        opt.step()
        sched.step()
        seen.append(opt.param_groups[0]["momentum"])
    if cycled:
        assert min(seen) == pytest.approx(0.85) and max(seen) == pytest.approx(0.95)
    else:
        assert seen == [0.0] * 19


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_the_engines_of_a_float64_net_agree_to_float64_rounding(loss):
    """A float64 net's autograd step is the float64 oracle: its loss is computed in the
    net's dtype, not cast down to float32 (as mixed precision's bfloat16 logits are cast
    up), which put the engines' gradients 4e-8 apart, float32's rounding."""
    x = torch.rand(40, 784, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = ModelConfig(hidden_sizes=(16,), hidden_activation="tanh", latent_activation="tanh")
    nets = {}
    for engine in ("fused", "autograd"):
        nets[engine] = build(model, seed=0).double()
        cfg = TrainConfig(loss=loss, engine=engine, batch_size=16, device="cpu", epochs=1)
        trainer = train.Trainer(nets[engine], cfg, len(x))
        assert trainer.engine_name == engine
        trainer.train_epoch(x, 0)  # 3 steps of Adam, the last of 8 images
    for a, b in zip(nets["fused"].parameters(), nets["autograd"].parameters(), strict=True):
        assert a.dtype == torch.float64
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop", "adadelta"])
def test_eps_zero_is_refused_where_a_zero_gradient_makes_nan(name):
    """With eps 0 these divide 0 by 0 wherever a gradient stays exactly 0 (here the pixels
    that are 0 in every image, as MNIST's border): the weights turned NaN at the second
    step, on both engines, and training stopped asking for a lower learning rate."""
    with pytest.raises(ConfigError, match="eps must be > 0") as caught:
        train.Trainer(build(ModelConfig()), TrainConfig(optimizer=name, eps=0.0), 64)
    assert caught.value.field == "eps"
    x = torch.rand(64, 784, generator=torch.Generator().manual_seed(0))
    x[:, :50] = 0.0
    for other in ("sgd", "adagrad"):  # no such ratio (Adagrad's sum starts at 0.1): eps 0 trains
        cfg = TrainConfig(optimizer=other, eps=0.0, epochs=1, device="cpu")
        state = train.fit(train.Trainer(build(ModelConfig()), cfg, len(x)), x)
        assert math.isfinite(state.history[0].loss)
