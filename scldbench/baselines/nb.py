"""An independent negative binomial per gene and per cluster: keeps every marginal, no co-expression.

Parametrisation: mean `mu` and dispersion `phi` (variance = mu + phi * mu^2); `phi = 0` is a Poisson, used for
genes whose variance does not exceed their mean. Two estimators:

- `"mle"` (default): the mean is the sample mean (its exact MLE for a constant-mean NB) and the dispersion is
  the root of the profile score in `phi`, found by bisection on log(1/phi) for all genes at once;
- `"moments"`: phi = (variance - mean) / mean^2.

With `library_size="empirical"` each cell's counts are NB(s * mu, phi), where the size factor s of a generated
cell is drawn from the cluster's training size factors (library size / cluster mean library size), so that
library sizes vary as in the data and genes co-vary through them. The default, `"none"`, is the plain per-gene
NB that the reference figures compare against: the simplest honest baseline, with the library-size
variation folded into each gene's dispersion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import anndata as ad
import numpy as np
import scipy.sparse as sp
from scipy.special import digamma

from scldbench.errors import ScldbenchError
from scldbench.generator import Generator

#: the group name used when the model is fitted without labels
ALL_CELLS = "__all__"
_R_MIN, _R_MAX = 1e-3, 1e6
_BISECTION_STEPS = 45
_SIZE_BINS = 32
#: dense entries (cells x genes) generated at a time, to keep memory bounded on large gene sets
_CHUNK_ENTRIES = 2**22


@dataclass
class NBFit:
    """Per-gene NB parameters of one group of cells."""

    mean: np.ndarray
    dispersion: np.ndarray
    #: training size factors (library size / group mean library size), kept for sampling
    size_factors: np.ndarray


def _csc(x: np.ndarray | sp.spmatrix) -> sp.csc_matrix:
    return sp.csc_matrix(x, dtype=np.float64)


def nb_moments(
    x: np.ndarray | sp.spmatrix, size_factors: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Method-of-moments mean and dispersion per gene (column); dispersion 0 where variance <= mean.

    With size factors s_i, E[x_ij] = s_i mu_j and Var = s_i mu_j + phi_j (s_i mu_j)^2.
    """
    m = _csc(x)
    n = m.shape[0]
    s = np.ones(n) if size_factors is None else np.asarray(size_factors, dtype=np.float64)
    mu = np.asarray(m.sum(axis=0)).ravel() / s.sum()
    sq = np.asarray(m.multiply(m).sum(axis=0)).ravel()
    cross = np.asarray(m.T @ s).ravel()
    # sum_i (x - s mu)^2 - s mu, expanded so that the sparse matrix is never densified
    squares = sq - 2 * mu * cross + mu**2 * (s**2).sum()
    if size_factors is None and n > 1:
        squares = squares * n / (n - 1)  # unbiased variance in the plain model
    excess = squares - mu * s.sum()
    denom = mu**2 * (s**2).sum()
    phi = np.divide(excess, denom, out=np.zeros_like(mu), where=denom > 0)
    return mu, np.clip(phi, 0.0, 1.0 / _R_MIN)


def size_bins(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Size factors summarised as (values, weights) of up to `_SIZE_BINS` quantile bins, and each cell's bin."""
    if np.allclose(s, s[0]):
        return s[:1], np.array([float(s.size)]), np.zeros(s.size, dtype=np.int64)
    edges = np.quantile(s, np.linspace(0, 1, _SIZE_BINS + 1))
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, _SIZE_BINS - 1)
    weights = np.bincount(which, minlength=_SIZE_BINS).astype(np.float64)
    values = np.bincount(which, weights=s, minlength=_SIZE_BINS) / np.maximum(weights, 1)
    keep = weights > 0
    renumber = np.cumsum(keep) - 1
    return values[keep], weights[keep], renumber[which]


def nb_mle(
    x: np.ndarray | sp.spmatrix, size_factors: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
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

    lo = np.full(n_genes, np.log(_R_MIN))
    hi = np.full(n_genes, np.log(_R_MAX))
    if near is None:
        poisson = (mu <= 0) | (score(np.exp(hi)) >= 0)
    else:
        start = -np.log(np.clip(near, 1.0 / _R_MAX, 1.0 / _R_MIN))
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


def size_factors(block: sp.spmatrix) -> np.ndarray:
    """Each cell's library size over the mean library size of its group (ones for an empty group)."""
    lib = np.asarray(block.sum(axis=1), dtype=np.float64).ravel()
    return lib / lib.mean() if lib.mean() > 0 else np.ones_like(lib)


def chunk_rows(n_genes: int) -> int:
    """How many cells to generate at a time so that a dense chunk stays near `_CHUNK_ENTRIES` values."""
    return max(1, _CHUNK_ENTRIES // max(n_genes, 1))


def sample_nb(rng: np.random.Generator, mean: np.ndarray, dispersion: np.ndarray) -> np.ndarray:
    """Gamma-Poisson draws with the shape of `mean`; `dispersion` broadcasts against it (0 = Poisson)."""
    phi = np.broadcast_to(dispersion, mean.shape)
    over = phi > 0
    rate = mean.astype(np.float64, copy=True)
    shape = np.divide(1.0, phi, out=np.ones_like(rate), where=over)
    rate[over] = rng.gamma(shape[over], mean[over] * phi[over])
    return rng.poisson(rate).astype(np.float32)


def groups_to_sample(
    generator: Generator, n_cells: int, labels: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The group of every cell to generate, and the labels to report when the caller asked for none.

    Unconditional sampling follows the training proportions; a model fitted without labels has one group.
    """
    if labels is not None:
        return labels, None
    if not generator.label_categories:
        return np.full(n_cells, ALL_CELLS), None
    drawn = generator.proportional_labels(n_cells)
    return drawn, drawn


def sample_by_group(
    generator: Generator,
    n_cells: int,
    labels: np.ndarray | None,
    draw: Callable[[str, int], sp.csr_matrix],
):
    """Cells drawn group by group with `draw(group, n)`, put back in the requested order (see `groups_to_sample`)."""
    labels, assigned = groups_to_sample(generator, n_cells, labels)
    blocks, order = [], []
    for group in np.unique(labels):
        idx = np.flatnonzero(labels == group)
        blocks.append(draw(str(group), idx.size))
        order.append(idx)
    out = sp.vstack(blocks, format="csr")[np.argsort(np.concatenate(order))]
    return (out, assigned) if assigned is not None else out


class NegativeBinomial(Generator):
    """Independent NB per gene and per cluster (MLE or moments); optional empirical library sizes."""

    name = "nb"
    description = "independent negative binomial per gene and per cluster (marginals only, no co-expression)"
    conditional = True

    def __init__(
        self,
        *,
        method: str = "mle",
        library_size: str = "none",
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(seed=seed, device=device)
        if method not in ("mle", "moments"):
            raise ScldbenchError(f"nb: method must be 'mle' or 'moments', got {method!r}")
        if library_size not in ("none", "empirical"):
            raise ScldbenchError(f"nb: library_size must be 'none' or 'empirical', got {library_size!r}")
        self.method = method
        self.library_size = library_size
        self.params_: dict[str, NBFit] = {}

    def _fit(self, adata: ad.AnnData, labels: np.ndarray | None) -> None:
        x = sp.csr_matrix(adata.X, dtype=np.float64)
        groups = np.full(x.shape[0], ALL_CELLS) if labels is None else labels
        estimate = nb_mle if self.method == "mle" else nb_moments
        self.params_ = {}
        for group in np.unique(groups):
            block = x[groups == group]
            size = size_factors(block)
            mu, phi = estimate(block, size if self.library_size == "empirical" else None)
            self.params_[str(group)] = NBFit(mean=mu, dispersion=phi, size_factors=size.astype(np.float32))

    def _sample(self, n_cells: int, labels: np.ndarray | None, guidance: float | None):
        return sample_by_group(self, n_cells, labels, lambda group, n: self._sample_group(self.params_[group], n))

    def _sample_group(self, fit: NBFit, n: int) -> sp.csr_matrix:
        parts = []
        step = chunk_rows(fit.mean.size)
        for start in range(0, n, step):
            k = min(step, n - start)
            if self.library_size == "empirical":
                s = self._rng.choice(fit.size_factors.astype(np.float64), size=k)
            else:
                s = np.ones(k)
            parts.append(sp.csr_matrix(sample_nb(self._rng, s[:, None] * fit.mean[None, :], fit.dispersion)))
        return sp.vstack(parts, format="csr")

    def estimated_parameters(self) -> dict[str, dict[str, list[float]]]:
        """Per group: gene means and dispersions as plain lists."""
        return {
            g: {"mean": f.mean.tolist(), "dispersion": f.dispersion.tolist()} for g, f in self.params_.items()
        }
