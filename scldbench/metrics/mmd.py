"""Multi-kernel Gaussian maximum mean discrepancy with a bandwidth set by real cells' neighbour distances."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors


def median_knn_distance(x: np.ndarray, k: int = 25) -> float:
    """Median distance of each point to its `k` nearest neighbours (itself excluded), over all pairs."""
    x = np.asarray(x, dtype=np.float64)
    k = min(k, len(x) - 1)
    if k < 1:
        raise ValueError("median_knn_distance needs at least 2 points")
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return float(np.median(dist[:, 1:]))


def mmd_multi_kernel(
    real: np.ndarray, generated: np.ndarray, *, k: int = 25, scales: tuple[float, ...] = (0.5, 1.0, 2.0)
) -> float:
    """sqrt of the biased MMD^2 with kernel sum_s exp(-|x-y|^2 / s^2), s in m * `scales`.

    m is the median distance of real cells to their `k` nearest neighbours.
    """
    real, generated = np.asarray(real, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    m = median_knn_distance(real, k)
    sigmas = [m * s for s in scales] if m > 0 else [1.0]

    def kernel_mean(a: np.ndarray, b: np.ndarray) -> float:
        d2 = cdist(a, b, "sqeuclidean")
        return float(sum(np.exp(-d2 / s**2).mean() for s in sigmas))

    mmd2 = kernel_mean(real, real) + kernel_mean(generated, generated) - 2 * kernel_mean(real, generated)
    return float(np.sqrt(max(mmd2, 0.0)))


#: RBF kernel widths gamma of k(x, y) = exp(-gamma |x - y|^2): the set CellOT, scDiffusion and CFGen average over
RBF_GAMMAS: tuple[float, ...] = (2.0, 1.0, 0.5, 0.1, 0.01, 0.005)


def mmd_rbf(real: np.ndarray, generated: np.ndarray, *, gammas: tuple[float, ...] = RBF_GAMMAS) -> float:
    """Biased MMD^2 with the RBF kernel exp(-gamma |x-y|^2), averaged over `gammas` (0 for identical sets)."""
    real, generated = np.asarray(real, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"real {real.shape} and generated {generated.shape} must be 2-D with equal columns")
    d_rr, d_gg, d_rg = (cdist(a, b, "sqeuclidean") for a, b in ((real, real), (generated, generated),
                                                                 (real, generated)))
    values = [np.exp(-g * d_rr).mean() + np.exp(-g * d_gg).mean() - 2 * np.exp(-g * d_rg).mean() for g in gammas]
    return float(max(np.mean(values), 0.0))
