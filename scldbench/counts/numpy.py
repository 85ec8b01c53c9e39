"""Count maths on numpy arrays and scipy sparse matrices (cells are rows, genes columns).

NB parametrisation: mean mu and dispersion phi, variance mu + phi mu^2; phi = 0 is a Poisson.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import digamma

from scldbench.data.counts import ArrayLike, to_dense

#: inverse dispersions (r = 1 / phi) that dispersion estimates stay between
R_MIN, R_MAX = 1e-3, 1e6
_BISECTION_STEPS = 45
_SIZE_BINS = 32


# ------------------------------------------------------------------------------------------ totals per cell
def library_sizes(x: ArrayLike) -> np.ndarray:
    """Total counts of every cell, float64."""
    return np.asarray(x.sum(axis=1), dtype=np.float64).ravel()


def size_factors(x: ArrayLike) -> np.ndarray:
    """Each cell's library size over the mean library size of the cells given (ones when they hold no counts)."""
    lib = library_sizes(x)
    return lib / lib.mean() if lib.mean() > 0 else np.ones_like(lib)


def normalise_total(
    x: ArrayLike, target: float | np.ndarray, *, dtype: type = np.float64, divide_last: bool = False
) -> np.ndarray:
    """Every cell (row) scaled to `target` total counts, dense in `dtype`; cells with no counts stay zero.

    Parameters
    ----------
    x
        Cells x genes, dense or sparse.
    target
        The total of every cell, or one total per cell.
    dtype
        Output dtype, and the precision the scaling is done in.
    divide_last
        Compute ``(x * target) / total`` (totals summed in `dtype`) rather than ``x * (target / total)`` (the
        factor computed in float64, then cast to `dtype`). The two round differently in about 2% of entries;
        each caller keeps the order its recorded results were made with.
    """
    dense = to_dense(x, dtype)
    target = np.asarray(target, dtype=np.float64)
    if target.ndim == 1:
        target = target[:, None]
    if divide_last:
        totals = dense.sum(axis=1, keepdims=True)
        return np.divide(dense * target.astype(dtype), totals, out=np.zeros_like(dense), where=totals > 0)
    totals = dense.sum(axis=1, keepdims=True, dtype=np.float64)
    scale = np.divide(target, totals, out=np.zeros_like(totals), where=totals > 0).astype(dtype)
    return dense * scale


def normalise_total_csr(x: ArrayLike, target: float = 1e4, *, log: bool = False) -> sp.csr_matrix:
    """Counts scaled to `target` per cell (log1p of that when `log`), kept sparse: CSR float64, zeros dropped.

    The values are those of ``normalise_total(x, target)`` (the factor target / total applied to every count).
    """
    m = normalise_total_sparse(x, target)
    m.eliminate_zeros()
    if log:
        np.log1p(m.data, out=m.data)
    return m


def normalise_total_sparse(
    x: ArrayLike, target: float, *, dtype: type = np.float64, divide_last: bool = False
) -> sp.csr_matrix:
    """`normalise_total` kept sparse: CSR in `dtype` with the same stored values, computed the same way.

    Only the stored entries are scaled, each by its own row's factor (or divided by its row's total when
    `divide_last`), so every value equals the dense function's for counts whose row totals are exact in
    `dtype` (integer counts). The scaling runs in place, a block of rows at a time, so that no temporary is as
    large as the matrix.
    """
    m = sp.csr_matrix(x, dtype=dtype, copy=True)
    if divide_last:
        totals = np.asarray(m.sum(axis=1, dtype=dtype)).ravel()
        m.data *= np.asarray(target, dtype=dtype)
        # a row without counts stores only zeros, which stay zero divided by one
        _scale_rows(m, np.where(totals > 0, totals, 1), divide=True)
        return m
    totals = np.asarray(m.sum(axis=1, dtype=np.float64)).ravel()
    scale = np.divide(float(target), totals, out=np.zeros_like(totals), where=totals > 0).astype(dtype)
    _scale_rows(m, scale, divide=False)
    return m


def _scale_rows(m: sp.csr_matrix, factors: np.ndarray, *, divide: bool, block: int = 16_384) -> None:
    """Multiply (or divide) every stored entry of CSR `m` by its row's factor, in place."""
    for start in range(0, m.shape[0], block):
        stop = min(start + block, m.shape[0])
        lo, hi = m.indptr[start], m.indptr[stop]
        per_entry = np.repeat(factors[start:stop], np.diff(m.indptr[start : stop + 1]))
        if divide:
            m.data[lo:hi] /= per_entry
        else:
            m.data[lo:hi] *= per_entry


def log_normalise_sparse(x: ArrayLike, target: float = 1e4) -> sp.csr_matrix:
    """`log_normalise` kept sparse (CSR float64, same values)."""
    m = normalise_total_sparse(x, target, divide_last=True)
    np.log1p(m.data, out=m.data)
    return m


def log_normalise(x: ArrayLike, target: float = 1e4) -> np.ndarray:
    """log1p of counts scaled to `target` total per cell (cells with no counts stay zero); dense float64."""
    return np.log1p(normalise_total(x, target, divide_last=True))


# ---------------------------------------------------------------------------------------- NB distribution
def nb_zero_prob(mean: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """P(X = 0) under NB(mean, phi), Poisson where phi = 0."""
    phi = np.broadcast_to(phi, mean.shape)
    safe = np.where(phi > 0, phi, 1.0)
    return np.where(phi > 0, np.exp(-np.log1p(safe * mean) / safe), np.exp(-mean))


def nb_gamma_rates(rng: np.random.Generator, mean: np.ndarray, dispersion: np.ndarray) -> np.ndarray:
    """The gamma step of a gamma-Poisson (NB) draw: Poisson rates with the shape of `mean`, drawn from
    Gamma(shape 1 / phi, scale mean * phi) where phi > 0 and equal to the mean where phi = 0."""
    phi = np.broadcast_to(dispersion, mean.shape)
    over = phi > 0
    rate = mean.astype(np.float64, copy=True)
    shape = np.divide(1.0, phi, out=np.ones_like(rate), where=over)
    rate[over] = rng.gamma(shape[over], mean[over] * phi[over])
    return rate


def sample_nb(rng: np.random.Generator, mean: np.ndarray, dispersion: np.ndarray) -> np.ndarray:
    """NB counts (float32) as gamma-Poisson draws with the shape of `mean`; `dispersion` broadcasts against it
    (0 = Poisson)."""
    return rng.poisson(nb_gamma_rates(rng, mean, dispersion)).astype(np.float32)


# ------------------------------------------------------------------------------------- dispersion estimates
def _csc(x: ArrayLike) -> sp.csc_matrix:
    return sp.csc_matrix(x, dtype=np.float64)


def residual_squares(m: sp.csc_matrix, s: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Per gene (column), sum_i (x_ij - s_i mu_j)^2, expanded so that the sparse matrix is never densified.

    Minus sum_i s_i mu_j, it is the variance beyond Poisson around the means s_i mu_j, which moment estimates
    of the dispersion divide by sum_i (s_i mu_j)^2.
    """
    sq = np.asarray(m.multiply(m).sum(axis=0)).ravel()
    cross = np.asarray(m.T @ s).ravel()
    return sq - 2 * mu * cross + mu**2 * (s**2).sum()


def nb_moments(x: ArrayLike, size_factors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Method-of-moments mean and dispersion per gene (column); dispersion 0 where variance <= mean.

    With size factors s_i, E[x_ij] = s_i mu_j and Var = s_i mu_j + phi_j (s_i mu_j)^2. Without them the
    variance is the unbiased one.
    """
    m = _csc(x)
    n = m.shape[0]
    s = np.ones(n) if size_factors is None else np.asarray(size_factors, dtype=np.float64)
    mu = np.asarray(m.sum(axis=0)).ravel() / s.sum()
    squares = residual_squares(m, s, mu)
    if size_factors is None and n > 1:
        squares = squares * n / (n - 1)
    excess = squares - mu * s.sum()
    denom = mu**2 * (s**2).sum()
    phi = np.divide(excess, denom, out=np.zeros_like(mu), where=denom > 0)
    return mu, np.clip(phi, 0.0, 1.0 / R_MIN)


def moment_log_theta(counts: np.ndarray, groups: np.ndarray | None, n_rows: int) -> np.ndarray:
    """Method-of-moments log inverse dispersion per gene (one row per group 0..n_rows-1 when `n_rows` > 1),
    float32: theta = mean^2 / (variance - mean) with the plain (biased) variance, clipped to [0.05, 100] and
    100 where the variance does not exceed the mean. The neural models start their learned theta here.
    """
    rows = []
    for r in range(n_rows):
        x = counts if n_rows == 1 or groups is None else counts[groups == r]
        mean, var = x.mean(axis=0), x.var(axis=0)
        theta = np.divide(mean**2, var - mean, out=np.full_like(mean, 100.0), where=var > mean)
        rows.append(np.log(np.clip(theta, 0.05, 100.0)))
    return np.stack(rows).astype(np.float32)


def size_bins(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Size factors summarised as (values, weights) of up to 32 quantile bins, and each cell's bin."""
    if np.allclose(s, s[0]):
        return s[:1], np.array([float(s.size)]), np.zeros(s.size, dtype=np.int64)
    edges = np.quantile(s, np.linspace(0, 1, _SIZE_BINS + 1))
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, _SIZE_BINS - 1)
    weights = np.bincount(which, minlength=_SIZE_BINS).astype(np.float64)
    values = np.bincount(which, weights=s, minlength=_SIZE_BINS) / np.maximum(weights, 1)
    keep = weights > 0
    renumber = np.cumsum(keep) - 1
    return values[keep], weights[keep], renumber[which]


def nb_mle(x: ArrayLike, size_factors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and maximum-likelihood dispersion per gene (column); dispersion 0 (Poisson) where the likelihood
    keeps rising toward the Poisson limit.

    The mean is sum(x) / sum(s); the dispersion maximises the likelihood given that mean. Without size factors
    both are the joint MLE. Zeros contribute to the score only through the mean terms, so the cost per
    bisection step is one digamma per non-zero entry.
    """
    m = _csc(x)
    s = np.ones(m.shape[0]) if size_factors is None else np.asarray(size_factors, dtype=np.float64)
    mu = np.asarray(m.sum(axis=0)).ravel() / s.sum()
    bin_s, bin_w, _ = size_bins(s)
    return mu, nb_dispersion_mle(m, s, mu, bin_s, bin_w)


def nb_dispersion_mle(
    m: sp.csc_matrix,
    s: np.ndarray,
    mu: np.ndarray,
    bin_s: np.ndarray,
    bin_w: np.ndarray,
    *,
    near: np.ndarray | None = None,
    steps: int = _BISECTION_STEPS,
) -> np.ndarray:
    """Maximum-likelihood dispersion per gene given its mean, by bisection on log(1/phi); 0 where Poisson.

    `bin_s` are size-factor values and `bin_w` the weight of cells at each: shape (n_bins,) for every gene alike,
    or (n_bins, n_genes) for per-gene weights (the zero-inflated NB's EM down-weights zeros that are likely
    structural). Non-zero entries always have weight one. `near` (dispersions from a previous iteration) narrows
    the search to a factor e around them, so that an EM step needs fewer bisection `steps`.
    """
    n_genes = m.shape[1]
    col = np.repeat(np.arange(n_genes), np.diff(m.indptr))
    vals, s_nz = m.data, s[m.indices]
    weights = bin_w[:, None] if bin_w.ndim == 1 else bin_w

    def score(r: np.ndarray) -> np.ndarray:
        rc = r[col]
        nonzero = digamma(vals + rc) - digamma(rc) - vals / (rc + s_nz * mu[col])
        means = bin_s[:, None] * mu[None, :]
        dense = (weights * (np.log(r / (r + means)) + means / (r + means))).sum(axis=0)
        return np.bincount(col, weights=nonzero, minlength=n_genes) + dense

    lo = np.full(n_genes, np.log(R_MIN))
    hi = np.full(n_genes, np.log(R_MAX))
    if near is None:
        poisson = (mu <= 0) | (score(np.exp(hi)) >= 0)
    else:
        start = -np.log(np.clip(near, 1.0 / R_MAX, 1.0 / R_MIN))
        lo, hi = np.maximum(lo, start - 1.0), np.minimum(hi, start + 1.0)
        poisson = mu <= 0
    for _ in range(steps):
        mid = (lo + hi) / 2
        positive = score(np.exp(mid)) > 0
        lo = np.where(positive, mid, lo)
        hi = np.where(positive, hi, mid)
    phi = np.exp(-(lo + hi) / 2)
    phi[poisson] = 0.0
    return phi
