"""Distances between real and generated counts on the data properties simulator benchmarks compare.

The properties follow SimBench (Cao et al. 2021) and countsimQC (Soneson & Robinson 2018): library size,
fraction of zeros per cell and per gene, gene means and variances, the mean-variance and mean-zero-fraction
relations of genes, and gene-gene correlation. Inputs are raw counts, cells x genes, dense or scipy sparse,
with the same genes in the same order in both sets. Every distance is 0 for identical data and grows as the
data differ.

Distances used:
- 1-D distributions (library size, zeros per cell, zeros per gene, gene mean, gene variance): the two-sample
  Kolmogorov-Smirnov statistic, sup_t |F_real(t) - F_gen(t)|, in [0, 1].
- 2-D relations of genes (log mean vs log variance; log mean vs zero fraction): a binned trend comparison.
  Genes are binned by log mean with edges at quantiles of the real genes' log means; in each bin holding at
  least `min_genes_per_bin` genes of both sets, the median of the second coordinate is taken for each set; the
  distance is the mean absolute difference of the two medians over those bins, weighted by the real genes per
  bin (units of the second coordinate: log variance, or zero fraction). A bin populated in only one set adds
  the largest difference seen (or the coordinate's range in the real data when no bin is shared).
- Gene-gene correlation: Pearson correlation of log-normalised values among the `n_corr_genes` genes with the
  highest mean in the real data; the distance is the mean absolute difference of the paired coefficients over
  gene pairs (upper triangle), in [0, 2].
Gene statistics (mean, variance, correlation) are computed on counts normalised to `target` per cell (log1p
for correlation and for the relation axes), so that library-size differences are measured once, by their
own KS.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from scldbench.counts.numpy import normalise_total_csr
from scldbench.data.counts import ArrayLike


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    a, b = np.sort(np.asarray(a, dtype=np.float64).ravel()), np.sort(np.asarray(b, dtype=np.float64).ravel())
    if a.size == 0 or b.size == 0:
        raise ValueError("ks_statistic needs two non-empty samples")
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def _column_mean_var(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and unbiased variance of a sparse matrix."""
    n = m.shape[0]
    mean = np.asarray(m.sum(axis=0)).ravel() / n
    sq = np.asarray(m.multiply(m).sum(axis=0)).ravel()
    var = np.maximum(sq - n * mean**2, 0.0) / max(n - 1, 1)
    return mean, var


def binned_trend_distance(
    x_real: np.ndarray,
    y_real: np.ndarray,
    x_gen: np.ndarray,
    y_gen: np.ndarray,
    *,
    n_bins: int = 20,
    min_genes_per_bin: int = 3,
) -> float:
    """Weighted mean |median y_real - median y_gen| over bins of x (edges: quantiles of x_real).

    See the module docstring for the treatment of bins populated in only one set.
    """
    x_real, y_real = np.asarray(x_real, np.float64), np.asarray(y_real, np.float64)
    x_gen, y_gen = np.asarray(x_gen, np.float64), np.asarray(y_gen, np.float64)
    edges = np.unique(np.quantile(x_real, np.linspace(0, 1, n_bins + 1)))
    if edges.size < 2:
        edges = np.array([x_real.min() - 0.5, x_real.max() + 0.5])
    # interior edges only: values outside the real range fall in the first / last bin
    bin_real = np.searchsorted(edges[1:-1], x_real, side="right")
    bin_gen = np.searchsorted(edges[1:-1], x_gen, side="right")
    n_bin = edges.size - 1
    diffs, weights, unmatched = [], [], []
    for b in range(n_bin):
        in_real, in_gen = y_real[bin_real == b], y_gen[bin_gen == b]
        enough_real, enough_gen = in_real.size >= min_genes_per_bin, in_gen.size >= min_genes_per_bin
        if enough_real and enough_gen:
            diffs.append(abs(np.median(in_real) - np.median(in_gen)))
            weights.append(in_real.size)
        elif enough_real:
            unmatched.append(in_real.size)
    if not diffs:
        return float(np.ptp(y_real)) if y_real.size else float("nan")
    worst = max(diffs)
    diffs += [worst] * len(unmatched)
    weights += unmatched
    return float(np.average(diffs, weights=weights))


def gene_correlation_distance(
    real_log: np.ndarray, gen_log: np.ndarray, genes: np.ndarray
) -> float:
    """Mean |corr_real - corr_gen| over pairs of `genes` (upper triangle); constant genes count as corr 0."""

    def corr(x: np.ndarray) -> np.ndarray:
        sub = x[:, genes]
        centred = sub - sub.mean(axis=0)
        norm = np.sqrt((centred**2).sum(axis=0))
        scaled = np.divide(centred, norm, out=np.zeros_like(centred), where=norm > 0)
        return scaled.T @ scaled

    upper = np.triu_indices(len(genes), k=1)
    return float(np.mean(np.abs(corr(real_log)[upper] - corr(gen_log)[upper])))


def property_distances(
    real: ArrayLike,
    generated: ArrayLike,
    *,
    target: float = 1e4,
    n_corr_genes: int = 100,
    n_bins: int = 20,
) -> dict[str, float]:
    """Distances between real and generated raw counts on scRNA-seq data properties (lower is better).

    Returns:
        library_size_ks: KS of total counts per cell.
        zeros_per_cell_ks: KS of the fraction of genes with zero count per cell.
        zeros_per_gene_ks: KS of the fraction of cells with zero count per gene.
        gene_mean_ks, gene_variance_ks: KS of per-gene mean and variance of counts normalised to `target`.
        mean_variance_trend: binned trend distance of log1p(variance) against log1p(mean), normalised counts.
        mean_zeros_trend: binned trend distance of zero fraction against log1p(mean), per gene.
        gene_correlation_mad: mean |difference| of Pearson correlations of log-normalised values among the
            `n_corr_genes` genes with the highest mean (log-normalised) in the real data.
    """
    # sparse throughout: only the `n_corr_genes` columns are ever made dense
    real_counts, gen_counts = (sp.csr_matrix(m, dtype=np.float64, copy=True) for m in (real, generated))
    if real_counts.shape[1] != gen_counts.shape[1]:
        raise ValueError(f"real {real_counts.shape} and generated {gen_counts.shape} need the same genes")
    for m in (real_counts, gen_counts):
        m.eliminate_zeros()
    n_real, n_gen = real_counts.shape[0], gen_counts.shape[0]
    real_zero_gene = 1 - real_counts.getnnz(axis=0) / n_real
    gen_zero_gene = 1 - gen_counts.getnnz(axis=0) / n_gen
    real_zero_cell = 1 - real_counts.getnnz(axis=1) / real_counts.shape[1]
    gen_zero_cell = 1 - gen_counts.getnnz(axis=1) / gen_counts.shape[1]
    real_mean, real_var = _column_mean_var(normalise_total_csr(real_counts, target))
    gen_mean, gen_var = _column_mean_var(normalise_total_csr(gen_counts, target))
    real_log = normalise_total_csr(real_counts, target, log=True)
    gen_log = normalise_total_csr(gen_counts, target, log=True)
    n_corr = min(n_corr_genes, real_counts.shape[1])
    top = np.argsort(-np.asarray(real_log.mean(axis=0)).ravel(), kind="stable")[:n_corr]
    real_top, gen_top = real_log[:, top].toarray(), gen_log[:, top].toarray()
    return {
        "library_size_ks": ks_statistic(real_counts.sum(axis=1), gen_counts.sum(axis=1)),
        "zeros_per_cell_ks": ks_statistic(real_zero_cell, gen_zero_cell),
        "zeros_per_gene_ks": ks_statistic(real_zero_gene, gen_zero_gene),
        "gene_mean_ks": ks_statistic(real_mean, gen_mean),
        "gene_variance_ks": ks_statistic(real_var, gen_var),
        "mean_variance_trend": binned_trend_distance(
            np.log1p(real_mean), np.log1p(real_var), np.log1p(gen_mean), np.log1p(gen_var), n_bins=n_bins
        ),
        "mean_zeros_trend": binned_trend_distance(
            np.log1p(real_mean), real_zero_gene, np.log1p(gen_mean), gen_zero_gene, n_bins=n_bins
        ),
        "gene_correlation_mad": gene_correlation_distance(real_top, gen_top, np.arange(n_corr)),
    }
