"""Differential-expression recovery: do generated cells of a cluster carry the real cluster's markers?

For each cluster against all other cells of the same set, genes are ranked by scanpy's Wilcoxon rank-sum test
(`scanpy.tl.rank_genes_groups`, method "wilcoxon", reference "rest") on log1p of counts normalised to 1e4 per
cell. Per cluster k, with R_k the real set's top-`n_top` markers and G_k the generated set's:
- overlap = |R_k & G_k| / n_top (the share of real markers the generated cells recover);
- LFC Spearman = Spearman correlation, over the genes of R_k, of scanpy's log2 fold changes (cluster vs rest)
  in real and in generated cells (do the markers move by the right relative amounts?).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from scldbench.counts.numpy import normalise_total_csr
from scldbench.data.counts import ArrayLike


@dataclass(frozen=True)
class Markers:
    """Per cluster: the top-n marker genes (best first) and the log2 fold change of every gene."""

    top: dict[str, list[str]]
    lfc: dict[str, pd.Series]


def find_markers(
    counts: ArrayLike,
    labels: Sequence,
    gene_names: Sequence[str],
    *,
    n_top: int = 50,
    min_cells: int = 3,
) -> Markers:
    """Wilcoxon one-vs-rest markers of every cluster with >= `min_cells` cells (smaller ones stay in the rest)."""
    import scanpy as sc

    labels = np.asarray(labels).astype(str)
    names, sizes = np.unique(labels, return_counts=True)
    groups = [str(n) for n, s in zip(names, sizes, strict=True) if s >= min_cells and len(labels) - s >= min_cells]
    if not groups:
        return Markers({}, {})
    adata = ad.AnnData(
        X=normalise_total_csr(counts, 1e4, log=True).astype(np.float32),
        obs=pd.DataFrame({"group": pd.Categorical(labels)}, index=[f"c{i}" for i in range(len(labels))]),
        var=pd.DataFrame(index=[str(g) for g in gene_names]),
    )
    adata.uns["log1p"] = {"base": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.rank_genes_groups(adata, "group", groups=groups, reference="rest", method="wilcoxon",
                                n_genes=adata.n_vars, use_raw=False)
    result = adata.uns["rank_genes_groups"]
    top, lfc = {}, {}
    for group in groups:
        ranked = np.asarray(result["names"][group]).astype(str)
        top[group] = list(ranked[:n_top])
        lfc[group] = pd.Series(np.asarray(result["logfoldchanges"][group], dtype=np.float64), index=ranked)
    return Markers(top, lfc)


def de_agreement(real: Markers, generated: Markers, *, n_top: int = 50) -> dict[str, dict[str, float]]:
    """Per real cluster: {"de_overlap", "de_lfc_spearman"} against the generated set's markers.

    A cluster the generated set lacks (or has too few cells of) scores overlap 0 and LFC Spearman NaN.
    """
    out = {}
    for cluster, markers in real.top.items():
        markers = markers[:n_top]
        if cluster not in generated.top:
            out[cluster] = {"de_overlap": 0.0, "de_lfc_spearman": float("nan")}
            continue
        overlap = len(set(markers) & set(generated.top[cluster][:n_top])) / n_top
        real_lfc = real.lfc[cluster].reindex(markers).to_numpy()
        gen_lfc = generated.lfc[cluster].reindex(markers).to_numpy()
        keep = np.isfinite(real_lfc) & np.isfinite(gen_lfc)
        rho = float("nan")
        if keep.sum() >= 3 and np.ptp(real_lfc[keep]) > 0 and np.ptp(gen_lfc[keep]) > 0:
            rho = float(spearmanr(real_lfc[keep], gen_lfc[keep]).statistic)
        out[cluster] = {"de_overlap": float(overlap), "de_lfc_spearman": rho}
    return out
