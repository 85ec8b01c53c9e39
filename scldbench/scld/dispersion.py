"""NB inverse dispersion (theta) per cluster and gene around per-cell means: by moments or by maximum likelihood.

Generated counts are NB draws around decoded means, so theta decides each gene's within-cell noise: its
variance and its share of zeros. Moments match the variance, which a few outlying cells inflate; maximum
likelihood matches the bulk of the distribution, zeros included.
"""

from __future__ import annotations

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


def nb_theta_score(
    counts: torch.Tensor,
    means: torch.Tensor,
    group: torch.Tensor,
    log_theta: torch.Tensor,
    n_groups: int,
    nonzero: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """d/dtheta of the NB log-likelihood, summed per group and gene (groups x genes), at log theta per group.

    Per count: digamma(x + theta) - digamma(theta) + log(theta / (theta + mu)) + (mu - x) / (theta + mu); the
    digamma difference vanishes at x = 0, so it is only evaluated on the non-zero counts (`nonzero`: their
    row and column indices, found here when not given).
    """
    theta = log_theta.exp()[group]
    dense = (means - counts) / (theta + means) - torch.log1p(means / theta)
    score = torch.zeros(n_groups, counts.shape[1], device=counts.device, dtype=dense.dtype)
    score.index_add_(0, group, dense)
    rows, cols = torch.nonzero(counts > 0, as_tuple=True) if nonzero is None else nonzero
    th = theta[rows, cols]
    sparse = torch.digamma(counts[rows, cols] + th) - torch.digamma(th)
    score.view(-1).index_add_(0, group[rows] * counts.shape[1] + cols, sparse)
    return score


def nb_theta_mle(
    counts: torch.Tensor, means: torch.Tensor, group: torch.Tensor, n_groups: int, floor: float
) -> torch.Tensor:
    """log theta per group and gene maximising the NB likelihood of `counts` around per-cell `means`.

    Bisection on log theta in [log floor, log POISSON_THETA] for every group and gene at once (the profile
    score falls as theta grows); where the likelihood still rises at POISSON_THETA the gene is Poisson.
    Cells are rows; `group` gives each cell's group. Groups without cells come back as POISSON_THETA.
    """
    counts, means = counts.double(), means.double().clamp(min=1e-10)
    nonzero = torch.nonzero(counts > 0, as_tuple=True)
    shape = (n_groups, counts.shape[1])
    lo = torch.full(shape, math.log(floor), device=counts.device, dtype=torch.float64)
    hi = torch.full(shape, math.log(POISSON_THETA), device=counts.device, dtype=torch.float64)
    poisson = nb_theta_score(counts, means, group, hi, n_groups, nonzero) >= 0
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        rising = nb_theta_score(counts, means, group, mid, n_groups, nonzero) > 0
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
