"""Command-line conveniences: --version, -h, shell completion, --seed, --dry-run, --metrics and tables that a
100-column terminal shows without wrapping."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import scldbench
from scldbench import cli, registry
from scldbench.cli import app
from scldbench.generator import Generator
from tests.conftest import make_counts
from tests.test_layers import write_tiny

runner = CliRunner()
LONG_ERROR = "the model diverged at step 912 " + "because the learning rate was far too high for this data " * 6


class LongWinded(Generator):
    name = "long-winded"

    def _fit(self, adata, labels):
        raise RuntimeError(LONG_ERROR)

    def _sample(self, n_cells, labels, guidance):
        raise AssertionError


def tiny_run(tmp_path, generators: str = '["positive", "random"]') -> list[str]:
    """`scldbench run` of a suite of seconds on 120 small cells."""
    data = tmp_path / "cells.h5ad"
    if not data.exists():
        make_counts(n_cells=120, n_genes=40).write_h5ad(data)
    return ["run", write_tiny(tmp_path, generators=generators), "--data", str(data), "--labels", "group"]


@pytest.fixture()
def narrow(monkeypatch):
    """The CLI's consoles 100 columns wide, as on a terminal with COLUMNS=100."""
    monkeypatch.setattr(cli.console, "width", 100)
    monkeypatch.setattr(cli.err_console, "width", 100)


def test_version_and_short_help():
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.strip() == f"scldbench {scldbench.__version__}"
    assert runner.invoke(app, ["-h"]).output == runner.invoke(app, ["--help"]).output
    run_help = runner.invoke(app, ["run", "-h"])
    assert run_help.exit_code == 0
    for option in ("--layer", "--seed ", "--seeds", "--dry-run", "--metrics"):
        assert option in run_help.output


def test_shell_completion_is_offered_and_completes(monkeypatch):
    assert "--install-completion" in runner.invoke(app, ["--help"]).output
    # name the shell: detecting it from the parent processes depends on how the tests were started
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    script = runner.invoke(app, ["--show-completion", "bash"], prog_name="scldbench")
    assert script.exit_code == 0, script.output
    assert "_SCLDBENCH_COMPLETE=complete_bash" in script.output
    env = {"_SCLDBENCH_COMPLETE": "complete_bash", "COMP_WORDS": "scldbench run --se", "COMP_CWORD": "2"}
    completed = runner.invoke(app, [], prog_name="scldbench", env=env)
    assert completed.output.split() == ["--seeds", "--seed"]


def test_seed_runs_one_given_seed_and_excludes_seeds(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, [*tiny_run(tmp_path), "--seed", "3", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    records = json.loads(runner.invoke(app, ["show", str(out), "--json"]).output)
    assert {r["seed"] for r in records} == {3}
    both = runner.invoke(app, [*tiny_run(tmp_path), "--seed", "1", "--seeds", "2", "--out", str(out)])
    assert both.exit_code == 2 and len(both.output.strip().splitlines()) == 1
    assert "either --seeds N" in both.output and "not both" in both.output


def test_dry_run_lists_the_jobs_and_what_the_folder_already_holds(tmp_path, narrow):
    out = tmp_path / "run"
    args = [*tiny_run(tmp_path), "--seeds", "2", "--out", str(out)]
    planned = runner.invoke(app, [*args, "--dry-run"])
    assert planned.exit_code == 0, planned.output
    assert "4 to fit, 0 to reuse" in planned.output and "nothing was fitted" in planned.output
    assert not (out / "jobs").exists() and not (out / "run.json").exists()
    rows = [line for line in planned.output.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == ["positive", "positive", "random", "random"]
    assert all(row.split("│")[3].strip().startswith(("positive-seed", "random-seed")) for row in rows)

    one = runner.invoke(app, [*tiny_run(tmp_path), "--seed", "1", "--out", str(out), "--quiet"])
    assert one.exit_code == 0, one.output
    again = runner.invoke(app, [*args, "--dry-run"])
    assert "2 to fit, 2 to reuse" in again.output
    job_ids = {p.stem for p in (out / "jobs").glob("*.json")}
    reused = [line for line in again.output.splitlines() if "reuse" in line and "│" in line]
    assert {row.split("│")[3].strip() for row in reused} == job_ids


def test_a_failed_job_is_one_line_in_a_100_column_table(tmp_path, narrow):
    registry.register("long-winded", LongWinded)
    try:
        out = tmp_path / "run"
        args = tiny_run(tmp_path, generators='["long-winded", "positive", "random"]')
        result = runner.invoke(app, [*args, "--out", str(out), "--quiet"])
    finally:
        registry.unregister("long-winded")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 100
    failed = [line for line in lines if "long-winded" in line and "│" in line]
    assert len(failed) == 1 and "1 failed: RuntimeError: the model diverged" in failed[0] and "…" in failed[0]
    record = next(r for r in json.loads(runner.invoke(app, ["show", str(out), "--json"]).output)
                  if r["label"] == "long-winded")
    assert record["error"] == f"RuntimeError: {LONG_ERROR.strip()}"


def test_show_is_compact_by_default_and_gives_every_metric_on_request(tmp_path, narrow):
    out = tmp_path / "run"
    assert runner.invoke(app, [*tiny_run(tmp_path), "--out", str(out), "--quiet"]).exit_code == 0
    compact = runner.invoke(app, ["show", str(out)])
    assert compact.exit_code == 0 and max(len(line) for line in compact.output.splitlines()) <= 100
    header = next(line for line in compact.output.splitlines() if "generator" in line)
    assert [c.strip() for c in header.strip("┃").split("┃")] == ["generator", "seeds", "RF AUC", "MMD", "fit s",
                                                                  "status"]
    full = runner.invoke(app, ["show", str(out), "--metrics", "all"])
    assert full.exit_code == 0 and max(len(line) for line in full.output.splitlines()) <= 100
    rows = {line.split("│")[1].strip() for line in full.output.splitlines() if line.startswith("│")}
    assert {"rf_auc", "mmd", "gene_corr_all", "fit s", "sample s", "fit +MB", "status"} <= rows
    chosen = runner.invoke(app, ["show", str(out), "--metrics", "gene_corr_all"])
    assert "gene corr (all)" in chosen.output and "RF AUC" not in chosen.output
    typo = runner.invoke(app, ["show", str(out), "--metrics", "rf_auk"])
    assert typo.exit_code == 2 and "did you mean: rf_auc" in typo.output
    # a real process into a pipe follows COLUMNS, as a terminal of that width would
    env = dict(os.environ, COLUMNS="100")
    piped = subprocess.run([sys.executable, "-c", "from scldbench.cli import main; main()", "show", str(out),
                            "--metrics", "all"], capture_output=True, text=True, env=env, check=True).stdout
    assert "sample s" in piped and max(len(line) for line in piped.splitlines()) <= 100


def test_run_refuses_an_unknown_metric_before_running(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, [*tiny_run(tmp_path), "--out", str(out), "--metrics", "rf_auk"])
    assert result.exit_code == 2 and "did you mean: rf_auc" in result.output and not out.exists()
