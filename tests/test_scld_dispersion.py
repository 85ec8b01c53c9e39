"""SCLD's count model: per-gene NB dispersion by moments around the decoder's means, and its checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scldbench.errors import ScldbenchError
from scldbench.scld.autoencoder import POISSON_THETA, draw_counts, residual_moments, theta_from_sums
from scldbench.scld.config import SCLDConfig


def _sums_in_batches(x: torch.Tensor, mu: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    mean_sq = torch.zeros(x.shape[1], dtype=x.dtype)
    excess = torch.zeros(x.shape[1], dtype=x.dtype)
    for start in range(0, x.shape[0], size):
        a, b = residual_moments(x[start : start + size], mu[start : start + size])
        mean_sq, excess = mean_sq + a, excess + b
    return mean_sq, excess


def test_moments_recover_known_dispersion_from_nb_counts():
    rng = np.random.default_rng(0)
    n_cells, theta = 20_000, np.array([0.5, 2.0, 10.0])
    mu = rng.gamma(4.0, 5.0, size=(n_cells, 1)) * np.array([1.0, 2.0, 4.0])
    x = rng.poisson(rng.gamma(theta, mu / theta))
    sums = _sums_in_batches(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(mu), size=1024)
    got = theta_from_sums(*sums, floor=1e-3).exp().numpy()
    assert np.allclose(got, theta, rtol=0.1), got


def test_poisson_counts_get_poisson_theta_and_the_floor_caps_tails():
    rng = np.random.default_rng(1)
    mu = np.full((5_000, 2), 30.0)
    x = np.stack([rng.poisson(mu[:, 0]), rng.poisson(rng.gamma(0.2, mu[:, 1] / 0.2))], axis=1)
    mean_sq, excess = residual_moments(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(mu))
    theta = theta_from_sums(mean_sq, excess, floor=1.0).exp().numpy()
    # Poisson noise leaves an excess near zero: theta is either huge or the Poisson marker
    assert theta[0] > 100 or theta[0] == pytest.approx(POISSON_THETA)
    assert theta[1] == pytest.approx(1.0)


def test_nb_draws_match_the_variance_they_promise():
    torch.manual_seed(0)
    mean = torch.full((40_000, 1), 20.0)
    log_theta = torch.log(torch.tensor([4.0]))
    x = draw_counts(mean, "nb", log_theta)
    assert float(x.mean()) == pytest.approx(20.0, rel=0.03)
    assert float(x.var()) == pytest.approx(20.0 + 20.0**2 / 4.0, rel=0.05)


def test_config_rejects_learned_dispersion_without_an_nb_decoder_and_a_bad_floor():
    with pytest.raises(ScldbenchError, match="dispersion='learned' needs ae_loss='nb'"):
        SCLDConfig(dispersion="learned", ae_loss="poisson")
    with pytest.raises(ScldbenchError, match="dispersion_floor"):
        SCLDConfig(dispersion_floor=0.0)
    assert SCLDConfig(dispersion="learned", ae_loss="nb").count_sampling == "nb"
