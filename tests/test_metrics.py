"""The scgan-v1 metrics against hand-checked cases and straightforward reimplementations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from scldbench.metrics import median_knn_distance, mmd_multi_kernel, rf_auc
from scldbench.protocols import get_protocol


def brute_force_mmd(x: np.ndarray, y: np.ndarray, sigmas: list[float]) -> float:
    def k(a, b):
        return sum(np.exp(-np.sum((a - b) ** 2) / s**2) for s in sigmas)

    kxx = np.mean([k(a, b) for a, b in itertools.product(x, x)])
    kyy = np.mean([k(a, b) for a, b in itertools.product(y, y)])
    kxy = np.mean([k(a, b) for a, b in itertools.product(x, y)])
    return float(np.sqrt(kxx + kyy - 2 * kxy))


def test_median_knn_distance_hand_checked():
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    # 1-NN distances: 1, 1, 2, 4 -> median 1.5
    assert median_knn_distance(x, k=1) == pytest.approx(1.5)
    # 2-NN distances: {1,3}, {1,2}, {2,3}, {4,6} -> median of [1,3,1,2,2,3,4,6] = 2.5
    assert median_knn_distance(x, k=2) == pytest.approx(2.5)


def test_mmd_matches_brute_force():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)), rng.normal(0.7, 1.2, size=(9, 3))
    m = median_knn_distance(x, k=5)
    expected = brute_force_mmd(x, y, [m / 2, m, 2 * m])
    assert mmd_multi_kernel(x, y, k=5) == pytest.approx(expected, rel=1e-9)


def test_mmd_is_zero_for_identical_sets_and_grows_with_shift():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4))
    assert mmd_multi_kernel(x, x.copy()) == pytest.approx(0.0, abs=1e-7)
    near = mmd_multi_kernel(x, x + 0.1)
    far = mmd_multi_kernel(x, x + 30.0)
    assert 0 < near < far
    m = median_knn_distance(x)
    within = brute_force_mmd(x, x + 1e6, [m / 2, m, 2 * m]) ** 2 / 2  # cross term vanishes: kxx + kyy = 2 kxx
    assert far == pytest.approx(np.sqrt(2 * within), rel=1e-6)


def test_rf_auc_matches_the_protocol_done_by_hand():
    rng = np.random.default_rng(2)
    real, gen = rng.normal(size=(60, 80)), rng.normal(0.3, 1.0, size=(60, 80))
    x = np.vstack([real, gen])
    y = np.r_[np.zeros(60), np.ones(60)]
    x_fit, x_eval, y_fit, y_eval = train_test_split(x, y, test_size=0.3, stratify=y, random_state=4)
    assert y_eval.sum() == 18 and y_fit.sum() == 42
    pca = PCA(n_components=50, random_state=4).fit(x_fit)
    forest = RandomForestClassifier(n_estimators=100, random_state=4, n_jobs=1).fit(pca.transform(x_fit), y_fit)
    expected = roc_auc_score(y_eval, forest.predict_proba(pca.transform(x_eval))[:, 1])
    assert rf_auc(real, gen, n_trees=100, seed=4, n_jobs=1) == pytest.approx(expected)


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "fallback"])
def test_rf_auc_forest_is_the_stock_forest_tree_for_tree(lean, monkeypatch):
    from scldbench.metrics import forest

    assert forest.lean_forest_matches()  # this scikit-learn takes the lean path
    monkeypatch.setattr(forest, "lean_forest_matches", lambda: lean)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(150, 12)), rng.integers(0, 2, size=150)
    x_new = rng.normal(size=(40, 12))
    for n_jobs in (1, 2):
        stock = RandomForestClassifier(n_estimators=60, random_state=9, n_jobs=n_jobs).fit(x, y)
        ours = forest.fit_forest(x, y, n_trees=60, seed=9, n_jobs=n_jobs)
        assert isinstance(ours, forest._LeanForest) == lean
        np.testing.assert_array_equal(ours.predict_proba(x_new), stock.predict_proba(x_new))
        np.testing.assert_array_equal(ours.predict_proba(x), stock.predict_proba(x))


def test_rf_auc_extremes():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(100, 10))
    assert rf_auc(real, rng.normal(size=(100, 10)), n_trees=200) == pytest.approx(0.5, abs=0.15)
    assert rf_auc(real, rng.normal(5.0, 1.0, size=(100, 10)), n_trees=200) == 1.0


def test_protocol_controls_bracket_scores(pbmc_prepared):
    from scldbench.baselines.controls import PositiveControl, RandomControl

    p = pbmc_prepared
    protocol = get_protocol("scgan-v1")
    pos = PositiveControl(seed=0).fit(p.holdout, p.labels_key).sample(p.test.n_obs)
    rnd = RandomControl(seed=0).fit(p.train).sample(p.test.n_obs)
    pos_scores = protocol.evaluate(p.test.X, pos.X, reference=p.train.X, n_trees=300)
    rnd_scores = protocol.evaluate(p.test.X, rnd.X, reference=p.train.X, n_trees=300)
    assert pos_scores["rf_auc"] < 0.65 and rnd_scores["rf_auc"] > 0.95
    assert pos_scores["mmd"] < rnd_scores["mmd"] / 3


def test_mmd_of_large_sets_matches_the_direct_float64_computation(monkeypatch):
    # above the float64 threshold (lowered here to keep the test fast) the kernel sums run in float32 blocks
    from scipy.spatial.distance import cdist

    from scldbench.metrics import mmd

    monkeypatch.setattr(mmd, "_FLOAT64_PAIRS", 1000)
    monkeypatch.setattr(mmd, "_BLOCK_ENTRIES", 20_000)  # many blocks, shared by two threads
    rng = np.random.default_rng(3)
    x, y = rng.normal(2.0, 3.0, size=(400, 20)), rng.normal(2.3, 3.0, size=(350, 20))
    m = median_knn_distance(x)
    sigmas = [m / 2, m, 2 * m]

    def kernel_mean(a, b):
        d2 = cdist(a, b, "sqeuclidean")
        return sum(np.exp(-d2 / s**2).mean() for s in sigmas)

    expected = np.sqrt(kernel_mean(x, x) + kernel_mean(y, y) - 2 * kernel_mean(x, y))
    assert mmd_multi_kernel(x, y, threads=2) == pytest.approx(expected, rel=1e-4)
    # widths that are not powers of two apart take their own exponential
    assert mmd_multi_kernel(x, y, scales=(0.7, 1.0), threads=1) < mmd_multi_kernel(x, y + 1.0, scales=(0.7, 1.0))
