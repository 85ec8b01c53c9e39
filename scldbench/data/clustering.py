"""Computed clusters of data too large to densify: the steps of the protocol's clustering (log-normalisation,
2,000 highly variable genes of scanpy's 'seurat' flavour, scaling clipped at 10, a 50-component PCA, a 15-nearest
neighbour UMAP graph, Leiden) without a dense copy of the scaled matrix or a float copy of the whole count matrix.

Only the cells x top-genes values are ever held (sparse); the PCA is the exact eigendecomposition of the clipped
scaled matrix's covariance, computed from the sparse values (see `scaled_pca`); the neighbours are exact up to
100,000 cells (scanpy's are exact below 8,192 cells), pynndescent's above (see `neighbours.neighbour_graph`).
Results are those of the small-data path in prepare.py up to float rounding and igraph's random stream, not bit
for bit, so this path is taken only above `DENSE_LIMIT` values (see `large_data`); the development datasets stay
far below it.
"""

from __future__ import annotations

import random

import igraph as ig
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.linalg import eigh

from scldbench.data.neighbours import neighbour_graph

#: cells x top genes above which the clustering runs here (a dense float32 scaled matrix of 400 MB and more)
DENSE_LIMIT = 100_000_000
#: values in one dense block of rows
BLOCK_VALUES = 1 << 23
#: scaled values are clipped at +-10, as `scanpy.pp.scale(max_value=10)` does
MAX_VALUE = 10.0
#: mean bins of the 'seurat' flavour's normalised dispersion
N_BINS = 20


def large_data(n_cells: int, n_genes: int, n_top: int = 2000) -> bool:
    """Whether `n_cells` x min(`n_top`, `n_genes`) scaled values are over `DENSE_LIMIT`, so clusters are
    computed here."""
    return n_cells * min(n_top, n_genes) > DENSE_LIMIT


def _row_blocks(n_rows: int, n_columns: int) -> list[slice]:
    step = max(1, BLOCK_VALUES // max(n_columns, 1))
    return [slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]


def size_factors(counts: sp.csr_matrix, target_sum: float = 1e4) -> np.ndarray:
    """`target_sum` / each cell's total count (0 for a cell without counts), as `normalize_total` scales."""
    totals = np.zeros(counts.shape[0])
    for rows in _row_blocks(*counts.shape):
        totals[rows] = np.asarray(counts[rows].sum(axis=1, dtype=np.float64)).ravel()
    factors = np.zeros_like(totals)
    np.divide(target_sum, totals, out=factors, where=totals > 0)
    return factors


def normalised_moments(counts: sp.csr_matrix, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each gene's mean and variance (ddof 1) of the normalised counts (counts x `factors` of their cell)."""
    n_cells, n_genes = counts.shape
    total = np.zeros(n_genes)
    squares = np.zeros(n_genes)
    for rows in _row_blocks(n_cells, n_genes):
        block = counts[rows]
        values = block.data * np.repeat(factors[rows], np.diff(block.indptr))
        total += np.bincount(block.indices, weights=values, minlength=n_genes)
        squares += np.bincount(block.indices, weights=values * values, minlength=n_genes)
    mean = total / n_cells
    var = (squares / n_cells - mean**2) * (n_cells / max(n_cells - 1, 1))
    return mean, var


def top_genes(mean: np.ndarray, var: np.ndarray, n_top: int) -> np.ndarray:
    """Mask of the `n_top` genes of highest normalised dispersion, scanpy's 'seurat' flavour: log dispersion
    (var / mean) standardised within 20 equal-width bins of log1p(mean); ties at the cut-off are all kept."""
    mean = np.where(mean == 0, 1e-12, mean)
    dispersion = var / mean
    dispersion[dispersion == 0] = np.nan
    dispersion = np.log(dispersion)
    frame = pd.DataFrame({"means": np.log1p(mean), "dispersions": dispersion})
    frame["mean_bin"] = pd.cut(frame["means"], bins=N_BINS)
    stats = frame.groupby("mean_bin", observed=True)["dispersions"].agg(avg="mean", dev="std")
    alone = stats["dev"].isnull()  # one gene in its bin: normalised dispersion 1
    stats.loc[alone, "dev"] = stats.loc[alone, "avg"]
    stats.loc[alone, "avg"] = 0
    per_gene = stats.loc[frame["mean_bin"]]
    norm = (frame["dispersions"].to_numpy() - per_gene["avg"].to_numpy()) / per_gene["dev"].to_numpy()
    ranked = np.sort(norm[~np.isnan(norm)])[::-1]
    if ranked.size == 0:
        return np.zeros(mean.size, dtype=bool)
    return np.nan_to_num(norm, nan=-np.inf) >= ranked[min(n_top, ranked.size) - 1]


def log_normalised_genes(counts: sp.csr_matrix, factors: np.ndarray, genes: np.ndarray) -> sp.csr_matrix:
    """log1p of the normalised counts of the `genes` (mask) columns, float32 CSR."""
    column = (np.cumsum(genes) - 1).astype(np.int32)
    parts = []
    for rows in _row_blocks(*counts.shape):
        block = counts[rows]
        keep = genes[block.indices]
        row_of = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))[keep]
        values = np.log1p(block.data[keep] * factors[rows][row_of]).astype(np.float32)
        indptr = np.concatenate(([0], np.cumsum(np.bincount(row_of, minlength=block.shape[0]))))
        parts.append(sp.csr_matrix((values, column[block.indices[keep]], indptr),
                                   shape=(block.shape[0], int(genes.sum()))))
    return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, int(genes.sum())), dtype=np.float32)


def scaled_pca(x: sp.csr_matrix, n_comps: int) -> np.ndarray:
    """The first `n_comps` principal component scores of `x` scaled as `scanpy.pp.scale(max_value=10)` scales
    (each column centred and divided by its standard deviation, ddof 1, then clipped at +-10).

    Each column's unstored entries all scale to one value, so the scaled matrix is a sparse matrix `s` (the
    stored entries' scaled values less that value) plus a constant per column; centring removes the constants,
    and the covariance is `s.T @ s` less the outer product of `s`'s column sums / cells, decomposed exactly."""
    n_cells = x.shape[0]
    mean = np.asarray(x.mean(axis=0, dtype=np.float64)).ravel()
    squares = np.asarray(x.multiply(x).sum(axis=0, dtype=np.float64)).ravel()
    var = (squares / n_cells - mean**2) * (n_cells / max(n_cells - 1, 1))
    std = np.sqrt(np.maximum(var, 0))
    std[std == 0] = 1.0
    unstored = np.clip(-mean / std, -MAX_VALUE, MAX_VALUE)
    columns = x.indices
    values = np.clip((x.data - mean[columns]) / std[columns], -MAX_VALUE, MAX_VALUE) - unstored[columns]
    s = sp.csr_matrix((values, x.indices, x.indptr), shape=x.shape)
    s_mean = np.asarray(s.mean(axis=0)).ravel()
    covariance = (s.T @ s).toarray() - n_cells * np.outer(s_mean, s_mean)
    n_genes = covariance.shape[0]
    eigenvalues, vectors = eigh(covariance, subset_by_index=[n_genes - n_comps, n_genes - 1])
    vectors = vectors[:, np.argsort(eigenvalues)[::-1]]
    # the sign of each component follows its largest loading, as scikit-learn's svd_flip does
    vectors *= np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])])
    return (np.asarray(s @ vectors) - s_mean @ vectors).astype(np.float32)


def large_data_graph(counts: sp.csr_matrix, seed: int, n_top: int = 2000, n_comps: int = 50,
                     n_neighbors: int = 15) -> sp.csr_matrix:
    """The neighbour graph the clusters are found on, for counts over `DENSE_LIMIT` (see the module's text)."""
    factors = size_factors(counts)
    n_top = min(n_top, counts.shape[1])
    if counts.shape[1] > n_top:
        genes = top_genes(*normalised_moments(counts, factors), n_top)
    else:
        genes = np.ones(counts.shape[1], dtype=bool)
    x = log_normalised_genes(counts, factors, genes)
    scores = scaled_pca(x, min(n_comps, x.shape[0] - 1, x.shape[1] - 1))
    del x
    return neighbour_graph(scores, n_neighbors, seed)


def leiden_graph(connectivities: sp.csr_matrix) -> ig.Graph:
    """The weighted undirected graph of a symmetric connectivity matrix, each pair once. scanpy's conversion
    adds each pair twice, which doubles every weight: the same modularity, twice the edges to visit."""
    upper = sp.triu(connectivities, k=1).tocoo()
    graph = ig.Graph(n=connectivities.shape[0], edges=np.column_stack([upper.row, upper.col]), directed=False)
    graph.es["weight"] = upper.data
    return graph


def leiden_labels(graph: ig.Graph, resolution: float, seed: int) -> np.ndarray:
    """igraph's Leiden (modularity, 2 iterations, as `sc.tl.leiden(flavor="igraph")`), seeded, as strings."""
    ig.set_random_number_generator(random.Random(seed))
    try:
        partition = graph.community_leiden(objective_function="modularity", weights="weight",
                                           resolution=resolution, n_iterations=2)
    finally:
        ig.set_random_number_generator(random)  # igraph's default
    return np.asarray(partition.membership).astype(str)
