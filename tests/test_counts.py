"""The shared count maths (scldbench.counts): scaling to a total and the negative binomial, numpy and torch."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy import stats

from scldbench.counts import numpy as cn
from scldbench.counts import torch as ct


def _counts(seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).poisson(3.0, size=(40, 25)).astype(np.float32)
    x[7] = 0  # an empty cell
    return x


@pytest.mark.parametrize("divide_last", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalise_total_hits_the_target_and_keeps_empty_cells_zero(divide_last: bool, dtype: type) -> None:
    x = _counts()
    out = cn.normalise_total(sp.csr_matrix(x), 20_000, dtype=dtype, divide_last=divide_last)
    assert out.dtype == dtype
    totals = out.sum(axis=1, dtype=np.float64)
    np.testing.assert_allclose(np.delete(totals, 7), 20_000, rtol=1e-5)
    assert not out[7].any()


def test_normalise_total_hand_case_and_per_cell_targets() -> None:
    x = np.array([[1.0, 3.0], [0.0, 0.0], [5.0, 5.0]])
    np.testing.assert_allclose(cn.normalise_total(x, 20_000), [[5000, 15000], [0, 0], [10000, 10000]])
    per_cell = cn.normalise_total(x, np.array([4.0, 9.0, 10.0]), divide_last=True)
    np.testing.assert_allclose(per_cell, [[1.0, 3.0], [0.0, 0.0], [5.0, 5.0]])


def test_the_two_rounding_orders_agree_to_the_last_bits() -> None:
    x = _counts(1)
    first = cn.normalise_total(x, 1e4)
    last = cn.normalise_total(x, 1e4, divide_last=True)
    np.testing.assert_allclose(first, last, rtol=1e-15)


def test_sparse_normalisation_has_the_dense_values() -> None:
    x = _counts(2)
    csr = cn.normalise_total_csr(x, 1e4, log=True)
    assert sp.isspmatrix_csr(csr) and csr.dtype == np.float64 and not np.any(csr.data == 0)
    np.testing.assert_array_equal(csr.toarray(), np.log1p(cn.normalise_total(x, 1e4)))


def test_log_normalise_hand_case() -> None:
    out = cn.log_normalise(sp.csr_matrix(np.array([[1.0, 3.0], [0.0, 0.0]])), target=4.0)
    np.testing.assert_allclose(out, np.log1p([[1.0, 3.0], [0.0, 0.0]]))


def test_size_factors_average_one() -> None:
    x = sp.csr_matrix(_counts(3))
    s = cn.size_factors(x)
    assert s.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(s, cn.library_sizes(x) / cn.library_sizes(x).mean())
    np.testing.assert_array_equal(cn.size_factors(sp.csr_matrix((4, 3))), np.ones(4))


def test_residual_squares_matches_the_dense_sum() -> None:
    x = _counts(4).astype(np.float64)
    s = np.random.default_rng(0).lognormal(0, 0.3, size=x.shape[0])
    mu = x.sum(axis=0) / s.sum()
    dense = ((x - s[:, None] * mu[None, :]) ** 2).sum(axis=0)
    np.testing.assert_allclose(cn.residual_squares(sp.csc_matrix(x), s, mu), dense, rtol=1e-9, atol=1e-9)


def test_nb_zero_prob_is_the_nb_and_poisson_pmf_at_zero() -> None:
    mean, phi = np.array([0.5, 2.0, 3.0]), np.array([0.0, 0.5, 2.0])
    r = 1 / phi[1:]
    expected = np.concatenate([[np.exp(-0.5)], stats.nbinom.pmf(0, r, r / (r + mean[1:]))])
    np.testing.assert_allclose(cn.nb_zero_prob(mean, phi), expected, rtol=1e-12)


def test_numpy_nb_draws_have_the_nb_moments() -> None:
    rng = np.random.default_rng(0)
    mean = np.full((20_000, 2), 5.0)
    draws = cn.sample_nb(rng, mean, np.array([0.0, 0.4]))
    assert draws.dtype == np.float32
    # Poisson column: variance 5; NB column: 5 + 0.4 * 25 = 15 (sampling error about 2%)
    np.testing.assert_allclose(draws.mean(axis=0), [5.0, 5.0], rtol=0.03)
    np.testing.assert_allclose(draws.var(axis=0), [5.0, 15.0], rtol=0.06)


def test_moment_log_theta_recovers_theta_per_group() -> None:
    rng = np.random.default_rng(1)
    theta = np.array([[2.0, 20.0], [0.5, 5.0]])
    groups = np.repeat([0, 1], 20_000)
    mean = 4.0
    x = cn.sample_nb(rng, np.full((groups.size, 2), mean), 1 / theta[groups])
    got = np.exp(cn.moment_log_theta(x, groups, 2))
    np.testing.assert_allclose(got, theta, rtol=0.15)


def test_torch_nb_log_probs_match_scipy() -> None:
    x = torch.tensor([[0.0, 1.0, 7.0], [3.0, 0.0, 12.0]], dtype=torch.float64)
    mean = torch.tensor([[0.5, 2.0, 6.0], [3.0, 1.0, 10.0]], dtype=torch.float64)
    theta = torch.tensor([[1.5, 0.3, 8.0]], dtype=torch.float64)
    theta_full = theta.expand_as(mean).numpy()
    expected = stats.nbinom.logpmf(x.numpy(), theta_full, theta_full / (theta_full + mean.numpy()))
    np.testing.assert_allclose(ct.nb_log_prob(x, mean, theta).numpy(), expected, rtol=1e-6)
    from_logs = ct.nb_log_prob_from_logs(x, mean.log(), theta.log())
    np.testing.assert_allclose(from_logs.numpy(), expected, rtol=1e-10)


def test_torch_nb_draws_have_the_nb_moments() -> None:
    torch.manual_seed(0)
    draws = ct.sample_nb(torch.full((20_000, 1), 5.0), torch.tensor([2.5]))
    assert float(draws.mean()) == pytest.approx(5.0, rel=0.03)
    assert float(draws.var()) == pytest.approx(5.0 + 25.0 / 2.5, rel=0.06)


def test_torch_normalise_total_forms() -> None:
    x = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    np.testing.assert_allclose(ct.normalise_total(x, 4.0).numpy(), [[1.0, 3.0], [0.0, 0.0]])
    np.testing.assert_allclose(ct.log_normalise(x, 4.0).numpy(), np.log1p([[1.0, 3.0], [0.0, 0.0]]), rtol=1e-6)
    layer = ct.normalise_total(torch.rand(5, 20), 20_000.0, eps=1e-8)
    np.testing.assert_allclose(layer.sum(dim=1).numpy(), 20_000.0, rtol=1e-5)
