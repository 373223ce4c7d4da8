"""Neighbour maps: UMAP's graph of the training images and the loss that keeps it in 2-D.

A plane that separates the digits needs to know which images are neighbours. UMAP
(McInnes, Healy & Melville 2018) builds a fuzzy graph of the k nearest neighbours and
lays it out so that linked images land close and unlinked ones apart; Parametric UMAP
(Sainburg, McInnes & Gentner 2021) trains an encoder to do so, and with a reconstruction
loss beside it (their UMAP/AE) the decoder comes for free. deepae does the latter with a
dense autoencoder:

- the graph is umap-learn's own: pynndescent's approximate k nearest neighbours, then
  `fuzzy_simplicial_set`; it is built once per dataset and parameters and cached as plain
  arrays (never pickle), verified by SHA-256 on every use;
- each training step samples edges in proportion to their weight, encodes both ends,
  pulls linked codes together and pushes each head away from `negative_rate` tails of
  other edges in the batch (in-batch negatives, as Parametric UMAP does), with UMAP's
  curve q(d) = 1 / (1 + a d^(2b)), a and b from `find_ab_params(1.0, min_dist)`.

umap-learn is an optional dependency: `pip install 'deepae[umap]'`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import numbers
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepae import fsio
from deepae.data import cache_root
from deepae.data.arrays import open_npz
from deepae.errors import ConfigError, DataError, DeepAEError, MissingExtraError

# How the graph is made, part of its cache key. Older versions are still built, but only to
# resume a run that began on one (its checkpoint holds the graph's SHA-256, `graph_for`):
#   1: below EXACT_BELOW images, scikit-learn's distances (identical images ~1e-7 apart);
#      above, pynndescent's default trees and candidates;
#   2: below, identical images at exactly 0, as umap-learn's own sums give (its graph_);
#   3: above, umap-learn's own settings for pynndescent (`_search_settings`).
GRAPH_VERSION = 3
GRAPH_VERSIONS = (1, 2, 3)
GRAPH_SEED = 0  # the graph is a property of the data, not of a training seed
CACHE_SUBDIR = "graphs"
SPREAD = 1.0  # UMAP's default spread, with min_dist the shape of q(d)
DIST_EPS = 1e-4  # keeps log(d^2) finite for codes that coincide
EXACT_BELOW = 4096  # fewer images: exact neighbours from all distances, as umap-learn does

Log = Callable[[str], None]


def require_umap():
    """umap-learn's `umap.umap_` module; MissingExtraError saying what to install if it is
    missing."""
    try:
        with warnings.catch_warnings():
            # umap/__init__ warns when TensorFlow (for its ParametricUMAP) is absent: we use
            # only its graph functions, which do not need it.
            warnings.simplefilter("ignore", ImportWarning)
            import pynndescent  # noqa: F401
            import umap.umap_ as umap_
    except ImportError:
        raise MissingExtraError(
            "neighbour maps (neighbour_weight > 0, the umap2d preset) need umap-learn; "
            "install it with: pip install 'deepae[umap]'"
        ) from None
    return umap_


@dataclass(frozen=True, eq=False)
class Graph:
    """UMAP's fuzzy graph as edge lists: head (E,), tail (E,) int64 image indices and
    weight (E,) float32 in (0, 1]; `sha256` identifies it (checkpoints record it)."""

    head: np.ndarray
    tail: np.ndarray
    weight: np.ndarray
    n_neighbors: int
    n_images: int
    sha256: str

    def __len__(self) -> int:
        return len(self.head)


def curve_params(min_dist: float) -> tuple[float, float]:
    """UMAP's a, b for `min_dist` (spread 1): q(d) = 1 / (1 + a d^(2b)) fitted to
    exp(-(d - min_dist)) beyond min_dist; min_dist 0.1 gives a = 1.577, b = 0.895."""
    a, b = require_umap().find_ab_params(SPREAD, min_dist)
    return float(a), float(b)


# -- the graph -----------------------------------------------------------------------------


def build_graph(
    x: np.ndarray, n_neighbors: int, *, version: int = GRAPH_VERSION, log: Log | None = None,
    progress: bool = False,
) -> Graph:  # fmt: skip
    """UMAP's fuzzy simplicial set of images x (N, D) float32 in [0, 1] (Euclidean).

    The k nearest neighbours are exact below EXACT_BELOW images (then the graph is
    umap-learn's), else pynndescent's approximate ones with the settings umap-learn's
    UMAP.fit gives it (seeded, so the same data gives the same graph; at 60,000 MNIST
    digits and k = 10 they miss 1.0% of the true neighbours, pynndescent's defaults 2.6%);
    umap-learn's fuzzy_simplicial_set turns them into edge weights. `version`: an older
    way of making it (GRAPH_VERSIONS), to resume a run that began on one.
    `progress`: a bar over these two stages, on a terminal only (neither library reports
    progress inside a stage, so the bar shows the stage and the time spent)."""
    umap_ = require_umap()
    from pynndescent import NNDescent
    from tqdm.auto import tqdm

    n = len(x)
    n_neighbors = check_neighbours(n_neighbors, n)
    if version not in GRAPH_VERSIONS:
        raise ConfigError(f"graph version must be one of {GRAPH_VERSIONS}, got {version!r}",
                          field="version")  # fmt: skip
    log = log or _quiet
    log(f"building the neighbour graph of {n:,} images (k={n_neighbors}) ...")
    x = np.ascontiguousarray(x, dtype=np.float32)
    rng = np.random.RandomState(GRAPH_SEED)
    bar = tqdm(total=2, desc="neighbour graph", unit="stage", leave=False,
               disable=None if progress else True)  # fmt: skip
    with bar:
        bar.set_postfix_str("nearest neighbours")
        if n < EXACT_BELOW:  # umap-learn's own rule (UMAP.fit, `_small_data`): exact
            data, metric, knn = _distances(x, copies_at_zero=version >= 2), "precomputed", {}
        else:
            nnd = NNDescent(x, n_neighbors=n_neighbors, metric="euclidean",
                            random_state=GRAPH_SEED, n_jobs=1, low_memory=True,
                            **_search_settings(n, version))  # fmt: skip
            indices, distances = nnd.neighbor_graph
            data, metric, knn = x, "euclidean", {"knn_indices": indices, "knn_dists": distances}
        bar.update()
        bar.set_postfix_str("fuzzy simplicial set")
        graph, _, _ = umap_.fuzzy_simplicial_set(data, n_neighbors, rng, metric, **knn)
        bar.update()
    coo = graph.tocoo()
    keep = coo.data > 0
    head, tail = coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64)
    weight = coo.data[keep].astype(np.float32)
    return Graph(head, tail, weight, n_neighbors, n, _arrays_sha256(head, tail, weight))


def _search_settings(n: int, version: int) -> dict:
    """pynndescent's settings for n images: from version 3 umap-learn's (umap/umap_.py,
    `nearest_neighbors`, umap-learn 0.5: trees and iterations grow with n, 60 candidates,
    an uncompressed index); before, pynndescent's defaults."""
    if version < 3:
        return {}
    return {"n_trees": min(64, 5 + int(round(n**0.5 / 20.0))),
            "n_iters": max(5, int(round(np.log2(n)))), "max_candidates": 60,
            "compressed": False}  # fmt: skip


def _distances(x: np.ndarray, *, copies_at_zero: bool) -> np.ndarray:
    """All Euclidean distances (N, N) between images x (N, D), identical images at exactly
    0 as umap-learn's own per-pair sums give (`copies_at_zero`, from version 2).
    scikit-learn's dot-product formula (~5x faster than exact sums) leaves ~1e-7 between
    them, which UMAP would take for rho, the distance to the nearest image that differs,
    weakening every other edge of a copy."""
    from sklearn.metrics import pairwise_distances

    dist = pairwise_distances(x)  # (N, N) float32
    if copies_at_zero:
        _, group = np.unique(x, axis=0, return_inverse=True)  # (N,): equal ids, equal images
        group = group.reshape(-1)  # NumPy 2.0 and 2.1 give it the input's dimensions
        dist[group[:, None] == group[None, :]] = 0
    return dist


def check_neighbours(n_neighbors: int, n_images: int) -> int:
    """`n_neighbors` as an int (a NumPy integer too), if a graph of n_images can have it."""
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, numbers.Integral):
        raise ConfigError(f"neighbours must be an integer >= 2, got {n_neighbors!r}",
                          field="neighbours")  # fmt: skip
    n_neighbors = int(n_neighbors)
    if n_neighbors < 2:
        raise ConfigError(f"neighbours must be an integer >= 2, got {n_neighbors}",
                          field="neighbours")  # fmt: skip
    if n_neighbors >= n_images:
        raise ConfigError(
            f"neighbours {n_neighbors} needs more training images than the {n_images} given; "
            "use fewer neighbours or more images",
            field="neighbours",
        )
    return n_neighbors


def images_key(flat: np.ndarray) -> str:
    """The `data_key` of images (N, D) float32 for `graph_for`: the SHA-256 of their bytes."""
    return hashlib.sha256(memoryview(np.ascontiguousarray(flat)).cast("B")).hexdigest()


def graph_for(
    x: np.ndarray,
    n_neighbors: int,
    data_key: str,
    *,
    sha256: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    log: Log | None = None,
    progress: bool = False,
) -> Graph:
    """The graph of images x (N, D), from the cache when it holds a verified copy for the
    same data (`data_key`, e.g. its SHA-256) and parameters; else built and cached.

    `sha256`: the graph a resumed run began on (its checkpoint's). It is looked for among
    every version's cached graphs, then built, newest version first, until one matches;
    if none does, the newest is returned (and the resume refuses it).
    A cache entry that is missing, corrupt or for other data is rebuilt, never trusted.
    `progress`: a bar while building (on a terminal only)."""
    log = log or _quiet
    n_neighbors = check_neighbours(n_neighbors, len(x))  # an int: the key is JSON
    folder = cache_root(cache_dir) / CACHE_SUBDIR
    versions = [GRAPH_VERSION] if sha256 is None else _versions_newest_first(len(x))
    found = {}
    for version in versions:  # a cached copy first: building takes a minute at MNIST's size
        key = _cache_key(version, data_key, n_neighbors, len(x))
        found[version] = _read_cache(folder, key, n_neighbors, len(x), log)
        if found[version] is not None and sha256 in (None, found[version].sha256):
            return _chosen(found[version], version, log)
    for version in versions:
        if found[version] is None:
            found[version] = _build(x, n_neighbors, data_key, version, folder, log, progress)
        if sha256 in (None, found[version].sha256):
            return _chosen(found[version], version, log)
    return found[versions[0]]  # none is the run's: the resume refuses it by its hash


def _chosen(graph: Graph, version: int, log: Log) -> Graph:
    if version != GRAPH_VERSION:
        log(f"resuming on the neighbour graph the run began on (version {version}; new runs "
            f"build version {GRAPH_VERSION})")  # fmt: skip
    return graph


def _versions_newest_first(n: int) -> list[int]:
    """GRAPH_VERSIONS, newest first, one for each different graph of n images."""
    makings = {_made_as(version, n): version for version in GRAPH_VERSIONS}  # newest wins
    return sorted(makings.values(), reverse=True)


def _made_as(version: int, n: int) -> int:
    """The oldest version that makes the same graph of n images as `version` does: the
    version in its cache key, so that a change to large graphs keeps small ones' entries."""
    if n < EXACT_BELOW:
        return 1 if version == 1 else 2
    return 3 if version >= 3 else 1


def _cache_key(version: int, data_key: str, n_neighbors: int, n: int) -> str:
    made_as = _made_as(version, n)
    text = json.dumps([made_as, data_key, n_neighbors, GRAPH_SEED, n])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _build(x: np.ndarray, n_neighbors: int, data_key: str, version: int, folder: Path,
           log: Log, progress: bool) -> Graph:  # fmt: skip
    start = time.perf_counter()
    graph = build_graph(x, n_neighbors, version=version, log=log, progress=progress)
    log(f"neighbour graph: {len(graph):,} edges in {time.perf_counter() - start:.0f} s")
    key = _cache_key(version, data_key, n_neighbors, len(x))
    if _write_cache(folder, key, graph, data_key, _made_as(version, len(x)), log):
        log(f"neighbour graph cached in {folder} for the next run")
    return graph


def shared_graph(build: Callable[[], Graph], world) -> Graph:
    """`build()`'s graph on every rank of a data-parallel run (a deepae.distributed.World):
    rank 0 builds it (or reads its cache) and sends it, so that every rank samples the same
    edges and the others build and cache nothing. Alone: `build()`."""
    if world.size == 1:
        return build()
    graph, raw = None, None
    if world.is_main:
        graph, buf = build(), io.BytesIO()
        sizes = np.array([graph.n_neighbors, graph.n_images])
        np.savez(buf, head=graph.head, tail=graph.tail, weight=graph.weight, sizes=sizes)
        raw = buf.getvalue()
    raw = world.share_bytes(raw)
    if graph is not None:
        return graph
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        head, tail, weight, (k, n) = (npz[key] for key in ("head", "tail", "weight", "sizes"))
    return Graph(head, tail, weight, int(k), int(n), _arrays_sha256(head, tail, weight))


def _read_cache(folder: Path, key: str, n_neighbors: int, n: int, log: Log) -> Graph | None:
    meta_path, npz_path = folder / f"{key}.json", folder / f"{key}.npz"
    try:
        meta = fsio.read_json(meta_path)
        if meta is None or not npz_path.exists():
            return None
        with open_npz(npz_path) as npz:
            head, tail, weight = (npz[k] for k in ("head", "tail", "weight"))
        if not isinstance(meta, dict) or meta.get("sha256") != _arrays_sha256(head, tail, weight):
            raise DataError("its arrays do not match their recorded SHA-256")
        if meta.get("n_images") != n or meta.get("n_neighbors") != n_neighbors:
            raise DataError("it was made for other data or parameters")
        if not (head.ndim == tail.ndim == weight.ndim == 1
                and len(head) == len(tail) == len(weight)):  # fmt: skip
            raise DataError("its heads, tails and weights are not one per edge")
        if not (head.dtype == tail.dtype == np.int64 and weight.dtype == np.float32):
            raise DataError("its arrays are not int64 indices and float32 weights")
        if len(head) and (min(head.min(), tail.min()) < 0 or max(head.max(), tail.max()) >= n):
            raise DataError("it links images that do not exist")
        if not (np.isfinite(weight).all() and (weight > 0).all()):
            raise DataError("its edge weights are not all finite and > 0")
    except (DeepAEError, KeyError, ValueError) as e:
        log(f"rebuilding the neighbour graph: the cached one in {folder} is unusable ({e})")
        return None
    return Graph(head, tail, weight, n_neighbors, n, meta["sha256"])


def _write_cache(folder: Path, key: str, graph: Graph, data_key: str, version: int,
                 log: Log) -> bool:  # fmt: skip
    try:
        with fsio.atomic_path(folder / f"{key}.npz", suffix=".npz") as tmp:
            np.savez(tmp, head=graph.head, tail=graph.tail, weight=graph.weight)
        meta = {
            "version": version, "data": data_key, "n_neighbors": graph.n_neighbors,
            "n_images": graph.n_images, "edges": len(graph), "sha256": graph.sha256,
        }  # fmt: skip
        fsio.write_json(folder / f"{key}.json", meta)  # last: it makes the entry valid
    except DeepAEError as e:  # a read-only cache only costs time next run
        log(f"warning: not caching the neighbour graph ({e})")
        return False
    return True


def _arrays_sha256(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape};".encode())
        digest.update(memoryview(a).cast("B"))
    return digest.hexdigest()


# -- the loss ------------------------------------------------------------------------------

MULTINOMIAL_LIMIT = 2**24  # torch.multinomial's most categories


def _weighted_picks(weight: torch.Tensor, count: int, gen: torch.Generator) -> torch.Tensor:
    """`count` edge positions (count,) int64 drawn with replacement in proportion to
    `weight` (E,). torch.multinomial up to its 2^24 categories (~800,000 images at k=15);
    beyond, the same distribution by inverting the cumulative weights at uniform draws
    (float64 sums: no edge's share is rounded away)."""
    if len(weight) <= MULTINOMIAL_LIMIT:
        return torch.multinomial(weight, count, replacement=True, generator=gen)
    cumulative = torch.cumsum(weight.double(), 0)
    draws = torch.rand(count, generator=gen, dtype=torch.float64) * cumulative[-1]
    return torch.searchsorted(cumulative, draws, right=True).clamp_(max=len(weight) - 1)


class NeighbourLoss:
    """Samples edges for an epoch and scores codes against the graph.

    Edges are drawn with replacement in proportion to their weight, from a CPU generator
    seeded with (seed, epoch) like the shuffle, so a resumed run draws the same edges."""

    def __init__(self, graph: Graph, *, min_dist: float, negative_rate: int, seed: int):
        self.graph = graph
        self.a, self.b = curve_params(min_dist)
        self.log_a = math.log(self.a)
        self.negative_rate = negative_rate
        self.seed = seed
        # Copies: arrays read from the cache are read-only, and torch wants to own them.
        self._weight = torch.tensor(graph.weight)
        self._head = torch.tensor(graph.head)
        self._tail = torch.tensor(graph.tail)

    def epoch_edges(self, epoch: int, steps: int, batch: int):
        """(heads, tails) (steps, batch) int64 image indices and negatives
        (steps, negative_rate * batch) int64 positions within each batch."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 7)
        picks = _weighted_picks(self._weight, steps * batch, gen)
        negatives = torch.randint(0, batch, (steps, self.negative_rate * batch), generator=gen)
        return (self._head[picks].view(steps, batch), self._tail[picks].view(steps, batch),
                negatives)  # fmt: skip

    def share(self, edges, rows: slice):
        """One data-parallel rank's part of `epoch_edges`: the heads and tails of `rows` of
        each step's batch, and their negatives, drawn among the rank's own tails instead of
        the whole batch's (positions modulo its share: still uniform, as the batch splits
        evenly), so no rank needs another's codes. All of them for rows of the whole batch."""
        heads, tails, negatives = edges
        steps, batch = heads.shape
        n = rows.stop - rows.start
        if n == batch:
            return edges
        mine = negatives.view(steps, self.negative_rate, batch)[:, :, rows] % n  # (S, R, n)
        return heads[:, rows], tails[:, rows], mine.reshape(steps, self.negative_rate * n)

    def __call__(self, z_head: torch.Tensor, z_tail: torch.Tensor,
                 negatives: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """UMAP's cross-entropy of codes z_head, z_tail (B, d) of linked images, and of
        z_head against z_tail[negatives] (R*B,): mean over the B * (1 + R) pairs."""
        repeats = self.negative_rate
        d2_pos = (z_head - z_tail).pow(2).sum(1)  # (B,)
        d2_neg = (z_head.repeat(repeats, 1) - z_tail[negatives]).pow(2).sum(1)  # (R*B,)
        # With t = log(a d^(2b)): q = sigmoid(-t), -log q = softplus(t), -log(1-q) = softplus(-t)
        t_pos = self.log_a + self.b * torch.log(d2_pos + DIST_EPS)
        t_neg = self.log_a + self.b * torch.log(d2_neg + DIST_EPS)
        total = nn.functional.softplus(t_pos).sum() + nn.functional.softplus(-t_neg).sum()
        return total / (len(z_head) * (1 + repeats))


def _quiet(message: str) -> None:
    """The default `log`: the library prints nothing."""
