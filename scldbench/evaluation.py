"""Scoring one fitted generator under a protocol: the whole-data scores and the per-cluster scores."""

from __future__ import annotations

from typing import Any

import anndata as ad
import numpy as np

from scldbench.data.prepare import PreparedData
from scldbench.generator import Generator
from scldbench.protocols import Protocol
from scldbench.suite import EvaluateSettings


def cluster_mask(adata: ad.AnnData, key: str, cluster: str) -> np.ndarray:
    return adata.obs[key].astype(str).to_numpy() == cluster


def score_clusters(
    generator: Generator,
    prepared: PreparedData,
    protocol: Protocol,
    settings: EvaluateSettings,
    guidance: float | None,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """For each cluster k with enough real test cells: cells generated for k vs real test cells of k."""
    out: dict[str, dict[str, Any]] = {}
    test = prepared.test
    for i, cluster in enumerate(prepared.clusters):
        real = test[cluster_mask(test, prepared.labels_key, cluster)]
        if real.n_obs < settings.min_cluster_cells:
            out[cluster] = {"n_real": int(real.n_obs), "skipped": f"fewer than {settings.min_cluster_cells} test cells"}
            continue
        generated = generator.sample(real.n_obs, labels=cluster, guidance=guidance, seed=seed * 1000 + i + 1)
        scores = protocol.evaluate(real.X, generated.X, seed=seed, n_trees=settings.n_trees)
        out[cluster] = {"n_real": int(real.n_obs), **scores}
    return out


def summarise_clusters(per_cluster: dict[str, dict[str, Any]]) -> dict[str, float]:
    scored = [v for v in per_cluster.values() if "rf_auc" in v]
    if not scored:
        return {}
    return {
        "cluster_rf_auc_mean": float(np.mean([v["rf_auc"] for v in scored])),
        "cluster_mmd_mean": float(np.mean([v["mmd"] for v in scored])),
    }
