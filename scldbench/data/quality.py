"""The protocol's QC filters (cells with at least `min_genes` genes, then genes in at least `min_cells` of the
kept cells), computed on a CSR matrix's stored entries without copying the whole dataset.

The result equals scanpy's `filter_cells` then `filter_genes` on a copy (the cells, genes, stored values in
column order, and the `n_genes` / `n_cells` columns those functions add), but builds only the filtered matrix:
scanpy copies the AnnData (layers included), builds a boolean matrix of the counts for each filter and subsets
the matrix twice.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp


def _per_row(mask: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """How many of each row's stored entries `mask` marks."""
    ends = np.empty(mask.size + 1, dtype=np.int32 if mask.size < 2**31 else np.int64)
    ends[0] = 0
    np.cumsum(mask, out=ends[1:])
    return (ends[indptr[1:]] - ends[indptr[:-1]]).astype(np.int64)


def filter_csr(adata: ad.AnnData, min_genes: int, min_cells: int) -> ad.AnnData:
    """`adata`'s X (CSR), obs and var, reduced to the cells and genes that pass QC; nothing else is kept."""
    x = adata.X
    positive = x.data > 0
    genes_per_cell = _per_row(positive, x.indptr)
    cells = genes_per_cell >= min_genes
    keep = np.repeat(cells, np.diff(x.indptr))
    positive &= keep
    cells_per_gene = np.bincount(x.indices[positive], minlength=x.shape[1]).astype(np.int64)
    del positive
    genes = cells_per_gene >= min_cells
    keep &= genes[x.indices]
    new_column = (np.cumsum(genes) - 1).astype(x.indices.dtype)
    indptr = np.concatenate(([0], np.cumsum(_per_row(keep, x.indptr)[cells]))).astype(x.indptr.dtype)
    matrix = sp.csr_matrix(
        (x.data[keep], new_column[x.indices[keep]], indptr), shape=(int(cells.sum()), int(genes.sum()))
    )
    matrix.sort_indices()  # scanpy's subsetting returns sorted column indices, whatever the input's order
    obs = adata.obs.copy()
    obs["n_genes"] = genes_per_cell
    var = adata.var.copy()
    var["n_cells"] = cells_per_gene
    return ad.AnnData(X=matrix, obs=obs[cells], var=var[genes])
