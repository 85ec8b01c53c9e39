"""Preparation: QC, labels, the cluster-stratified split, and the fingerprint cache."""

from __future__ import annotations

import importlib

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scldbench.data.prepare import PrepareSettings, prepare, stratified_split
from scldbench.errors import ScldbenchError
from tests.conftest import make_counts

prep = importlib.import_module("scldbench.data.prepare")


def test_split_is_stratified_and_disjoint(pbmc_prepared):
    p = pbmc_prepared
    names = [set(part.obs_names) for part in (p.train, p.test, p.holdout)]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert sum(map(len, names)) == 700
    sizes = p.info["cluster_sizes"]
    test_counts = p.test.obs["cluster"].value_counts()
    for cluster, total in sizes.items():
        assert test_counts[cluster] == pytest.approx(0.2 * total, abs=1)
    assert p.labels_key == "cluster" and len(p.clusters) == 11


def test_quality_filters_drop_sparse_cells_and_rare_genes():
    data = make_counts(n_cells=40, n_genes=30)
    x = data.X.toarray()
    x[0] = 0
    x[0, :3] = 1  # a cell with 3 genes
    x[:, 5] = 0
    x[:2, 5] = 1  # a gene seen in 2 cells
    data.X = x
    out = prep.quality_filter(data, min_genes=10, min_cells=3)
    assert "c0" not in out.obs_names and "gene5" not in out.var_names
    assert out.n_obs == 39 and out.n_vars == 29


def test_too_small_cluster_is_a_clear_error():
    labels = np.array(["a"] * 20 + ["b"] * 2)
    with pytest.raises(ScldbenchError, match="cluster 'b' has 2 cell.*too few to split"):
        stratified_split(labels, 0.2, 0.2, seed=0)


def annotated(n_cells: int = 90):
    """Counts with an annotation as atlases have them: a few cells without a label and a type of two cells."""
    data = make_counts(n_cells=n_cells, n_genes=30)
    labels = data.obs["group"].astype(object).to_numpy()
    labels[:4] = None
    labels[4:6] = "platelet"
    data.obs["cell_type"] = pd.Categorical(labels)
    return data


def test_unlabelled_cells_and_types_too_small_to_split_are_left_out_and_recorded(caplog, tmp_path, monkeypatch):
    monkeypatch.setenv("SCLDBENCH_CACHE", str(tmp_path))
    settings = PrepareSettings(labels_key="cell_type", min_genes=1, min_cells=1)
    for _ in range(2):  # prepared, then read from the cache: the same record and the same warning
        caplog.clear()
        prepared = prepare(annotated(), settings)
        assert prepared.info["left_out"] == {"unlabelled cells": 4, "clusters too small to split": {"platelet": 2}}
        assert sum(part.n_obs for part in (prepared.train, prepared.test, prepared.holdout)) == 84
        assert set(prepared.clusters) == {"g0", "g1", "g2"}
        assert "4 unlabelled cells" in caplog.text and "platelet (2 cells)" in caplog.text
    complete = annotated()
    complete.obs["cell_type"] = complete.obs["group"]
    assert "left_out" not in prepare(complete, settings, use_cache=False).info


def test_labels_that_leave_nothing_to_split_are_a_clear_error():
    data = annotated()
    data.obs["cell_type"] = pd.Categorical([None] * data.n_obs, categories=["a"])
    with pytest.raises(ScldbenchError, match="label column 'cell_type' has no values"):
        prepare(data, PrepareSettings(labels_key="cell_type", min_genes=1, min_cells=1), use_cache=False)
    data.obs["cell_type"] = [f"c{i // 2}" for i in range(data.n_obs)]
    with pytest.raises(ScldbenchError, match="every cluster has fewer than 3 cells"):
        prepare(data, PrepareSettings(labels_key="cell_type", min_genes=1, min_cells=1), use_cache=False)


def test_split_keeps_every_part_nonempty_for_small_clusters():
    labels = np.array(["a"] * 3 + ["b"] * 50)
    split = stratified_split(labels, 0.2, 0.2, seed=0)
    assert sorted(split[:3]) == ["holdout", "test", "train"]


def test_missing_label_column_is_named(pbmc_mini):
    with pytest.raises(ScldbenchError, match="label column 'celltype' is not in the data.*available columns"):
        prepare(pbmc_mini, PrepareSettings(labels_key="celltype"), use_cache=False)


def test_cache_reuses_by_fingerprint_and_settings(pbmc_mini, monkeypatch):
    settings = PrepareSettings(labels_key="louvain", seed=3)
    first = prepare(pbmc_mini, settings)

    def recompute(*args):
        raise RuntimeError("recomputed")

    monkeypatch.setattr(prep, "_prepare_uncached", recompute)
    second = prepare(pbmc_mini, settings)
    assert second.fingerprint == first.fingerprint
    assert list(second.test.obs_names) == list(first.test.obs_names)
    with pytest.raises(RuntimeError, match="recomputed"):  # another setting is a cache miss
        prepare(pbmc_mini, PrepareSettings(labels_key="louvain", seed=4))


def test_computed_clusters_reach_the_target_number(pbmc_mini):
    p = prepare(pbmc_mini, PrepareSettings(n_clusters=6), use_cache=False)
    assert p.info["n_clusters"] == 6


def test_clusters_are_computed_on_data_large_enough_for_the_approximate_neighbour_search():
    from scldbench.data.neighbours import APPROXIMATE_FROM
    from scldbench.data.prepare import compute_clusters

    rng = np.random.default_rng(0)
    n = APPROXIMATE_FROM + 8
    group = np.arange(n) % 3
    means = rng.gamma(2.0, 1.0, size=(3, 60)) * np.where(np.arange(60) // 20 == np.arange(3)[:, None], 8.0, 1.0)
    cells = ad.AnnData(sp.csr_matrix(rng.poisson(means[group]).astype(np.float32)))
    labels = compute_clusters(cells, None, 0.1, seed=0)
    assert len(labels) == n and labels.nunique() >= 3
    assert pd.crosstab(labels.to_numpy(), group).max(axis=1).sum() / n > 0.95  # the three groups come back


def test_bad_fractions_are_rejected(pbmc_mini):
    with pytest.raises(ScldbenchError, match="test_fraction.*holdout_fraction"):
        prepare(pbmc_mini, PrepareSettings(labels_key="louvain", test_fraction=0.6, holdout_fraction=0.5))
