"""Large data: the sparse path (sparse normalisation, implicitly centred PCA) against the dense one, and small
jobs' scores unchanged by it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from scldbench import registry
from scldbench.counts.numpy import (
    _scale_rows,
    log_normalise,
    log_normalise_sparse,
    normalise_total,
    normalise_total_sparse,
)
from scldbench.metrics.memorisation import fit_log_pca
from scldbench.metrics.mmd import mmd_multi_kernel
from scldbench.metrics.pca import CentredProjection, fit_pca, sparse_path
from scldbench.metrics.rf_auc import rf_auc
from scldbench.protocols import get_protocol


def clustered(n_cells: int, n_genes: int, seed: int, shift: float = 1.0) -> sp.csr_matrix:
    """NB-like counts of four cell types with their own marker genes; `shift` scales the markers."""
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(99).lognormal(-1.0, 1.5, n_genes)
    groups = np.arange(n_cells) % 4
    means = np.tile(base, (4, 1))
    for k in range(4):
        means[k, k * 20 : (k + 1) * 20] *= 1 + 5 * shift
    lib = rng.lognormal(0.0, 0.4, (n_cells, 1))
    counts = rng.poisson(means[groups] * lib * rng.gamma(2.0, 0.5, (n_cells, n_genes)))
    counts[:, 0] = 0  # a gene no cell expresses, and an empty cell
    counts[5] = 0
    return sp.csr_matrix(counts.astype(np.float32))


# ---------------------------------------------------------------- the pieces


def test_sparse_normalisation_stores_the_dense_values():
    x = clustered(300, 200, seed=1)
    dense = normalise_total(x, 20_000, dtype=np.float32)
    sparse = normalise_total_sparse(x, 20_000, dtype=np.float32)
    assert sparse.dtype == np.float32 and np.array_equal(sparse.toarray(), dense)
    for divide_last in (False, True):
        assert np.array_equal(normalise_total_sparse(x, 1e4, divide_last=divide_last).toarray(),
                              normalise_total(x, 1e4, divide_last=divide_last))
    assert np.array_equal(log_normalise_sparse(x).toarray(), log_normalise(x))
    assert not sparse[5].toarray().any()
    blocks, factors = sp.csr_matrix(x, dtype=np.float64, copy=True), np.arange(1.0, 301.0)
    _scale_rows(blocks, factors, divide=False, block=7)
    assert np.array_equal(blocks.toarray(), x.toarray().astype(np.float64) * factors[:, None])


@pytest.mark.parametrize("shape", [(700, 900), (900, 700)])
def test_implicitly_centred_pca_agrees_with_dense_pca(shape):
    x = normalise_total_sparse(clustered(*shape, seed=2), 1e4, dtype=np.float32)
    dense = PCA(n_components=50, random_state=3).fit(x.toarray())
    sparse = fit_pca(x, 50, 3)
    assert isinstance(sparse, CentredProjection)
    assert np.allclose(sparse.components, dense.components_, atol=2e-4)
    got, want = sparse.transform(x), dense.transform(x.toarray())
    assert np.abs(got - want).max() < 1e-4 * np.abs(want).max()


def test_sparse_pca_takes_the_solver_dense_input_would_get():
    tall = normalise_total_sparse(clustered(3000, 120, seed=4), 1e4)
    got = fit_pca(tall, 10, 0)
    assert isinstance(got, PCA) and got._fit_svd_solver == "covariance_eigh"
    want = PCA(n_components=10, random_state=0).fit(tall.toarray())
    assert np.allclose(np.abs(got.components_), np.abs(want.components_), atol=1e-8)
    small = normalise_total_sparse(clustered(200, 300, seed=5), 1e4)
    got = fit_pca(small, 170, 0)
    assert isinstance(got, PCA) and got._fit_svd_solver == "full"
    assert np.array_equal(got.transform(small.toarray()), PCA(170, random_state=0).fit(small.toarray()).transform(
        small.toarray()))


def test_sparse_path_rule():
    assert not sparse_path(1000, 100_000, 100_000_000)
    assert sparse_path(1001, 100_000, 100_000_000)
    assert not sparse_path(10**9, 10**9, None)


def test_rf_auc_on_sparse_input_agrees_with_dense_input():
    real = normalise_total_sparse(clustered(600, 800, seed=6), 2e4, dtype=np.float32)
    gen = normalise_total_sparse(clustered(600, 800, seed=7, shift=0.6), 2e4, dtype=np.float32)
    dense = rf_auc(real.toarray(), gen.toarray(), n_trees=100, seed=1, n_jobs=1)
    sparse = rf_auc(real, gen, n_trees=100, seed=1, n_jobs=1)
    assert 0.6 < dense < 0.99
    assert sparse == pytest.approx(dense, abs=0.01)


# ---------------------------------------------------------------- protocols


@pytest.mark.parametrize("name", ["scgan-v1", "logpca-v1"])
def test_sparse_path_of_a_protocol_agrees_with_its_dense_path(name):
    # enough cells and trees that the forest's AUC is stable against rounding-level changes of its features
    real, gen, train = clustered(1000, 900, seed=8), clustered(1000, 900, seed=9, shift=0.7), clustered(900, 900, 10)
    protocol = get_protocol(name)
    assert protocol.dense_limit is not None and not sparse_path(2900, 900, protocol.dense_limit)
    dense = protocol.evaluate(real, gen, reference=train, seed=2, n_trees=300)
    forced = dataclasses.replace(protocol, dense_limit=1000).evaluate(real, gen, reference=train, seed=2,
                                                                      n_trees=300)
    assert 0.6 < dense["rf_auc"] < 0.99
    assert forced["rf_auc"] == pytest.approx(dense["rf_auc"], abs=0.01)
    assert forced["mmd"] == pytest.approx(dense["mmd"], rel=1e-3)


def main_rf_mmd(name: str, real_test, generated, reference, seed: int, n_trees: int) -> dict[str, float]:
    """Whole-data scgan-v1 / logpca-v1 scores computed as the code before the sparse path did (commit fc759dd):
    dense normalised values, a copy of them split by train_test_split, scikit-learn's PCA."""
    def transform(x):
        if name == "scgan-v1":
            return normalise_total(x, 20_000, dtype=np.float32)
        return np.log1p(normalise_total(x, 1e4, dtype=np.float32))

    real, gen = transform(real_test), transform(generated)
    basis = transform(reference) if name == "logpca-v1" else real
    pca = PCA(n_components=min(50, basis.shape[0] - 1, basis.shape[1]), random_state=seed).fit(basis)
    x, y = np.vstack([real, gen]), np.r_[np.zeros(len(real)), np.ones(len(gen))]
    x_fit, x_eval, y_fit, y_eval = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
    rf_pca = PCA(n_components=min(50, *x_fit.shape), random_state=seed).fit(x_fit)
    forest = RandomForestClassifier(n_estimators=n_trees, random_state=seed, n_jobs=1)
    forest.fit(rf_pca.transform(x_fit), y_fit)
    auc = roc_auc_score(y_eval, forest.predict_proba(rf_pca.transform(x_eval))[:, 1])
    return {"rf_auc": float(auc), "mmd": mmd_multi_kernel(pca.transform(real), pca.transform(gen), k=25)}


@pytest.mark.parametrize("name", ["scgan-v1", "logpca-v1"])
def test_below_the_limit_a_protocol_scores_exactly_as_before(name):
    real, gen, train = clustered(700, 900, seed=11), clustered(700, 900, seed=12, shift=0.8), clustered(900, 900, 13)
    got = get_protocol(name).evaluate(real, gen, reference=train, seed=5, n_trees=60)
    assert got == main_rf_mmd(name, real, gen, train, seed=5, n_trees=60)


def test_below_the_limit_the_extras_embedding_is_as_before():
    train, test, gen = clustered(900, 700, seed=14), clustered(300, 700, seed=15), clustered(300, 700, seed=16)
    pca = PCA(n_components=50, random_state=2).fit(log_normalise(train))
    want = [pca.transform(log_normalise(x)) for x in (train, test, gen)]
    got = fit_log_pca(train, test, gen, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    close = fit_log_pca(train, test, gen, seed=2, sparse=True)
    assert all(np.abs(a - b).max() < 1e-6 * np.abs(b).max() for a, b in zip(close, want, strict=True))


def nb_job(prepared):
    from scldbench.scoring import test_composition

    composition = test_composition(prepared)
    model = registry.get_generator("nb")(seed=0).fit(prepared.train, prepared.labels_key)
    return model.sample(sum(composition.values()), labels=composition, seed=0)


def test_a_job_on_the_sparse_path_records_it_and_stays_close(pbmc_prepared):
    from scldbench.record import JobRecord
    from scldbench.scoring import ScoringContext, missing_protocols, score_protocol
    from scldbench.suite import EvaluateSettings

    settings = EvaluateSettings(n_trees=30, min_cluster_cells=20)
    cells = nb_job(pbmc_prepared)
    protocol = get_protocol("scgan-v1")
    # the whole data (280 cells) and the extras on the sparse path, the clusters (at most 60 cells) not
    forced = dataclasses.replace(protocol, dense_limit=100_000)
    dense = score_protocol(protocol, ScoringContext(pbmc_prepared), cells, settings, 0, shared={}, with_extras=True)
    entry = score_protocol(forced, ScoringContext(pbmc_prepared), cells, settings, 0, shared={}, with_extras=True)
    assert entry.ok, entry.error
    assert entry.settings["sparse_path"] == ["all", "extras"]
    assert entry.per_cluster == dense.per_cluster
    # 280 cells and 30 trees: a PCA changed by rounding moves single splits, so the AUC only roughly
    assert entry.metrics["rf_auc"] == pytest.approx(dense.metrics["rf_auc"], abs=0.05)
    for name in ("precision", "recall", "coverage", "tstr_macro_f1"):
        assert entry.metrics[name] == pytest.approx(dense.metrics[name], abs=0.02), name
    for name in ("mmd", "memorisation_gen_to_train_median"):
        assert entry.metrics[name] == pytest.approx(dense.metrics[name], rel=1e-3), name
    # how the data was scored is not a setting the suite asks for: such a record needs no rescoring
    record = JobRecord(job_id="nb-seed0", key="k", generator="nb", label="nb", seed=0, status="ok",
                       scores={"scgan-v1": entry})
    assert missing_protocols(record, ["scgan-v1"], settings) == []


def test_leaderboards_do_not_split_jobs_by_their_sparse_parts():
    from scldbench.report.leaderboard import build_boards
    from tests.record_factory import SETTINGS, job

    records = [job("a", 0, 0.6, 0.1, settings=SETTINGS | {"sparse_path": ["all"]}),
               job("b", 0, 0.7, 0.2, settings=SETTINGS | {"sparse_path": ["all", "3"]}),
               job("c", 0, 0.8, 0.3)]
    boards = build_boards(records)
    assert len(boards) == 1 and boards[0].settings == SETTINGS and boards[0].variant in ("", None)
    assert len(build_boards(records + [job("d", 0, 0.8, 0.3, settings=SETTINGS | {"n_trees": 10})])) == 2
