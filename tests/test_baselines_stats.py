"""The statistical baselines nb, splat, sugar, copula: contract, determinism, persistence, conditioning, estimation."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scldbench.baselines.copula import Copula
from scldbench.baselines.nb import NegativeBinomial
from scldbench.baselines.splat import Splat, SplatParams, estimate_splat, simulate_splat
from scldbench.baselines.sugar import Sugar, generation_weights, kernel_density, mgc_diffuse
from scldbench.counts.numpy import nb_mle, nb_moments, sample_nb

FACTORIES = {
    "nb": lambda seed: NegativeBinomial(seed=seed),
    "nb-moments-libsize": lambda seed: NegativeBinomial(method="moments", library_size="empirical", seed=seed),
    "splat": lambda seed: Splat(seed=seed),
    "splat-simulated-de-dropout": lambda seed: Splat(de="simulated", gene_order="random", dropout=True, seed=seed),
    "sugar": lambda seed: Sugar(seed=seed),
    "sugar-pca": lambda seed: Sugar(decode="pca", density="inverse", mgc_steps=2, seed=seed),
    "copula": lambda seed: Copula(n_copula_genes=300, seed=seed),
    "copula-raw-counts": lambda seed: Copula(n_copula_genes=50, library_size="none", seed=seed),
}
LABELS = "cluster"


@pytest.fixture(scope="module")
def train() -> ad.AnnData:
    """Real PBMC cells of the four largest louvain clusters (about 480 cells x 765 genes)."""
    from scldbench.data import load_dataset

    adata = load_dataset("pbmc68k-mini")[0]
    sizes = adata.obs["louvain"].value_counts()
    keep = adata.obs["louvain"].isin(sizes.index[:4]).to_numpy()
    sub = adata[keep].copy()
    sub.obs[LABELS] = sub.obs["louvain"].astype(str).astype("category")
    return sub


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def fitted(request: pytest.FixtureRequest, train: ad.AnnData):
    return request.param, FACTORIES[request.param](3).fit(train, labels_key=LABELS)


def _dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _lognorm(x) -> np.ndarray:
    x = _dense(x).astype(np.float64)
    return np.log1p(x / np.maximum(x.sum(axis=1, keepdims=True), 1) * 1e4)


# ------------------------------------------------------------------------------------------ contract
def test_output_is_valid_counts_in_the_same_genes(fitted, train: ad.AnnData) -> None:
    _, gen = fitted
    out = gen.sample(150)
    x = _dense(out.X)
    assert out.shape == (150, train.n_vars)
    assert list(out.var_names) == list(train.var_names)
    assert np.all(np.isfinite(x)) and x.min() >= 0
    assert x.sum() > 0
    assert np.allclose(x, np.round(x)), "all three draw integer counts"
    # unconditional cells carry the labels they were drawn for, in roughly the training proportions
    got = out.obs[LABELS].astype(str).value_counts(normalize=True)
    want = train.obs[LABELS].astype(str).value_counts(normalize=True)
    assert set(got.index) <= set(want.index)
    assert abs(got.get(want.index[0], 0) - want.iloc[0]) < 0.15


def test_same_seed_same_cells_other_seed_other_cells(fitted, train: ad.AnnData) -> None:
    name, _ = fitted
    a = FACTORIES[name](11).fit(train, labels_key=LABELS)
    b = FACTORIES[name](11).fit(train, labels_key=LABELS)
    np.testing.assert_array_equal(_dense(a.sample(60).X), _dense(b.sample(60).X))
    np.testing.assert_array_equal(_dense(a.sample(60, seed=5).X), _dense(b.sample(60, seed=5).X))
    assert not np.array_equal(_dense(a.sample(60, seed=5).X), _dense(a.sample(60, seed=6).X))


def test_save_load_round_trip(fitted, tmp_path) -> None:
    name, gen = fitted
    path = gen.save(tmp_path / name)
    loaded = type(gen).load(path)
    assert loaded.get_params() == gen.get_params()
    request = {c: 10 for c in gen.label_categories}
    n = sum(request.values())
    np.testing.assert_array_equal(_dense(gen.sample(n, request, seed=9).X), _dense(loaded.sample(n, request, seed=9).X))
    json.dumps(gen.get_params())


def test_conditional_sampling_honours_labels(fitted, train: ad.AnnData) -> None:
    name, gen = fitted
    clusters = list(gen.label_categories)
    request = {c: 40 for c in clusters}
    out = gen.sample(40 * len(clusters), request, seed=1)
    assert list(out.obs[LABELS].astype(str)) == [c for c in clusters for _ in range(40)]
    if name == "splat-simulated-de-dropout":
        return  # simulated DE factors are random markers: the groups do not resemble the real clusters
    real_labels = train.obs[LABELS].astype(str).to_numpy()
    real = _lognorm(train.X)
    real_means = np.stack([real[real_labels == c].mean(axis=0) for c in clusters])
    gen_x, gen_labels = _lognorm(out.X), out.obs[LABELS].astype(str).to_numpy()
    for c in clusters:
        centre = gen_x[gen_labels == c].mean(axis=0)
        distances = np.linalg.norm(real_means - centre, axis=1)
        nearest = clusters[int(np.argmin(distances))]
        assert nearest == c, f"{name}: cells generated for {c} are nearest to real cluster {nearest}"


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_unlabelled_fit_tiny_clusters_and_silent_genes(name: str, train: ad.AnnData) -> None:
    sub = train[:60].copy()
    x = _dense(sub.X)
    x[:, :5] = 0  # genes never seen
    sub.X = sp.csr_matrix(x)
    labels = np.array(["big"] * 58 + ["pair", "single"])
    sub.obs["tiny"] = pd.Categorical(labels[: sub.n_obs])
    out = FACTORIES[name](0).fit(sub).sample(30)
    assert out.shape == (30, sub.n_vars) and LABELS not in out.obs
    gen = FACTORIES[name](0).fit(sub, labels_key="tiny")
    out = gen.sample(9, {"big": 3, "pair": 3, "single": 3})
    counts = _dense(out.X)
    assert np.all(np.isfinite(counts)) and counts.min() >= 0
    if name != "splat-simulated-de-dropout":  # with gene_order="random" Splat's genes have no real counterpart
        assert counts[:, :5].sum() == 0


# ------------------------------------------------------------------------------------------ NB estimation
def _nb_data(n: int, size_factors: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mu = rng.gamma(1.0, 4.0, size=200) + 1.0
    phi = rng.uniform(0.05, 1.5, size=200)
    phi[:40] = 0.0  # Poisson genes
    s = rng.lognormal(0, 0.4, size=n) if size_factors else np.ones(n)
    s /= s.mean()
    return sample_nb(rng, s[:, None] * mu[None, :], phi), mu, phi, s


@pytest.mark.parametrize("estimator", [nb_mle, nb_moments])
@pytest.mark.parametrize("size_factors", [False, True])
def test_nb_recovers_mean_and_dispersion(estimator, size_factors: bool) -> None:
    x, mu, phi, s = _nb_data(3000, size_factors)
    mean, disp = estimator(sp.csr_matrix(x), s if size_factors else None)
    over = phi > 0
    # tolerance: median relative error 5% on means and 10% on dispersions (sampling error about 3-6% at n=3000)
    assert np.median(np.abs(mean / mu - 1)) < 0.05
    assert np.median(np.abs(disp[over] / phi[over] - 1)) < 0.10
    # and no gene far off: within 0.05 + 30% (a dispersion of 0.1 at mean 1 is hard to see in 3,000 cells)
    assert np.all(np.abs(disp[over] - phi[over]) < 0.05 + 0.3 * phi[over])
    # Poisson genes: dispersion 0 or tiny
    assert np.median(disp[~over]) < 0.01 and np.max(disp[~over]) < 0.05


def test_nb_generator_fits_simulated_clusters() -> None:
    x, mu, phi, _ = _nb_data(2000, False, seed=1)
    y, mu2, phi2, _ = _nb_data(2000, False, seed=2)
    adata = ad.AnnData(
        X=sp.csr_matrix(np.vstack([x, y])),
        obs=pd.DataFrame({"g": ["a"] * 2000 + ["b"] * 2000}, index=[str(i) for i in range(4000)]),
    )
    gen = NegativeBinomial().fit(adata, labels_key="g")
    params = gen.estimated_parameters()
    for name, (m, p) in {"a": (mu, phi), "b": (mu2, phi2)}.items():
        est_mu, est_phi = np.asarray(params[name]["mean"]), np.asarray(params[name]["dispersion"])
        assert np.median(np.abs(est_mu / m - 1)) < 0.05
        assert np.median(np.abs(est_phi[p > 0] / p[p > 0] - 1)) < 0.12


# ------------------------------------------------------------------------------------------ Splat estimation
def _splat_known(**changes) -> SplatParams:
    # library location = log(n_genes * shape / rate): Splat only fixes gene proportions, so the rate is
    # identifiable only relative to the library size; with this choice the normalised means are the base means
    base = {"n_genes": 1500, "mean_shape": 0.6, "mean_rate": 0.3, "out_prob": 0.0, "lib_scale": 0.3,
            "bcv_common": 0.25, "bcv_df": 30.0}
    params = SplatParams(**(base | changes))
    params.lib_loc = float(np.log(params.n_genes * params.mean_shape / params.mean_rate))
    return params


def test_splat_estimation_recovers_known_parameters() -> None:
    truth = _splat_known()
    x, _ = simulate_splat(truth, 2000, np.random.default_rng(0))
    est, _, _ = estimate_splat(x)
    # tolerances: 15% on mean shape / rate (low-mean genes are noisy), 0.05 on lib_loc, 10% on lib_scale,
    # 15% on bcv_common, a factor 2 on bcv_df (its estimate absorbs sampling noise in gene dispersions)
    assert est.mean_shape == pytest.approx(truth.mean_shape, rel=0.15)
    assert est.mean_rate == pytest.approx(truth.mean_rate, rel=0.15)
    assert est.lib_loc == pytest.approx(truth.lib_loc, abs=0.05)
    assert est.lib_scale == pytest.approx(truth.lib_scale, rel=0.10)
    assert est.bcv_common == pytest.approx(truth.bcv_common, rel=0.15)
    assert truth.bcv_df / 2 < est.bcv_df < truth.bcv_df * 2
    assert est.out_prob < 0.01


@pytest.mark.parametrize(("bcv", "df"), [(0.1, 60.0), (0.5, 10.0)])
def test_splat_bcv_estimate_follows_the_truth(bcv: float, df: float) -> None:
    truth = _splat_known(bcv_common=bcv, bcv_df=df)
    est, _, _ = estimate_splat(simulate_splat(truth, 1500, np.random.default_rng(1))[0])
    assert est.bcv_common == pytest.approx(bcv, rel=0.2)


def test_splat_outlier_estimates() -> None:
    truth = _splat_known(out_prob=0.05, out_fac_loc=4.0, out_fac_scale=0.5)
    est, _, _ = estimate_splat(simulate_splat(truth, 1500, np.random.default_rng(2))[0])
    # the MAD rule finds nearly all outliers at this factor size (a few gamma genes cross the bound as well)
    assert est.out_prob == pytest.approx(0.05, abs=0.02)
    assert est.out_fac_loc == pytest.approx(4.0, abs=0.4)


def test_splat_dropout_midpoint() -> None:
    # splatEstimate's logistic fit describes all zeros; when dropout dominates them (mean counts of e^2 and
    # more, where sampling zeros are rare) its midpoint is the dropout midpoint to within 0.6 on the log scale
    mids = []
    for mid in (1.0, 2.5):
        truth = _splat_known(bcv_common=0.1, dropout_mid=mid, dropout_shape=-2.0)
        x, _ = simulate_splat(truth, 1500, np.random.default_rng(3), dropout=True)
        est, _, _ = estimate_splat(x)
        assert est.dropout_mid == pytest.approx(mid, abs=0.6)
        assert est.dropout_shape < 0
        mids.append(est.dropout_mid)
    assert mids[1] - mids[0] > 1.0


def test_splat_parameters_are_readable_and_saved(tmp_path, train: ad.AnnData) -> None:
    gen = Splat(seed=0).fit(train, labels_key=LABELS)
    params = gen.estimated_parameters()
    json.dumps(params)
    assert params["group_names"] == gen.label_categories
    assert sum(params["group_prob"]) == pytest.approx(1.0)
    assert params["n_genes"] == train.n_vars
    assert Splat.load(gen.save(tmp_path / "splat")).estimated_parameters() == params


# ------------------------------------------------------------------------------------------ SUGAR pieces
def test_sugar_weights_favour_sparse_regions() -> None:
    rng = np.random.default_rng(0)
    points = np.vstack([rng.normal(0, 0.1, size=(200, 2)), rng.normal(5, 1.0, size=(20, 2))])
    density = kernel_density(points, 0.5)
    for how in ("equalize", "inverse"):
        w = generation_weights(density, how)
        assert w.sum() == pytest.approx(1.0)
        assert w[200:].mean() > 5 * w[:200].mean()
    assert np.allclose(generation_weights(density, "uniform"), 1 / 220)


def test_mgc_diffusion_pulls_points_back_to_the_manifold() -> None:
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 400)
    circle = np.c_[np.cos(angle), np.sin(angle)]
    t = rng.uniform(0, 2 * np.pi, 300)
    noisy = np.c_[np.cos(t), np.sin(t)] * rng.uniform(0.7, 1.3, size=(300, 1))
    before = np.abs(np.linalg.norm(noisy, axis=1) - 1).mean()
    after = np.abs(np.linalg.norm(mgc_diffuse(noisy, circle, 0.15, 1), axis=1) - 1).mean()
    assert after < 0.6 * before
