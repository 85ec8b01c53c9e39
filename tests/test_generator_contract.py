"""The Generator base class: validation, label requests, seeding, output checks, persistence."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from scldbench import Generator, ScldbenchError
from scldbench.baselines.controls import PositiveControl, RandomControl, ShuffleControl
from scldbench.generator import BASE_FITTED_STATE, is_fitted_name, largest_remainder
from scldbench.registry import get_generator, list_generators
from tests.conftest import make_counts

#: every built-in generator at a size that fits in a few seconds on the contract's 60 x 40 cells
TINY = {
    "positive": {}, "random": {}, "shuffle": {}, "nb": {}, "splat": {}, "sugar": {}, "copula": {"n_copula_genes": 20},
    "scgan": {"steps": 4, "latent_dim": 8, "generator_layers": [16], "critic_layers": [16], "critic_steps": 2},
    "cscgan": {"steps": 4, "latent_dim": 8, "generator_layers": [16], "critic_layers": [16], "critic_steps": 2},
    "activa": {"epochs": 2, "warmup_epochs": 1, "latent_dim": 4, "encoder_layers": [16], "classifier_layers": [8],
               "classifier_epochs": 2, "draw_batch": 32},
    "vae": {"epochs": 2, "kl_warmup_epochs": 1, "latent_dim": 4, "hidden_layers": [16]},
    "cfgen": {"latent_dim": 4, "encoder_layers": [16], "ae_epochs": 2, "ae_batch_size": 32, "flow_hidden": 16,
              "flow_blocks": 1, "embedding_dim": 8, "flow_epochs": 2, "flow_batch_size": 32, "ode_steps": 2},
    "scvi": {"max_epochs": 1, "scanvi_epochs": 1, "n_hidden": 16, "n_latent": 4, "batch_size": 64},
    "scld": {"preset": "cpu", "latent_dim": 4, "ae_hidden": 16, "ae_epochs": 1, "cond_dim": 8,
             "denoiser_channels": [16], "time_dim": 8, "steps": 3, "timesteps": 10, "sampler": "ddim",
             "ddim_steps": 3, "fit_ddim_steps": 3, "scorer_hidden": 8, "scorer_epochs": 1, "marginal_draw": 8},
}


class MeanGenerator(Generator):
    """Poisson around the per-label mean: a tiny conditional generator for contract tests."""

    name = "mean-test"
    conditional = True

    def __init__(self, *, scale: float = 1.0, seed: int = 0, device: str = "auto") -> None:
        super().__init__(seed=seed, device=device)
        self.scale = scale

    def _fit(self, adata, labels):
        x = adata.X.toarray()
        self.means_ = {lab: x[labels == lab].mean(0) for lab in np.unique(labels)}

    def _sample(self, n_cells, labels, guidance):
        labels = labels if labels is not None else self.proportional_labels(n_cells)
        return self._rng.poisson(np.stack([self.means_[lab] for lab in labels]) * self.scale), labels


class BadShape(MeanGenerator):
    name = "bad-shape"

    def _sample(self, n_cells, labels, guidance):
        return np.zeros((n_cells, 3))


class Negative(MeanGenerator):
    name = "negative"

    def _sample(self, n_cells, labels, guidance):
        return -np.ones((n_cells, self.n_genes))


def test_fit_rejects_log_normalised_data(counts):
    counts.X = sp.csr_matrix(np.log1p(counts.X.toarray() * 1.7))
    with pytest.raises(ScldbenchError, match="non-integer.*log-normalised.*raw counts"):
        MeanGenerator().fit(counts, "group")


def test_fit_rejects_scaled_data(counts):
    x = counts.X.toarray()
    counts.X = (x - x.mean(0)) / (x.std(0) + 1)
    with pytest.raises(ScldbenchError, match="negative values"):
        MeanGenerator().fit(counts, "group")


def test_fit_rejects_nan(counts):
    x = counts.X.toarray()
    x[0, 0] = np.nan
    counts.X = x
    with pytest.raises(ScldbenchError, match="NaN"):
        MeanGenerator().fit(counts, "group")


def test_missing_label_column_suggests_close_name(counts):
    with pytest.raises(ScldbenchError, match="'grup' is not in adata.obs.*did you mean: group"):
        MeanGenerator().fit(counts, "grup")


def test_label_requests_one_label_list_and_mapping(counts):
    gen = MeanGenerator(seed=3).fit(counts, "group")
    one = gen.sample(5, labels="g1")
    assert list(one.obs["group"]) == ["g1"] * 5
    per_cell = gen.sample(3, labels=["g0", "g2", "g0"])
    assert list(per_cell.obs["group"]) == ["g0", "g2", "g0"]
    mapping = gen.sample(6, labels={"g0": 2, "g2": 4})
    assert mapping.obs["group"].value_counts().to_dict() == {"g0": 2, "g2": 4, "g1": 0}
    assert list(one.var_names) == list(counts.var_names)


def test_bad_label_requests_are_clear(counts):
    gen = MeanGenerator().fit(counts, "group")
    with pytest.raises(ScldbenchError, match="unknown label 'g9'.*known labels: g0, g1, g2"):
        gen.sample(2, labels="g9")
    with pytest.raises(ScldbenchError, match="add up to 3, but n_cells is 4"):
        gen.sample(4, labels={"g0": 3})
    with pytest.raises(ScldbenchError, match="got 2 labels for 3 cells"):
        gen.sample(3, labels=["g0", "g1"])
    with pytest.raises(ScldbenchError, match="does not support guidance"):
        gen.sample(3, guidance=1.0)


def test_unconditional_generator_refuses_labels(counts):
    gen = RandomControl().fit(counts)
    with pytest.raises(ScldbenchError, match="not conditional"):
        gen.sample(3, labels="g0")


def test_unconditional_sampling_follows_training_proportions():
    data = make_counts(n_cells=90, n_groups=3)
    keep = np.r_[np.arange(0, 90, 3), np.arange(1, 90, 3)[:5], np.arange(2, 90, 3)[:15]]
    gen = MeanGenerator(seed=1).fit(data[keep].copy(), "group")
    counts = gen.sample(3000).obs["group"].value_counts()
    assert counts.to_dict() == {"g0": 1800, "g1": 300, "g2": 900}
    assert len(set(gen.sample(3000).obs["group"].iloc[:100])) == 3  # in random order, not in blocks
    assert sorted(gen.sample(7).obs["group"]) == ["g0"] * 4 + ["g1"] + ["g2"] * 2


def test_largest_remainder_is_exact_and_within_one_cell():
    rng = np.random.default_rng(0)
    for n in (1, 7, 100, 541):
        p = rng.dirichlet(np.ones(8))
        counts = largest_remainder(n, p, rng)
        assert counts.sum() == n
        assert np.all(np.abs(counts - n * p) < 1)


def test_same_seed_same_cells_and_new_seed_new_cells(counts):
    a = MeanGenerator(seed=7).fit(counts, "group").sample(20, seed=11)
    b = MeanGenerator(seed=7).fit(counts, "group").sample(20, seed=11)
    c = MeanGenerator(seed=7).fit(counts, "group").sample(20, seed=12)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X)


def test_output_checks_catch_broken_generators(counts):
    with pytest.raises(ScldbenchError, match=r"returned shape \(4, 3\), expected \(4, 40\)"):
        BadShape().fit(counts, "group").sample(4)
    with pytest.raises(ScldbenchError, match="negative or non-finite"):
        Negative().fit(counts, "group").sample(4)


def test_unknown_parameter_is_named_with_suggestion():
    with pytest.raises(ScldbenchError, match="no parameter 'scael'.*did you mean: scale"):
        MeanGenerator.create(scael=2.0)


def test_missing_optional_dependency_gives_install_hint(counts):
    class NeedsMissing(MeanGenerator):
        name = "needs-missing"
        requires = ("a_module_that_is_not_installed",)
        extra = "missing"

    assert NeedsMissing.missing_requirements() == ["a_module_that_is_not_installed"]
    with pytest.raises(ScldbenchError, match=r"pip install 'scldbench\[missing\]'"):
        NeedsMissing.create()


def test_fit_records_time_and_memory(counts):
    gen = MeanGenerator().fit(counts, "group")
    gen.sample(10)
    assert gen.fit_usage.seconds >= 0 and gen.fit_usage.peak_rss_mb > 0
    assert gen.sample_usage.seconds >= 0


def test_every_built_in_generator_is_in_the_persistence_test():
    built_in = {info.name for info in list_generators() if info.source.startswith("scldbench.")}
    assert built_in <= set(TINY), f"add tiny settings for {sorted(built_in - set(TINY))} to TINY"


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", sorted(TINY))
def test_save_stores_exactly_the_fitted_state_and_load_samples_the_same_cells(name, counts, tmp_path):
    cls = get_generator(name)
    if cls.missing_requirements():
        pytest.skip(f"{name} needs {', '.join(cls.missing_requirements())}")
    gen = cls.create(seed=5, device="cpu", **TINY[name]).fit(counts, "group")
    gen.save(tmp_path / name)

    state = torch.load(tmp_path / name / "state.pt", weights_only=False)
    assert [k for k in state if not (is_fitted_name(k) or k in BASE_FITTED_STATE)] == []
    # no parameter is stored again, under its own name or copied into fitted state (the parameters are in
    # generator.json); a fitted attribute may share a parameter's name, as SCLD's `scorer_` network does `scorer`
    assert not set(state) & (set(cls.parameters()) | {"device_name", "config"})
    copied = [k for k, v in gen.get_params().items() if k + "_" in state and type(state[k + "_"]) is type(v)
              and state[k + "_"] == v]
    assert copied == []
    for module in cls.weight_modules:  # networks are stored as weights only, rebuilt on load
        assert state[module] is None or all(isinstance(t, torch.Tensor) for t in state[module].values())

    loaded = Generator.load(tmp_path / name)
    assert type(loaded) is cls and loaded.get_params() == gen.get_params()
    assert list(loaded.var_names) == list(gen.var_names) and loaded.label_categories == gen.label_categories
    np.testing.assert_array_equal(_dense(loaded.sample(15, seed=2).X), _dense(gen.sample(15, seed=2).X))
    if cls.conditional:
        request = {"g2": 6, "g0": 4}
        np.testing.assert_array_equal(_dense(loaded.sample(10, request, seed=3).X),
                                      _dense(gen.sample(10, request, seed=3).X))
    # unseeded samples follow the fit seed and the samples drawn so far: the loaded model continues alike
    np.testing.assert_array_equal(_dense(loaded.sample(12).X), _dense(gen.sample(12).X))


def test_an_unregistered_generator_loads_through_its_own_class(counts, tmp_path):
    gen = MeanGenerator(seed=5, scale=2.0).fit(counts, "group")
    gen.save(tmp_path / "model")
    loaded = MeanGenerator.load(tmp_path / "model")
    assert type(loaded) is MeanGenerator and loaded.scale == 2.0
    np.testing.assert_array_equal(_dense(gen.sample(15, seed=2).X), _dense(loaded.sample(15, seed=2).X))


def test_save_refuses_fitted_state_it_would_not_store(counts, tmp_path):
    class Misnamed(MeanGenerator):
        def _fit(self, adata, labels):
            self.means = {}

    with pytest.raises(ScldbenchError, match=r"fitted state in 'means'.*trailing underscore \('means_'\)"):
        Misnamed().fit(counts, "group").save(tmp_path / "model")


def _dense(x):
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def test_load_rejects_a_folder_without_a_model(tmp_path):
    with pytest.raises(ScldbenchError, match="holds no saved generator"):
        Generator.load(tmp_path)


def test_sample_before_fit_is_an_error():
    with pytest.raises(ScldbenchError, match="not fitted"):
        MeanGenerator().sample(3)


def test_positive_control_returns_distinct_real_cells(counts):
    gen = PositiveControl(seed=0).fit(counts, "group")
    out = _dense(gen.sample(counts.n_obs).X)
    real = {tuple(r) for r in counts.X.toarray()}
    rows = [tuple(r) for r in out]
    assert all(r in real for r in rows)
    assert len(set(map(tuple, np.unique(out, axis=0)))) == len(np.unique(counts.X.toarray(), axis=0))
    per_label = gen.sample(6, labels="g2")
    g2 = {tuple(r) for r in counts[counts.obs["group"] == "g2"].X.toarray()}
    assert all(tuple(r) in g2 for r in _dense(per_label.X))


def test_shuffle_keeps_gene_marginals_and_breaks_coexpression():
    data = make_counts(n_cells=300, n_genes=30, n_groups=3, seed=1)
    x = data.X.toarray()
    out = _dense(ShuffleControl(seed=0).fit(data).sample(300).X)
    np.testing.assert_allclose(np.sort(out, axis=0).mean(0), np.sort(x, axis=0).mean(0), rtol=0.15)
    real_corr = np.corrcoef(x[:, 0], x[:, 1])[0, 1]
    shuffled_corr = np.corrcoef(out[:, 0], out[:, 1])[0, 1]
    assert real_corr > 0.3 and abs(shuffled_corr) < 0.15


def test_random_control_has_no_gene_structure(counts):
    out = _dense(RandomControl(seed=0).fit(counts).sample(2000).X)
    gene_means = out.mean(0)
    assert gene_means.std() / gene_means.mean() < 0.05
    assert isinstance(RandomControl(seed=0).fit(counts).sample(3), ad.AnnData)
