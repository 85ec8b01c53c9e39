"""SCLD's count model: NB dispersion around the decoder's means (moments, maximum likelihood), and its checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scldbench.errors import ScldbenchError
from scldbench.scld.autoencoder import Autoencoder, log_profiles
from scldbench.scld.config import SCLDConfig
from scldbench.scld.count_noise import draw_counts
from scldbench.scld.dispersion import (
    POISSON_THETA,
    nb_theta_mle,
    residual_moments,
    shrink_log_theta,
    theta_from_sums,
)


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
        SCLDConfig.preset("paper", dispersion="learned", ae_loss="poisson")
    with pytest.raises(ScldbenchError, match="dispersion_floor"):
        SCLDConfig.preset("paper", dispersion_floor=0.0)
    assert SCLDConfig.preset("paper", dispersion="learned", ae_loss="nb").counts.count_sampling == "nb"


def test_autoencoder_keeps_the_weights_of_its_best_validation_epoch():
    from scldbench.scld.training import CountData, train_autoencoder, validation_loss

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.gamma(2.0, 3.0, size=(120, 1)) * rng.gamma(1.0, 1.0, size=(1, 30)))
    data = CountData(counts.astype(np.float32), torch.device("cpu"))
    ae = Autoencoder(30, 64, 8, "poisson")
    logged: list[str] = []
    # a large learning rate on 80 cells overfits within a few epochs, so the last epoch is rarely the best
    figures = train_autoencoder(
        ae, data, 6, 3e-2, 16, 0.0, rng, False, logged.append, train_idx=np.arange(80), val_idx=np.arange(80, 120)
    )
    per_epoch = [float(line.split("validation ")[1]) for line in logged]
    assert len(per_epoch) == 6
    assert figures["ae_validation_loss"] == pytest.approx(min(per_epoch), rel=1e-3)
    assert figures["ae_best_epoch"] == int(np.argmin(per_epoch)) + 1
    assert validation_loss(ae, data, np.arange(80, 120), False) == pytest.approx(figures["ae_validation_loss"])


def test_validation_split_holds_out_the_same_share_of_every_cluster():
    from scldbench.scld.training import validation_split

    cluster_of = np.repeat([0, 1, 2], [100, 40, 20])
    fit_idx, val_idx = validation_split(cluster_of, 0.25, np.random.default_rng(0), min_cells=32)
    assert np.intersect1d(fit_idx, val_idx).size == 0 and fit_idx.size + val_idx.size == cluster_of.size
    assert np.bincount(cluster_of[val_idx]).tolist() == [25, 10, 5]
    fit_all, none = validation_split(cluster_of, 0.1, np.random.default_rng(0), min_cells=32)
    assert none.size == 0 and fit_all.size == cluster_of.size  # 16 validation cells are too few


def _nb_counts(rng: np.random.Generator, mu: np.ndarray, theta: np.ndarray | float) -> np.ndarray:
    return rng.poisson(rng.gamma(theta, mu / theta)).astype(np.float64)


def test_mle_recovers_each_groups_dispersion_and_marks_poisson_genes():
    rng = np.random.default_rng(2)
    n, thetas = 8_000, np.array([[0.3, 3.0, 1e9], [5.0, 0.8, 1e9]])
    group = np.repeat([0, 1], n)
    mu = rng.gamma(3.0, 4.0, size=(2 * n, 1)) * np.array([1.0, 3.0, 2.0])
    x = _nb_counts(rng, mu, thetas[group])
    got = nb_theta_mle(torch.as_tensor(x), torch.as_tensor(mu), torch.as_tensor(group), 2, floor=1e-3).exp()
    assert np.allclose(got[:, :2].numpy(), thetas[:, :2], rtol=0.1), got
    assert torch.all(got[:, 2] > 1e3)  # Poisson counts: no finite dispersion fits better than none


def test_mle_follows_the_bulk_where_a_few_outlying_cells_inflate_the_moments():
    rng = np.random.default_rng(3)
    n, theta = 5_000, 4.0
    mu = np.full((n, 1), 10.0)
    x = _nb_counts(rng, mu, theta)
    x[:25] = 400.0  # half a percent of cells far out in the tail
    xt, mut = torch.as_tensor(x), torch.as_tensor(mu)
    mle = nb_theta_mle(xt, mut, torch.zeros(n, dtype=torch.long), 1, floor=1e-3).exp().item()
    moments = theta_from_sums(*residual_moments(xt, mut), floor=1e-3).exp().item()
    assert moments < 0.2 < 1.0 < mle < theta * 1.2


def test_small_groups_lean_on_the_pooled_dispersion():
    own = torch.log(torch.tensor([[0.5], [20.0]]))
    pooled = torch.log(torch.tensor([2.0]))
    shrunk = shrink_log_theta(own, pooled, torch.tensor([30_000, 10]), prior_cells=30.0).exp().ravel()
    assert shrunk[0].item() == pytest.approx(0.5, rel=0.01)
    assert shrunk[1].item() == pytest.approx(float(np.exp(0.25 * np.log(20.0) + 0.75 * np.log(2.0))), rel=1e-4)
    assert torch.allclose(shrink_log_theta(own, pooled, torch.tensor([5, 5]), 0.0), own)


def test_an_anchored_decoder_starts_at_its_clusters_mean_profile():
    sums = torch.tensor([[10.0, 30.0, 60.0, 0.0], [0.0, 0.0, 50.0, 50.0]])
    anchors = log_profiles(sums)
    assert torch.allclose(anchors.exp().sum(1), torch.ones(2))
    assert anchors.exp()[0, 2] == pytest.approx(0.6, rel=1e-3) and anchors.exp()[0, 3] < 1e-3
    ae = Autoencoder(4, 8, 2, "poisson", anchors=anchors)
    z = torch.randn(5, 2)
    for k in (0, 1):
        profile = ae.profile(z, torch.full((5,), k))
        assert torch.allclose(profile, anchors[k].exp().expand(5, -1), atol=1e-6)
    with pytest.raises(ValueError, match="needs each cell's cluster"):
        ae.profile(z)
