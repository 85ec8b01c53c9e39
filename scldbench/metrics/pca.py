"""PCA of dense or sparse matrices, with the centring of sparse ones left implicit.

Dense input goes to scikit-learn's PCA unchanged (its 'auto' solver), so results made on dense values stay as they
were. Sparse input takes the solver 'auto' would take for a dense matrix of that shape, without ever building
the centred (dense) matrix: the randomized SVD multiplies the sparse matrix and subtracts the column means as a
rank-one correction, with the same random draws as on dense input, so the components agree with the dense ones
to float rounding. Above `DENSE_LIMIT` values (cells x genes) the scoring code keeps normalised counts sparse
and fits here (see `sparse_path`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils import check_random_state
from sklearn.utils.extmath import svd_flip

try:  # scikit-learn >= 1.6 checks the input in randomized_svd and computes in _randomized_svd, which takes operators
    from sklearn.utils.extmath import _randomized_svd
except ImportError:
    from sklearn.utils.extmath import randomized_svd as _randomized_svd

from scldbench.data.counts import ArrayLike

#: matrices of more values (cells x genes) than this are normalised and projected sparse
DENSE_LIMIT = 100_000_000


def sparse_path(n_cells: int, n_genes: int, limit: int | None = DENSE_LIMIT) -> bool:
    """Whether `n_cells` x `n_genes` values are over `limit` (None: never), so scoring keeps them sparse."""
    return limit is not None and n_cells * n_genes > limit


class _Centred:
    """x minus its column means, as a linear operator (products only); x stays sparse."""

    # numpy defers `array @ _Centred` to __rmatmul__
    __array_ufunc__ = None

    def __init__(self, x: sp.csr_matrix, mean: np.ndarray, transposed: bool = False) -> None:
        self.x, self.mean, self.transposed = x, mean, transposed
        self.dtype = x.dtype
        self.shape = x.shape[::-1] if transposed else x.shape

    @property
    def T(self) -> _Centred:  # noqa: N802
        return _Centred(self.x, self.mean, not self.transposed)

    def __matmul__(self, q: np.ndarray) -> np.ndarray:
        if self.transposed:
            return np.asarray(self.x.T @ q) - np.outer(self.mean, q.sum(axis=0))
        return np.asarray(self.x @ q) - (self.mean @ q)[None, :]

    def __rmatmul__(self, q: np.ndarray) -> np.ndarray:
        if self.transposed:
            return np.asarray(q @ self.x.T) - (q @ self.mean)[:, None]
        return np.asarray(q @ self.x) - np.outer(q.sum(axis=1), self.mean)


@dataclass(frozen=True)
class CentredProjection:
    """Column means and principal axes (components x genes); `transform` projects dense or sparse cells."""

    mean: np.ndarray
    components: np.ndarray

    def transform(self, x: ArrayLike) -> np.ndarray:
        # the order of scikit-learn's PCA.transform: project, then subtract the projected mean
        projected = np.asarray(x @ self.components.T)
        return projected - self.mean[None, :] @ self.components.T


def fit_pca(x: ArrayLike, n_components: int, seed: int) -> PCA | CentredProjection:
    """A PCA of `x` with `n_components`, seeded; anything with ``transform(cells)``.

    Dense `x`: ``PCA(n_components, random_state=seed).fit(x)``. Sparse `x`: the solver that call would choose for
    a dense matrix of that shape (randomized SVD on the implicitly centred matrix, or scikit-learn's
    covariance_eigh, which takes sparse input itself); the few shapes where it would choose the full SVD are
    small enough to make dense.
    """
    if not sp.issparse(x):
        return PCA(n_components=n_components, random_state=seed).fit(x)
    n_cells, n_genes = x.shape
    if n_genes <= 1_000 and n_cells >= 10 * n_genes:
        return PCA(n_components=n_components, svd_solver="covariance_eigh", random_state=seed).fit(x)
    if max(x.shape) <= 500 or n_components >= 0.8 * min(x.shape):
        return PCA(n_components=n_components, random_state=seed).fit(x.toarray())
    x = sp.csr_matrix(x)
    mean = np.asarray(x.mean(axis=0), dtype=x.dtype).ravel()
    u, _, vt = _randomized_svd(_Centred(x, mean), n_components, flip_sign=False,
                               random_state=check_random_state(seed))
    _, vt = svd_flip(u, vt, u_based_decision=False)
    return CentredProjection(mean, vt)


class SparseInputPCA(TransformerMixin, BaseEstimator):
    """`fit_pca` as a pipeline step, for sparse input (dense input gets scikit-learn's PCA through it too).

    Unlike scikit-learn's PCA, `fit_transform` is `fit` then `transform`, on sparse input as on dense.
    """

    def __init__(self, n_components: int = 30, random_state: int = 0) -> None:
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, x: ArrayLike, y: object = None) -> SparseInputPCA:
        self.pca_ = fit_pca(x, self.n_components, self.random_state)
        return self

    def transform(self, x: ArrayLike) -> np.ndarray:
        return self.pca_.transform(x)
