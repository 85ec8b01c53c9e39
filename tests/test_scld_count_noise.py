"""SCLD's count draws: exact NB and Poisson distributions, and common random numbers across means."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from scldbench.scld.count_noise import draw_counts, sample_counts


def _pmf_gap(counts: np.ndarray, dist) -> float:
    """Largest absolute gap between the empirical and the true probability of any count up to the 99.9% point."""
    top = int(dist.ppf(0.999))
    observed = np.bincount(counts.astype(np.int64), minlength=top + 1)[: top + 1] / counts.size
    return float(np.abs(observed - dist.pmf(np.arange(top + 1))).max())


@pytest.mark.parametrize(
    ("mean", "theta"),
    [
        (0.02, 2.0),  # the common case: nearly every draw is zero
        (0.5, 0.05),  # strongly overdispersed, long walk
        (3.0, 1.0),
        (40.0, 0.5),  # variance factor 81: still by inversion
        (20.0, 0.1),  # variance factor 201: gamma-Poisson
        (300.0, 4.0),  # mean above the inversion's limit: gamma-Poisson
    ],
)
def test_nb_draws_follow_the_negative_binomial(mean, theta):
    torch.manual_seed(0)
    counts = sample_counts(torch.full((100_000,), mean), torch.full((100_000,), theta)).numpy()
    dist = stats.nbinom(theta, theta / (theta + mean))
    assert _pmf_gap(counts, dist) < 0.006
    assert counts.mean() == pytest.approx(mean, rel=0.05 if theta > 0.2 else 0.15)


def test_poisson_draws_follow_the_poisson():
    torch.manual_seed(0)
    counts = draw_counts(torch.full((50_000, 2), 4.0), "poisson").numpy().ravel()
    assert _pmf_gap(counts, stats.poisson(4.0)) < 0.006


def test_draws_at_a_larger_mean_are_never_smaller_when_seeded_alike():
    g = torch.Generator().manual_seed(1)
    mean = torch.rand(400, 300, generator=g) ** 4 * 8  # mostly tiny means, some up to 8
    log_theta = torch.randn(300, generator=g)
    torch.manual_seed(5)
    low = draw_counts(mean, "nb", log_theta)
    torch.manual_seed(5)
    high = draw_counts(1.5 * mean, "nb", log_theta)
    by_inversion = (1.5 * mean <= 100 * log_theta.exp()) & (1.5 * mean <= 64)
    assert bool((high[by_inversion] >= low[by_inversion]).all())
    assert float(high.sum()) > float(low.sum())
    torch.manual_seed(5)
    assert torch.equal(draw_counts(mean, "nb", log_theta), low)


def test_zero_means_give_zero_counts_and_nb_needs_its_dispersion():
    torch.manual_seed(0)
    assert float(draw_counts(torch.zeros(20, 30), "nb", torch.zeros(30)).abs().sum()) == 0.0
    with pytest.raises(ValueError, match="log_theta"):
        draw_counts(torch.ones(2, 3), "nb")
