"""The capturable step (deepae.cuda_graph) on the CPU: run eagerly, and recorded by two
stand-ins for CUDA graphs, it trains exactly as the ordinary fused step does (the oracle),
bit for bit; and its gradient is autograd's. Capture itself needs a GPU:
scripts/gpu_check.py."""

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from deepae import cuda_graph, data, engine, model, native, train
from deepae.config import ModelConfig, TrainConfig, resolve
from graph_helpers import ring

SMALL = ModelConfig(hidden_sizes=(16,), latent_activation="linear")


@pytest.fixture(scope="module")
def images(mnist_small):
    return torch.from_numpy(data.flatten_images(mnist_small.x_train[:500]))  # (500, 784)


class StandInGraph:
    """Records a step as a CUDA graph does: recording runs nothing, and each replay runs the
    recorded step, writing its loss into the one output tensor recording returned."""

    def __init__(self):
        self.recorded, self.replays = [], 0

    def __call__(self, body):
        self.recorded.append(body)
        out = torch.zeros(())

        def replay():
            self.replays += 1
            out.copy_(body())

        return replay, out


class ReplayedOps:
    """Records a step as a CUDA graph does, op by op: each replay reruns the PyTorch
    operators (aten ops, autograd's backward included) that recording saw, with the
    arguments they had then, Python numbers included, writing every result into the memory
    it had at recording; and reading a number back to the host while recording fails, as
    it does on a GPU. So a step that reads a host number which later changes (a learning
    rate, a step count) replays the stale one, as a real graph would; StandInGraph, which
    reruns the Python body, cannot show that.

    Unlike a CUDA graph, recording runs the ops (to see them), so it saves every tensor an
    op writes into first and puts it back after: recording still changes nothing."""

    def __init__(self):
        self.recorded, self.replays = [], 0

    def __call__(self, body):
        ops, saved = [], {}

        class Record(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                if func is torch.ops.aten._local_scalar_dense.default:  # .item() and the like
                    raise RuntimeError("a value read back to the host while capturing")
                for t in _written(func, args, kwargs):
                    saved.setdefault(id(t), (t, t.clone()))
                out = func(*args, **kwargs)
                ops.append((func, args, kwargs, out))
                return out

        with Record():
            result = body()
        with torch.no_grad():
            for t, before in saved.values():
                t.copy_(before)
        self.recorded.append(ops)

        def replay():
            self.replays += 1
            with torch.no_grad():
                for func, args, kwargs, out in ops:
                    inputs = tree_flatten((args, kwargs))[0]
                    own = {t.untyped_storage().data_ptr() for t in inputs
                           if isinstance(t, torch.Tensor)}  # fmt: skip
                    new = tree_flatten(func(*args, **kwargs))[0]
                    for at, value in zip(tree_flatten(out)[0], new, strict=True):
                        # a new result goes where recording put it; views and out= results
                        # already live in their inputs' memory
                        if (
                            isinstance(at, torch.Tensor)
                            and at.untyped_storage().data_ptr() not in own
                        ):
                            at.copy_(value)

        return replay, result


def _written(func, args, kwargs) -> list[torch.Tensor]:
    """The tensors an aten op writes into (in place, out=), as its schema marks them."""
    tensors = []
    for i, arg in enumerate(func._schema.arguments):
        if arg.alias_info is not None and arg.alias_info.is_write:
            value = args[i] if i < len(args) else kwargs.get(arg.name)
            tensors += [t for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor)]
    return tensors


RECORDERS = {"recorded": StandInGraph, "replayed": ReplayedOps}


def python_step(monkeypatch, static: str) -> None:
    """ReplayedOps sees PyTorch's operators only, not the compiled CPU step's own loops
    (deepae.native), which no GPU runs: its trainers take the Python step."""
    if static == "replayed":
        monkeypatch.setattr(
            native, "load", lambda: None
        )  # (it is cached: the variable is read once)


def trainer(cfg: TrainConfig, n: int, mc: ModelConfig = SMALL, *, static=None, graph=None):
    t = train.Trainer(model.build(mc, seed=0), cfg, n, graph=graph)
    if static is not None:  # "eager" or a recorder
        recorder = None if static == "eager" else static
        capture = recorder is not None
        t.whole_step = cuda_graph.StaticStep(t.engine, t.opt, t.schedule, cfg.batch_size,
                                              capture=capture, recorder=recorder)  # fmt: skip
    return t


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(torch.int32 if t.dtype == torch.float32 else torch.int64)


def assert_same_training(a: train.Trainer, b: train.Trainer):
    assert torch.equal(bits(a.engine.flat), bits(b.engine.flat))
    sa, sb = a.opt.state[a.engine.flat], b.opt.state[b.engine.flat]
    for key in ("step", "exp_avg", "exp_avg_sq"):
        assert torch.equal(bits(sa[key]), bits(sb[key])), key


RECIPES = [
    {},  # the article's: Adam, constant rate: Adam inside the step
    {"schedule": "onecycle", "lr": 4e-3},  # cycles beta1: Adam after the step
    {"schedule": "cosine", "optimizer": "adamw", "weight_decay": 0.01},  # the rate moves
    {"optimizer": "adam", "weight_decay": 0.01, "adam_betas": (0.9, 0.99), "shuffle": False},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("static", ["eager", *RECORDERS])
def test_the_static_step_trains_as_the_fused_step_bit_for_bit(images, recipe, static,
                                                              monkeypatch):  # fmt: skip
    # 500 images at batch 32: 15 full batches and a last one of 20, so both sizes run.
    cfg = TrainConfig(device="cpu", epochs=4, **recipe)  # the last batch is recorded in the 4th
    python_step(monkeypatch, static)
    reference = trainer(cfg, len(images))
    graph = RECORDERS[static]() if static != "eager" else None
    static_trainer = trainer(cfg, len(images), static=graph or "eager")
    for epoch in range(cfg.epochs):
        _, expected = reference.train_epoch(images, epoch)
        _, got = static_trainer.train_epoch(images, epoch)
        assert torch.equal(bits(got), bits(expected)), f"epoch {epoch}"
    assert_same_training(reference, static_trainer)
    if reference.schedule is not None:
        assert static_trainer.schedule.get_last_lr() == reference.schedule.get_last_lr()
        assert static_trainer.opt.param_groups[0]["betas"] == reference.opt.param_groups[0]["betas"]
    if graph is not None:
        assert len(graph.recorded) == 2  # one graph per batch size, recorded once
        steps = cfg.epochs * reference.steps_per_epoch
        assert graph.replays == steps - 2 * cuda_graph.WARMUP_STEPS  # all but the warm-ups


def test_only_the_replayed_ops_see_a_host_number_frozen_at_capture(images, monkeypatch):
    """The defect a CUDA graph brings and StandInGraph cannot show: Adam handed the param
    group's rate as a number inside the graph (a cosine schedule moves it every step)
    instead of the device tensor the step refreshes. ReplayedOps replays the number of the
    captured step, so its training leaves the oracle's; StandInGraph's reruns the body and
    follows it."""
    python_step(monkeypatch, "replayed")
    real = engine.fused_adam_step

    def host_rate(opt, *, lr=None, **kw):  # the defect: the rate as a host number
        return real(opt, **kw) if lr is None else real(opt, lr=opt.param_groups[0]["lr"], **kw)

    cfg = TrainConfig(device="cpu", epochs=1, schedule="cosine")
    _, expected = trainer(cfg, len(images)).train_epoch(images, 0)
    monkeypatch.setattr(engine, "fused_adam_step", host_rate)
    got = {name: trainer(cfg, len(images), static=make()).train_epoch(images, 0)[1]
           for name, make in RECORDERS.items()}  # fmt: skip
    assert torch.equal(bits(got["recorded"]), bits(expected))
    assert not torch.equal(bits(got["replayed"]), bits(expected))


def test_reading_a_number_back_while_recording_fails_as_on_a_gpu(images):
    with pytest.raises(RuntimeError, match="read back to the host while capturing"):
        ReplayedOps()(lambda: torch.ones(3).sum().item())


def test_a_resumed_epoch_continues_on_the_device_index(images):
    cfg = TrainConfig(device="cpu", epochs=1)
    reference, resumed = trainer(cfg, len(images)), trainer(cfg, len(images), static=StandInGraph())
    _, expected = reference.train_epoch(images, 0)
    calls = iter(range(10**6))
    steps, partial = resumed.train_epoch(images, 0, stop=lambda: next(calls) >= 7)
    assert steps == 7
    _, got = resumed.train_epoch(images, 0, start_step=steps, losses=partial)
    assert torch.equal(bits(got), bits(expected))
    assert_same_training(reference, resumed)


def test_new_optimizer_state_is_recorded_again(images):
    cfg = TrainConfig(device="cpu", epochs=2)
    graph = StandInGraph()
    t = trainer(cfg, len(images), static=graph)
    t.train_epoch(images, 0)
    assert len(graph.recorded) == 1  # the full batches' step; the last batch is warming up
    t.load_state_dict(copy.deepcopy(t.state_dict()))  # a checkpoint loaded: new tensors
    reference = trainer(cfg, len(images))
    reference.train_epoch(images, 0)
    reference.load_state_dict(copy.deepcopy(reference.state_dict()))
    _, got = t.train_epoch(images, 1)
    _, expected = reference.train_epoch(images, 1)
    assert len(graph.recorded) == 2  # the old graph would write into the old state
    assert torch.equal(bits(got), bits(expected))
    assert_same_training(reference, t)


@pytest.mark.parametrize("preset", ["article", "best2d"])
def test_the_static_steps_losses_and_gradients_are_autograds(preset):
    # float64, as in tests/test_engine.py: a formula error would show far above rounding.
    mc, _ = resolve(preset)
    net, reference = (model.build(mc, seed=3).double() for _ in range(2))
    fused = engine.FusedDenseEngine(net, "bce")
    opt = torch.optim.Adam([fused.flat], fused=True)
    static = cuda_graph.StaticStep(fused, opt, None, 16, capture=False)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(40, 784, generator=gen, dtype=torch.float64)  # at batch 16: 16, 16, 8
    order = torch.randperm(40, generator=gen)
    step = static.plan(x, order)
    for s, rows in enumerate((order[:16], order[16:32], order[32:])):
        xb = x[rows]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(reference.logits(xb), xb)
        expected = torch.autograd.grad(loss, list(reference.parameters()))
        assert step(s).item() == pytest.approx(loss.item() * xb.numel(), rel=1e-12)
        for (name, p), g in zip(net.named_parameters(), expected, strict=True):
            torch.testing.assert_close(p.grad, g, rtol=1e-9, atol=1e-12, msg=name)
        with torch.no_grad():  # the next step starts from the static step's Adam update
            for a, b in zip(reference.parameters(), net.parameters(), strict=True):
                a.copy_(b)
    assert opt.state[fused.flat]["step"].item() == 3


# umap2d's kind of training: a neighbour loss, its epochs of sampled edges (deepae.neighbours)
EDGES = {"batch_size": 25, "neighbour_weight": 2.0, "neighbours": 2, "negative_rate": 3}
EDGE_RECIPES = [
    {"schedule": "onecycle", "lr": 3e-3, "adam_betas": (0.9, 0.99)},  # umap2d's: Adam after
    {},  # a constant rate: Adam inside the step
    {"schedule": "onecycle", "lr": 3e-3, "precision": "mixed_bfloat16"},  # bfloat16 products
]


@pytest.mark.parametrize("recipe", EDGE_RECIPES)
@pytest.mark.parametrize("static", ["eager", *RECORDERS])
def test_steps_on_edges_train_as_the_ordinary_neighbour_step_bit_for_bit(images, recipe, static,
                                                                        monkeypatch):  # fmt: skip
    # 200 images at 25 edges a step: 8 steps an epoch, each gathering 50 rows (heads, tails).
    x, cfg = images[:200], TrainConfig(device="cpu", epochs=3, **EDGES, **recipe)
    python_step(monkeypatch, static)
    reference = trainer(cfg, len(x), graph=ring(len(x)))
    assert reference.whole_step is None  # on the CPU, steps on edges go a call at a time
    graph = RECORDERS[static]() if static != "eager" else None
    t = trainer(cfg, len(x), static=graph or "eager", graph=ring(len(x)))
    for epoch in range(cfg.epochs):
        _, expected = reference.train_epoch(x, epoch)
        _, got = t.train_epoch(x, epoch)
        assert torch.equal(bits(got), bits(expected)), f"epoch {epoch}"
    assert_same_training(reference, t)
    assert t.whole_step.index.item() == 8  # the static step ran the last epoch's 8 steps
    if graph is not None:
        assert len(graph.recorded) == 1  # one size of step, recorded once for all epochs
        assert graph.replays == cfg.epochs * 8 - cuda_graph.WARMUP_STEPS


def test_a_resumed_epoch_of_edges_continues_on_the_device_index(images):
    x, cfg = images[:200], TrainConfig(device="cpu", epochs=1, **EDGES)
    reference = trainer(cfg, len(x), graph=ring(len(x)))
    resumed = trainer(cfg, len(x), static=StandInGraph(), graph=ring(len(x)))
    _, expected = reference.train_epoch(x, 0)
    calls = iter(range(10**6))
    steps, partial = resumed.train_epoch(x, 0, stop=lambda: next(calls) >= 5)
    assert steps == 5
    _, got = resumed.train_epoch(x, 0, start_step=steps, losses=partial)
    assert resumed.whole_step.index.item() == 8  # steps 5-7 ran on the static step
    assert torch.equal(bits(got), bits(expected))
    assert_same_training(reference, resumed)


def test_capture_is_wanted_on_cuda_with_the_fused_adam_only():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    t = trainer(TrainConfig(device="cpu"), 100)
    assert cuda_graph.wanted(cuda, t.engine, t.opt, 1, environ={})
    assert not cuda_graph.wanted(cpu, t.engine, t.opt, 1, environ={})
    assert not cuda_graph.wanted(cuda, t.engine, t.opt, 1, environ={cuda_graph.ENV: "0"})
    assert not cuda_graph.wanted(cuda, t.engine, t.opt, 2, environ={})  # data-parallel
    assert not cuda_graph.wanted(cuda, None, t.opt, 1, environ={})
    sgd = trainer(TrainConfig(device="cpu", optimizer="sgd"), 100)
    assert not cuda_graph.wanted(cuda, sgd.engine, sgd.opt, 1, environ={})
    assert not isinstance(t.whole_step, cuda_graph.StaticStep)  # the CPU captures nothing


def test_the_static_step_reads_float_tensors_on_its_device_only(images):
    t = trainer(TrainConfig(device="cpu"), len(images), static="eager")
    assert t.whole_step.accepts(images)
    assert not t.whole_step.accepts(images.double())
    assert not t.whole_step.accepts(images.t())  # not contiguous
    assert not t.whole_step.accepts(object())  # e.g. deepae.batches.MappedImages


def test_a_failed_capture_goes_on_with_eager_steps(images):
    def failing(body):
        raise RuntimeError("operation not permitted when stream is capturing")

    cfg = TrainConfig(device="cpu", epochs=1)
    reference, t = trainer(cfg, len(images)), trainer(cfg, len(images), static=failing)
    _, expected = reference.train_epoch(images, 0)
    with pytest.warns(UserWarning, match="capture failed.*eager steps"):
        _, got = t.train_epoch(images, 0)
    assert torch.equal(bits(got), bits(expected))
    assert_same_training(reference, t)
