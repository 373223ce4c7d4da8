"""Neighbour graphs for tests that need one without umap-learn."""

import numpy as np

from deepae import neighbours


def ring(n: int, k: int = 2) -> neighbours.Graph:
    """Image i linked to i + 1 .. i + k (mod n), every edge of weight 1."""
    head = np.repeat(np.arange(n), k)
    tail = (head + np.tile(np.arange(1, k + 1), n)) % n
    return neighbours.Graph(head, tail, np.ones(n * k, np.float32), k, n, f"ring-{n}")
