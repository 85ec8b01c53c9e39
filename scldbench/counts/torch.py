"""Count maths on tensors (cells are rows, genes columns): scaling to a total and the negative binomial.

NB parametrisation: mean mu and inverse dispersion theta, variance mu + mu^2 / theta.
"""

from __future__ import annotations

import torch


def normalise_total(counts: torch.Tensor, target: float, *, eps: float | None = None) -> torch.Tensor:
    """Every row scaled to `target` total.

    Without `eps`, rows are divided by their total (at least 1, so empty rows stay zero) and multiplied by
    `target`. With `eps`, every row is multiplied by target / (total + eps): the form of a network layer
    (scGAN's library-size normalisation), differentiable everywhere.
    """
    totals = counts.sum(dim=1, keepdim=True)
    if eps is None:
        return counts / totals.clamp(min=1.0) * target
    return counts * (target / (totals + eps))


def log_normalise(counts: torch.Tensor, target: float = 1e4) -> torch.Tensor:
    """log1p of counts scaled to `target` per row (see `normalise_total`)."""
    return torch.log1p(normalise_total(counts, target))


def nb_log_prob(x: torch.Tensor, mean: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """log NB(x; mean, inverse dispersion theta) per entry, from the mean and theta themselves (`eps` keeps the
    logarithms finite at a zero mean)."""
    log_theta_mean = torch.log(theta + mean + eps)
    return (
        torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1.0)
        + theta * (torch.log(theta + eps) - log_theta_mean)
        + x * (torch.log(mean + eps) - log_theta_mean)
    )


def nb_log_prob_from_logs(x: torch.Tensor, log_mean: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """log NB(x; exp(log_mean), inverse dispersion exp(log_theta)) per entry, for models that predict the
    logarithms: log(theta + mu) is a logaddexp, finite for any log mean."""
    theta = log_theta.exp()
    log_theta_mean = torch.logaddexp(log_theta, log_mean)
    return (
        theta * (log_theta - log_theta_mean)
        + x * (log_mean - log_theta_mean)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )


def sample_nb(mean: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """NB counts as gamma-Poisson draws with the shape of `mean` (torch's global RNG); `theta` broadcasts."""
    rate = torch.distributions.Gamma(theta.expand_as(mean), theta / mean.clamp_min(1e-8)).sample()
    return torch.poisson(rate)
