"""The nearest-neighbour graph behind computed clusters, on data of any size.

For 8,192 cells and more scanpy (1.11) finds neighbours with pynndescent, whose graph comes back as a scipy
sparse *array*; scanpy then reads it with `getnnz`, which sparse arrays do not have in scipy 1.15 and later, and
every unlabelled dataset of that size failed to prepare. `neighbour_transformer` gives scanpy the same
pynndescent search, with scanpy's own default settings, returning the sparse matrix scanpy expects.
"""

from __future__ import annotations

import numpy as np
import scanpy as sc
import scipy.sparse as sp
from pynndescent import PyNNDescentTransformer

#: from this many cells on scanpy's default neighbour search is approximate (pynndescent), below it exact
APPROXIMATE_FROM = 8192


class _MatrixGraph(PyNNDescentTransformer):
    """pynndescent's neighbour graph as a `scipy.sparse.csr_matrix`."""

    def fit_transform(self, X, y=None, **fit_params):  # noqa: N803 - scikit-learn's signature
        return sp.csr_matrix(super().fit_transform(X, y, **fit_params))


def neighbour_transformer(n_cells: int, n_neighbors: int, seed: int) -> _MatrixGraph | None:
    """The transformer to pass to `scanpy.pp.neighbors` for `n_cells` cells, or None where scanpy's exact search
    applies (fewer than `APPROXIMATE_FROM` cells)."""
    if n_cells < APPROXIMATE_FROM:
        return None
    # scanpy's settings for pynndescent (those of UMAP's nearest_neighbors)
    return _MatrixGraph(
        n_neighbors=n_neighbors, metric="euclidean", random_state=seed, n_jobs=sc.settings.n_jobs,
        n_trees=min(64, 5 + round(n_cells**0.5 / 20.0)), n_iters=max(5, round(np.log2(n_cells))),
    )
