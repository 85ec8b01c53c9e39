"""Memorisation: are generated cells closer to training cells than new real cells are?

A generator that copies (or nearly copies) its training cells produces cells whose distance to the nearest
training cell is far below that of real cells it never saw. Distances are Euclidean, in a representation the
caller chooses; `fit_log_pca` gives the usual one (PCA of log-normalised counts fitted on training
cells only).
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from scldbench.counts.numpy import log_normalise, log_normalise_sparse
from scldbench.data.counts import ArrayLike
from scldbench.metrics.pca import fit_pca


def fit_log_pca(
    train: ArrayLike, *others: ArrayLike, n_components: int = 50, target: float = 1e4, seed: int = 0,
    sparse: bool = False,
) -> list[np.ndarray]:
    """PCA of log1p(counts scaled to `target`) fitted on `train` only; returns [train, *others] embedded.

    `sparse`: the log-normalised values stay sparse and the PCA is centred implicitly (for data too large to
    hold dense; the embedding differs from the dense one by float rounding).
    """
    norm = log_normalise_sparse if sparse else log_normalise
    train_log = norm(train, target)
    k = min(n_components, train_log.shape[0] - 1, train_log.shape[1])
    pca = fit_pca(train_log, k, seed)
    return [pca.transform(train_log)] + [pca.transform(norm(x, target)) for x in others]


def nearest_distances(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Euclidean distance of every row of `query` to its nearest row of `reference`."""
    query, reference = np.asarray(query, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if query.ndim != 2 or reference.ndim != 2 or query.shape[1] != reference.shape[1]:
        raise ValueError(f"query {query.shape} and reference {reference.shape} need 2-D, equal columns")
    _, idx = NearestNeighbors(n_neighbors=1).fit(reference).kneighbors(query)
    # recomputed directly: the search's |a|^2 + |b|^2 - 2ab shortcut leaves ~1e-7 for an exact copy
    return np.linalg.norm(query - reference[idx[:, 0]], axis=1)


def memorisation(
    train: np.ndarray,
    test: np.ndarray,
    generated: np.ndarray,
    *,
    quantile: float = 0.05,
    flag_factor: float = 3.0,
) -> dict[str, float]:
    """Nearest-training-cell distances of generated cells against those of real test cells (one space).

    d_gen = distance of each generated cell to its nearest training cell; d_test = the same for each real test
    cell (real cells the generator never saw). Returns:
        gen_to_train_median, test_to_train_median: medians of d_gen and d_test.
        median_ratio: median(d_gen) / median(d_test); about 1 for a sample like new real cells, near 0 for
            copies (a value far above 1 means generated cells lie away from the data, not memorisation).
        close_fraction: fraction of generated cells with d_gen below the `quantile` quantile of d_test; about
            `quantile` for a sample like new real cells, near 1 for a copying generator.
        close_fraction_excess: close_fraction / quantile (about 1 when nothing is memorised).
        exact_copy_fraction: fraction of generated cells at distance 0 (to 1e-9 relative to the median
            of d_test).
        memorised: 1.0 when close_fraction > flag_factor * quantile, else 0.0.
    """
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    d_gen = nearest_distances(generated, train)
    d_test = nearest_distances(test, train)
    test_median = float(np.median(d_test))
    threshold = float(np.quantile(d_test, quantile))
    close = float(np.mean(d_gen < threshold))
    gen_median = float(np.median(d_gen))
    return {
        "gen_to_train_median": gen_median,
        "test_to_train_median": test_median,
        "median_ratio": gen_median / test_median if test_median > 0 else float("nan"),
        "close_fraction": close,
        "close_fraction_excess": close / quantile,
        "exact_copy_fraction": float(np.mean(d_gen <= 1e-9 * max(test_median, 1e-300))),
        "memorised": float(close > flag_factor * quantile),
    }
