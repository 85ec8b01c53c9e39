"""The scDesign2-style copula: marginal choice and estimates, copula correlation, conditional sampling, persistence."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scldbench import Generator, ScldbenchError
from scldbench.baselines.copula import NB, POISSON, ZINB, Copula, fit_marginals, marginal_cdf, marginal_ppf


def _dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _adata(x: np.ndarray, labels: np.ndarray | None = None) -> ad.AnnData:
    obs = pd.DataFrame(index=[f"c{i}" for i in range(x.shape[0])])
    if labels is not None:
        obs["cluster"] = pd.Categorical(labels)
    return ad.AnnData(X=sp.csr_matrix(x.astype(np.float32)), obs=obs,
                      var=pd.DataFrame(index=[f"g{j}" for j in range(x.shape[1])]))


def _simulated(n: int = 2000, seed: int = 0) -> np.ndarray:
    """Columns: Poisson(3), NB(mean 5, phi 0.5), ZINB(mean 8, phi 0.2, 40 % structural zeros), then two genes
    correlated through a shared gamma factor."""
    rng = np.random.default_rng(seed)
    poisson = rng.poisson(3.0, n)
    nb = rng.poisson(rng.gamma(2.0, 5.0 * 0.5, n))
    zinb = rng.poisson(rng.gamma(5.0, 8.0 * 0.2, n)) * (rng.random(n) > 0.4)
    shared = rng.gamma(2.0, 0.5, n)
    a, b = rng.poisson(6.0 * shared), rng.poisson(4.0 * shared)
    return np.column_stack([poisson, nb, zinb, a, b]).astype(np.float64)


def test_marginal_families_and_parameters_are_recovered() -> None:
    x = _simulated()
    family, mu, phi, pi = fit_marginals(sp.csc_matrix(x), np.ones(x.shape[0]))
    assert family[:3].tolist() == [POISSON, NB, ZINB]
    assert mu[0] == pytest.approx(3.0, rel=0.05) and phi[0] == 0.0
    assert mu[1] == pytest.approx(5.0, rel=0.08) and phi[1] == pytest.approx(0.5, rel=0.2)
    assert mu[2] == pytest.approx(8.0, rel=0.08) and pi[2] == pytest.approx(0.4, abs=0.05)
    assert phi[2] == pytest.approx(0.2, rel=0.35)


def test_cdf_and_ppf_are_inverse_on_counts() -> None:
    x = np.arange(0, 30, dtype=np.float64)[:, None].repeat(3, axis=1)
    mean = np.tile([2.0, 6.0, 6.0], (30, 1))
    phi, pi = np.array([0.0, 0.4, 0.4]), np.array([0.0, 0.0, 0.3])
    u = marginal_cdf(x, mean, phi, pi)
    assert np.all(np.diff(u, axis=0) >= 0)
    assert u[0, 2] == pytest.approx(0.3 + 0.7 * (1 / (1 + 0.4 * 6)) ** (1 / 0.4))
    back = marginal_ppf(np.clip(u - 1e-7, 0, 1), mean, phi, pi)
    np.testing.assert_array_equal(back[u[:, 0] < 0.999999, 0], x[u[:, 0] < 0.999999, 0])


def test_copula_keeps_correlated_genes_correlated() -> None:
    x = _simulated()
    real = np.corrcoef(x[:, 3], x[:, 4])[0, 1]
    # raw-count marginals, so that no correlation comes from shared library sizes
    out = _dense(Copula(library_size="none", seed=1).fit(_adata(x)).sample(3000).X)
    independent = _dense(Copula(n_copula_genes=0, library_size="none", seed=1).fit(_adata(x)).sample(3000).X)
    assert real > 0.3
    assert np.corrcoef(out[:, 3], out[:, 4])[0, 1] == pytest.approx(real, abs=0.08)
    assert abs(np.corrcoef(independent[:, 3], independent[:, 4])[0, 1]) < 0.08
    # the marginals survive the copula: means and zero fractions close to the data's
    np.testing.assert_allclose(out.mean(0), x.mean(0), rtol=0.1)
    np.testing.assert_allclose((out == 0).mean(0), (x == 0).mean(0), atol=0.04)


def test_conditional_sampling_returns_the_requested_labels_and_cluster_profiles() -> None:
    rng = np.random.default_rng(2)
    labels = np.repeat(["a", "b"], 300)
    means = np.where(labels[:, None] == "a", [20.0, 1.0, 5.0], [1.0, 20.0, 5.0])
    x = rng.poisson(means)
    gen = Copula(seed=0).fit(_adata(x, labels), labels_key="cluster")
    out = gen.sample(50, labels={"b": 30, "a": 20})
    assert out.obs["cluster"].astype(str).value_counts().to_dict() == {"b": 30, "a": 20}
    got = _dense(out.X)
    is_a = (out.obs["cluster"] == "a").to_numpy()
    assert got[is_a, 0].mean() > 10 > got[~is_a, 0].mean()
    assert got[~is_a, 1].mean() > 10 > got[is_a, 1].mean()


def test_unlabelled_fit_and_unconditional_sample(pbmc_mini) -> None:
    out = Copula(n_copula_genes=200, seed=0).fit(pbmc_mini).sample(40)
    x = _dense(out.X)
    assert out.shape == (40, pbmc_mini.n_vars) and np.allclose(x, np.round(x)) and x.sum() > 0


def test_same_seed_same_cells_and_save_load(tmp_path, pbmc_mini) -> None:
    a = Copula(n_copula_genes=100, seed=4).fit(pbmc_mini, labels_key="louvain")
    b = Copula(n_copula_genes=100, seed=4).fit(pbmc_mini, labels_key="louvain")
    np.testing.assert_array_equal(_dense(a.sample(30, seed=3).X), _dense(b.sample(30, seed=3).X))
    a.save(tmp_path / "m")
    loaded = Generator.load(tmp_path / "m")
    assert isinstance(loaded, Copula) and loaded.n_copula_genes == 100
    np.testing.assert_array_equal(_dense(a.sample(30, seed=9).X), _dense(loaded.sample(30, seed=9).X))
    families = loaded.marginal_families()
    assert set(families) == set(pbmc_mini.obs["louvain"].astype(str))


def test_bad_settings_are_clear() -> None:
    with pytest.raises(ScldbenchError, match="library_size must be one of empirical, none"):
        Copula(library_size="fixed")
    with pytest.raises(ScldbenchError, match="n_copula_genes"):
        Copula(n_copula_genes=-1)
