"""The nearest-neighbour graph behind computed clusters, on data of any size.

For 8,192 cells and more scanpy (1.11) finds neighbours with pynndescent, whose graph comes back as a scipy
sparse *array*; scanpy then reads it with `getnnz`, which sparse arrays do not have in scipy 1.15 and later, and
every unlabelled dataset of that size failed to prepare. `neighbour_transformer` gives scanpy the same
pynndescent search, with scanpy's own default settings, returning the sparse matrix scanpy expects.

`neighbour_graph` is the graph of the large-data clustering (scldbench/data/clustering.py): up to
`EXACT_UP_TO` cells the exact neighbours (scikit-learn's brute-force search, as scanpy's below `APPROXIMATE_FROM`
cells), pynndescent's above, and the UMAP connectivities scanpy computes from them, here in numpy: umap-learn's
numba functions take about 10 s to compile in every process, pynndescent's a minute, each longer than the exact
search itself at 68,579 cells.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import scanpy as sc
import scipy.sparse as sp

#: from this many cells on scanpy's default neighbour search is approximate (pynndescent), below it exact
APPROXIMATE_FROM = 8192


@functools.cache
def _matrix_graph() -> type:
    """pynndescent's transformer returning its graph as a `scipy.sparse.csr_matrix`.

    Built on first use: importing pynndescent compiles its numba functions, tens of seconds in every process
    (each worker of a run) that would otherwise import it for data that never needs it.
    """
    from pynndescent import PyNNDescentTransformer

    class MatrixGraph(PyNNDescentTransformer):
        def fit_transform(self, X, y=None, **fit_params):  # noqa: N803 - scikit-learn's signature
            return sp.csr_matrix(super().fit_transform(X, y, **fit_params))

    return MatrixGraph


def neighbour_transformer(n_cells: int, n_neighbors: int, seed: int) -> Any | None:
    """The transformer to pass to `scanpy.pp.neighbors` for `n_cells` cells, or None where scanpy's exact search
    applies (fewer than `APPROXIMATE_FROM` cells)."""
    if n_cells < APPROXIMATE_FROM:
        return None
    return _pynndescent(n_cells, n_neighbors, seed)


def _pynndescent(n_cells: int, n_neighbors: int, seed: int) -> Any:
    # scanpy's settings for pynndescent (those of UMAP's nearest_neighbors)
    return _matrix_graph()(
        n_neighbors=n_neighbors, metric="euclidean", random_state=seed, n_jobs=sc.settings.n_jobs,
        n_trees=min(64, 5 + round(n_cells**0.5 / 20.0)), n_iters=max(5, round(np.log2(n_cells))),
    )


#: from this many cells on the large-data clustering takes pynndescent's neighbours, not exact ones: the exact
#: search's cost grows with the square of the cells (35 s of CPU at 68,579 cells, 535 s at 250,000) and passes
#: pynndescent's (about 60 s compiling its numba functions in each process, then seconds) near 100,000 cells
EXACT_UP_TO = 100_000

#: UMAP's tolerance on the sum of a cell's memberships, and its floor on a bandwidth (a share of mean distance)
_TOLERANCE, _MIN_SCALE = 1e-5, 1e-3


def exact_neighbours(points: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances) of each point's `n_neighbors` nearest points, the point itself first (Euclidean)."""
    from sklearn.neighbors import NearestNeighbors

    n = points.shape[0]
    k = min(n_neighbors, n) - 1
    own = np.arange(n)[:, None]
    if k == 0:
        return own, np.zeros((n, 1))
    distances, indices = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(points).kneighbors()
    return np.hstack([own, indices]), np.hstack([np.zeros((n, 1)), distances])


def _bandwidths(distances: np.ndarray, n_iter: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """UMAP's (sigma, rho) per cell (local connectivity 1): rho the distance to the nearest other cell, sigma
    found by bisection so that the memberships exp(-(d - rho) / sigma) of the other neighbours sum to log2(k)."""
    n, k = distances.shape
    target = np.log2(k)
    positive = np.where(distances > 0, distances, np.inf)
    rho = positive.min(axis=1)
    rho[~np.isfinite(rho)] = 0.0
    excess = distances[:, 1:] - rho[:, None]
    lo, hi, mid = np.zeros(n), np.full(n, np.inf), np.ones(n)
    searching = np.ones(n, dtype=bool)
    for _ in range(n_iter):
        if not searching.any():
            break
        rows = np.flatnonzero(searching)
        total = np.where(excess[rows] > 0, np.exp(-excess[rows] / mid[rows, None]), 1.0).sum(axis=1)
        done = np.abs(total - target) < _TOLERANCE
        searching[rows[done]] = False
        rows, total = rows[~done], total[~done]
        above = total > target
        hi[rows[above]] = mid[rows[above]]
        lo[rows[~above]] = mid[rows[~above]]
        unbounded = ~above & np.isinf(hi[rows])
        mid[rows[unbounded]] *= 2
        bounded = rows[~unbounded]
        mid[bounded] = (lo[bounded] + hi[bounded]) / 2
    floor = _MIN_SCALE * np.where(rho > 0, distances.mean(axis=1), distances.mean())
    return np.maximum(mid, floor), rho


def umap_connectivities(indices: np.ndarray, distances: np.ndarray) -> sp.csr_matrix:
    """The fuzzy union of each cell's UMAP memberships (`set_op_mix_ratio` 1): w + w.T - w * w.T."""
    n, k = indices.shape
    sigma, rho = _bandwidths(distances)
    excess = distances - rho[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = np.where((excess <= 0) | (sigma[:, None] == 0), 1.0, np.exp(-excess / sigma[:, None]))
    weights[indices == np.arange(n)[:, None]] = 0.0
    w = sp.csr_matrix((weights.ravel(), (np.repeat(np.arange(n), k), indices.ravel())), shape=(n, n))
    w.eliminate_zeros()
    transposed = w.T.tocsr()
    graph = (w + transposed - w.multiply(transposed)).tocsr()
    graph.eliminate_zeros()
    return graph


def approximate_neighbours(points: np.ndarray, n_neighbors: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances) of each point's `n_neighbors` nearest points by pynndescent with scanpy's settings,
    the point itself first."""
    n = points.shape[0]
    graph = _pynndescent(n, n_neighbors, seed).fit_transform(points)
    width = np.diff(graph.indptr)
    if width.min() != width.max():  # pynndescent gives every point the same number; if not, search exactly
        return exact_neighbours(points, n_neighbors)
    indices = graph.indices.reshape(n, -1).astype(np.int64)
    distances = graph.data.reshape(n, -1).astype(np.float64)
    own = np.arange(n)[:, None]
    order = np.argsort(np.where(indices == own, -1.0, distances), axis=1, kind="stable")
    indices, distances = np.take_along_axis(indices, order, 1), np.take_along_axis(distances, order, 1)
    missing = indices[:, 0] != own[:, 0]  # a point the search did not list among its own neighbours
    indices[missing] = np.hstack([own[missing], indices[missing, :-1]])
    distances[missing] = np.hstack([np.zeros((int(missing.sum()), 1)), distances[missing, :-1]])
    distances[:, 0] = 0.0
    return indices[:, :n_neighbors], distances[:, :n_neighbors]


def neighbour_graph(points: np.ndarray, n_neighbors: int, seed: int) -> sp.csr_matrix:
    """The UMAP connectivities of the `n_neighbors`-nearest-neighbour graph (the cell itself counted), what
    `scanpy.pp.neighbors` computes from the same neighbours up to float rounding: the neighbours exact below
    `EXACT_UP_TO` points, pynndescent's from there on."""
    if points.shape[0] < EXACT_UP_TO:
        return umap_connectivities(*exact_neighbours(points, n_neighbors))
    return umap_connectivities(*approximate_neighbours(points, n_neighbors, seed))
