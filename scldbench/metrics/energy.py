"""Energy distance between two point clouds (Székely & Rizzo), as scPerturb uses it for perturbation effects."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist


def energy_distance(real: np.ndarray, generated: np.ndarray) -> float:
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| with Euclidean distances, every mean over all pairs (V-statistic).

    0 for identical sets, positive otherwise, symmetric in its arguments.
    """
    x, y = np.asarray(real, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise ValueError(f"real {x.shape} and generated {y.shape} must be non-empty 2-D with equal columns")
    between = cdist(x, y).mean()
    return float(max(2 * between - cdist(x, x).mean() - cdist(y, y).mean(), 0.0))
