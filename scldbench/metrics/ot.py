"""Exact Wasserstein distances between two point clouds (optimal transport with POT, uniform weights)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist


def _points(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty 2-D array (points x features), got shape {x.shape}")
    return x


def _emd2(real: np.ndarray, generated: np.ndarray, metric: str) -> float:
    import ot

    real, generated = _points(real, "real"), _points(generated, "generated")
    if real.shape[1] != generated.shape[1]:
        raise ValueError(f"real {real.shape} and generated {generated.shape} need equal numbers of features")
    a = np.full(len(real), 1.0 / len(real))
    b = np.full(len(generated), 1.0 / len(generated))
    cost = cdist(real, generated, metric)
    return float(ot.emd2(a, b, cost, numItermax=10_000_000))


def wasserstein1(real: np.ndarray, generated: np.ndarray) -> float:
    """W1: the minimum over transport plans of the mean Euclidean distance moved (exact, `ot.emd2`)."""
    return _emd2(real, generated, "euclidean")


def wasserstein2(real: np.ndarray, generated: np.ndarray) -> float:
    """W2: sqrt of the minimum over transport plans of the mean squared Euclidean distance moved (exact)."""
    return float(np.sqrt(max(_emd2(real, generated, "sqeuclidean"), 0.0)))
