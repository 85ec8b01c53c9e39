"""Gene-gene correlation structure: is the real correlation matrix of the most expressed genes kept?

Values are log1p of counts normalised to 1e4 per cell. For a set of genes (the `n_genes` with the highest mean in
the real cells), the Pearson correlation matrix over cells is computed in real and in generated cells; the score
is the Pearson correlation of the two matrices' upper triangles (pairs undefined in either set, from genes
constant in it, are left out): 1 when the structure is the same, about 0 when it is unrelated.
"""

from __future__ import annotations

import warnings

import numpy as np

from scldbench.counts.numpy import normalise_total_csr
from scldbench.data.counts import ArrayLike


def most_expressed(counts: ArrayLike, n_genes: int = 200) -> np.ndarray:
    """Indices of the `n_genes` genes with the highest mean log-normalised value (ties: lower index first)."""
    means = np.asarray(normalise_total_csr(counts, 1e4, log=True).mean(axis=0)).ravel()
    return np.sort(np.argsort(-means, kind="stable")[: min(n_genes, means.size)])


def log_expression(counts: ArrayLike, genes: np.ndarray) -> np.ndarray:
    """log1p of counts normalised to 1e4 per cell (over all genes), then only the columns `genes`; dense."""
    return normalise_total_csr(counts, 1e4, log=True)[:, genes].toarray()


def _upper_correlations(values: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")
        corr = np.corrcoef(values, rowvar=False)
    return corr[np.triu_indices(values.shape[1], k=1)]


def correlation_agreement(real: np.ndarray, generated: np.ndarray) -> float:
    """Pearson correlation of the real and generated gene-gene correlations (upper triangle).

    Inputs are the chosen genes' log-normalised values (cells x genes, see `log_expression`); NaN when fewer
    than 3 gene pairs are defined in both sets or either set has fewer than 3 cells.
    """
    real, generated = np.asarray(real, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    if real.shape[1] != generated.shape[1]:
        raise ValueError(f"real {real.shape} and generated {generated.shape} need the same genes")
    if real.shape[0] < 3 or generated.shape[0] < 3:
        return float("nan")
    r = _upper_correlations(real)
    g = _upper_correlations(generated)
    keep = np.isfinite(r) & np.isfinite(g)
    if keep.sum() < 3 or np.ptp(r[keep]) == 0 or np.ptp(g[keep]) == 0:
        return float("nan")
    return float(np.corrcoef(r[keep], g[keep])[0, 1])
