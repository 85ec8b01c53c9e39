"""Negative-binomial count draws and the gamma noise the spread calibration's trials share."""

from __future__ import annotations

import pytest
import torch

from scldbench.scld.count_noise import SharedGammaNoise, draw_counts


def _means(seed: int, cells: int = 50, genes: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(cells, genes, generator=g) * 5, torch.randn(genes, generator=g)


def test_nb_draws_are_torch_distributions_gamma_poisson_draws():
    mean, log_theta = _means(0)
    torch.manual_seed(3)
    ours = draw_counts(mean, "nb", log_theta)
    torch.manual_seed(3)
    theta = log_theta.exp().expand_as(mean)
    reference = torch.poisson(torch.distributions.Gamma(theta, theta / mean.clamp(min=1e-8)).sample())
    assert torch.equal(ours, reference)


def test_a_rewound_pass_reuses_the_gamma_draws_and_the_generator_states():
    (m1, log_theta), (m2, _) = _means(1), _means(2)
    noise = SharedGammaNoise()

    def one_pass(means):
        torch.manual_seed(7)
        return [draw_counts(m, "nb", log_theta, noise=noise) for m in means]

    first = one_pass([m1, m2])  # two batches, as a trial decodes them
    noise.rewind()
    assert all(torch.equal(a, b) for a, b in zip(first, one_pass([m1, m2]), strict=True))
    # other means: the same gamma draws, the Poisson part drawn from the state the first pass had after them
    noise.rewind()
    doubled = one_pass([2 * m1, 2 * m2])
    for batch, (mean, (gamma, state)) in enumerate(zip([m1, m2], noise._draws, strict=True)):
        theta = log_theta.exp().expand_as(mean)
        torch.set_rng_state(state)
        expected = torch.poisson((gamma / (theta / (2 * mean).clamp(min=1e-8))).clamp(min=torch.finfo().tiny))
        assert torch.equal(doubled[batch], expected)
    # common noise: a cell's counts at twice the mean follow its counts at the mean far more closely than a
    # fresh draw's do
    fresh = [draw_counts(2 * m, "nb", log_theta) for m in (m1, m2)]

    def corr(a, b):
        return torch.corrcoef(torch.stack([torch.cat(a).flatten(), torch.cat(b).flatten()]))[0, 1]

    assert corr(first, doubled) > corr(first, fresh) + 0.2


def test_a_rewound_pass_of_another_shape_is_refused():
    mean, log_theta = _means(0)
    noise = SharedGammaNoise()
    draw_counts(mean, "nb", log_theta, noise=noise)
    noise.rewind()
    with pytest.raises(ValueError, match="shape"):
        draw_counts(mean[:10], "nb", log_theta, noise=noise)
