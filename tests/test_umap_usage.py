"""deepae.UMAP used as umap-learn's UMAP is, on small and awkward data: the inputs it
takes, its seeds, refits, duplicate images; umap-learn's own graph as the oracle."""

import warnings

import numpy as np
import pytest

from deepae import UMAP, neighbours

SMALL = {"n_epochs": 2, "batch_size": 64, "hidden_sizes": (32,)}  # seconds, not minutes


@pytest.fixture(scope="module")
def x(mnist_small):
    return mnist_small.x_train[:200]  # (200, 28, 28) uint8


def umap_learns_graph(x_flat: np.ndarray, n_neighbors: int) -> np.ndarray:
    """umap-learn's graph_ of x_flat (N, D), dense (N, N): the oracle."""
    umap_ = neighbours.require_umap()
    with warnings.catch_warnings():  # it warns that random_state makes it use one thread
        warnings.simplefilter("ignore")
        theirs = umap_.UMAP(n_neighbors=n_neighbors, random_state=0, init="random", n_epochs=1)
        return theirs.fit(x_flat).graph_.toarray()


def dense(graph: neighbours.Graph) -> np.ndarray:
    """A deepae graph (N, N) as umap-learn's UMAP.fit leaves its graph_: its layout zeroes
    the weights under 1/500 of the largest, in place (500 epochs below 10,000 points).
    Compare with atol 1e-5: its distances are per-pair sums, ours dot products."""
    out = np.zeros((graph.n_images, graph.n_images), np.float32)
    out[graph.head, graph.tail] = graph.weight
    out[out < out.max() / 500] = 0
    return out


def test_every_form_of_the_same_images_gives_the_same_map(x):
    flat = x.reshape(len(x), -1) / 255.0  # (N, 784) float64 in [0, 1], by hand
    forms = [x, flat, flat.astype(np.float32), flat[:, None].reshape(len(x), 28, 28)]
    maps = [UMAP(random_state=1, **SMALL).fit_transform(form) for form in forms]
    for other in maps[1:]:
        np.testing.assert_array_equal(other, maps[0])
    as_lists = UMAP(random_state=1, **SMALL).fit_transform(flat[:50].tolist())
    np.testing.assert_array_equal(as_lists, UMAP(random_state=1, **SMALL).fit_transform(x[:50]))


def test_a_seed_gives_the_same_map_bit_for_bit_and_another_seed_another(x):
    first = UMAP(random_state=3, **SMALL).fit_transform(x)
    np.testing.assert_array_equal(UMAP(random_state=3, **SMALL).fit_transform(x), first)
    assert not np.allclose(UMAP(random_state=4, **SMALL).fit_transform(x), first, atol=1e-3)
    # deepae's own rule, unlike umap-learn's: None is seed 0, so runs repeat by default.
    unset = UMAP(**SMALL).fit_transform(x)
    np.testing.assert_array_equal(unset, UMAP(random_state=0, **SMALL).fit_transform(x))


def test_a_refit_on_other_images_is_a_fresh_fit(x, mnist_small):
    other = mnist_small.x_train[200:400]
    reducer = UMAP(random_state=2, **SMALL).fit(x)
    reducer.fit(other)
    fresh = UMAP(random_state=2, **SMALL).fit(other)
    np.testing.assert_array_equal(reducer.embedding_, fresh.embedding_)
    np.testing.assert_array_equal(reducer.transform(x[:20]), fresh.transform(x[:20]))


def test_duplicate_and_black_images_get_umap_learns_graph(x):
    # Identical rows are at distance 0 (rho = 0 in UMAP's sigma search), a black image is
    # far from all; 3 copies of 60 digits and one black image: umap-learn's graph exactly.
    images = np.concatenate([x[:60], x[:60], x[:60], np.zeros((1, 28, 28), np.uint8)])
    reducer = UMAP(n_neighbors=5, random_state=0, **SMALL)
    embedding = reducer.fit_transform(images)
    assert np.isfinite(embedding).all()
    graph = reducer.trainer.neighbour.graph
    assert not (graph.head == graph.tail).any()  # no image is its own neighbour
    flat = images.reshape(len(images), -1).astype(np.float32) / 255
    np.testing.assert_allclose(dense(graph), umap_learns_graph(flat, 5), atol=1e-5)


def test_more_neighbours_than_images_are_truncated_as_umap_learns_are(x):
    few = x[:6]
    reducer = UMAP(n_neighbors=10, random_state=0, **SMALL)
    with pytest.warns(UserWarning, match="n_neighbors is larger than the dataset size"):
        embedding = reducer.fit_transform(few)
    assert embedding.shape == (6, 2) and reducer.get_params()["n_neighbors"] == 10
    flat = few.reshape(6, -1).astype(np.float32) / 255
    graph = reducer.trainer.neighbour.graph
    np.testing.assert_allclose(dense(graph), umap_learns_graph(flat, 10), atol=1e-5)
