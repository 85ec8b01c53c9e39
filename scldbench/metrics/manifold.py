"""Precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020) of generated points.

Both estimate a data manifold as the union of balls around points, each ball's radius being the distance of
its centre to its k-th nearest neighbour within the same set (the centre itself excluded). A point lies inside
a ball when its Euclidean distance to the centre is at most the radius (closed balls). Inputs are points in
one shared representation (e.g. a PCA of normalised counts), cells x features.

Read precision together with recall or coverage: in a PCA fitted on real cells, cells without gene structure
(shuffled genes, Poisson noise) project near the centre of the real cloud, where real balls are large, and score
a precision as high as real cells do (measured on pbmc68k-mini, PCA-5 to PCA-50); their recall and coverage are
near 0.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors


def _as_points(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty 2-D array (points x features), got shape {x.shape}")
    return x


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of every point of `x` to its `k`-th nearest other point of `x` (the point itself excluded)."""
    x = _as_points(x, "x")
    if not 1 <= k < len(x):
        raise ValueError(f"k must be between 1 and n_points - 1 = {len(x) - 1}, got {k}")
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    # column 0 is the point itself (distance 0), unless duplicates tie with it; either way, the k-th other
    # point's distance is the (k+1)-th smallest distance including itself
    return dist[:, k]


def _ball_membership(
    points: np.ndarray, centres: np.ndarray, radii: np.ndarray, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """For each point, how many balls (centre, radius) hold it; for each centre, whether its ball has any."""
    per_point = np.zeros(len(points), dtype=np.int64)
    per_centre = np.zeros(len(centres), dtype=bool)
    for start in range(0, len(points), chunk):
        inside = cdist(points[start : start + chunk], centres) <= radii[None, :]
        per_point[start : start + chunk] = inside.sum(axis=1)
        per_centre |= inside.any(axis=0)
    return per_point, per_centre


def precision_recall(real: np.ndarray, generated: np.ndarray, *, k: int = 5) -> dict[str, float]:
    """Kynkäänniemi et al. (2019) improved precision and recall.

    precision = fraction of generated points inside the real manifold (the union over real points x_i of the
    closed ball of radius = distance of x_i to its k-th nearest real neighbour); recall = fraction of real
    points inside the generated manifold (built the same way from generated points). Both in [0, 1], higher
    is better: precision measures fidelity, recall diversity. Returns {"precision", "recall"}.
    """
    real, generated = _as_points(real, "real"), _as_points(generated, "generated")
    if real.shape[1] != generated.shape[1]:
        raise ValueError(f"real {real.shape} and generated {generated.shape} need equal numbers of features")
    in_real, _ = _ball_membership(generated, real, knn_radii(real, k))
    in_gen, _ = _ball_membership(real, generated, knn_radii(generated, k))
    return {"precision": float(np.mean(in_real > 0)), "recall": float(np.mean(in_gen > 0))}


def density_coverage(real: np.ndarray, generated: np.ndarray, *, k: int = 5) -> dict[str, float]:
    """Naeem et al. (2020) density and coverage; only real points define balls (radius: k-th real neighbour).

    density = (1 / (k * M)) * sum over the M generated points of the number of real balls holding it: about 1
    when generated points are distributed like real ones, above 1 when they crowd dense real regions, 0 when
    they lie off the real manifold. coverage = fraction of real balls holding at least one generated point, in
    [0, 1]. Returns {"density", "coverage"}.
    """
    real, generated = _as_points(real, "real"), _as_points(generated, "generated")
    if real.shape[1] != generated.shape[1]:
        raise ValueError(f"real {real.shape} and generated {generated.shape} need equal numbers of features")
    counts, covered = _ball_membership(generated, real, knn_radii(real, k))
    return {"density": float(counts.sum() / (k * len(generated))), "coverage": float(np.mean(covered))}


def manifold_metrics(real: np.ndarray, generated: np.ndarray, *, k: int = 5) -> dict[str, float]:
    """precision, recall, density and coverage with the same `k` (see the two functions above)."""
    return {**precision_recall(real, generated, k=k), **density_coverage(real, generated, k=k)}
