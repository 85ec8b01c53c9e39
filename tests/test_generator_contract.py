"""The Generator base class: validation, label requests, seeding, output checks, persistence."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from scldbench import Generator, ScldbenchError
from scldbench.baselines.controls import PositiveControl, RandomControl, ShuffleControl
from scldbench.generator import largest_remainder
from tests.conftest import make_counts


class MeanGenerator(Generator):
    """Poisson around the per-label mean: a tiny conditional generator for contract tests."""

    name = "mean-test"
    conditional = True

    def __init__(self, *, scale: float = 1.0, seed: int = 0, device: str = "auto") -> None:
        super().__init__(seed=seed, device=device)
        self.scale = scale

    def _fit(self, adata, labels):
        x = adata.X.toarray()
        self.means = {lab: x[labels == lab].mean(0) for lab in np.unique(labels)}

    def _sample(self, n_cells, labels, guidance):
        labels = labels if labels is not None else self.proportional_labels(n_cells)
        return self._rng.poisson(np.stack([self.means[lab] for lab in labels]) * self.scale), labels


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


@pytest.mark.parametrize("cls", [MeanGenerator, PositiveControl, RandomControl, ShuffleControl])
def test_save_load_gives_identical_samples(cls, counts, tmp_path):
    gen = cls.create(seed=5).fit(counts, "group")
    gen.save(tmp_path / "model")
    loaded = (cls if cls is MeanGenerator else Generator).load(tmp_path / "model")  # MeanGenerator is unregistered
    assert type(loaded) is cls
    np.testing.assert_array_equal(_dense(gen.sample(15, seed=2).X), _dense(loaded.sample(15, seed=2).X))


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
