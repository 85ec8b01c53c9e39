"""The public Python API: what `import scldbench` offers, `evaluate`, `run_suite`, and sampled cells' names."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import scldbench
from scldbench import Generator, ScldbenchError
from scldbench.protocols import get_protocol
from tests.conftest import make_counts
from tests.test_layers import scanpy_layout, write_tiny


def test_import_is_light_and_every_public_name_resolves():
    code = ("import sys, scldbench; print(sorted(m for m in ('torch', 'anndata', 'pandas', 'scanpy', 'sklearn') "
            "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
    assert set(scldbench.__all__) == {"Generator", "ScldbenchError", "__version__", "get_generator",
                                      "list_generators", "evaluate", "run_suite", "RunRequest", "load_suite",
                                      "load_results", "JobRecord"}
    for name in scldbench.__all__:
        assert getattr(scldbench, name) is not None and name in dir(scldbench)
    assert scldbench.get_generator("nb").name == "nb"
    assert "nb" in {info.name for info in scldbench.list_generators()}
    with pytest.raises(AttributeError, match="no attribute 'fit'"):
        scldbench.fit  # noqa: B018


PUBLIC = [Generator.fit, Generator.sample, Generator.save, Generator.load, scldbench.get_generator,
          scldbench.list_generators, scldbench.evaluate, scldbench.run_suite, scldbench.load_results,
          scldbench.load_suite, scldbench.JobRecord.from_json, scldbench.JobRecord.to_json]


@pytest.mark.parametrize("func", PUBLIC, ids=lambda f: f.__qualname__)
def test_public_functions_have_numpydoc_docstrings(func):
    doc = inspect.getdoc(func)
    assert "Returns\n-------" in doc
    params = [p for p in inspect.signature(func).parameters if p not in ("self", "cls")]
    if params:
        assert "Parameters\n----------" in doc
        for param in params:
            assert re.search(rf"^{param}\b", doc, flags=re.MULTILINE), f"{param} is not documented"


def test_evaluate_gives_the_protocol_scores_for_anndata_arrays_and_sparse(pbmc_prepared):
    test, holdout = pbmc_prepared.test, pbmc_prepared.holdout
    scores = scldbench.evaluate(test, holdout, n_trees=50, seed=0)
    assert scores == get_protocol("scgan-v1").evaluate(test.X, holdout.X, seed=0, n_trees=50)
    assert scldbench.evaluate(test.X.toarray(), sp.csc_matrix(holdout.X), n_trees=50, seed=0) == scores
    rng = np.random.default_rng(0)
    noise = rng.poisson(float(test.X.mean()), size=holdout.shape)
    far = scldbench.evaluate(test, noise, n_trees=50, seed=0)
    assert scores["rf_auc"] < 0.75 < far["rf_auc"] and scores["mmd"] < far["mmd"]


def test_evaluate_under_a_protocol_that_fits_on_training_cells(pbmc_prepared):
    test, holdout = pbmc_prepared.test, pbmc_prepared.holdout
    with pytest.raises(ScldbenchError, match="reference="):
        scldbench.evaluate(test, holdout, protocol="hvg-pca30-v1")
    scores = scldbench.evaluate(test, holdout, protocol="hvg-pca30-v1", reference=pbmc_prepared.train)
    assert {"w1", "w2", "mmd_rbf", "energy_distance"} <= set(scores)
    with pytest.raises(ScldbenchError, match="unknown protocol 'scgan'.*did you mean: scgan-v1"):
        scldbench.evaluate(test, holdout, protocol="scgan")


def test_evaluate_refuses_what_it_cannot_score_in_one_line():
    real = scanpy_layout(seed=1)
    generated = make_counts(n_cells=120, n_genes=40, seed=2)
    with pytest.raises(ScldbenchError, match=r"real \(X\) holds non-integer.*layer=NAME.*counts, spliced"):
        scldbench.evaluate(real, generated)
    assert 0 <= scldbench.evaluate(real, generated, layer="counts", n_trees=20)["rf_auc"] <= 1
    with pytest.raises(ScldbenchError, match="generated has 10 genes but real has 40"):
        scldbench.evaluate(real, generated[:, :10], layer="counts")
    with pytest.raises(ScldbenchError, match="name different genes"):
        scldbench.evaluate(real, generated[:, ::-1], layer="counts")
    with pytest.raises(ScldbenchError, match="must be an AnnData, a numpy array or a scipy sparse matrix"):
        scldbench.evaluate(real, generated.X.toarray().tolist(), layer="counts")


@pytest.mark.parametrize("name", ["nb", "random", "shuffle"])
def test_sampled_cells_have_names_unique_across_samples(name):
    model = scldbench.get_generator(name).create(seed=0).fit(make_counts(), "group")
    first, second = model.sample(20, seed=1), model.sample(20, seed=2)
    assert first.obs_names[0] == f"{name}-1-0" and first.obs_names.is_unique
    assert not set(first.obs_names) & set(second.obs_names)
    assert ad.concat([first, second, model.sample(5), model.sample(5)]).obs_names.is_unique


def test_run_suite_and_load_results_from_python(tmp_path):
    data = tmp_path / "cells.h5ad"
    scanpy_layout().write_h5ad(data)
    suite = scldbench.load_suite(write_tiny(tmp_path))
    request = scldbench.RunRequest(suite, out=str(tmp_path / "run"), data=str(data), labels="group",
                                   layer="counts", seed=4)
    result = scldbench.run_suite(request)
    assert [(r.label, r.seed, r.status) for r in result.records] == [("positive", 4, "ok"), ("random", 4, "ok")]
    frame = scldbench.load_results(tmp_path / "run")
    assert {"rf_auc", "mmd"} <= set(frame.metric) and set(frame.seed) == {4}
    with pytest.raises(ScldbenchError, match="not both"):
        scldbench.run_suite(scldbench.RunRequest(suite, out=str(tmp_path / "other"), seed=1, seeds=2))


def test_run_suite_takes_an_anndata_in_memory_as_a_file_of_it(tmp_path):
    adata = scanpy_layout()
    before = adata.copy()
    adata.write_h5ad(tmp_path / "cells.h5ad")
    suite = scldbench.load_suite(write_tiny(tmp_path))
    common = {"labels": "group", "layer": "counts", "seed": 1, "executor": "serial"}
    in_memory = scldbench.run_suite(scldbench.RunRequest(suite, out=tmp_path / "memory", data=adata, **common))
    from_file = scldbench.run_suite(scldbench.RunRequest(suite, out=tmp_path / "file",
                                                         data=str(tmp_path / "cells.h5ad"), **common))
    assert in_memory.dataset == "AnnData 120 x 40" and in_memory.info["requested_dataset"] == "AnnData 120 x 40"
    for a, b in zip(in_memory.records, from_file.records, strict=True):
        assert a.status == b.status == "ok" and a.fingerprint == b.fingerprint
        np.testing.assert_equal(a.scores["scgan-v1"].metrics, b.scores["scgan-v1"].metrics)  # NaNs alike
    # the caller's AnnData is left as it was
    assert list(adata.layers) == ["counts", "spliced"] and list(adata.obs.columns) == list(before.obs.columns)
    np.testing.assert_array_equal(adata.X.toarray(), before.X.toarray())
