"""CFGen's dispersions: the maximum-likelihood refit given the decoder, and its effect on generated noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from scldbench import ScldbenchError
from scldbench.baselines.cfgen import CFGen
from scldbench.baselines.cfgen.dispersion import refit_log_theta
from scldbench.scld.training import CountData
from tests.conftest import make_counts
from tests.test_cfgen import TINY

pytestmark = pytest.mark.usefixtures("one_thread")


class FixedProfile(nn.Module):
    """A stand-in autoencoder whose decoder returns the same gene proportions for every cell."""

    def __init__(self, proportions: torch.Tensor) -> None:
        super().__init__()
        self.p = proportions

    def encode(self, counts: torch.Tensor) -> torch.Tensor:
        return torch.zeros(counts.shape[0], 1)

    def proportions(self, z: torch.Tensor) -> torch.Tensor:
        return self.p.expand(z.shape[0], -1)


def test_refit_recovers_the_inverse_dispersion_of_nb_counts():
    rng = np.random.default_rng(0)
    theta = np.array([0.3, 2.0, 20.0, 0.3, 2.0, 20.0])
    share = np.array([0.002, 0.002, 0.002, 0.02, 0.02, 0.02])
    library = rng.integers(4000, 6000, size=4000).astype(float)
    mean = library[:, None] * share
    tested = rng.negative_binomial(theta, theta / (theta + mean))
    # the rest of each library on 200 Poisson genes, so that a cell's total is close to its drawn library
    rest = rng.poisson(library[:, None] * (1 - share.sum()) / 200, size=(4000, 200))
    counts = np.hstack([tested, rest]).astype(np.float32)
    # the decoder's proportions are each gene's share of the counts: the means follow the cells' totals
    ae = FixedProfile(torch.as_tensor(counts.sum(0) / counts.sum(), dtype=torch.float32))
    fitted = refit_log_theta(ae, CountData(counts, torch.device("cpu")), np.arange(4000), chunk=1000).exp().numpy()
    np.testing.assert_allclose(fitted[:6], theta, rtol=0.2)


def within_group_dispersion(x: np.ndarray) -> float:
    """Median over expressed genes of variance / mean: 1 for Poisson counts, more for over-dispersed ones."""
    mean, var = x.mean(0), x.var(0)
    keep = mean > 1
    return float(np.median(var[keep] / mean[keep]))


def test_mle_dispersions_match_the_within_cluster_noise():
    # Poisson within each group, so all the extra variance of the pooled cells is between the groups
    data = make_counts(n_cells=240, n_genes=45, n_groups=3, seed=3)
    x = data.X.toarray()
    real = within_group_dispersion(x[data.obs["group"] == "g0"])
    ratio = {}
    for mode in ("learned", "mle"):
        gen = CFGen(**TINY | {"ae_epochs": 60}, dispersion=mode, seed=0, device="cpu").fit(data, "group")
        ratio[mode] = within_group_dispersion(np.asarray(gen.sample(200, labels="g0", seed=1).X))
        if mode == "mle":
            assert gen.diagnostics_["theta_mle_median"] > gen.diagnostics_["theta_learned_median"]
    # the jointly learned theta stays near its pooled start, which counts the groups' differences as noise
    assert abs(ratio["mle"] - real) < 0.5 * abs(ratio["learned"] - real), (ratio, real)


def test_unknown_dispersion_mode_is_refused():
    with pytest.raises(ScldbenchError, match="dispersion"):
        CFGen(dispersion="moments")
