import pytest
import torch

from scldbench.errors import ScldbenchError
from scldbench.scld.calibration import (
    cluster_mean_offsets,
    cluster_means,
    fit_spread,
    spread_about,
    within_cluster_variance,
)
from scldbench.scld.generator import SCLD


def test_offsets_are_the_shrunk_mean_gap_per_cluster():
    torch.manual_seed(0)
    real = torch.cat([torch.randn(30, 3) + torch.tensor([1.0, 0.0, -1.0]), torch.randn(10, 3)])
    real_cluster = torch.tensor([0] * 30 + [1] * 10)
    sampled = torch.cat([torch.randn(50, 3), torch.randn(20, 3) + 2.0])
    sampled_cluster = torch.tensor([0] * 50 + [1] * 20)
    offsets = cluster_mean_offsets(real, real_cluster, sampled, sampled_cluster, 3, prior_cells=10.0)
    gap0 = real[:30].mean(0) - sampled[:50].mean(0)
    gap1 = real[30:].mean(0) - sampled[50:].mean(0)
    assert torch.allclose(offsets[0], gap0 * 30 / 40)
    assert torch.allclose(offsets[1], gap1 * 10 / 20)
    # a cluster with no cells on either side is left where the model puts it
    assert torch.equal(offsets[2], torch.zeros(3))
    unshrunk = cluster_mean_offsets(real, real_cluster, sampled, sampled_cluster, 3, prior_cells=0.0)
    assert torch.allclose(sampled[:50].mean(0) + unshrunk[0], real[:30].mean(0), atol=1e-6)


def test_cluster_means_and_spread_keep_each_centre_and_scale_deviations():
    torch.manual_seed(1)
    z = torch.randn(40, 4)
    cluster = torch.tensor([0] * 25 + [2] * 15)
    centres = cluster_means(z, cluster, 3)
    assert torch.allclose(centres[0], z[:25].mean(0)) and torch.allclose(centres[2], z[25:].mean(0))
    assert torch.equal(centres[1], torch.zeros(4))
    wide = spread_about(z, centres[cluster], 1.5)
    assert torch.allclose(cluster_means(wide, cluster, 3), centres, atol=1e-6)
    assert torch.allclose(wide[:25].std(0), 1.5 * z[:25].std(0), atol=1e-5)
    assert torch.allclose(spread_about(z, centres[cluster], 1.0), z)


def test_within_cluster_variance_is_the_pooled_variance_of_library_scaled_expression():
    torch.manual_seed(2)
    x = (torch.poisson(torch.rand(60, 5) * 20) + 1).double()
    cluster = torch.tensor([0] * 20 + [1] * 40)
    p = x / x.sum(1, keepdim=True)
    expected = (p[:20].var(0, unbiased=False).sum() * 20 + p[20:].var(0, unbiased=False).sum() * 40) / 60
    batches = [(x[:25], cluster[:25]), (x[25:], cluster[25:])]
    assert abs(within_cluster_variance(batches, 2) - float(expected)) < 1e-9
    # a cell scaled to a new depth keeps its proportions, and the variance
    assert abs(within_cluster_variance([(x * 3, cluster)], 2) - float(expected)) < 1e-9


def test_fit_spread_finds_where_an_increasing_variance_meets_the_target():
    def variance_at(factor: float) -> float:
        return 0.5 + 2.0 * factor**2

    found = fit_spread(variance_at, target=0.5 + 2.0 * 1.3**2, low=0.5, high=2.0, steps=20)
    assert abs(found - 1.3) < 1e-4
    assert fit_spread(variance_at, target=0.1, low=0.5, high=2.0, steps=20) == 0.5
    assert fit_spread(variance_at, target=100.0, low=0.5, high=2.0, steps=20) == 2.0


def test_spread_is_fitted_or_fixed_not_both():
    with pytest.raises(ScldbenchError, match="latent_spread"):
        SCLD(latent_calibration="spread", latent_spread=1.2)
    assert SCLD(latent_calibration="mean", latent_spread=1.2).config.calibration.latent_spread == 1.2


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_a_spread_that_is_not_positive_is_refused_by_name(value: float):
    with pytest.raises(ScldbenchError, match="latent_spread"):
        SCLD(latent_spread=value)
