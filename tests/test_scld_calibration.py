import pytest
import torch

from scldbench.errors import ScldbenchError
from scldbench.scld.calibration import cluster_mean_offsets, cluster_means, spread_about
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


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_a_spread_that_is_not_positive_is_refused_by_name(value: float):
    with pytest.raises(ScldbenchError, match="latent_spread"):
        SCLD(latent_spread=value)
