"""scikit-learn's default random forest classifier, grown without its per-tree input checks.

`rf_auc` grows 1,000 trees per forest and one forest per cluster. On a cluster's few hundred cells scikit-learn
spends most of each tree's fit in bookkeeping around the tree builder (target-type checks, sample-weight
validation, parameter cloning), not in growing the tree. `fit_forest` drives scikit-learn's own tree builder
directly with the seeds, bootstrap draws, criterion and splitter `RandomForestClassifier` would use, so every tree,
and every predicted probability, is the stock forest's. Because that builder is private API, the lean path proves
itself against the stock forest on a small fixed problem once per process and gives way to the stock forest
when it does not match (another scikit-learn release).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
from sklearn.ensemble import RandomForestClassifier

_MAX_SEED = np.iinfo(np.int32).max


class FittedForest(Protocol):
    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...


class _LeanForest:
    """Trees of `RandomForestClassifier(n_estimators=n_trees, random_state=seed)` (Gini, sqrt(features) per split,
    bootstrap of n cells, fully grown) built straight from scikit-learn's tree builder."""

    def __init__(self, n_trees: int, seed: int, n_jobs: int) -> None:
        self.n_trees, self.seed, self.n_jobs = n_trees, seed, max(int(n_jobs), 1)

    def fit(self, x: np.ndarray, y: np.ndarray) -> _LeanForest:
        from sklearn.tree._criterion import Gini
        from sklearn.tree._splitter import BestSplitter
        from sklearn.tree._tree import DepthFirstTreeBuilder, Tree

        x = np.ascontiguousarray(x, dtype=np.float32)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        targets = np.ascontiguousarray(encoded.reshape(-1, 1), dtype=np.float64)
        n_cells, n_features = x.shape
        n_classes = np.array([self.classes_.size], dtype=np.intp)
        max_features = max(1, int(np.sqrt(n_features)))
        draws = np.random.RandomState(self.seed)
        seeds = [draws.randint(_MAX_SEED) for _ in range(self.n_trees)]

        def grow(tree_seed: int) -> Any:
            rows = np.random.RandomState(tree_seed).randint(0, n_cells, n_cells)
            weights = np.bincount(rows, minlength=n_cells).astype(np.float64)
            splitter = BestSplitter(Gini(1, n_classes), max_features, 1, 0.0, np.random.RandomState(tree_seed), None)
            tree = Tree(n_features, n_classes, 1)
            DepthFirstTreeBuilder(splitter, 2, 1, 0.0, _MAX_SEED, 0.0).build(tree, x, targets, weights, None)
            return tree

        self.trees_ = _map_in_order(grow, seeds, self.n_jobs)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        n_classes = self.classes_.size

        def one_tree(tree: Any) -> np.ndarray:
            proba = tree.predict(x).reshape(x.shape[0], -1)[:, :n_classes]
            total = proba.sum(axis=1)[:, np.newaxis]
            total[total == 0.0] = 1.0
            return proba / total

        summed = np.zeros((x.shape[0], n_classes), dtype=np.float64)
        chunk = 16 * self.n_jobs  # bounds the per-tree probabilities held at once
        for start in range(0, len(self.trees_), chunk):
            for proba in _map_in_order(one_tree, self.trees_[start:start + chunk], self.n_jobs):
                summed += proba  # in tree order, as the stock forest adds them on one thread
        return summed / len(self.trees_)


def _map_in_order(func: Callable[[Any], Any], items: list[Any], n_jobs: int) -> list[Any]:
    """`func` over `items` on `n_jobs` threads (the tree builder releases the GIL), results in item order."""
    if n_jobs == 1:
        return [func(item) for item in items]
    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        return list(pool.map(func, items))


@functools.cache
def lean_forest_matches() -> bool:
    """Whether the lean forest is the stock forest under this scikit-learn: same probabilities on a small fixed
    problem, or any failure of the private API."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 9)).astype(np.float32)
    y = (x[:, 0] + rng.normal(scale=0.8, size=60) > 0).astype(np.float64)
    try:
        lean = _LeanForest(8, 3, 1).fit(x, y).predict_proba(x)
    except Exception:  # noqa: BLE001 - a changed private signature means: use the stock forest
        return False
    stock = RandomForestClassifier(n_estimators=8, random_state=3, n_jobs=1).fit(x, y).predict_proba(x)
    return lean.shape == stock.shape and bool(np.array_equal(lean, stock))


def fit_forest(x: np.ndarray, y: np.ndarray, *, n_trees: int, seed: int, n_jobs: int) -> FittedForest:
    """`RandomForestClassifier(n_estimators=n_trees, random_state=seed, n_jobs=n_jobs).fit(x, y)`, tree for tree,
    grown by the lean path where it matches the stock forest (`lean_forest_matches`)."""
    if lean_forest_matches():
        return _LeanForest(n_trees, seed, n_jobs).fit(x, y)
    return RandomForestClassifier(n_estimators=n_trees, random_state=seed, n_jobs=n_jobs).fit(x, y)
