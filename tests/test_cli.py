"""The command line as a user drives it: runs, listings, show --json, bad input, failing jobs, plugins."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from scldbench import registry
from scldbench.cli import app
from scldbench.generator import Generator

runner = CliRunner()

FAST_SUITE = """
name = "fast"
dataset = "pbmc68k-mini"
seeds = 1
generators = {generators}
[evaluate]
n_trees = 50
min_cluster_cells = 20
"""


def suite_file(tmp_path, generators='["positive", "random"]'):
    path = tmp_path / "fast.toml"
    path.write_text(FAST_SUITE.format(generators=generators))
    return str(path)


def test_run_then_show_json(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", suite_file(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "positive" in result.output and "RF AUC" in result.output
    shown = runner.invoke(app, ["show", str(out), "--json"])
    records = json.loads(shown.output)
    assert [r["generator"] for r in records] == ["positive", "random"]
    for r in records:
        for key in ("dataset", "generator", "seed", "status", "error", "scores", "fit_seconds", "sample_seconds"):
            assert key in r
        assert "metrics" not in r and "protocol" not in r  # scores live per protocol
        assert r["status"] == "ok" and r["dataset"] == "pbmc68k-mini"
        assert list(r["scores"]) == ["scgan-v1", "hvg-pca30-v1"]  # the default protocols
        for entry in r["scores"].values():
            assert set(entry) >= {"description", "settings", "metrics", "per_cluster", "status", "error"}
            assert entry["status"] == "ok" and entry["description"]
        assert {"rf_auc", "mmd"} <= set(r["scores"]["scgan-v1"]["metrics"]) and r["versions"]["scldbench"]
        assert {"w1", "w2", "mmd_rbf", "energy_distance"} <= set(r["scores"]["hvg-pca30-v1"]["metrics"])
        assert r["device"]
    by_name = {r["generator"]: r["scores"]["scgan-v1"] for r in records}
    assert by_name["positive"]["metrics"]["rf_auc"] < 0.7 < by_name["random"]["metrics"]["rf_auc"]
    assert by_name["positive"]["per_cluster"]  # the positive control is conditional
    assert (out / "samples").is_dir()


def test_rerun_reuses_finished_jobs(tmp_path):
    out = tmp_path / "run"
    runner.invoke(app, ["run", suite_file(tmp_path, '["random"]'), "--out", str(out)])
    first = json.loads(runner.invoke(app, ["show", str(out), "--json"]).output)[0]
    runner.invoke(app, ["run", suite_file(tmp_path, '["random"]'), "--out", str(out)])
    second = json.loads(runner.invoke(app, ["show", str(out), "--json"]).output)[0]
    assert second["reused"] and second["started_at"] == first["started_at"]


def test_rerun_with_new_settings_supersedes_the_old_record_without_deleting_it(tmp_path):
    out = tmp_path / "run"
    runner.invoke(app, ["run", suite_file(tmp_path, '["nb", "random"]'), "--out", str(out)])
    changed = '["random", { name = "nb", params = { method = "moments" } }]'
    result = runner.invoke(app, ["run", suite_file(tmp_path, changed), "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = json.loads(runner.invoke(app, ["show", str(out), "--json"]).output)
    assert sorted(r["label"] for r in records) == ["nb", "random"]
    assert next(r for r in records if r["label"] == "nb")["params"] == {"method": "moments"}
    kept = list((out / "jobs" / "superseded").glob("nb-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["params"] == {}


def test_settings_changed_back_reuse_the_superseded_record(tmp_path):
    out = tmp_path / "run"
    original = suite_file(tmp_path, '["nb"]')
    runner.invoke(app, ["run", original, "--out", str(out)])
    first = json.loads(runner.invoke(app, ["show", str(out), "--json"]).output)[0]
    changed = tmp_path / "changed"
    changed.mkdir()
    runner.invoke(
        app, ["run", suite_file(changed, '[{ name = "nb", params = { method = "moments" } }]'), "--out", str(out)]
    )
    result = runner.invoke(app, ["run", original, "--out", str(out)])
    assert result.exit_code == 0, result.output
    again = json.loads(runner.invoke(app, ["show", str(out), "--json"]).output)
    assert len(again) == 1 and again[0]["reused"] and again[0]["started_at"] == first["started_at"]
    kept = [json.loads(p.read_text()) for p in (out / "jobs" / "superseded").glob("*.json")]
    assert [r["params"] for r in kept] == [{"method": "moments"}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "pbmcc"], "unknown suite 'pbmcc'"),
        (["run", "smoke", "--data", "pbmc68k-mni"], "unknown dataset 'pbmc68k-mni'"),
        (["run", "smoke", "--generators", "randon"], "did you mean: random"),
        (["run", "smoke", "--labels", "celltype"], "label column 'celltype' is not in the data"),
        (["run", "smoke", "--device", "tpu"], "unknown device 'tpu'"),
        (["show", "/nonexistent/run"], "is not a run folder"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3  # one message, wrapped at most


def test_non_count_file_is_refused(tmp_path, pbmc_mini):
    logged = pbmc_mini.copy()
    logged.X = np.log1p(logged.X.toarray())
    path = tmp_path / "logged.h5ad"
    logged.write_h5ad(path)
    result = runner.invoke(app, ["run", "smoke", "--data", str(path), "--labels", "louvain"])
    assert result.exit_code == 2 and "looks log-normalised" in result.output


class Exploding(Generator):
    name = "exploding"

    def _fit(self, adata, labels):
        raise RuntimeError("the model diverged")

    def _sample(self, n_cells, labels, guidance):
        raise AssertionError


def test_a_failing_job_is_recorded_and_the_others_still_run(tmp_path):
    registry.register("exploding", Exploding)
    try:
        out = tmp_path / "run"
        result = runner.invoke(app, ["run", suite_file(tmp_path, '["exploding", "random"]'), "--out", str(out)])
    finally:
        registry.unregister("exploding")
    assert result.exit_code == 1
    assert "the model diverged" in result.output
    records = {r["generator"]: r for r in json.loads(runner.invoke(app, ["show", str(out), "--json"]).output)}
    assert records["exploding"]["status"] == "failed"
    assert records["exploding"]["error"] == "RuntimeError: the model diverged"
    assert records["random"]["status"] == "ok"


def test_lists(tmp_path):
    gens = runner.invoke(app, ["list", "generators"])
    assert gens.exit_code == 0 and "positive" in gens.output and "shuffle" in gens.output
    datasets = runner.invoke(app, ["list", "datasets"])
    assert "pbmc68k-mini" in datasets.output and "brain-small" in datasets.output
    suites = runner.invoke(app, ["list", "suites"])
    assert "smoke" in suites.output and "pbmc" in suites.output


def test_a_plugin_package_registers_through_the_entry_point(tmp_path, monkeypatch):
    """A third-party package with an entry point in `scldbench.generators` is found without touching the core."""
    (tmp_path / "my_plugin.py").write_text(
        textwrap.dedent("""
        import numpy as np
        from scldbench import Generator

        class GeneMeans(Generator):
            name = "gene-means"
            description = "Poisson at each gene's training mean"

            def _fit(self, adata, labels):
                self.means = np.asarray(adata.X.mean(axis=0)).ravel()

            def _sample(self, n_cells, labels, guidance):
                return self._rng.poisson(self.means, size=(n_cells, self.n_genes))
    """)
    )
    dist = tmp_path / "my_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[scldbench.generators]\ngene-means = my_plugin:GeneMeans\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    listed = runner.invoke(app, ["list", "generators"])
    assert "gene-means" in listed.output and "available" in listed.output
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", suite_file(tmp_path, '["gene-means"]'), "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(runner.invoke(app, ["show", str(out), "--json"]).output)[0]
    assert record["status"] == "ok" and record["scores"]["scgan-v1"]["metrics"]["rf_auc"] > 0.5
    sys.modules.pop("my_plugin", None)


class SelfChecking(Generator):
    """Poisson at gene means, reporting how many unseen real cells its diagnostics saw."""

    name = "self-checking"

    def _fit(self, adata, labels):
        self.means = np.asarray(adata.X.mean(axis=0)).ravel()

    def _sample(self, n_cells, labels, guidance):
        return self._rng.poisson(self.means, size=(n_cells, self.n_genes))

    def diagnose(self, unseen, test, *, protocol, seed, n_trees=None):
        return {"unseen_cells": unseen.n_obs, "test_cells": test.n_obs, "protocol": protocol}


def test_generator_diagnostics_land_in_the_record(tmp_path):
    registry.register("self-checking", SelfChecking)
    try:
        out = tmp_path / "run"
        result = runner.invoke(app, ["run", suite_file(tmp_path, '["self-checking"]'), "--out", str(out)])
    finally:
        registry.unregister("self-checking")
    assert result.exit_code == 0, result.output
    record = json.loads(runner.invoke(app, ["show", str(out), "--json"]).output)[0]
    assert record["diagnostics"] == {"unseen_cells": 140, "test_cells": 140, "protocol": "scgan-v1"}
