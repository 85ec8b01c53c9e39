"""Checks that a matrix holds raw counts, and small helpers for dense/sparse count matrices."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from scldbench.errors import ScldbenchError

ArrayLike = np.ndarray | sp.spmatrix | sp.sparray
GENERIC_ADVICE = "pass raw counts (e.g. adata.raw, adata.layers['counts'])"


def stored_values(x: ArrayLike) -> np.ndarray:
    """The explicitly stored values of a dense or sparse matrix (a view where possible)."""
    if sp.issparse(x):
        return np.asarray(x.data)
    return np.asarray(x).ravel()


def to_dense(x: ArrayLike, dtype: type = np.float32) -> np.ndarray:
    if sp.issparse(x):
        return x.toarray().astype(dtype, copy=False)
    return np.asarray(x, dtype=dtype)


def check_counts(x: ArrayLike, what: str = "the data", sample: int = 2_000_000, *, advice: str | None = None) -> None:
    """Raise a one-line ScldbenchError unless `x` looks like raw counts (finite, non-negative, integers).

    `advice` replaces the generic fix named for scaled or normalised values (e.g. the layers to choose from).
    """
    values = stored_values(x)
    if values.size > sample:
        values = values[np.random.default_rng(0).choice(values.size, sample, replace=False)]
    if not np.all(np.isfinite(values)):
        raise ScldbenchError(f"{what} contains NaN or infinite values; remove or impute them and pass raw counts")
    if values.size and values.min() < 0:
        raise ScldbenchError(
            f"{what} has negative values (min {values.min():.3g}), so it looks scaled or centred; "
            f"{advice or GENERIC_ADVICE}"
        )
    nonzero = values[values != 0]
    fractional = np.flatnonzero(np.abs(nonzero - np.round(nonzero)) > 1e-6)
    if fractional.size:
        example = f"e.g. {nonzero[fractional[0]]:.6g}; max {nonzero.max():.3g}"
        if fractional.size < nonzero.size / 2:  # normalising makes nearly every value fractional
            raise ScldbenchError(
                f"{what} holds non-integer values in {fractional.size / nonzero.size:.1%} of its entries ({example}): "
                "estimated counts (EM quantification, ambient-RNA correction)? round them to whole counts "
                "(np.rint) and pass them again"
            )
        hint = "log-normalised" if nonzero.max() < 30 else "normalised"
        raise ScldbenchError(
            f"{what} holds non-integer values ({example}), so it looks {hint}; {advice or GENERIC_ADVICE}"
        )
