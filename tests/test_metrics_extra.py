"""Metrics beyond RF AUC and MMD: each against a hand-checked case or brute force, plus behaviour checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from scldbench.metrics.aggregate import mean_interval, scale_between_controls, scale_scores, summarise_seeds
from scldbench.metrics.manifold import density_coverage, knn_radii, manifold_metrics, precision_recall
from scldbench.metrics.memorisation import fit_log_pca, memorisation, nearest_distances
from scldbench.metrics.properties import (
    binned_trend_distance,
    gene_correlation_distance,
    ks_statistic,
    property_distances,
)
from scldbench.metrics.utility import augmentation_benefit, train_synthetic_test_real

# ---------------------------------------------------------------- helpers


def clustered_counts(
    rng: np.random.Generator, sizes: dict[str, int], n_genes: int = 60, n_markers: int = 5, fold: float = 8.0
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts around one fixed gene profile; cluster i has genes [i*n_markers, (i+1)*n_markers) raised
    `fold` times. `rng` draws only the cells (library sizes and counts)."""
    base = np.random.default_rng(1234).gamma(2.0, 1.0, size=n_genes)
    rows, labels = [], []
    for i, (label, n) in enumerate(sizes.items()):
        mu = base.copy()
        mu[i * n_markers : (i + 1) * n_markers] *= fold
        lib = rng.lognormal(0.0, 0.3, size=(n, 1))
        rows.append(rng.poisson(mu[None, :] * lib))
        labels += [label] * n
    return np.vstack(rows).astype(np.float64), np.asarray(labels)


@pytest.fixture(scope="module")
def pbmc():
    from scldbench.data import load_dataset

    adata, _ = load_dataset("pbmc68k-mini")
    rng = np.random.default_rng(0)
    order = rng.permutation(adata.n_obs)
    x = adata.X.tocsr()
    labels = adata.obs["louvain"].astype(str).to_numpy()
    train, test, holdout = order[:350], order[350:525], order[525:]
    return {
        "train": x[train], "test": x[test], "holdout": x[holdout],
        "y_train": labels[train], "y_test": labels[test], "y_holdout": labels[holdout],
    }


def shuffle_genes(x: sp.spmatrix | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    dense = x.toarray() if sp.issparse(x) else np.array(x)
    return np.column_stack([rng.permutation(dense[:, j]) for j in range(dense.shape[1])])


# ---------------------------------------------------------------- manifold


def brute_radii(x: np.ndarray, k: int) -> np.ndarray:
    out = []
    for i in range(len(x)):
        d = sorted(np.linalg.norm(x[i] - x[j]) for j in range(len(x)) if j != i)
        out.append(d[k - 1])
    return np.asarray(out)


def test_manifold_matches_brute_force():
    rng = np.random.default_rng(1)
    real, gen = rng.normal(size=(15, 3)), rng.normal(0.5, 1.2, size=(12, 3))
    k = 3
    r_real, r_gen = brute_radii(real, k), brute_radii(gen, k)
    np.testing.assert_allclose(knn_radii(real, k), r_real)

    def inside(p, centres, radii):
        return [np.linalg.norm(p - c) <= r for c, r in zip(centres, radii, strict=True)]

    precision = np.mean([any(inside(g, real, r_real)) for g in gen])
    recall = np.mean([any(inside(x, gen, r_gen)) for x in real])
    density = sum(sum(inside(g, real, r_real)) for g in gen) / (k * len(gen))
    coverage = np.mean([any(np.linalg.norm(g - real[i]) <= r_real[i] for g in gen) for i in range(len(real))])
    got = manifold_metrics(real, gen, k=k)
    assert got["precision"] == pytest.approx(precision)
    assert got["recall"] == pytest.approx(recall)
    assert got["density"] == pytest.approx(density)
    assert got["coverage"] == pytest.approx(coverage)
    assert 0 < precision < 1 or 0 < recall < 1  # the case is not degenerate


def test_manifold_hand_case():
    # 1-D: real at 0, 1, 2, 10 with k=1 -> radii 1, 1, 1, 8. generated at 0.5 (in balls of 0 and 1), 30 (none)
    real, gen = np.array([[0.0], [1.0], [2.0], [10.0]]), np.array([[0.5], [30.0]])
    np.testing.assert_allclose(knn_radii(real, 1), [1, 1, 1, 8])
    dc = density_coverage(real, gen, k=1)
    assert dc["density"] == pytest.approx(2 / (1 * 2))
    assert dc["coverage"] == pytest.approx(2 / 4)
    assert precision_recall(real, gen, k=1)["precision"] == pytest.approx(0.5)


def test_manifold_identical_independent_and_disjoint():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(300, 5))
    same = manifold_metrics(real, real.copy(), k=5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert same["density"] == pytest.approx(6 / 5)  # every ball holds its centre and its 5 neighbours
    indep = manifold_metrics(real, rng.normal(size=(300, 5)), k=5)
    assert indep["precision"] > 0.8 and indep["recall"] > 0.8 and indep["coverage"] > 0.8
    assert 0.75 < indep["density"] < 1.25
    far = manifold_metrics(real, real + 100.0, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    collapsed = manifold_metrics(real, np.zeros((300, 5)) + real.mean(axis=0), k=5)
    assert collapsed["precision"] == 1.0 and collapsed["coverage"] < 0.2  # fidelity without diversity


def test_manifold_rejects_bad_k():
    with pytest.raises(ValueError):
        knn_radii(np.zeros((3, 2)), 3)


# ---------------------------------------------------------------- properties


def test_ks_statistic_against_scipy_and_hand():
    assert ks_statistic([1, 2, 3], [1, 2, 3]) == 0.0
    assert ks_statistic([0, 0, 1], [5, 6]) == 1.0
    # F_a jumps to 1/2 at 1 and 1 at 2; F_b is 0 until 3: gap 1 at t=2; hand case with a partial gap:
    assert ks_statistic([1, 2, 3, 4], [3, 4, 5, 6]) == pytest.approx(0.5)
    rng = np.random.default_rng(3)
    a, b = rng.poisson(3, 50), rng.poisson(4, 70)  # ties on purpose
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic)


def test_binned_trend_hand_case():
    x = np.arange(8, dtype=float)
    y_real = np.r_[np.zeros(4), np.ones(4)]
    # two bins (edges at quantiles 0, 0.5, 1 of x: 0, 3.5, 7); generated medians 0.5 and 1 -> |diffs| 0.5, 0
    y_gen = np.r_[np.full(4, 0.5), np.ones(4)]
    assert binned_trend_distance(x, y_real, x, y_gen, n_bins=2) == pytest.approx(0.25)
    assert binned_trend_distance(x, y_real, x, y_real, n_bins=2) == 0.0
    # generated genes all in the upper bin: the lower bin is unmatched and counts as the largest
    # difference (0 here)
    assert binned_trend_distance(x, y_real, x[4:], y_real[4:], n_bins=2) == 0.0
    assert binned_trend_distance(x, y_real, x[4:], y_real[4:] + 2, n_bins=2) == pytest.approx(2.0)


def test_gene_correlation_distance_against_corrcoef():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(40, 6)), rng.normal(size=(30, 6))
    a[:, 5] = 1.0  # a constant gene counts as correlation 0
    genes = np.array([0, 2, 3, 5])
    ca, cb = np.corrcoef(a[:, genes[:3]], rowvar=False), np.corrcoef(b[:, genes], rowvar=False)
    ca = np.pad(ca, ((0, 1), (0, 1)))
    iu = np.triu_indices(4, k=1)
    assert gene_correlation_distance(a, b, genes) == pytest.approx(np.mean(np.abs(ca[iu] - cb[iu])))


def test_property_distances_against_dense_computation():
    rng = np.random.default_rng(20)
    real = rng.negative_binomial(2, 0.4, size=(50, 30)).astype(float)
    gen = rng.negative_binomial(3, 0.5, size=(40, 30)).astype(float)
    got = property_distances(sp.csr_matrix(real), gen, n_corr_genes=8, n_bins=5)

    def norm(x):
        return x / x.sum(axis=1, keepdims=True) * 1e4

    def ks(a, b):
        return stats.ks_2samp(a, b).statistic

    nr, ng = norm(real), norm(gen)
    assert got["library_size_ks"] == pytest.approx(ks(real.sum(1), gen.sum(1)))
    assert got["zeros_per_cell_ks"] == pytest.approx(ks((real == 0).mean(1), (gen == 0).mean(1)))
    assert got["zeros_per_gene_ks"] == pytest.approx(ks((real == 0).mean(0), (gen == 0).mean(0)))
    assert got["gene_mean_ks"] == pytest.approx(ks(nr.mean(0), ng.mean(0)))
    assert got["gene_variance_ks"] == pytest.approx(ks(nr.var(0, ddof=1), ng.var(0, ddof=1)))
    trend = binned_trend_distance(
        np.log1p(nr.mean(0)), np.log1p(nr.var(0, ddof=1)), np.log1p(ng.mean(0)), np.log1p(ng.var(0, ddof=1)),
        n_bins=5,
    )
    assert got["mean_variance_trend"] == pytest.approx(trend)
    top = np.argsort(-np.log1p(nr).mean(0), kind="stable")[:8]
    iu = np.triu_indices(8, k=1)
    cr, cg = (np.corrcoef(np.log1p(m)[:, top], rowvar=False)[iu] for m in (nr, ng))
    assert got["gene_correlation_mad"] == pytest.approx(np.mean(np.abs(cr - cg)))


def test_property_distances_behaviour():
    rng = np.random.default_rng(5)
    x, _ = clustered_counts(rng, {"a": 150, "b": 150})
    same = property_distances(x, sp.csr_matrix(x), n_corr_genes=20)
    assert set(same) == {
        "library_size_ks", "zeros_per_cell_ks", "zeros_per_gene_ks", "gene_mean_ks", "gene_variance_ks",
        "mean_variance_trend", "mean_zeros_trend", "gene_correlation_mad",
    }
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in same.values())
    # every count times 16 (a power of two, so normalised values are bit-identical): library sizes disjoint,
    # zeros and normalised gene statistics unchanged
    scaled = property_distances(x, x * 16, n_corr_genes=20)
    assert scaled["library_size_ks"] == 1.0
    assert scaled["zeros_per_cell_ks"] == 0.0 and scaled["gene_mean_ks"] == 0.0
    assert scaled["gene_correlation_mad"] == pytest.approx(0.0, abs=1e-12)
    # a per-gene shuffle keeps per-gene marginals but destroys co-expression
    # (the 10 genes of highest mean are the markers, correlated through the cluster structure)
    shuffled = property_distances(x, shuffle_genes(x, rng), n_corr_genes=10)
    assert shuffled["zeros_per_gene_ks"] == 0.0
    other, _ = clustered_counts(np.random.default_rng(6), {"a": 150, "b": 150})
    indep = property_distances(x, other, n_corr_genes=10)
    assert shuffled["gene_correlation_mad"] > 2 * indep["gene_correlation_mad"]
    # sparser data (30% of the counts kept) moves the zero and mean-zero measures
    thin = property_distances(x, rng.binomial(x.astype(int), 0.3).astype(float), n_corr_genes=20)
    assert thin["zeros_per_cell_ks"] > 0.8 and thin["mean_zeros_trend"] > indep["mean_zeros_trend"] + 0.05


# ---------------------------------------------------------------- memorisation


def test_nearest_distances_brute_force():
    rng = np.random.default_rng(10)
    q, r = rng.normal(size=(7, 3)), rng.normal(size=(9, 3))
    brute = [min(np.linalg.norm(a - b) for b in r) for a in q]
    np.testing.assert_allclose(nearest_distances(q, r), brute)


def test_memorisation_catches_copying_generator(pbmc):
    rng = np.random.default_rng(11)
    train_counts = pbmc["train"]
    copies = train_counts[rng.integers(0, train_counts.shape[0], size=175)]
    # a sly copier: each copied cell thinned by 5% of its counts
    thinned = rng.binomial(copies.toarray().astype(int), 0.95).astype(float)
    train, test, holdout, exact, sly = fit_log_pca(
        train_counts, pbmc["test"], pbmc["holdout"], copies, thinned, n_components=30
    )
    honest = memorisation(train, test, holdout)
    assert honest["memorised"] == 0.0 and honest["close_fraction"] < 0.15
    assert 0.8 < honest["median_ratio"] < 1.25 and honest["exact_copy_fraction"] == 0.0
    copied = memorisation(train, test, exact)
    assert copied["memorised"] == 1.0 and copied["exact_copy_fraction"] == 1.0
    assert copied["median_ratio"] == 0.0
    caught = memorisation(train, test, sly)
    assert caught["memorised"] == 1.0 and caught["median_ratio"] < 0.8


def test_memorisation_hand_case():
    train = np.array([[0.0], [10.0]])
    test = np.array([[1.0], [2.0], [3.0], [4.0]])  # distances 1..4; 25% quantile = 1.75
    gen = np.array([[0.0], [10.5], [7.0]])  # distances 0, 0.5, 3
    res = memorisation(train, test, gen, quantile=0.25, flag_factor=2.0)
    assert res["close_fraction"] == pytest.approx(2 / 3)
    assert res["median_ratio"] == pytest.approx(0.5 / 2.5)
    assert res["exact_copy_fraction"] == pytest.approx(1 / 3) and res["memorised"] == 1.0


# ---------------------------------------------------------------- utility


def test_tstr_good_and_label_scrambled_generators():
    sizes = {"a": 80, "b": 80, "c": 80}
    train, y_train = clustered_counts(np.random.default_rng(12), sizes)
    test, y_test = clustered_counts(np.random.default_rng(13), sizes)
    gen, y_gen = clustered_counts(np.random.default_rng(14), sizes)
    good = train_synthetic_test_real(gen, y_gen, train, y_train, sp.csr_matrix(test), y_test, n_components=10)
    assert good["trtr_macro_f1"] > 0.95 and good["tstr_macro_f1"] > 0.95
    assert good["tstr_trtr_f1_ratio"] == pytest.approx(good["tstr_macro_f1"] / good["trtr_macro_f1"])
    bad = train_synthetic_test_real(
        gen, np.random.default_rng(0).permutation(y_gen), train, y_train, test, y_test, n_components=10
    )
    assert bad["tstr_macro_f1"] < 0.6 and bad["tstr_balanced_accuracy"] < 0.6
    assert bad["trtr_macro_f1"] == good["trtr_macro_f1"]
    knn = train_synthetic_test_real(
        gen, y_gen, train, y_train, test, y_test, classifier="knn", n_components=10
    )
    assert knn["tstr_balanced_accuracy"] > 0.9


def test_augmentation_benefit_with_callable_and_array():
    sizes = {"a": 150, "b": 150, "r": 40}
    train, y_train = clustered_counts(np.random.default_rng(15), sizes, fold=5.0)
    test, y_test = clustered_counts(np.random.default_rng(16), sizes, fold=5.0)
    seen = {}

    def generator(x_down, y_down, n):
        seen.update(n_rare=int((y_down == "r").sum()), n=n, n_rows=x_down.shape[0])
        cells, labels = clustered_counts(np.random.default_rng(17), {"a": 0, "b": 0, "r": n}, fold=5.0)
        return sp.csr_matrix(cells)

    res = augmentation_benefit(train, y_train, test, y_test, "r", generator, n_keep=2, n_components=10)
    assert seen == {"n_rare": 2, "n": 38, "n_rows": 302}
    assert res["n_kept"] == 2 and res["n_added"] == 38
    assert res["recall_downsampled"] < 0.2 and res["recall_augmented"] > 0.6
    assert res["augmentation_benefit"] == pytest.approx(res["recall_augmented"] - res["recall_downsampled"])
    assert res["recall_full"] > 0.6
    # generated "rare" cells that are really cluster a: no benefit, and the rest of the classes suffer
    wrong, _ = clustered_counts(np.random.default_rng(18), {"a": 38}, fold=5.0)
    fake = augmentation_benefit(train, y_train, test, y_test, "r", wrong, n_keep=2, n_components=10)
    assert fake["recall_downsampled"] == res["recall_downsampled"]
    assert fake["augmentation_benefit"] < res["augmentation_benefit"]
    assert fake["macro_f1_augmented"] < res["macro_f1_augmented"]


# ---------------------------------------------------------------- aggregate


def test_mean_interval_hand_case():
    s = mean_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t_{0.975, 2} * sd 1 / sqrt(3)
    assert (s.mean, s.sd, s.n) == (2.0, 1.0, 3)
    assert s.low == pytest.approx(2 - half) and s.high == pytest.approx(2 + half)
    one = mean_interval([0.7])
    assert one.mean == 0.7 and math.isnan(one.low) and math.isnan(one.high) and one.n == 1
    assert mean_interval([0.7, float("nan")]).n == 1
    assert mean_interval([]).n == 0 and math.isnan(mean_interval([]).mean)
    same = mean_interval([0.5, 0.5])
    assert same.low == same.high == 0.5
    rounded = mean_interval([0.72, 0.72, 0.72])  # numpy's mean of these is 0.7200000000000001
    assert rounded.sd == 0 and rounded.low == rounded.high == rounded.mean
    assert mean_interval([0.9999621298189806, 0.9999621298189805]).sd == 0
    assert mean_interval([0.72, 0.72 + 1e-9]).sd > 0


def test_summarise_seeds():
    out = summarise_seeds([{"auc": 0.6, "mmd": 0.2}, {"auc": 0.8, "mmd": 0.4}, {"auc": 0.7}])
    assert out["auc"].mean == pytest.approx(0.7) and out["auc"].n == 3
    assert out["mmd"].n == 2 and out["mmd"].mean == pytest.approx(0.3)
    t_975_1 = 12.706204736174707
    assert out["mmd"].high - out["mmd"].mean == pytest.approx(t_975_1 * out["mmd"].sd / math.sqrt(2))


def test_scaling_between_controls():
    # lower is better (AUC: negative 1.0, positive 0.5) and higher is better (F1: negative 0.1, positive 0.9)
    assert scale_between_controls(0.75, 1.0, 0.5) == pytest.approx(0.5)
    assert scale_between_controls(0.5, 0.1, 0.9) == pytest.approx(0.5)
    assert math.isnan(scale_between_controls(0.5, 0.7, 0.7))
    scaled = scale_scores(
        {"rf_auc": 0.45, "f1": 0.5, "mmd": 1.5, "other": 3.0},
        negative={"rf_auc": 1.0, "f1": 0.1, "mmd": 1.0},
        positive={"rf_auc": 0.5, "f1": 0.9, "mmd": 0.1},
    )
    assert set(scaled) == {"rf_auc", "f1", "mmd"}
    assert scaled["rf_auc"].scaled == pytest.approx(1.1) and scaled["rf_auc"].outside
    assert scaled["f1"].scaled == pytest.approx(0.5) and not scaled["f1"].outside
    assert scaled["mmd"].scaled == pytest.approx(-0.5 / 0.9) and scaled["mmd"].outside
    assert not scale_scores({"a": 1.05}, {"a": 0.0}, {"a": 1.0}, tolerance=0.1)["a"].outside
