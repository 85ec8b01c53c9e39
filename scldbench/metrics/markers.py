"""Marker preservation: do generated cells of a cluster carry the same top marker genes as real cells of it?

Markers are found the same way in both sets: counts are log-normalised (log1p of counts scaled to 1e4 per
cell), then for each cluster every gene is scored one-vs-rest (cells of the cluster against all other cells of
the same set) and the `n_top` genes with the highest score are its markers. Scores:
- "wilcoxon": the normal approximation of the Mann-Whitney U statistic (Wilcoxon rank-sum),
  z = (U - n1 n2 / 2) / sqrt(n1 n2 (n1 + n2 + 1) / 12), with U = R1 - n1 (n1 + 1) / 2 and R1 the sum of the
  cluster's ranks (average ranks for ties, no tie correction of the variance; as scanpy's default).
- "t-test": Welch's t, (mean1 - mean2) / sqrt(var1 / n1 + var2 / n2) with unbiased variances.
Genes whose score is undefined (constant in both groups) score 0. Ties in the score keep the lower gene index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

from scldbench.data.counts import ArrayLike
from scldbench.metrics.properties import normalised_csr

METHODS = ("wilcoxon", "t-test")


def _wilcoxon_scores(x: np.ndarray, in_group: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    n1 = int(in_group.sum())
    n2 = x.shape[0] - n1
    rank_sum = ranks[in_group].sum(axis=0)
    u = rank_sum - n1 * (n1 + 1) / 2
    return (u - n1 * n2 / 2) / np.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)


def _welch_scores(x: np.ndarray, in_group: np.ndarray) -> np.ndarray:
    a, b = x[in_group], x[~in_group]
    se = np.sqrt(a.var(axis=0, ddof=1) / len(a) + b.var(axis=0, ddof=1) / len(b))
    diff = a.mean(axis=0) - b.mean(axis=0)
    return np.divide(diff, se, out=np.zeros_like(diff), where=se > 0)


def marker_scores(
    log_values: np.ndarray | sp.spmatrix,
    labels: Sequence,
    *,
    method: str = "wilcoxon",
    groups: Sequence[str] | None = None,
    chunk: int = 1000,
) -> dict[str, np.ndarray]:
    """One-vs-rest score of every gene for each cluster in `groups` (default: every label) -> scores over genes.

    Cells of labels outside `groups` only ever belong to the "rest". A scored cluster needs at least 2 cells
    and at least 2 cells outside it. Sparse input is made dense `chunk` genes at a time.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    x = log_values if sp.issparse(log_values) else np.asarray(log_values, dtype=np.float64)
    labels = np.asarray(labels).astype(str)
    if x.ndim != 2 or labels.shape != (x.shape[0],):
        raise ValueError(f"need a 2-D matrix and one label per row, got {x.shape} and {labels.shape} labels")
    masks = {}
    for cluster in np.unique(labels) if groups is None else [str(g) for g in groups]:
        in_group = labels == cluster
        if in_group.sum() < 2 or (~in_group).sum() < 2:
            n_in = int(in_group.sum())
            raise ValueError(f"cluster {cluster!r} has {n_in} cells; one-vs-rest needs >= 2 on each side")
        masks[cluster] = in_group
    n_genes = x.shape[1]
    scores = {cluster: np.zeros(n_genes) for cluster in masks}
    for start in range(0, n_genes, chunk):
        block = x[:, start : start + chunk]
        block = block.toarray() if sp.issparse(block) else block
        block = np.asarray(block, dtype=np.float64)
        ranks = rankdata(block, axis=0) if method == "wilcoxon" else None
        for cluster, in_group in masks.items():
            s = _wilcoxon_scores(block, in_group, ranks) if ranks is not None else _welch_scores(block, in_group)
            scores[cluster][start : start + block.shape[1]] = np.nan_to_num(s, nan=0.0)
    return scores


def top_markers(scores: np.ndarray, n_top: int) -> np.ndarray:
    """Indices of the `n_top` highest scores, best first (ties: lower index first)."""
    return np.argsort(-np.asarray(scores), kind="stable")[:n_top]


@dataclass(frozen=True)
class MarkerOverlap:
    """Per-cluster overlap of top markers (real vs generated) and their mean over clusters."""

    per_cluster: dict[str, float]
    mean: float
    markers_real: dict[str, list[str]]
    markers_generated: dict[str, list[str]]

    def as_dict(self, prefix: str = "marker_overlap") -> dict[str, float]:
        """Flat named floats: {prefix: mean, f"{prefix}/{cluster}": value, ...}."""
        return {prefix: self.mean, **{f"{prefix}/{k}": v for k, v in self.per_cluster.items()}}


def marker_overlap(
    real: ArrayLike,
    real_labels: Sequence,
    generated: ArrayLike,
    generated_labels: Sequence,
    *,
    n_top: int = 20,
    method: str = "wilcoxon",
    measure: str = "jaccard",
    min_cells: int = 3,
    gene_names: Sequence[str] | None = None,
) -> MarkerOverlap:
    """Overlap of each real cluster's top-`n_top` markers in real vs generated cells (raw counts in).

    measure "jaccard": |A & B| / |A | B|; "fraction": |A & B| / n_top (the share of real markers recovered).
    Every cluster with >= `min_cells` real cells is scored; a cluster with fewer than `min_cells` generated
    cells scores 0 (its markers cannot be recovered). Cells of unscored labels (small clusters, or generated
    labels unknown to the real data) stay in the "rest" of the one-vs-rest tests, in both sets. The mean is
    over the scored clusters.
    """
    if measure not in ("jaccard", "fraction"):
        raise ValueError(f"unknown measure {measure!r}; use 'jaccard' or 'fraction'")
    real_labels = np.asarray(real_labels).astype(str)
    generated_labels = np.asarray(generated_labels).astype(str)
    n_genes = real.shape[1]
    if generated.shape[1] != n_genes:
        raise ValueError(f"real {real.shape} and generated {generated.shape} need the same genes")
    names = np.asarray(gene_names if gene_names is not None else [str(i) for i in range(n_genes)]).astype(str)
    clusters = [c for c in np.unique(real_labels) if (real_labels == c).sum() >= min_cells]
    if not clusters:
        raise ValueError(f"no real cluster has >= {min_cells} cells")
    real_scores = marker_scores(normalised_csr(real, log=True), real_labels, method=method, groups=clusters)
    # clusters too small to score stay in the rest (both sets); a cluster with < 2 other cells cannot be scored
    n_gen = len(generated_labels)
    gen_ok = [
        c for c in clusters if (generated_labels == c).sum() >= min_cells and n_gen - (generated_labels == c).sum() >= 2
    ]
    gen_scores: dict[str, np.ndarray] = {}
    if gen_ok:
        gen_log = normalised_csr(generated, log=True)
        gen_scores = marker_scores(gen_log, generated_labels, method=method, groups=gen_ok)
    per_cluster, markers_real, markers_gen = {}, {}, {}
    for cluster in clusters:
        a = top_markers(real_scores[cluster], n_top)
        markers_real[cluster] = names[a].tolist()
        if cluster not in gen_scores:
            per_cluster[cluster] = 0.0
            markers_gen[cluster] = []
            continue
        b = top_markers(gen_scores[cluster], n_top)
        markers_gen[cluster] = names[b].tolist()
        shared = len(set(a.tolist()) & set(b.tolist()))
        union = len(set(a.tolist()) | set(b.tolist()))
        per_cluster[cluster] = shared / union if measure == "jaccard" else shared / len(a)
    return MarkerOverlap(
        per_cluster=per_cluster,
        mean=float(np.mean(list(per_cluster.values()))),
        markers_real=markers_real,
        markers_generated=markers_gen,
    )
