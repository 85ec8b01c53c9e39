"""Scoring one fitted generator under a protocol: the whole-data scores and the per-cluster scores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

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


def labels_of(adata: ad.AnnData, key: str) -> np.ndarray | None:
    if key not in adata.obs or adata.obs[key].isna().any():
        return None
    return adata.obs[key].astype(str).to_numpy()


def extra_scores(prepared: PreparedData, generated: ad.AnnData, seed: int) -> dict[str, float]:
    """The scores beyond RF AUC and MMD, all against the same real test cells.

    Manifold and memorisation scores live in the PCA-50 of log-normalised real training cells; data-property
    distances work on counts; marker overlap and train-synthetic-test-real need labelled generated cells.
    """
    from scldbench.metrics.manifold import manifold_metrics
    from scldbench.metrics.markers import marker_overlap
    from scldbench.metrics.memorisation import fit_log_pca, memorisation
    from scldbench.metrics.properties import property_distances
    from scldbench.metrics.utility import train_synthetic_test_real

    train, test, key = prepared.train, prepared.test, prepared.labels_key
    train_emb, test_emb, gen_emb = fit_log_pca(train.X, test.X, generated.X, seed=seed)
    scores: dict[str, float] = {}
    scores.update(manifold_metrics(test_emb, gen_emb, k=5))
    scores.update(property_distances(test.X, generated.X))
    memo = memorisation(train_emb, test_emb, gen_emb)
    scores.update({f"memorisation_{k}": v for k, v in memo.items()})
    gen_labels = labels_of(generated, key)
    if gen_labels is not None and np.unique(gen_labels).size >= 2:
        overlap = marker_overlap(test.X, labels_of(test, key), generated.X, gen_labels, n_top=20)
        scores["marker_overlap"] = overlap.mean
        scores.update(
            train_synthetic_test_real(
                generated.X, gen_labels, train.X, labels_of(train, key), test.X, labels_of(test, key), seed=seed
            )
        )
    return scores


def on_target_classifier(prepared: PreparedData, seed: int):
    """A cell-type classifier trained on real labelled training cells (judges where generated cells land)."""
    from scldbench.metrics.properties import log_normalise
    from scldbench.metrics.utility import make_classifier

    classifier = make_classifier("logreg", n_components=30, n_samples=prepared.train.n_obs, seed=seed)
    classifier.fit(log_normalise(prepared.train.X), labels_of(prepared.train, prepared.labels_key))
    return classifier


def guidance_sweep(
    generator: Generator,
    prepared: PreparedData,
    weights: list[float],
    clusters: list[str] | None,
    n_cells: int,
    seed: int,
) -> list[dict[str, Any]]:
    """For each cluster and guidance weight w: the fraction of cells generated for the cluster that a
    classifier trained on real cells assigns to it (paper Figure 5)."""
    from scldbench.metrics.properties import log_normalise

    classifier = on_target_classifier(prepared, seed)
    rows = []
    for i, cluster in enumerate(clusters or prepared.clusters):
        for j, w in enumerate(weights):
            cells = generator.sample(n_cells, labels=cluster, guidance=w, seed=seed * 10_000 + i * 100 + j)
            predicted = classifier.predict(log_normalise(cells.X))
            rows.append({"cluster": cluster, "guidance": w, "n": n_cells,
                         "on_target": float(np.mean(predicted.astype(str) == cluster))})
    return rows


def rarest_cluster(prepared: PreparedData, min_test_cells: int) -> str:
    """The training cluster with fewest cells among those with enough test cells to measure recall."""
    test_sizes = prepared.test.obs[prepared.labels_key].astype(str).value_counts()
    train_sizes = prepared.train.obs[prepared.labels_key].astype(str).value_counts()
    eligible = [c for c in train_sizes.index if test_sizes.get(c, 0) >= min_test_cells]
    return str(min(eligible or list(train_sizes.index), key=lambda c: train_sizes[c]))


def augmentation_scores(
    make_generator: Callable[[], Generator], prepared: PreparedData, cluster: str, n_keep: int, seed: int
) -> dict[str, float]:
    """Recall gain on `cluster` when its real training cells, cut to `n_keep`, are topped up with cells from a
    generator fitted on that cut training set (so the generator never saw the removed cells)."""
    from scldbench.metrics.utility import augmentation_benefit

    key = prepared.labels_key
    train_labels = labels_of(prepared.train, key)
    def generate(x_down: Any, y_down: np.ndarray, n_cells: int) -> Any:
        subset = ad.AnnData(
            X=sp.csr_matrix(x_down, dtype=np.float32),
            obs=pd.DataFrame({key: pd.Categorical(y_down)}, index=[f"cell{i}" for i in range(len(y_down))]),
            var=pd.DataFrame(index=prepared.train.var_names.copy()),
        )
        generator = make_generator().fit(subset, key)
        return generator.sample(n_cells, labels=cluster, seed=seed + 7).X

    scores = augmentation_benefit(
        prepared.train.X, train_labels, prepared.test.X, labels_of(prepared.test, key), cluster, generate,
        n_keep=n_keep, seed=seed,
    )
    return {f"augment_{k}": v for k, v in scores.items()} | {"augment_cluster": cluster}
