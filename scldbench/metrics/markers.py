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
from scipy.stats import rankdata

from scldbench.data.counts import ArrayLike
from scldbench.metrics.properties import log_normalise

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
    log_values: np.ndarray, labels: Sequence, *, method: str = "wilcoxon"
) -> dict[str, np.ndarray]:
    """One-vs-rest score of every gene for every cluster (cluster label as str -> scores over genes).

    Clusters need at least 2 cells and at least 2 cells outside them.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    x = np.asarray(log_values, dtype=np.float64)
    labels = np.asarray(labels).astype(str)
    if x.ndim != 2 or labels.shape != (x.shape[0],):
        raise ValueError(f"need a 2-D matrix and one label per row, got {x.shape} and {labels.shape} labels")
    ranks = rankdata(x, axis=0) if method == "wilcoxon" else None
    scores = {}
    for cluster in np.unique(labels):
        in_group = labels == cluster
        if in_group.sum() < 2 or (~in_group).sum() < 2:
            n_in = int(in_group.sum())
            raise ValueError(f"cluster {cluster!r} has {n_in} cells; one-vs-rest needs >= 2 on each side")
        s = _wilcoxon_scores(x, in_group, ranks) if ranks is not None else _welch_scores(x, in_group)
        scores[cluster] = np.nan_to_num(s, nan=0.0)
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
    cells scores 0 (its markers cannot be recovered). Generated cells with labels unknown to the real data
    stay in the "rest" of the one-vs-rest tests. The mean is over the scored clusters.
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
    keep_real = np.isin(real_labels, clusters)
    real_scores = marker_scores(log_normalise(real)[keep_real], real_labels[keep_real], method=method)
    gen_counts = np.unique(generated_labels, return_counts=True)
    gen_ok = {c for c, n in zip(*gen_counts, strict=True) if n >= min_cells}
    gen_log = log_normalise(generated)
    gen_scores: dict[str, np.ndarray] = {}
    if gen_ok:
        # clusters too small in the generated set join the rest, so that every scored group has enough cells
        grouped = np.where(np.isin(generated_labels, list(gen_ok)), generated_labels, "\0rest")
        if len(gen_ok) == 1 and not (grouped == "\0rest").any():
            gen_scores = {}  # a single cluster has no "rest" to compare against
        else:
            gen_scores = marker_scores(gen_log, grouped, method=method)
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
