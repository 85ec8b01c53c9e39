"""SCLD's noise schedule and samplers against their closed forms."""

from __future__ import annotations

import math

import torch

from scldbench.scld.sampling import ddim_sample, ddim_timesteps, ddpm_sample
from scldbench.scld.schedule import (
    cosine_betas,
    linear_betas,
    make_schedule,
    posterior_mean,
    posterior_std,
    predict_x0,
    q_sample,
)


def test_linear_betas_are_the_papers():
    betas = linear_betas(1000, 1e-4, 0.02)
    assert betas.shape == (1000,)
    assert math.isclose(betas[0].item(), 1e-4) and math.isclose(betas[-1].item(), 0.02)
    assert torch.allclose(betas[1:] - betas[:-1], torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))


def test_alpha_bar_is_the_product_of_alphas():
    s = make_schedule(linear_betas(1000))
    for t in (0, 1, 10, 500, 999):
        expected = math.prod(1 - b for b in s.betas[: t + 1].tolist())
        assert math.isclose(s.alpha_bar[t].item(), expected, rel_tol=1e-9)
    assert s.alpha_bar_prev[0].item() == 1.0
    assert torch.equal(s.alpha_bar_prev[1:], s.alpha_bar[:-1])
    # the paper's schedule ends almost at pure noise
    assert s.alpha_bar[-1].item() < 1e-4


def test_posterior_variance_and_mean_match_closed_form():
    s = make_schedule(linear_betas(1000))
    t = 400
    beta, abar, abar_prev = s.betas[t], s.alpha_bar[t], s.alpha_bar[t - 1]
    assert torch.isclose(s.posterior_variance[t], (1 - abar_prev) / (1 - abar) * beta)
    assert s.posterior_variance[0].item() == 0.0
    # Bayes: q(x_{t-1} | x_t, x0) from q(x_t | x_{t-1}) and q(x_{t-1} | x0), a product of two Gaussians
    x0, xt = torch.tensor([[0.7]], dtype=torch.float64), torch.tensor([[-0.3]], dtype=torch.float64)
    a = 1 - beta
    precision = a / beta + 1 / (1 - abar_prev)
    mean = (a.sqrt() * xt / beta + abar_prev.sqrt() * x0 / (1 - abar_prev)) / precision
    tt = torch.tensor([t])
    assert torch.allclose(posterior_mean(s, x0, xt, tt), mean)
    assert torch.allclose(posterior_std(s, tt, xt) ** 2, 1 / precision)


def test_q_sample_and_predict_x0_invert_each_other():
    s = make_schedule(linear_betas(1000))
    x0, noise = torch.randn(16, 5, dtype=torch.float64), torch.randn(16, 5, dtype=torch.float64)
    t = torch.randint(0, 1000, (16,))
    xt = q_sample(s, x0, t, noise)
    expected = s.alpha_bar[t].sqrt()[:, None] * x0 + (1 - s.alpha_bar[t]).sqrt()[:, None] * noise
    assert torch.allclose(xt, expected)
    assert torch.allclose(predict_x0(s, xt, t, noise), x0)


def test_cosine_schedule_matches_its_alpha_bar():
    betas = cosine_betas(100)
    abar = torch.cumprod(1 - betas, 0)
    f = lambda t: math.cos((t / 100 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert math.isclose(abar[49].item(), f(50) / f(0), rel_tol=1e-9)


def test_ddim_timesteps_span_the_schedule():
    seq = ddim_timesteps(1000, 50)
    assert len(seq) == 50 and seq[0] == 999 and seq[-1] == 0 and seq == sorted(seq, reverse=True)
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))


def test_samplers_recover_a_point_mass_with_the_exact_eps():
    # data = a single point mu: the exact eps given x_t is (x_t - sqrt(abar) mu) / sqrt(1 - abar)
    s = make_schedule(linear_betas(200))
    mu = torch.tensor([1.5, -2.0])

    def eps(z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        abar = s.alpha_bar[t].float()[:, None]
        return (z - abar.sqrt() * mu) / (1 - abar).sqrt()

    cond = torch.zeros(64, dtype=torch.long)
    torch.manual_seed(0)
    for z in (ddpm_sample(eps, s, cond, 2), ddim_sample(eps, s, cond, 2, steps=20)):
        assert torch.allclose(z, mu.expand_as(z), atol=1e-3)


def test_samplers_recover_a_gaussian_with_the_exact_noise_predictor():
    # x0 ~ N(mu, sd^2): E[eps | z_t] = sqrt(1 - abar) (z_t - sqrt(abar) mu) / (abar sd^2 + 1 - abar)
    s = make_schedule(linear_betas(1000))
    mu, sd = torch.tensor([1.0, -0.5]), 0.5

    def eps(z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        abar = s.alpha_bar[t].float()[:, None]
        return (1 - abar).sqrt() * (z - abar.sqrt() * mu) / (abar * sd**2 + 1 - abar)

    cond = torch.zeros(4000, dtype=torch.long)
    torch.manual_seed(0)
    full = [ddpm_sample(eps, s, cond, 2)] + [ddim_sample(eps, s, cond, 2, steps=1000, eta=e) for e in (0.0, 1.0)]
    for z in full:
        assert torch.allclose(z.mean(0), mu, atol=0.03)
        assert torch.allclose(z.std(0), torch.full((2,), sd), rtol=0.04)
    # 50 strided steps keep the mean; stochastic DDIM then loses some spread (x0 enters as its point estimate)
    for eta in (0.0, 1.0):
        z = ddim_sample(eps, s, cond, 2, steps=50, eta=eta)
        assert torch.allclose(z.mean(0), mu, atol=0.03)
        assert ((z.std(0) > 0.8 * sd) & (z.std(0) < 1.02 * sd)).all()
