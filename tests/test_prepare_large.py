"""Preparation at atlas size: the QC on CSR entries, and the large-data clustering path checked against the
scanpy steps it replaces."""

from __future__ import annotations

import importlib

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from scldbench.data import clustering, neighbours
from scldbench.data.neighbours import approximate_neighbours, exact_neighbours, umap_connectivities
from scldbench.data.quality import filter_csr

prep = importlib.import_module("scldbench.data.prepare")


def simulated(n_cells: int, n_genes: int, n_groups: int, seed: int = 0) -> ad.AnnData:
    """Counts with heavy-tailed gene abundances (rare genes scale past the clip at 10), log-normal libraries
    and groups differing in a tenth of their genes, gamma-Poisson noise."""
    rng = np.random.default_rng(seed)
    base = rng.lognormal(0.0, 2.5, n_genes)
    fold = np.exp(np.where(rng.random((n_groups, n_genes)) < 0.1, rng.normal(0.0, 1.5, (n_groups, n_genes)), 0.0))
    profiles = base * fold
    profiles /= profiles.sum(axis=1, keepdims=True)
    groups = rng.integers(0, n_groups, n_cells)
    mu = profiles[groups] * (1500 * rng.lognormal(0.0, 0.4, n_cells))[:, None]
    x = rng.poisson(rng.gamma(2.0, mu / 2.0)).astype(np.float32)
    return ad.AnnData(X=sp.csr_matrix(x), obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]),
                      var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]))


def log_normalised(data: ad.AnnData) -> ad.AnnData:
    work = ad.AnnData(X=data.X.astype(np.float32), obs=pd.DataFrame(index=data.obs_names))
    sc.pp.normalize_total(work, target_sum=1e4)
    sc.pp.log1p(work)
    return work


@pytest.mark.parametrize("seed", range(6))
def test_csr_quality_filter_equals_scanpys_filters(seed):
    rng = np.random.default_rng(seed)
    n_cells, n_genes = rng.integers(20, 60), rng.integers(10, 40)
    x = sp.random(n_cells, n_genes, density=0.3, format="csr", random_state=seed, dtype=np.float32)
    x.data = np.floor(x.data * 4)  # stored zeros, which count as no gene
    for row in range(n_cells):  # unsorted column indices within each row
        lo, hi = x.indptr[row], x.indptr[row + 1]
        order = rng.permutation(hi - lo) + lo
        x.indices[lo:hi], x.data[lo:hi] = x.indices[order], x.data[order]
    data = ad.AnnData(X=x, obs=pd.DataFrame({"label": rng.integers(0, 3, n_cells).astype(str)},
                                            index=[f"c{i}" for i in range(n_cells)]),
                      var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]))
    min_genes = int(np.median(np.asarray((x > 0).sum(axis=1))))  # thresholds that drop some cells and genes
    min_cells = int(np.median(np.asarray((x > 0).sum(axis=0)))) - 1
    expected = data.copy()
    sc.pp.filter_cells(expected, min_genes=min_genes)
    sc.pp.filter_genes(expected, min_cells=min_cells)
    got = filter_csr(data, min_genes=min_genes, min_cells=min_cells)
    assert 0 < got.n_obs < n_cells and 0 < got.n_vars < n_genes  # both filters did something
    pd.testing.assert_frame_equal(got.obs, expected.obs)
    pd.testing.assert_frame_equal(got.var, expected.var)
    for part in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(got.X, part), getattr(expected.X, part))


def test_top_genes_are_scanpys_seurat_selection():
    data = simulated(500, 1200, 4)
    work = log_normalised(data)
    sc.pp.highly_variable_genes(work, n_top_genes=200, flavor="seurat")
    factors = clustering.size_factors(data.X)
    got = clustering.top_genes(*clustering.normalised_moments(data.X, factors), 200)
    np.testing.assert_array_equal(got, work.var["highly_variable"].to_numpy())


def test_log_normalised_genes_are_scanpys_values():
    data = simulated(300, 500, 3)
    genes = np.zeros(500, dtype=bool)
    genes[::7] = True
    got = clustering.log_normalised_genes(data.X, clustering.size_factors(data.X), genes)
    np.testing.assert_allclose(got.toarray(), log_normalised(data).X[:, genes].toarray(), rtol=1e-5, atol=1e-6)


def test_scaled_pca_is_the_pca_of_the_clipped_scaled_matrix():
    data = simulated(600, 300, 4)
    x = log_normalised(data).X
    scaled = ad.AnnData(X=x.toarray().astype(np.float64))
    sc.pp.scale(scaled, max_value=10)
    assert (scaled.X >= 10).sum() > 20  # the clip changes values here
    expected = PCA(n_components=20, svd_solver="full").fit_transform(scaled.X)
    got = clustering.scaled_pca(x, 20)
    signs = np.sign((got * expected).sum(axis=0))
    np.testing.assert_allclose(got * signs, expected, atol=2e-4 * np.abs(expected).max())


def test_exact_neighbours_are_the_nearest_points_itself_first():
    points = np.random.default_rng(0).normal(size=(300, 8))
    indices, distances = exact_neighbours(points, 6)
    full = np.linalg.norm(points[:, None] - points[None], axis=2)
    np.testing.assert_array_equal(indices[:, 0], np.arange(300))
    np.testing.assert_array_equal(np.sort(indices, axis=1), np.sort(np.argsort(full, axis=1)[:, :6], axis=1))
    np.testing.assert_allclose(distances, np.take_along_axis(full, indices, axis=1), atol=1e-9)


def test_approximate_neighbours_list_the_point_first_then_its_nearest():
    rng = np.random.default_rng(5)
    points = rng.normal(size=(2000, 10)) + 4 * rng.integers(0, 4, (2000, 1))
    indices, distances = approximate_neighbours(points, 15, seed=0)
    exact, _ = exact_neighbours(points, 15)
    assert indices.shape == (2000, 15)
    np.testing.assert_array_equal(indices[:, 0], np.arange(2000))
    assert (np.diff(distances, axis=1) >= 0).all()
    np.testing.assert_allclose(distances, np.linalg.norm(points[indices] - points[:, None], axis=2), rtol=1e-5)
    recall = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(indices, exact, strict=True)])
    assert recall > 0.95


def test_neighbour_graph_searches_exactly_below_the_limit_only(monkeypatch):
    points = np.random.default_rng(6).normal(size=(300, 5))
    used = []
    monkeypatch.setattr(neighbours, "approximate_neighbours",
                        lambda p, k, seed: used.append("approximate") or exact_neighbours(p, k))
    monkeypatch.setattr(neighbours, "EXACT_UP_TO", 301)
    exact_graph = neighbours.neighbour_graph(points, 10, seed=0)
    assert used == []
    monkeypatch.setattr(neighbours, "EXACT_UP_TO", 300)
    assert (neighbours.neighbour_graph(points, 10, seed=0) != exact_graph).nnz == 0 and used == ["approximate"]


def test_umap_connectivities_equal_umap_learns():
    from umap.umap_ import fuzzy_simplicial_set

    points = np.random.default_rng(1).normal(size=(400, 10))
    points[5] = points[4]  # a duplicate cell: a neighbour at distance 0
    indices, distances = exact_neighbours(points, 15)
    expected, _, _ = fuzzy_simplicial_set(sp.coo_matrix((400, 1)), 15, None, None, knn_indices=indices,
                                          knn_dists=distances.astype(np.float32))
    got = umap_connectivities(indices, distances)
    expected = expected.tocsr()
    assert (got != 0).sum() == (expected != 0).sum() and ((got != 0) != (expected != 0)).nnz == 0
    np.testing.assert_allclose(got.toarray(), expected.toarray(), atol=1e-5)  # umap-learn's float32


def test_leiden_graph_has_the_modularity_of_scanpys_graph():
    from scanpy._utils import get_igraph_from_adjacency

    points = np.random.default_rng(2).normal(size=(200, 5))
    connectivities = umap_connectivities(*exact_neighbours(points, 10))
    ours, scanpys = clustering.leiden_graph(connectivities), get_igraph_from_adjacency(connectivities)
    assert ours.ecount() * 2 == scanpys.ecount()
    membership = np.random.default_rng(3).integers(0, 4, 200).tolist()
    for resolution in (0.3, 1.0):
        assert ours.modularity(membership, weights="weight", resolution=resolution) == pytest.approx(
            scanpys.modularity(membership, weights="weight", resolution=resolution), rel=1e-12)
    labels = clustering.leiden_labels(ours, 1.0, seed=0)
    np.testing.assert_array_equal(labels, clustering.leiden_labels(ours, 1.0, seed=0))
    assert labels.dtype.kind == "U" and 2 <= len(set(labels)) < 200


def test_large_data_threshold():
    assert clustering.large_data(50_001, 30_000) and not clustering.large_data(50_000, 30_000)
    assert not clustering.large_data(99_000, 1_000) and clustering.large_data(101_000, 1_000)


def test_large_path_finds_the_small_paths_clusters(monkeypatch):
    data = simulated(1500, 2600, 6, seed=4)
    small = prep.compute_clusters(data, n_clusters=6, resolution=1.0, seed=0)
    monkeypatch.setattr(clustering, "DENSE_LIMIT", 0)
    large = prep.compute_clusters(data, n_clusters=6, resolution=1.0, seed=0)
    assert large.nunique() == small.nunique() == 6
    assert list(large.index) == list(data.obs_names)
    assert adjusted_rand_score(small, large) == pytest.approx(1.0)
