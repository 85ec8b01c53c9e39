"""A simulator in the style of scDesign2 (Sun et al. 2021, Genome Biology): per-cluster marginals joined by a
Gaussian copula.

Per cluster and per gene a count marginal is chosen among Poisson, negative binomial (NB) and zero-inflated NB
(ZINB); the most expressed genes of the cluster are then tied together by a Gaussian copula, the others are
drawn independently. Written from the paper's description.

Marginal rule (per cluster, per gene), by BIC = k log(n) - 2 log-likelihood with k = 1, 2, 3 parameters and
n the cluster's cells:

- Poisson when the sample variance does not exceed the sample mean (no over-dispersion to model);
- otherwise NB (maximum-likelihood mean and dispersion, `scldbench.baselines.nb`) unless Poisson has the lower BIC,
  i.e. unless the NB log-likelihood gain is at most log(n) / 2;
- ZINB (EM over the structural-zero probability, mean and dispersion) replaces the NB when the gene has more
  zeros than the fitted NB predicts and its log-likelihood gain over the NB exceeds log(n) / 2 (lower BIC).

BIC rather than AIC: with AIC's fixed penalty of one log-likelihood unit, about one NB gene in twelve of a
large cluster comes out zero-inflated by chance (measured on simulated NB genes of 2,000 cells); BIC's penalty
grows with the cluster, as the chance gain of a nested model does not.

Copula (per cluster, over the `n_copula_genes` genes of highest mean): each count x of cell i is turned into a
uniform by the randomised distributional transform u = F(x - 1) + v (F(x) - F(x - 1)), v ~ U(0, 1), then into
a normal score z = Phi^-1(u); the correlation of the scores is estimated with Ledoit-Wolf shrinkage toward the
identity (positive definite even with fewer cells than genes) and rescaled to unit diagonal. Sampling draws
z ~ N(0, R), u = Phi(z), x = F^-1(u) for the copula genes and direct marginal draws for the rest.

Library size: with `library_size="empirical"` (the default) the marginal of cell i is the gene's
distribution with mean s_i mu (s_i = library size / cluster mean, drawn for a generated cell from the
cluster's training cells), so library size varies as in the data and all genes co-vary through it; with
`"none"` the marginals are those of raw counts per cluster, as in scDesign2 itself. The default is chosen by
measurement on pbmc3k and the bladder data (docs/generators/copula.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import scipy.sparse as sp
from scipy import stats
from scipy.special import ndtr, ndtri
from sklearn.covariance import ledoit_wolf

from scldbench.baselines.nb import ALL_CELLS, chunk_rows, sample_by_group
from scldbench.counts.numpy import nb_dispersion_mle, nb_mle, nb_zero_prob, sample_nb, size_bins, size_factors
from scldbench.errors import ScldbenchError
from scldbench.generator import Generator

POISSON, NB, ZINB = 0, 1, 2
FAMILIES = ("poisson", "nb", "zinb")
LIBRARY_SIZES = ("empirical", "none")
_EM_STEPS = 15
_EM_BISECTION_STEPS = 16
_U_EPS = 1e-9


@dataclass
class CopulaFit:
    """Marginals and copula of one cluster."""

    #: per gene: POISSON, NB or ZINB
    family: np.ndarray
    #: mean of the count component (per unit size factor)
    mean: np.ndarray
    #: NB dispersion (variance = mu + phi mu^2); 0 for Poisson
    dispersion: np.ndarray
    #: probability of a structural zero (ZINB); 0 otherwise
    zero_prob: np.ndarray
    #: training size factors of the cluster, drawn from when sampling
    size_factors: np.ndarray
    #: indices of the genes in the copula
    copula_genes: np.ndarray
    #: lower Cholesky factor of the copula correlation over `copula_genes`
    cholesky: np.ndarray

    @property
    def correlation(self) -> np.ndarray:
        return self.cholesky @ self.cholesky.T


# ------------------------------------------------------------------------------------------ marginals
def marginal_cdf(x: np.ndarray, mean: np.ndarray, dispersion: np.ndarray, zero_prob: np.ndarray) -> np.ndarray:
    """P(X <= x) of the (zero-inflated) NB or Poisson; `x` and `mean` are (cells x genes), the rest per gene."""
    phi = np.broadcast_to(dispersion, x.shape)
    over = phi > 0
    out = np.empty(x.shape, dtype=np.float64)
    r = 1.0 / phi[over]
    out[over] = stats.nbinom.cdf(x[over], r, r / (r + mean[over]))
    out[~over] = stats.poisson.cdf(x[~over], mean[~over])
    pi = np.broadcast_to(zero_prob, x.shape)
    return np.where(x < 0, 0.0, pi + (1.0 - pi) * out)


def marginal_ppf(u: np.ndarray, mean: np.ndarray, dispersion: np.ndarray, zero_prob: np.ndarray) -> np.ndarray:
    """The smallest count x with P(X <= x) >= u: the inverse of `marginal_cdf`."""
    pi = np.broadcast_to(zero_prob, u.shape)
    q = np.clip((u - pi) / (1.0 - pi), 0.0, 1.0 - _U_EPS)
    phi = np.broadcast_to(dispersion, u.shape)
    over = phi > 0
    out = np.zeros(u.shape, dtype=np.float64)
    r = 1.0 / phi[over]
    out[over] = stats.nbinom.ppf(q[over], r, r / (r + mean[over]))
    out[~over] = stats.poisson.ppf(q[~over], mean[~over])
    out[(q <= 0) | (mean <= 0)] = 0.0
    return np.nan_to_num(out, nan=0.0)


@dataclass
class _Binned:
    """One cluster's counts in the form the likelihoods need: non-zeros one by one, zeros per size-factor bin."""

    m: sp.csc_matrix
    s: np.ndarray
    bin_s: np.ndarray
    bin_w: np.ndarray
    #: zeros per (size-factor bin, gene)
    zeros: np.ndarray

    @classmethod
    def of(cls, m: sp.csc_matrix, s: np.ndarray) -> _Binned:
        bin_s, bin_w, which = size_bins(s)
        member = sp.csr_matrix((np.ones(s.size), (which, np.arange(s.size))), shape=(bin_s.size, s.size))
        nonzero = np.asarray((member @ (m != 0).astype(np.float64)).todense())
        return cls(m, s, bin_s, bin_w, bin_w[:, None] - nonzero)

    def columns(self, genes: np.ndarray) -> _Binned:
        return _Binned(self.m[:, genes], self.s, self.bin_s, self.bin_w, self.zeros[:, genes])

    def log_likelihood(self, mu: np.ndarray, phi: np.ndarray, pi: np.ndarray) -> np.ndarray:
        """Per-gene log-likelihood under ZINB(mu, phi, pi) (pi = 0: NB; phi = 0: Poisson); zeros use bin means."""
        m = self.m
        col = np.repeat(np.arange(m.shape[1]), np.diff(m.indptr))
        mean_nz = self.s[m.indices] * mu[col]
        phi_nz = phi[col]
        over = phi_nz > 0
        log_pmf = np.empty(m.data.size)
        r = 1.0 / phi_nz[over]
        log_pmf[over] = stats.nbinom.logpmf(m.data[over], r, r / (r + mean_nz[over]))
        log_pmf[~over] = stats.poisson.logpmf(m.data[~over], mean_nz[~over])
        nonzero = np.bincount(col, weights=log_pmf, minlength=m.shape[1]) + (m.getnnz(axis=0) * np.log1p(-pi))
        p0 = nb_zero_prob(self.bin_s[:, None] * mu[None, :], phi)
        zeros = (self.zeros * np.log(pi + (1.0 - pi) * p0 + 1e-300)).sum(axis=0)
        return nonzero + zeros


def fit_zinb(data: _Binned, mu: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM for the zero-inflated NB of every column of `data`, started from the NB fit (mu, phi).

    E step: each zero's probability of being structural, per size-factor bin. M step: the zero probability is
    the mean of those; the NB mean and dispersion are refitted with the zeros down-weighted accordingly.
    """
    n = data.s.size
    total = np.asarray(data.m.sum(axis=0)).ravel()
    p0 = nb_zero_prob(data.bin_s[:, None] * mu[None, :], phi)
    excess = data.zeros.sum(axis=0) / n - (data.bin_w @ p0) / n
    pi = np.clip(excess / np.maximum(1.0 - (data.bin_w @ p0) / n, 1e-6), 1e-3, 0.95)
    for _ in range(_EM_STEPS):
        p0 = nb_zero_prob(data.bin_s[:, None] * mu[None, :], phi)
        structural = pi / (pi + (1.0 - pi) * p0)
        pi = np.clip((data.zeros * structural).sum(axis=0) / n, 1e-6, 1.0 - 1e-6)
        weight = data.bin_w[:, None] - data.zeros * structural
        mu = total / np.maximum((weight * data.bin_s[:, None]).sum(axis=0), 1e-12)
        phi = nb_dispersion_mle(data.m, data.s, mu, data.bin_s, weight, near=phi, steps=_EM_BISECTION_STEPS)
    return mu, phi, pi


def fit_marginals(
    m: sp.csc_matrix, s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Family, mean, dispersion and zero probability per gene of one cluster (rule in the module docstring)."""
    n, n_genes = m.shape
    data = _Binned.of(m, s)
    mu, phi = nb_mle(m, s)
    mean = np.asarray(m.mean(axis=0)).ravel()
    var = np.asarray(m.multiply(m).mean(axis=0)).ravel() - mean**2
    if n > 1:
        var *= n / (n - 1)
    no_pi = np.zeros(n_genes)
    poisson_mu = np.asarray(m.sum(axis=0)).ravel() / s.sum()
    ll_poisson = data.log_likelihood(poisson_mu, np.zeros(n_genes), no_pi)
    ll_nb = data.log_likelihood(mu, phi, no_pi)
    penalty = np.log(max(n, 2)) / 2  # BIC price of one more parameter, in log-likelihood units
    use_nb = (var > mean) & (phi > 0) & (ll_nb - ll_poisson > penalty)
    family = np.where(use_nb, NB, POISSON).astype(np.int8)
    mu = np.where(use_nb, mu, poisson_mu)
    phi = np.where(use_nb, phi, 0.0)
    pi = no_pi.copy()

    expected_zeros = data.bin_w @ nb_zero_prob(data.bin_s[:, None] * mu[None, :], phi)
    candidates = np.flatnonzero(use_nb & (data.zeros.sum(axis=0) > expected_zeros + 1.0))
    if candidates.size:
        sub = data.columns(candidates)
        z_mu, z_phi, z_pi = fit_zinb(sub, mu[candidates], phi[candidates])
        gain = sub.log_likelihood(z_mu, z_phi, z_pi) - ll_nb[candidates]
        keep = gain > penalty
        better = candidates[keep]
        family[better] = ZINB
        mu[better], phi[better], pi[better] = z_mu[keep], z_phi[keep], z_pi[keep]
    return family, mu, phi, pi


# ------------------------------------------------------------------------------------------ copula
def normal_scores(
    x: np.ndarray, mean: np.ndarray, dispersion: np.ndarray, zero_prob: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Randomised probability integral transform of counts `x` (cells x genes), mapped to standard normals."""
    upper = marginal_cdf(x, mean, dispersion, zero_prob)
    lower = marginal_cdf(x - 1.0, mean, dispersion, zero_prob)
    u = lower + rng.random(x.shape) * (upper - lower)
    return ndtri(np.clip(u, _U_EPS, 1.0 - _U_EPS))


def copula_cholesky(scores: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of the Ledoit-Wolf shrunk correlation of normal scores (cells x genes)."""
    if scores.shape[0] < 3 or scores.shape[1] == 0:
        return np.eye(scores.shape[1])
    cov, _ = ledoit_wolf(scores)
    sd = np.sqrt(np.clip(np.diag(cov), 1e-12, None))
    corr = cov / np.outer(sd, sd)
    np.fill_diagonal(corr, 1.0)
    for jitter in (0.0, 1e-6, 1e-4, 1e-2):
        try:
            return np.linalg.cholesky((corr + jitter * np.eye(corr.shape[0])) / (1.0 + jitter))
        except np.linalg.LinAlgError:
            continue
    return np.eye(corr.shape[0])


class Copula(Generator):
    """scDesign2-style: Poisson/NB/ZINB marginals per gene and cluster, Gaussian copula over the top genes."""

    name = "copula"
    description = "scDesign2-style per-cluster Poisson/NB/ZINB marginals joined by a Gaussian copula"
    cpu_only = True
    conditional = True

    def __init__(
        self,
        *,
        n_copula_genes: int = 100,
        library_size: str = "empirical",
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(seed=seed, device=device)
        if int(n_copula_genes) != n_copula_genes or n_copula_genes < 0:
            raise ScldbenchError(f"copula: n_copula_genes must be a whole number >= 0, got {n_copula_genes!r}")
        if library_size not in LIBRARY_SIZES:
            raise ScldbenchError(
                f"copula: library_size must be one of {', '.join(LIBRARY_SIZES)}, got {library_size!r}"
            )
        self.n_copula_genes = int(n_copula_genes)
        self.library_size = library_size
        self.params_: dict[str, CopulaFit] = {}

    # ------------------------------------------------------------------ fit
    def _fit(self, adata: ad.AnnData, labels: np.ndarray | None) -> None:
        x = sp.csr_matrix(adata.X, dtype=np.float64)
        groups = np.full(x.shape[0], ALL_CELLS) if labels is None else labels
        self.params_ = {str(g): self._fit_cluster(x[groups == g]) for g in np.unique(groups)}

    def _fit_cluster(self, block: sp.csr_matrix) -> CopulaFit:
        m = block.tocsc()
        observed = size_factors(block)
        s = observed if self.library_size == "empirical" else np.ones(block.shape[0])
        family, mu, phi, pi = fit_marginals(m, s)
        expressed = np.flatnonzero(mu > 0)
        top = expressed[np.argsort(-mu[expressed], kind="stable")[: self.n_copula_genes]]
        top.sort()
        counts = m[:, top].toarray()
        scores = normal_scores(counts, s[:, None] * mu[None, top], phi[top], pi[top], self._rng)
        return CopulaFit(
            family=family, mean=mu, dispersion=phi, zero_prob=pi, size_factors=observed.astype(np.float32),
            copula_genes=top, cholesky=copula_cholesky(scores).astype(np.float32),
        )

    # ------------------------------------------------------------------ sample
    def _sample(self, n_cells: int, labels: np.ndarray | None, guidance: float | None):
        return sample_by_group(self, n_cells, labels, lambda group, n: self._sample_cluster(self.params_[group], n))

    def _sample_cluster(self, fit: CopulaFit, n: int) -> sp.csr_matrix:
        rng = self._rng
        top = fit.copula_genes
        rest = np.setdiff1d(np.arange(fit.mean.size), top)
        chol = fit.cholesky.astype(np.float64)
        parts = []
        step = chunk_rows(fit.mean.size)
        for start in range(0, n, step):
            k = min(step, n - start)
            if self.library_size == "empirical":
                s = rng.choice(fit.size_factors.astype(np.float64), size=k)
            else:
                s = np.ones(k)
            out = np.zeros((k, fit.mean.size), dtype=np.float32)
            independent = sample_nb(rng, s[:, None] * fit.mean[None, rest], fit.dispersion[rest])
            structural = rng.random(independent.shape) < fit.zero_prob[rest]
            out[:, rest] = np.where(structural, 0.0, independent)
            if top.size:
                u = ndtr(rng.standard_normal((k, top.size)) @ chol.T)
                out[:, top] = marginal_ppf(u, s[:, None] * fit.mean[None, top], fit.dispersion[top],
                                           fit.zero_prob[top])
            parts.append(sp.csr_matrix(out))
        return sp.vstack(parts, format="csr")

    def marginal_families(self) -> dict[str, dict[str, int]]:
        """Per cluster: how many genes got each marginal family."""
        return {
            g: {name: int((f.family == code).sum()) for code, name in enumerate(FAMILIES)}
            for g, f in self.params_.items()
        }
