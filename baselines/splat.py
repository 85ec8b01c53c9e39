"""The Splat model of Splatter (Zappia, Phipson & Oshlack 2017, Genome Biology), written from the paper.

Simulation, per gene j and cell i of group g:
  base mean       m_j ~ Gamma(mean_shape, mean_rate); with probability out_prob an expression outlier,
                  m_j = median(m) * LogNormal(out_fac_loc, out_fac_scale)
  group mean      m_gj = m_j * f_gj (differential-expression factors, one group per cluster)
  library size    L_i ~ LogNormal(lib_loc, lib_scale)
  cell mean       mu_ij = L_i * m_gj / sum_j m_gj
  BCV             b_ij = (bcv_common + 1 / sqrt(mu_ij)) * sqrt(bcv_df / chi2_j(bcv_df))
  trended mean    lambda_ij ~ Gamma(shape 1 / b_ij^2, scale mu_ij * b_ij^2)
  counts          x_ij ~ Poisson(lambda_ij), set to 0 with probability
                  1 / (1 + exp(-dropout_shape * (log lambda_ij - dropout_mid))) when dropout is on.

Estimation from training counts follows splatEstimate's steps, with two deliberate differences (see
`estimate_bcv` and `estimate_group_factors`):
  library sizes   log-normal MLE of the cells' total counts;
  means           counts scaled to the median library size, gene means; outliers are genes whose log mean
                  exceeds median + 2 MAD, their factor is mean / median(mean) (log-normal MLE); the gamma is
                  the MLE on the remaining non-zero means;
  BCV             bcv_common and bcv_df by maximum likelihood of per-gene moment dispersions under the Splat
                  trend itself, with means taken within clusters (splatEstimate instead rescales edgeR's
                  common dispersion empirically, ignoring groups), so that parameters of data simulated by
                  this model are recovered. On 10x PBMC data the trend (c + 1/sqrt(mu))^2 lies above most
                  genes' dispersions: the fit then gives bcv_common near 0 and a small bcv_df (about 1);
  dropout         least-squares logistic fit of each gene's zero fraction against its log mean, as
                  splatEstimate does. That curve describes all zeros, sampling zeros included, so applying it
                  on top of the Poisson-gamma counts double-counts zeros: dropout is off by default, as it is
                  in Splatter (dropout.type = "none").
  groups          one group per training cluster, group probabilities = cluster proportions; the DE factors
                  are taken from the data (`de="empirical"`, default): f_gj = shrunken group mean / overall
                  mean, so each group keeps its cluster's markers. `de="simulated"` draws Splat's log-normal
                  factors from de_prob / de_down_prob / de_fac_loc / de_fac_scale summarised from those
                  empirical factors (groups then carry cluster names but random markers).

Gene identity: Splat's gene means are random draws, so a simulated gene has no real counterpart, which is why
Splatter's cells are told from real ones perfectly in the SCLD paper (docs/generators/splat.md). With
`gene_order="rank"` (default) the gamma/outlier draws are assigned to genes by the rank of their observed means,
so the draws keep Splat's distribution while a highly expressed real gene stays highly expressed;
`gene_order="random"` is Splatter's behaviour.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp
from scipy.optimize import curve_fit, minimize
from scipy.special import digamma, gammaln, polygamma

from scldbench.baselines.nb import ALL_CELLS, chunk_rows, groups_to_sample
from scldbench.counts.numpy import library_sizes, nb_gamma_rates, normalise_total_csr, residual_squares
from scldbench.errors import ScldbenchError
from scldbench.generator import Generator

#: MAD multiple above the median log mean that marks an expression outlier (splatEstimate's rule)
_OUTLIER_MADS = 2.0
#: genes with at least this mean count per cell enter the BCV fit (low counts carry little dispersion signal)
_BCV_MIN_MEAN = 0.5
#: prior weight, in cells, of the overall mean in a group's mean (keeps factors of tiny groups finite)
_DE_PRIOR_CELLS = 1.0
#: |log factor| above which a gene counts as differentially expressed in the DE summaries
_DE_LOG_THRESHOLD = float(np.log(1.5))
_MAX_DF = 1e4


@dataclass
class SplatParams:
    """Splat's parameters, named as in Splatter (dots as underscores)."""

    n_genes: int = 1000
    mean_shape: float = 0.6
    mean_rate: float = 0.3
    lib_loc: float = 11.0
    lib_scale: float = 0.2
    out_prob: float = 0.05
    out_fac_loc: float = 4.0
    out_fac_scale: float = 0.5
    bcv_common: float = 0.1
    bcv_df: float = 60.0
    dropout_mid: float = 0.0
    dropout_shape: float = -1.0
    group_names: list[str] = field(default_factory=lambda: [ALL_CELLS])
    group_prob: list[float] = field(default_factory=lambda: [1.0])
    de_prob: float = 0.1
    de_down_prob: float = 0.1
    de_fac_loc: float = 0.1
    de_fac_scale: float = 0.4

    def to_dict(self) -> dict[str, Any]:
        return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in asdict(self).items()}


@dataclass
class GeneState:
    """What one realisation of the model fixes per gene: group means and the BCV chi-squared scale."""

    group_means: np.ndarray  # groups x genes
    bcv_scale: np.ndarray  # genes: sqrt(df / chi2)


# ----------------------------------------------------------------------------------------------- estimation
def estimate_library(lib: np.ndarray) -> tuple[float, float]:
    """Log-normal MLE (location, scale) of library sizes."""
    logs = np.log(lib[lib > 0])
    return float(logs.mean()), float(logs.std())


def normalised_means(x: sp.spmatrix | np.ndarray, lib: np.ndarray) -> np.ndarray:
    """Gene means after scaling every cell to the median library size."""
    return np.asarray(normalise_total_csr(x, np.median(lib)).mean(axis=0)).ravel()


def _mad(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def find_outliers(means: np.ndarray) -> np.ndarray:
    """Genes whose log mean lies more than 2 MADs above the median log mean (among non-zero means)."""
    positive = means > 0
    logs = np.log(means[positive])
    flag = np.zeros(means.size, dtype=bool)
    flag[positive] = logs > np.median(logs) + _OUTLIER_MADS * _mad(logs)
    return flag


def estimate_outliers(means: np.ndarray, outliers: np.ndarray) -> tuple[float, float, float]:
    """Outlier probability and log-normal (location, scale) of outlier factors relative to the median mean."""
    positive = means > 0
    prob = float(outliers.sum() / max(positive.sum(), 1))
    if outliers.sum() < 2:
        return prob, 0.0, 0.0
    log_factors = np.log(means[outliers] / np.median(means[positive]))
    return prob, float(log_factors.mean()), float(log_factors.std())


def gamma_mle(values: np.ndarray) -> tuple[float, float]:
    """Gamma (shape, rate) MLE: Newton on log k - digamma(k) = log mean - mean log."""
    values = values[values > 0]
    s = np.log(values.mean()) - np.log(values).mean()
    k = (3 - s + np.sqrt((s - 3) ** 2 + 24 * s)) / (12 * s)  # Minka's starting point
    for _ in range(50):
        step = (np.log(k) - digamma(k) - s) / (1 / k - polygamma(1, k))
        k = max(k - step, k / 10)
        if abs(step) < 1e-10 * k:
            break
    return float(k), float(k / values.mean())


def _inv_gamma_loglik(z: np.ndarray, df: float) -> np.ndarray:
    """log density of df / chi2(df), i.e. an inverse gamma with shape and scale df / 2."""
    a = df / 2
    return a * np.log(a) - gammaln(a) - (a + 1) * np.log(z) - a / z


def _moment_terms(m: sp.csc_matrix, lib: np.ndarray) -> tuple[np.ndarray, ...]:
    """For one group: per-gene S = sum_i (x - L_i p)^2 - L_i p and the coefficients of w(c) in c^2, 2c, 1."""
    p = np.asarray(m.sum(axis=0)).ravel() / lib.sum()
    excess = residual_squares(m, lib, p) - p * lib.sum()
    # sum_i (c mu + sqrt(mu))^2 = c^2 p^2 sum L^2 + 2 c p^1.5 sum L^1.5 + p sum L
    return excess, p**2 * (lib**2).sum(), p**1.5 * (lib**1.5).sum(), p * lib.sum()


def estimate_bcv(
    x: sp.spmatrix | np.ndarray, lib: np.ndarray, groups: np.ndarray | None = None
) -> tuple[float, float]:
    """bcv_common and bcv_df by maximum likelihood of per-gene moment dispersions under the Splat trend.

    Cell means mu_ij = L_i p_gj (p_gj: the gene's share in the cell's group). Under the model,
    S_j = sum_i (x_ij - mu_ij)^2 - mu_ij has expectation (df / chi2_j) * w_j(c), w_j(c) = sum_i (c mu_ij +
    sqrt(mu_ij))^2, so z_j = S_j / w_j(c) follows df / chi2(df); c and df maximise that likelihood (with the
    Jacobian of S_j) over genes with enough counts. Means are taken within groups because the simulation
    adds the groups' differences through DE factors; splatEstimate, with no groups, would count them twice.
    """
    m = sp.csc_matrix(x, dtype=np.float64)
    p_all = np.asarray(m.sum(axis=0)).ravel() / lib.sum()
    keep = np.flatnonzero(p_all * lib.mean() >= _BCV_MIN_MEAN)
    if keep.size < 5:
        keep = np.argsort(p_all)[-min(50, p_all.size) :]
    m = sp.csr_matrix(m[:, keep])
    groups = np.zeros(lib.size) if groups is None else groups
    terms = [_moment_terms(sp.csc_matrix(m[groups == g]), lib[groups == g]) for g in np.unique(groups)]
    excess, a2, a15, a1 = (np.sum([t[k] for t in terms], axis=0) for k in range(4))
    good = excess > 0
    excess, a2, a15, a1 = excess[good], a2[good], a15[good], a1[good]
    if excess.size < 3:
        return 0.1, _MAX_DF

    def weights(c: float) -> np.ndarray:
        return c**2 * a2 + 2 * c * a15 + a1

    def nll(theta: np.ndarray) -> float:
        c, df = np.exp(theta)
        w = weights(c)
        return -float((_inv_gamma_loglik(excess / w, df) - np.log(w)).sum())

    best = min(
        (minimize(nll, np.log([c0, 20.0]), method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-8})
         for c0 in (0.05, 0.3, 1.0)),
        key=lambda r: r.fun,
    )
    c, df = np.exp(best.x)
    return float(c), float(min(df, _MAX_DF))


def _logistic(x: np.ndarray, mid: float, shape: float) -> np.ndarray:
    return 1 / (1 + np.exp(-shape * (x - mid)))


def estimate_dropout(x: sp.spmatrix | np.ndarray, means: np.ndarray) -> tuple[float, float]:
    """Midpoint and shape of the logistic curve of zero fraction against log normalised mean."""
    m = sp.csc_matrix(x)
    zero_fraction = 1 - np.diff(m.indptr) / m.shape[0]
    positive = means > 0
    log_means = np.log(means[positive])
    start = (float(np.median(log_means)), -1.0)
    try:
        (mid, shape), _ = curve_fit(_logistic, log_means, zero_fraction[positive], p0=start, maxfev=5000)
    except RuntimeError:
        mid, shape = start
    return float(mid), float(shape)


def estimate_group_factors(
    x: sp.spmatrix | np.ndarray, lib: np.ndarray, groups: np.ndarray, names: list[str]
) -> np.ndarray:
    """Groups x genes DE factors: each group's mean (median-library scale, shrunk toward the overall mean by
    `_DE_PRIOR_CELLS` cells) divided by the overall mean; 1 for genes never seen."""
    scale = np.median(lib) / np.maximum(lib, 1e-12)
    scaled = sp.diags(scale) @ sp.csr_matrix(x, dtype=np.float64)
    overall = np.asarray(scaled.mean(axis=0)).ravel()
    factors = np.ones((len(names), overall.size))
    for k, name in enumerate(names):
        rows = groups == name
        total = np.asarray(scaled[rows].sum(axis=0)).ravel()
        shrunk = (total + _DE_PRIOR_CELLS * overall) / (rows.sum() + _DE_PRIOR_CELLS)
        factors[k] = np.divide(shrunk, overall, out=np.ones_like(overall), where=overall > 0)
    return factors


def summarise_de(factors: np.ndarray) -> tuple[float, float, float, float]:
    """Splat's DE parameters read off factors: probability, down probability, log-normal location, scale."""
    logs = np.log(np.maximum(factors, 1e-12)).ravel()
    de = np.abs(logs) > _DE_LOG_THRESHOLD
    if de.sum() < 2:
        return float(de.mean()), 0.0, 0.0, 0.0
    size = np.abs(logs[de])
    return float(de.mean()), float((logs[de] < 0).mean()), float(size.mean()), float(size.std())


def estimate_splat(
    x: sp.spmatrix | np.ndarray, groups: np.ndarray | None = None
) -> tuple[SplatParams, np.ndarray, np.ndarray]:
    """Splat parameters from counts; also the normalised gene means and the empirical DE factors."""
    lib = library_sizes(x)
    groups = np.full(lib.size, ALL_CELLS) if groups is None else np.asarray(groups).astype(str)
    names, counts = np.unique(groups, return_counts=True)
    means = normalised_means(x, lib)
    outliers = find_outliers(means)
    shape, rate = gamma_mle(means[(means > 0) & ~outliers])
    out_prob, out_loc, out_scale = estimate_outliers(means, outliers)
    lib_loc, lib_scale = estimate_library(lib)
    bcv_common, bcv_df = estimate_bcv(x, lib, groups)
    mid, dshape = estimate_dropout(x, means)
    factors = estimate_group_factors(x, lib, groups, names.tolist())
    de_prob, de_down, de_loc, de_scale = summarise_de(factors)
    params = SplatParams(
        n_genes=int(means.size), mean_shape=shape, mean_rate=rate, lib_loc=lib_loc, lib_scale=lib_scale,
        out_prob=out_prob, out_fac_loc=out_loc, out_fac_scale=out_scale, bcv_common=bcv_common, bcv_df=bcv_df,
        dropout_mid=mid, dropout_shape=dshape, group_names=names.tolist(),
        group_prob=(counts / counts.sum()).tolist(), de_prob=de_prob, de_down_prob=de_down, de_fac_loc=de_loc,
        de_fac_scale=de_scale,
    )
    return params, means, factors


# ----------------------------------------------------------------------------------------------- simulation
def draw_base_means(params: SplatParams, rng: np.random.Generator) -> np.ndarray:
    """Gamma gene means with log-normal expression outliers placed at median * factor."""
    base = rng.gamma(params.mean_shape, 1 / params.mean_rate, size=params.n_genes)
    outlier = rng.random(params.n_genes) < params.out_prob
    factors = rng.lognormal(params.out_fac_loc, max(params.out_fac_scale, 0.0), size=params.n_genes)
    return np.where(outlier, np.median(base) * factors, base)


def draw_de_factors(params: SplatParams, rng: np.random.Generator) -> np.ndarray:
    """Splat's DE factors, groups x genes: log-normal for DE genes, inverted for down-regulated ones."""
    shape = (len(params.group_names), params.n_genes)
    is_de = rng.random(shape) < params.de_prob
    down = rng.random(shape) < params.de_down_prob
    size = rng.lognormal(params.de_fac_loc, max(params.de_fac_scale, 0.0), size=shape)
    return np.where(is_de, np.where(down, 1 / size, size), 1.0)


def draw_bcv_scale(params: SplatParams, rng: np.random.Generator) -> np.ndarray:
    df = params.bcv_df
    if not np.isfinite(df) or df >= _MAX_DF:
        return np.ones(params.n_genes)
    return np.sqrt(df / rng.chisquare(df, size=params.n_genes))


def simulate_cells(
    params: SplatParams, state: GeneState, group: int, n: int, rng: np.random.Generator, dropout: bool
) -> sp.csr_matrix:
    """Counts of `n` cells of group index `group`, in chunks so that memory stays bounded."""
    proportions = state.group_means[group] / state.group_means[group].sum()
    parts = []
    step = chunk_rows(proportions.size)
    for start in range(0, n, step):
        k = min(step, n - start)
        lib = rng.lognormal(params.lib_loc, params.lib_scale, size=k)
        mu = lib[:, None] * proportions[None, :]
        expressed = mu > 0
        bcv = (params.bcv_common + 1 / np.sqrt(np.where(expressed, mu, 1.0))) * state.bcv_scale[None, :]
        bcv2 = bcv**2
        lam = nb_gamma_rates(rng, mu, np.where(expressed, bcv2, 0.0))
        counts = rng.poisson(lam).astype(np.float32)
        if dropout:
            with np.errstate(divide="ignore", over="ignore"):
                p_drop = _logistic(np.log(lam), params.dropout_mid, params.dropout_shape)
            counts[rng.random(counts.shape) < p_drop] = 0
        parts.append(sp.csr_matrix(counts))
    return sp.vstack(parts, format="csr")


def simulate_splat(
    params: SplatParams, n_cells: int, rng: np.random.Generator, dropout: bool = False
) -> tuple[sp.csr_matrix, np.ndarray]:
    """A full Splat simulation (random gene means and DE factors) and the group of each cell."""
    base = draw_base_means(params, rng)
    factors = draw_de_factors(params, rng)
    state = GeneState(group_means=base[None, :] * factors, bcv_scale=draw_bcv_scale(params, rng))
    groups = rng.choice(len(params.group_names), size=n_cells, p=np.asarray(params.group_prob))
    blocks = [
        simulate_cells(params, state, g, int((groups == g).sum()), rng, dropout) for g in np.unique(groups)
    ]
    order = np.concatenate([np.flatnonzero(groups == g) for g in np.unique(groups)])
    counts = sp.vstack(blocks, format="csr")[np.argsort(order)]
    return counts, np.asarray(params.group_names)[groups]


# ----------------------------------------------------------------------------------------------- generator
class Splat(Generator):
    """Splatter's Splat model with parameters estimated from the training data; one group per cluster."""

    name = "splat"
    description = "Splat model of Splatter (gamma means, outliers, log-normal library, BCV trend, DE groups)"
    cpu_only = True
    conditional = True

    def __init__(
        self,
        *,
        de: str = "empirical",
        gene_order: str = "rank",
        dropout: bool = False,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(seed=seed, device=device)
        if de not in ("empirical", "simulated"):
            raise ScldbenchError(f"splat: de must be 'empirical' or 'simulated', got {de!r}")
        if gene_order not in ("rank", "random"):
            raise ScldbenchError(f"splat: gene_order must be 'rank' or 'random', got {gene_order!r}")
        self.de = de
        self.gene_order = gene_order
        self.dropout = bool(dropout)
        self.params_: SplatParams | None = None
        self.genes_: GeneState | None = None

    def _fit(self, adata: ad.AnnData, labels: np.ndarray | None) -> None:
        params, observed_means, factors = estimate_splat(adata.X, labels)
        base = draw_base_means(params, self._rng)
        if self.gene_order == "rank":
            base = np.sort(base)[np.argsort(np.argsort(observed_means, kind="stable"), kind="stable")]
            base[observed_means <= 0] = 0.0  # a gene never seen in training is never generated
        if self.de == "simulated":
            factors = draw_de_factors(params, self._rng)
        self.params_ = params
        bcv_scale = draw_bcv_scale(params, self._rng)
        self.genes_ = GeneState(group_means=base[None, :] * factors, bcv_scale=bcv_scale)

    def _sample(self, n_cells: int, labels: np.ndarray | None, guidance: float | None):
        assert self.params_ is not None and self.genes_ is not None
        labels, assigned = groups_to_sample(self, n_cells, labels)
        index = {name: k for k, name in enumerate(self.params_.group_names)}
        blocks, order = [], []
        for group in np.unique(labels):
            rows = np.flatnonzero(labels == group)
            blocks.append(simulate_cells(self.params_, self.genes_, index[str(group)], rows.size, self._rng,
                                         self.dropout))
            order.append(rows)
        out = sp.vstack(blocks, format="csr")[np.argsort(np.concatenate(order))]
        return (out, assigned) if assigned is not None else out

    def estimated_parameters(self) -> dict[str, Any]:
        """The parameters estimated from the training data, as a plain (JSON-serialisable) dict."""
        if self.params_ is None:
            raise ScldbenchError("splat is not fitted; call fit() first")
        return self.params_.to_dict()
