"""The plugin in examples/my-generator, installed with pip as a user would, is listed and benchmarks."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scldbench import registry
from scldbench.cli import app

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my-generator"
runner = CliRunner()


@pytest.fixture()
def installed_example(tmp_path, monkeypatch):
    """pip-install the example into a folder on sys.path, offline (no dependencies, no isolated build)."""
    source = shutil.copytree(EXAMPLE, tmp_path / "source", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    monkeypatch.syspath_prepend(str(target))
    importlib.invalidate_caches()
    yield target
    for module in [m for m in sys.modules if m == "my_generator" or m.startswith("my_generator.")]:
        del sys.modules[module]


def test_example_plugin_is_listed_and_runs(installed_example, tmp_path):
    info = {i.name: i for i in registry.list_generators()}["cluster-poisson"]
    assert info.available, info.hint
    listed = runner.invoke(app, ["list", "generators"])
    row = next(line for line in listed.output.splitlines() if "cluster-poisson" in line)
    assert "available" in row and "unavailable" not in row

    suite = tmp_path / "tiny.toml"
    suite.write_text(
        'name = "tiny"\ndataset = "pbmc68k-mini"\nseeds = 1\ngenerators = ["cluster-poisson"]\n'
        "[evaluate]\nn_trees = 50\nmin_cluster_cells = 20\n[params.cluster-poisson]\npseudocount = 0.5\n"
    )
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(suite), "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(runner.invoke(app, ["show", str(out), "--json"]).output)[0]
    assert record["status"] == "ok", record["error"]
    assert record["params"]["pseudocount"] == 0.5
    # an independent Poisson per cluster is told apart from real cells, but not as easily as pure noise
    scores = record["scores"]["scgan-v1"]
    assert 0.5 < scores["metrics"]["rf_auc"] <= 1.0 and scores["per_cluster"]
