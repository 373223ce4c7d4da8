"""deepae.neighbours: UMAP's graph (against umap-learn's own), its cache, the loss (against a
hand computation), and training with it (a better map than a plain autoencoder's)."""

import dataclasses
import hashlib
import io
import json
import math
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse
import torch
from safetensors.torch import load_file

from deepae import neighbours, run
from deepae.api import Autoencoder
from deepae.config import ModelConfig, TrainConfig
from deepae.data import flatten_images
from deepae.errors import ConfigError, MissingExtraError
from deepae.evaluate import knn_accuracy


@pytest.fixture(scope="module")
def x300(mnist_small):
    return flatten_images(mnist_small.x_train[:300])  # (300, 784)


# -- the loss --------------------------------------------------------------------------------


def test_loss_against_a_hand_computation():
    a, b = neighbours.curve_params(0.1)
    assert (a, b) == pytest.approx((1.577, 0.895), abs=1e-3)  # umap-learn's, for min_dist 0.1
    graph = neighbours.Graph(np.array([0]), np.array([1]), np.array([1.0], np.float32), 2, 2, "")
    loss = neighbours.NeighbourLoss(graph, min_dist=0.1, negative_rate=2, seed=0)
    z_head = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    z_tail = torch.tensor([[3.0, 4.0], [1.0, 0.5]])
    negatives = torch.tensor([1, 0, 0, 0])  # heads repeated twice: (h0,t1) (h1,t0) (h0,t0) (h1,t0)

    def q(d):  # UMAP's curve, straight from its definition
        return 1.0 / (1.0 + a * d ** (2 * b))

    eps = neighbours.DIST_EPS
    dist = lambda u, v: math.sqrt((u[0] - v[0]) ** 2 + (u[1] - v[1]) ** 2 + eps)  # noqa: E731
    h, t = z_head.tolist(), z_tail.tolist()
    attract = -math.log(q(dist(h[0], t[0]))) - math.log(q(dist(h[1], t[1])))
    pairs = [(h[0], t[1]), (h[1], t[0]), (h[0], t[0]), (h[1], t[0])]
    repel = sum(-math.log(1 - q(dist(u, v))) for u, v in pairs)
    expected = (attract + repel) / (2 * (1 + 2))
    assert loss(z_head, z_tail, negatives).item() == pytest.approx(expected, rel=1e-5)


def test_edges_are_drawn_by_weight_and_reproducibly():
    weight = np.array([0.1, 0.9, 0.0001], np.float32)
    graph = neighbours.Graph(np.array([0, 1, 2]), np.array([1, 2, 0]), weight, 2, 3, "")
    loss = neighbours.NeighbourLoss(graph, min_dist=0.1, negative_rate=3, seed=4)
    heads, tails, negatives = loss.epoch_edges(epoch=2, steps=50, batch=200)
    share = np.bincount(heads.numpy().ravel(), minlength=3) / heads.numel()
    np.testing.assert_allclose(share, weight / weight.sum(), atol=0.01)
    assert negatives.shape == (50, 600) and negatives.max() < 200
    again = loss.epoch_edges(epoch=2, steps=50, batch=200)
    assert all(torch.equal(u, v) for u, v in zip((heads, tails, negatives), again, strict=True))
    assert not torch.equal(heads, loss.epoch_edges(epoch=3, steps=50, batch=200)[0])


# -- the graph -------------------------------------------------------------------------------


@pytest.mark.parametrize("copies", [False, True])
def test_graph_equals_umap_learns_own(x300, copies):
    # Below 4,096 images, UMAP.fit takes all pairwise distances. With copies (the same
    # 100 digits 3 times: identical images at distance 0, rho from the nearest other one).
    x = np.concatenate([x300[:100]] * 3) if copies else x300
    ours = neighbours.build_graph(x, 15)
    fit = _umap_learns(neighbours.require_umap().UMAP(n_neighbors=15, random_state=0,
                                                      init="random", n_epochs=1).fit)  # fmt: skip
    theirs = fit(x).graph_
    ours_dense = np.zeros((300, 300), np.float32)
    ours_dense[ours.head, ours.tail] = ours.weight
    assert ours.n_images == 300 and len(ours) == theirs.nnz
    # UMAP.fit's layout then zeroes, in graph_ itself, the weights under 1/500 of the
    # largest (simplicial_set_embedding, 500 epochs below 10,000 points): ours keeps them.
    ours_dense[ours_dense < ours_dense.max() / 500] = 0
    # Its distances are per-pair sums, ours scikit-learn's dot products: ~1e-6 apart.
    np.testing.assert_allclose(ours_dense, theirs.toarray(), atol=1e-5)


def test_a_large_graph_equals_umap_learns_own():
    # From 4,096 images both search approximately with pynndescent: with umap-learn's own
    # settings (graph version 3) the graphs are the same; pynndescent's defaults (version
    # 2 and before) give another one on this data.
    x = np.random.default_rng(0).random((neighbours.EXACT_BELOW + 104, 24), dtype=np.float32)
    ours = neighbours.build_graph(x, 10)
    fit = _umap_learns(neighbours.require_umap().UMAP(n_neighbors=10, random_state=0,
                                                      transform_mode="graph").fit)  # fmt: skip
    theirs = fit(x).graph_.tocoo()
    assert len(ours) == theirs.nnz
    ours_sparse = scipy.sparse.coo_array((ours.weight, (ours.head, ours.tail)), theirs.shape)
    assert abs(ours_sparse.tocsr() - theirs.tocsr()).max() == 0
    assert neighbours.build_graph(x, 10, version=2).sha256 != ours.sha256


def _umap_learns(cls_or_fn):
    """umap-learn's UMAP class run with its warnings silenced (the suite makes warnings
    errors; UMAP.fit warns that random_state makes it use one thread)."""

    def call(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls_or_fn(*args, **kwargs)

    return call


def test_a_numpy_integer_number_of_neighbours_is_taken(x300, tmp_path):
    graph = neighbours.graph_for(x300, np.int64(10), "key-a", cache_dir=tmp_path)
    assert graph.n_neighbors == 10 and type(graph.n_neighbors) is int
    assert graph.sha256 == neighbours.build_graph(x300, 10).sha256
    with pytest.raises(ConfigError, match="neighbours must be an integer >= 2, got 10.0"):
        neighbours.build_graph(x300, 10.0)


def test_an_unwritable_cache_is_said_once_and_not_claimed(x300, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    logs = []
    graph = neighbours.graph_for(x300, 10, "key-a", cache_dir=not_a_folder, log=logs.append)
    assert graph.sha256 == neighbours.build_graph(x300, 10).sha256
    assert any(m.startswith("warning: not caching the neighbour graph") for m in logs), logs
    assert not any("cached in" in m for m in logs), logs
    logs.clear()
    neighbours.graph_for(x300, 10, "key-a", cache_dir=tmp_path / "cache", log=logs.append)
    assert any("cached in" in m for m in logs) and not any("warning" in m for m in logs), logs


class _Terminal(io.StringIO):
    def isatty(self) -> bool:  # tqdm shows its bar only on a terminal
        return True


def test_building_shows_a_bar_on_a_terminal_only(x300, monkeypatch):
    shown = _Terminal()
    monkeypatch.setattr(sys, "stderr", shown)
    graph = neighbours.build_graph(x300, 15, progress=True)
    text = shown.getvalue()  # each stage is named as it starts (tqdm may skip counts)
    assert all(s in text for s in ("neighbour graph", "nearest neighbours", "fuzzy simplicial"))
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert neighbours.build_graph(x300, 15, progress=False).sha256 == graph.sha256
    assert quiet.getvalue() == ""


def test_cache_hit_miss_and_corruption(x300, tmp_path, monkeypatch):
    logs = []
    first = neighbours.graph_for(x300, 10, "key-a", cache_dir=tmp_path, log=logs.append)
    built = neighbours.build_graph
    monkeypatch.setattr(neighbours, "build_graph", lambda *a, **k: pytest.fail("rebuilt"))
    hit = neighbours.graph_for(x300, 10, "key-a", cache_dir=tmp_path, log=logs.append)
    assert hit.sha256 == first.sha256 and np.array_equal(hit.weight, first.weight)
    monkeypatch.setattr(neighbours, "build_graph", built)
    (npz,) = (tmp_path / "graphs").glob("*.npz")
    raw = bytearray(npz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte inside the stored arrays
    npz.write_bytes(bytes(raw))
    again = neighbours.graph_for(x300, 10, "key-a", cache_dir=tmp_path, log=logs.append)
    assert again.sha256 == first.sha256  # rebuilt, and the same graph
    assert any("rebuilding the neighbour graph" in m for m in logs)
    other = neighbours.graph_for(x300, 11, "key-a", cache_dir=tmp_path, log=logs.append)
    assert other.n_neighbors == 11 and len(list((tmp_path / "graphs").glob("*.npz"))) == 2


def test_a_resume_finds_the_older_graph_it_began_on(x300, tmp_path, monkeypatch):
    # Copies: version 1 kept identical images ~1e-7 apart, version 2 puts them at 0, so the
    # two versions' graphs differ. A run that began on version 1 names its graph's hash.
    x = np.concatenate([x300[:100]] * 3)
    older = neighbours.build_graph(x, 10, version=1)
    newest = neighbours.graph_for(x, 10, "key-c", cache_dir=tmp_path)
    assert newest.sha256 != older.sha256
    logs = []
    found = neighbours.graph_for(x, 10, "key-c", sha256=older.sha256, cache_dir=tmp_path,
                                 log=logs.append)  # fmt: skip
    assert found.sha256 == older.sha256
    assert any("the run began on (version 1;" in m for m in logs), logs
    monkeypatch.setattr(neighbours, "build_graph", lambda *a, **k: pytest.fail("rebuilt"))
    for graph in (older, newest):  # both cached now, each under its own key
        again = neighbours.graph_for(x, 10, "key-c", sha256=graph.sha256, cache_dir=tmp_path)
        assert again.sha256 == graph.sha256
    # A hash no version makes: the newest graph, which the resume then refuses by its hash.
    assert neighbours.graph_for(x, 10, "key-c", sha256="0" * 64,
                                cache_dir=tmp_path).sha256 == newest.sha256  # fmt: skip


def test_graphs_cached_before_version_3_keep_their_keys():
    # The keys older deepae wrote, by hand: [version, data key, k, seed, images], version 2
    # below 4,096 images and 1 above. Version 3 changed only the large graphs.
    def old_key(version, n):
        text = json.dumps([version, "data", 10, 0, n])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    assert neighbours._cache_key(3, "data", 10, 300) == old_key(2, 300)
    assert neighbours._cache_key(2, "data", 10, 300) == old_key(2, 300)
    assert neighbours._cache_key(2, "data", 10, 60000) == old_key(1, 60000)
    assert neighbours._cache_key(1, "data", 10, 60000) == old_key(1, 60000)
    assert neighbours._cache_key(3, "data", 10, 60000) not in (old_key(1, 60000), old_key(2, 60000))


@pytest.mark.parametrize(
    "harm", ["negative tail", "short tail", "nan weight", "zero weight", "float head"]
)
def test_a_cache_entry_whose_arrays_are_unusable_is_rebuilt(x300, tmp_path, harm):
    # Arrays consistent with their recorded SHA-256 (as a crafted or buggy writer leaves
    # them) but no graph: each is refused and the graph built again.
    first = neighbours.graph_for(x300, 10, "key-a", cache_dir=tmp_path)
    (npz,) = (tmp_path / "graphs").glob("*.npz")
    head, tail, weight = first.head.copy(), first.tail.copy(), first.weight.copy()
    if harm == "negative tail":
        tail[3] = -1
    elif harm == "float head":  # the same numbers, but no indices for torch
        head = head.astype(np.float64)
    elif harm == "short tail":
        tail = tail[:-5]
    else:
        weight[3] = np.nan if harm == "nan weight" else 0.0
    np.savez(npz, head=head, tail=tail, weight=weight)
    meta_path = npz.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = neighbours._arrays_sha256(head, tail, weight)
    meta_path.write_text(json.dumps(meta))
    logs = []
    again = neighbours.graph_for(x300, 10, "key-a", cache_dir=tmp_path, log=logs.append)
    assert again.sha256 == first.sha256 and again.head.dtype == np.int64
    assert any("is unusable" in m for m in logs), logs


@pytest.mark.parametrize("limit", [neighbours.MULTINOMIAL_LIMIT, 3])
def test_edges_are_drawn_in_proportion_to_their_weight(monkeypatch, limit):
    # Past torch.multinomial's 2^24 categories the picks come from the cumulative weights
    # (the limit lowered to 3 makes 4 edges take that path): the same distribution.
    monkeypatch.setattr(neighbours, "MULTINOMIAL_LIMIT", limit)
    weight = torch.tensor([1.0, 3.0, 0.5, 5.5])  # shares 0.1, 0.3, 0.05, 0.55, by hand
    picks = neighbours._weighted_picks(weight, 200_000, torch.Generator().manual_seed(0))
    share = torch.bincount(picks, minlength=4) / 200_000
    # 4 standard errors of a share p over 200,000 draws: 4 * sqrt(p (1 - p) / n) < 0.0045
    torch.testing.assert_close(share, torch.tensor([0.1, 0.3, 0.05, 0.55]), rtol=0, atol=0.0045)


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, phrase",
    [
        ("neighbour_weight", -1.0, "neighbour_weight must be a number >= 0"),
        ("neighbours", 1, "neighbours must be at least 2"),
        ("min_dist", 2.0, "min_dist must lie in"),
        ("negative_rate", 0, "negative_rate must be positive"),
    ],
)
def test_bad_neighbour_settings_name_their_field(field, value, phrase):
    with pytest.raises(ConfigError, match=phrase) as err:
        TrainConfig(**{field: value})
    assert err.value.field == field


def test_more_neighbours_than_images_is_refused(x300):
    with pytest.raises(ConfigError, match="neighbours 300 needs more training images"):
        neighbours.build_graph(x300, 300)


def test_without_umap_learn_one_line_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # an import of umap now fails
    with pytest.raises(MissingExtraError, match=r"pip install 'deepae\[umap\]'"):
        neighbours.require_umap()


# -- training with it ------------------------------------------------------------------------


def test_the_neighbour_loss_separates_digits_better_than_a_plain_autoencoder(mnist_small):
    x, y = mnist_small.x_train, mnist_small.y_train
    xt, yt = mnist_small.x_test, mnist_small.y_test
    # ~5,000 steps: a 2-D UMAP layout needs that many updates to take shape (at 60,000
    # images the umap2d preset takes ~15,000); the plain run gets the same recipe.
    common = dict(hidden_sizes=(128,), latent_activation="linear", batch_size=64,
                  epochs=160, lr=3e-3, schedule="onecycle", seed=0)  # fmt: skip
    scores = {}
    for name, weight in (("plain", 0.0), ("umap", 10.0)):
        ae = Autoencoder(**common, neighbour_weight=weight)
        ae.fit(x, verbose=0)
        scores[name] = knn_accuracy(ae.encode(x), y, ae.encode(xt), yt, k=5)
    assert scores["umap"] > scores["plain"] + 0.05, scores


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])  # umap2d: 'auto'
def test_resume_with_a_neighbour_loss_is_bit_identical(mnist_small, tmp_path, precision):
    data = dataclasses.replace(mnist_small, x_train=mnist_small.x_train[:600],
                               y_train=mnist_small.y_train[:600])  # fmt: skip
    model = ModelConfig(hidden_sizes=(64,), latent_activation="linear")
    train = TrainConfig(epochs=2, batch_size=64, neighbour_weight=2.0, device="cpu",
                        precision=precision)  # fmt: skip
    quiet = dict(log=lambda _: None, progress=False, evaluate=False)
    run.train_run(tmp_path / "a", model, train, data, **quiet)
    polls = {"n": 0}

    def stop_mid_epoch_2():  # 10 steps an epoch
        polls["n"] += 1
        return polls["n"] > 14

    assert run.train_run(
        tmp_path / "b", model, train, data, stop=stop_mid_epoch_2, **quiet
    ).interrupted
    run.resume(tmp_path / "b", data, **quiet)
    a, b = (load_file(tmp_path / r / "model.safetensors") for r in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_begun_on_an_older_graph_resumes_on_it(mnist_small, tmp_path, monkeypatch):
    # A run stopped under graph version 1 (copies among its images, so versions 1 and 2
    # differ) resumes on that graph, as if never stopped, after deepae moved on.
    x = np.concatenate([mnist_small.x_train[:200]] * 3)
    y = np.concatenate([mnist_small.y_train[:200]] * 3)
    data = dataclasses.replace(mnist_small, x_train=x, y_train=y)
    model = ModelConfig(hidden_sizes=(64,), latent_activation="linear")
    train = TrainConfig(epochs=2, batch_size=64, neighbour_weight=2.0, device="cpu")
    logs = []
    quiet = dict(log=logs.append, progress=False, evaluate=False)
    polls = {"n": 0}

    def stop_mid_epoch_2():  # 10 steps an epoch
        polls["n"] += 1
        return polls["n"] > 14

    with monkeypatch.context() as older_deepae:
        older_deepae.setattr(neighbours, "GRAPH_VERSION", 1)
        run.train_run(tmp_path / "a", model, train, data, **quiet)
        assert run.train_run(
            tmp_path / "b", model, train, data, stop=stop_mid_epoch_2, **quiet
        ).interrupted
    run.resume(tmp_path / "b", data, **quiet)
    assert any("the run began on (version 1;" in m for m in logs), logs
    a, b = (load_file(tmp_path / r / "model.safetensors") for r in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
