"""Counts in a layer: the usual scanpy AnnData (log values in X, counts in layers["counts"]) is read through
`--layer`, a suite's `layer = "..."` and `Generator.fit(..., layer=...)`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from scldbench import ScldbenchError
from scldbench.cli import app
from scldbench.data import PrepareSettings, prepare
from scldbench.registry import get_generator
from scldbench.suite import load_suite
from tests.conftest import make_counts

runner = CliRunner()

TINY_SUITE = """
name = "tiny"
dataset = "pbmc68k-mini"
protocols = ["scgan-v1"]
seeds = 1
generators = {generators}
{extra}
[prepare]
min_genes = 1
min_cells = 1
[evaluate]
n_trees = 20
per_cluster = false
extra_metrics = false
save_samples = false
"""


def scanpy_layout(n_cells: int = 120, seed: int = 0):
    """Log-normalised values in X and the raw counts in layers["counts"], as scanpy tutorials leave them."""
    adata = make_counts(n_cells=n_cells, n_genes=40, seed=seed)
    counts = adata.X.copy()
    totals = np.asarray(counts.sum(axis=1)).ravel()
    adata.layers["counts"] = counts
    adata.layers["spliced"] = counts.copy()
    adata.X = sp.csr_matrix(np.log1p(counts.toarray() / totals[:, None] * 1e4))
    return adata


def write_tiny(tmp_path, extra: str = "", generators: str = '["positive", "random"]') -> str:
    """A suite of seconds: the controls, one protocol, few trees, no extras (a key or two added by `extra`)."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SUITE.format(extra=extra, generators=generators))
    return str(path)


def test_prepare_reads_the_counts_from_the_layer():
    adata = scanpy_layout()
    prepared = prepare(adata, PrepareSettings(labels_key="group"), use_cache=False, layer="counts")
    rows = [adata.obs_names.get_loc(name) for name in prepared.train.obs_names]
    np.testing.assert_array_equal(prepared.train.X.toarray(), adata.layers["counts"][rows].toarray())


def test_the_fingerprint_names_the_layer():
    adata = scanpy_layout()
    plain = adata.copy()
    plain.X = adata.layers["counts"].copy()
    settings = PrepareSettings(labels_key="group")
    from_x = prepare(plain, settings, use_cache=False).fingerprint
    from_counts = prepare(adata, settings, use_cache=False, layer="counts").fingerprint
    from_spliced = prepare(adata, settings, use_cache=False, layer="spliced").fingerprint
    assert len({from_x, from_counts, from_spliced}) == 3  # equal matrices, other choices: other prepared data


def test_log_values_in_x_are_refused_naming_the_option_and_the_layers():
    with pytest.raises(ScldbenchError) as info:
        prepare(scanpy_layout(), PrepareSettings(labels_key="group"), use_cache=False)
    message = str(info.value)
    assert "looks log-normalised" in message and "--layer" in message and "layer=" in message
    assert "counts, spliced" in message and "\n" not in message


def test_an_unknown_layer_names_the_layers_there_are():
    with pytest.raises(ScldbenchError, match=r"layer 'count' is not in the data \(did you mean: counts"
                                             r".*its layers: counts, spliced"):
        prepare(scanpy_layout(), PrepareSettings(labels_key="group"), use_cache=False, layer="count")
    with pytest.raises(ScldbenchError, match="which has no layers"):
        prepare(make_counts(), PrepareSettings(labels_key="group"), use_cache=False, layer="counts")


def test_a_file_without_x_is_read_from_its_layer(tmp_path):
    adata = scanpy_layout()
    adata.X = None
    path = tmp_path / "no-x.h5ad"
    adata.write_h5ad(path)
    from scldbench.data import load_dataset

    loaded, _ = load_dataset(str(path))
    with pytest.raises(ScldbenchError, match="the dataset has no X; choose the layer.*counts, spliced"):
        prepare(loaded, PrepareSettings(labels_key="group"), use_cache=False)
    prepared = prepare(loaded, PrepareSettings(labels_key="group"), use_cache=False, layer="counts")
    assert prepared.train.n_obs > 0 and prepared.train.X.sum() > 0


def test_fit_takes_the_layer_as_counts():
    adata = scanpy_layout()
    model = get_generator("nb").create(seed=0).fit(adata, "group", layer="counts")
    cells = model.sample(30, labels="g1", seed=1)
    assert list(cells.var_names) == list(adata.var_names) and np.all(cells.X.toarray() >= 0)
    with pytest.raises(ScldbenchError, match=r"adata \(X\) holds non-integer.*fit\(\.\.\., layer=NAME\).*counts"):
        get_generator("nb").create(seed=0).fit(adata, "group")
    with pytest.raises(ScldbenchError, match="layer 'raw' is not in the data.*its layers: counts, spliced"):
        get_generator("nb").create(seed=0).fit(adata, "group", layer="raw")


def portal_layout(tmp_path):
    """Counts of every gene in adata.raw, log values of 30 of them in X (the HVG subset scanpy leaves), read back
    from a file as a portal serves it."""
    full = make_counts(n_cells=120, n_genes=40)
    adata = full[:, :30].copy()
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()))
    adata.raw = full
    adata.write_h5ad(tmp_path / "portal.h5ad")
    from scldbench.data import load_dataset

    return load_dataset(str(tmp_path / "portal.h5ad"))[0], full


def test_counts_in_adata_raw_are_read_as_layer_raw_with_all_their_genes(tmp_path):
    adata, full = portal_layout(tmp_path)
    with pytest.raises(ScldbenchError, match=r"looks log-normalised.*layers in the data: raw \(adata.raw\)"):
        prepare(adata, PrepareSettings(labels_key="group"), use_cache=False)
    prepared = prepare(adata, PrepareSettings(labels_key="group"), use_cache=False, layer="raw")
    assert list(prepared.train.var_names) == list(full.var_names)
    rows = [full.obs_names.get_loc(name) for name in prepared.train.obs_names]
    np.testing.assert_array_equal(prepared.train.X.toarray(), full.X[rows].toarray())
    model = get_generator("nb").create(seed=0).fit(adata, "group", layer="raw")
    assert model.sample(5, seed=1).n_vars == 40
    # a layer of that name is the layer, not adata.raw
    adata.layers["raw"] = full[:, :30].X.copy()
    assert prepare(adata, PrepareSettings(labels_key="group"), use_cache=False, layer="raw").train.n_vars == 30


def test_log_values_in_adata_raw_are_refused_like_any_layer(tmp_path):
    adata, _ = portal_layout(tmp_path)
    adata.raw = adata.copy()  # `adata.raw = adata` after log1p, as scanpy's tutorial does
    with pytest.raises(ScldbenchError, match=r"\(layer 'raw'\) holds non-integer values.*no other layers"):
        prepare(adata, PrepareSettings(labels_key="group"), use_cache=False, layer="raw")


def test_suite_layer_key_is_validated(tmp_path):
    assert load_suite(write_tiny(tmp_path, 'layer = "counts"')).layer == "counts"
    assert load_suite(write_tiny(tmp_path)).layer is None
    for bad, problem in (("layer = 3", "must be a string"), ('layer = " "', "must be a non-empty string")):
        with pytest.raises(ScldbenchError, match=f"key 'layer': {problem}"):
            load_suite(write_tiny(tmp_path, bad))


def test_run_reads_a_layer_from_the_command_line_or_the_suite(tmp_path):
    data = tmp_path / "cells.h5ad"
    scanpy_layout().write_h5ad(data)
    out = tmp_path / "run"
    base = ["run", write_tiny(tmp_path), "--data", str(data), "--labels", "group", "--out", str(out), "--quiet"]

    refused = runner.invoke(app, base)
    assert refused.exit_code == 2 and "--layer" in refused.output and "counts, spliced" in refused.output

    unknown = runner.invoke(app, [*base, "--layer", "countz"])
    assert unknown.exit_code == 2 and len(unknown.output.strip().splitlines()) <= 3
    assert "layer 'countz' is not in the data" in unknown.output and "counts, spliced" in unknown.output

    done = runner.invoke(app, [*base, "--layer", "counts"])
    assert done.exit_code == 0, done.output
    assert "counts from layer 'counts'" in done.output
    assert json.loads((out / "run.json").read_text())["layer"] == "counts"

    suite_layer = runner.invoke(app, ["run", write_tiny(tmp_path, 'layer = "counts"'), "--data", str(data),
                                      "--labels", "group", "--out", str(tmp_path / "run2"), "--quiet"])
    assert suite_layer.exit_code == 0, suite_layer.output
    records = json.loads(runner.invoke(app, ["show", str(tmp_path / "run2"), "--json"]).output)
    assert [r["status"] for r in records] == ["ok", "ok"]
