"""Scores beside the protocols' own: biology-level agreement, the protocol-independent extras, the guidance
sweep and the augmentation test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scldbench.data.prepare import PreparedData
from scldbench.generator import Generator
from scldbench.metrics.pca import DENSE_LIMIT, sparse_path
from scldbench.suite import EvaluateSettings

#: markers per cluster for DE recovery, and genes for the gene-gene correlation
N_MARKERS = 50
N_CORRELATION_GENES = 200


def labels_of(adata: ad.AnnData, key: str) -> np.ndarray | None:
    if key not in adata.obs or adata.obs[key].isna().any():
        return None
    return adata.obs[key].astype(str).to_numpy()


def extras_sparse(prepared: PreparedData, generated: ad.AnnData, dense_limit: int | None = DENSE_LIMIT) -> bool:
    """Whether `extra_scores` keeps log-normalised values sparse: when the training, test and generated cells
    together hold more than `dense_limit` values (cells x genes)."""
    cells = prepared.train.n_obs + prepared.test.n_obs + generated.n_obs
    return sparse_path(cells, prepared.test.n_vars, dense_limit)


def extra_scores(
    prepared: PreparedData, generated: ad.AnnData, seed: int, dense_limit: int | None = DENSE_LIMIT
) -> dict[str, float]:
    """The scores beyond RF AUC and MMD, all against the same real test cells.

    Manifold and memorisation scores live in the PCA-50 of log-normalised real training cells; data-property
    distances work on counts; train-synthetic-test-real needs labelled generated cells. Above `dense_limit`
    (see `extras_sparse`) the log-normalised values stay sparse and the PCAs are centred implicitly.
    """
    from scldbench.metrics.manifold import manifold_metrics
    from scldbench.metrics.memorisation import fit_log_pca, memorisation
    from scldbench.metrics.properties import property_distances
    from scldbench.metrics.utility import train_synthetic_test_real

    train, test, key = prepared.train, prepared.test, prepared.labels_key
    sparse = extras_sparse(prepared, generated, dense_limit)
    train_emb, test_emb, gen_emb = fit_log_pca(train.X, test.X, generated.X, seed=seed, sparse=sparse)
    scores: dict[str, float] = {}
    scores.update(manifold_metrics(test_emb, gen_emb, k=5))
    scores.update(property_distances(test.X, generated.X))
    memo = memorisation(train_emb, test_emb, gen_emb)
    scores.update({f"memorisation_{k}": v for k, v in memo.items()})
    gen_labels = labels_of(generated, key)
    if gen_labels is not None and np.unique(gen_labels).size >= 2:
        scores.update(
            train_synthetic_test_real(
                generated.X, gen_labels, train.X, labels_of(train, key), test.X, labels_of(test, key), seed=seed,
                sparse=sparse,
            )
        )
    return scores


def _biology_of(
    real_markers: Any, real_x: Any, real_labels: np.ndarray | None, other_x: Any, other_labels: np.ndarray | None,
    var_names: list[str], genes: np.ndarray, min_cells: int,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """DE recovery and gene-gene correlation of `other` cells against real test cells (whole data and per
    cluster); `real_markers` are the real test cells' markers."""
    from scldbench.metrics.de import de_agreement, find_markers
    from scldbench.metrics.gene_correlation import correlation_agreement, log_expression

    real_values, other_values = log_expression(real_x, genes), log_expression(other_x, genes)
    metrics = {"gene_corr_all": correlation_agreement(real_values, other_values)}
    per_cluster: dict[str, dict[str, float]] = {}
    if other_labels is None or real_labels is None or real_markers is None:
        return metrics, per_cluster
    other_markers = find_markers(other_x, other_labels, var_names, n_top=N_MARKERS)
    for cluster, values in de_agreement(real_markers, other_markers, n_top=N_MARKERS).items():
        per_cluster[cluster] = dict(values)
    for cluster in np.unique(real_labels):
        real_rows, other_rows = real_labels == cluster, other_labels == cluster
        if real_rows.sum() < min_cells:
            continue
        corr = correlation_agreement(real_values[real_rows], other_values[other_rows])
        per_cluster.setdefault(str(cluster), {})["gene_corr"] = corr
    for name in ("de_overlap", "de_lfc_spearman", "gene_corr"):
        values = [v[name] for v in per_cluster.values() if name in v and np.isfinite(v[name])]
        metrics[name] = float(np.mean(values)) if values else float("nan")
    return metrics, per_cluster


def biology_scores(
    context: Any, generated: ad.AnnData, settings: EvaluateSettings
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(metrics, per_cluster) of DE recovery and gene-gene correlation, each with its real-vs-real reference.

    Real test cells against generated cells; the reference (`<name>_reference`) is the same metric with
    held-out real cells (the positive control's) in place of generated ones. Per-cluster values need labelled
    generated cells; `gene_corr_all` (all cells) is computed for every generator.
    """
    from scldbench.metrics.de import find_markers
    from scldbench.metrics.gene_correlation import most_expressed

    prepared = context.prepared
    test, key, var_names = prepared.test, prepared.labels_key, list(map(str, prepared.test.var_names))
    real_labels = labels_of(test, key)
    genes = context.memo("corr-genes", lambda: most_expressed(test.X, N_CORRELATION_GENES))
    real_markers = context.memo(
        "real-markers", lambda: find_markers(test.X, real_labels, var_names, n_top=N_MARKERS)
    ) if real_labels is not None else None
    min_cells = settings.min_cluster_cells

    def reference() -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        holdout = prepared.holdout
        if holdout.n_obs < 3:
            return {}, {}
        return _biology_of(real_markers, test.X, real_labels, holdout.X, labels_of(holdout, key), var_names, genes,
                           min_cells)

    ref_metrics, ref_clusters = context.memo(f"biology-reference-{min_cells}", reference)
    gen_labels = labels_of(generated, key)
    if gen_labels is not None and np.unique(gen_labels).size < 2:
        gen_labels = None
    metrics, per_cluster = _biology_of(real_markers, test.X, real_labels, generated.X, gen_labels, var_names, genes,
                                       min_cells)
    for name in list(metrics):
        if name in ref_metrics:
            metrics[f"{name}_reference"] = ref_metrics[name]
    for cluster, values in per_cluster.items():
        for name in list(values):
            if name in ref_clusters.get(cluster, {}):
                values[f"{name}_reference"] = ref_clusters[cluster][name]
    return metrics, per_cluster


def on_target_classifier(prepared: PreparedData, seed: int):
    """A cell-type classifier trained on real labelled training cells (judges where generated cells land)."""
    from scldbench.counts.numpy import log_normalise
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
    from scldbench.counts.numpy import log_normalise

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
