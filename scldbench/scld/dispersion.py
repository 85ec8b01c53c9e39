"""NB inverse dispersion (theta) per cluster and gene around per-cell means: by moments or by maximum likelihood.

Generated counts are NB draws around decoded means, so theta decides each gene's within-cell noise: its
variance and its share of zeros. Moments match the variance, which a few outlying cells inflate; maximum
likelihood matches the bulk of the distribution, zeros included.
"""

from __future__ import annotations

import itertools
import math

import torch

# inverse dispersion standing for "no excess variance": NB draws are then Poisson to within sampling error
POISSON_THETA = 1e6
# log theta spans [log floor, log 1e6], under 20 nats: 20 halvings leave it within 2e-5
_BISECTION_STEPS = 20


def residual_moments(counts: torch.Tensor, means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-gene sums of mu^2 and of the variance beyond Poisson, (x - mu)^2 - mu, over a batch of cells.

    Under an NB, Var(x | mu) = mu + mu^2 / theta, so theta = sum(mu^2) / sum((x - mu)^2 - mu) by moments;
    accumulate the sums over batches, then call `theta_from_sums`.
    """
    return (means**2).sum(0), ((counts - means) ** 2 - means).sum(0)


def theta_from_sums(mean_sq: torch.Tensor, excess: torch.Tensor, floor: float) -> torch.Tensor:
    """log theta per gene; genes with no variance beyond Poisson get POISSON_THETA, the rest at least `floor`."""
    theta = torch.where(excess > 0, mean_sq / excess.clamp(min=1e-12), torch.full_like(mean_sq, POISSON_THETA))
    return theta.clamp(min=floor, max=POISSON_THETA).log()


# cells per block of the dense part of the score: temporaries of a few megabytes, reused by the allocator,
# where a whole group's temporaries (hundreds of megabytes) were fresh pages at every evaluation
_SCORE_BLOCK_CELLS = 128


class _ScoreTerms:
    """The parts of the NB score that do not depend on theta, computed once for all the evaluations of a fit:
    the means and mu - x with each group's cells stored together, and the non-zero counts with their group and
    gene."""

    def __init__(self, counts: torch.Tensor, means: torch.Tensor, group: torch.Tensor, n_groups: int) -> None:
        self.shape = (n_groups, counts.shape[1])
        order = torch.argsort(group, stable=True)
        self.means = means[order]
        self.residual = self.means - counts[order]
        starts = [0, *itertools.accumulate(torch.bincount(group, minlength=n_groups).tolist())]
        self.blocks = [
            [(a, min(a + _SCORE_BLOCK_CELLS, stop)) for a in range(start, stop, _SCORE_BLOCK_CELLS)]
            for start, stop in zip(starts[:-1], starts[1:], strict=True)
        ]
        rows, self.nz_gene = torch.nonzero(counts > 0, as_tuple=True)
        self.nz_count, self.nz_group = counts[rows, self.nz_gene], group[rows]
        self.nz_flat = self.nz_group * counts.shape[1] + self.nz_gene

    def score(self, log_theta: torch.Tensor) -> torch.Tensor:
        theta = log_theta.exp()
        score = torch.zeros(self.shape, device=theta.device, dtype=self.means.dtype)
        for k, blocks in enumerate(self.blocks):
            th = theta[k]
            for a, b in blocks:
                mu = self.means[a:b]
                ratio = torch.div(mu, th).log1p_()
                part = torch.add(mu, th)
                torch.div(self.residual[a:b], part, out=part)
                score[k] += part.sub_(ratio).sum(0)
        th = theta[self.nz_group, self.nz_gene]
        score.view(-1).index_add_(0, self.nz_flat, torch.digamma(self.nz_count + th) - torch.digamma(th))
        return score


def nb_theta_score(
    counts: torch.Tensor, means: torch.Tensor, group: torch.Tensor, log_theta: torch.Tensor, n_groups: int
) -> torch.Tensor:
    """d/dtheta of the NB log-likelihood, summed per group and gene (groups x genes), at log theta per group.

    Per count: digamma(x + theta) - digamma(theta) + log(theta / (theta + mu)) + (mu - x) / (theta + mu); the
    digamma difference vanishes at x = 0, so it is only evaluated on the non-zero counts.
    """
    return _ScoreTerms(counts, means, group, n_groups).score(log_theta)


def nb_theta_mle(
    counts: torch.Tensor, means: torch.Tensor, group: torch.Tensor, n_groups: int, floor: float
) -> torch.Tensor:
    """log theta per group and gene maximising the NB likelihood of `counts` around per-cell `means`.

    Bisection on log theta in [log floor, log POISSON_THETA] for every group and gene at once (the profile
    score falls as theta grows); where the likelihood still rises at POISSON_THETA the gene is Poisson.
    Cells are rows; `group` gives each cell's group. Groups without cells come back as POISSON_THETA.
    """
    counts, means = counts.double(), means.double().clamp(min=1e-10)
    terms = _ScoreTerms(counts, means, group, n_groups)
    shape = terms.shape
    lo = torch.full(shape, math.log(floor), device=counts.device, dtype=torch.float64)
    hi = torch.full(shape, math.log(POISSON_THETA), device=counts.device, dtype=torch.float64)
    poisson = terms.score(hi) >= 0
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        rising = terms.score(mid) > 0
        lo = torch.where(rising, mid, lo)
        hi = torch.where(rising, hi, mid)
    return torch.where(poisson, hi, (lo + hi) / 2).float()


def shrink_log_theta(
    own: torch.Tensor, pooled: torch.Tensor, n_cells: torch.Tensor, prior_cells: float
) -> torch.Tensor:
    """Each group's log theta pulled toward the pooled one, as if the pooled estimate came from `prior_cells`
    more cells: a group of n cells keeps weight n / (n + prior_cells)."""
    weight = (n_cells.to(own.dtype) / (n_cells.to(own.dtype) + prior_cells)).clamp(0, 1)[:, None]
    return weight * own + (1 - weight) * pooled
