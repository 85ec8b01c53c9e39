"""Progress people can follow: plain log lines off a terminal, a heartbeat for long stages, --quiet."""

from __future__ import annotations

import io
import re
import time
from types import SimpleNamespace

from typer.testing import CliRunner

from scldbench.cli import app
from scldbench.progress import START, LogReporter, main_scores
from scldbench.record import JobRecord

SUITE = """
name = "fast"
dataset = "pbmc68k-mini"
seeds = 1
generators = ["positive", "random"]
[evaluate]
n_trees = 50
extra_metrics = false
per_cluster = false
"""


def _suite(tmp_path):
    path = tmp_path / "fast.toml"
    path.write_text(SUITE)
    return str(path)


def test_off_a_terminal_each_job_logs_a_start_and_a_finish_line_with_its_scores(tmp_path):
    result = CliRunner().invoke(app, ["run", _suite(tmp_path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(re.match(r"\[\d\d:\d\d:\d\d\] start positive seed 0 \(1/2\)$", line) for line in lines)
    done = [line for line in lines if "] done random seed 0 in " in line]
    assert len(done) == 1 and re.search(r"\[2/2\]: rf_auc \d\.\d{3} mmd \d+\.\d{3}$", done[0])
    assert "RF AUC" in result.output  # the final table follows


def test_quiet_prints_only_the_final_table(tmp_path):
    result = CliRunner().invoke(app, ["run", _suite(tmp_path), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "start positive" not in result.output and "done random" not in result.output
    assert "RF AUC" in result.output


def test_a_long_stage_logs_a_line_every_heartbeat():
    stream = io.StringIO()
    reporter = LogReporter(stream, heartbeat=0.05)
    job = SimpleNamespace(key="k", label="scld", seed=0)
    reporter.start([job], None)
    reporter.stage(job, START)
    reporter.stage(job, "fit")
    time.sleep(0.3)
    reporter.done(job, JobRecord(job_id="scld-seed0", key="k", generator="scld", label="scld", seed=0,
                                 status="failed", error="RuntimeError: diverged", seconds=0.3))
    text = stream.getvalue()
    assert "scld seed 0: fit for 0s" in text
    assert "FAILED scld seed 0 in 0s [1/1]: RuntimeError: diverged" in text
    assert not reporter._thread.is_alive() or reporter._stop.is_set()


def test_main_scores_read_either_record_shape():
    base = {"job_id": "a-seed0", "key": "k", "generator": "nb", "label": "a", "seed": 0, "status": "ok"}
    old = JobRecord.from_json(base | {"protocol": "scgan-v1", "metrics": {"rf_auc": 0.6, "mmd": 0.1, "other": 1}})
    assert main_scores(old) == {"rf_auc": 0.6, "mmd": 0.1}
    scored = JobRecord.from_json(base | {"scores": {"scgan-v1": {"metrics": {"rf_auc": 0.7, "mmd": None}}}})
    assert main_scores(scored) == {"rf_auc": 0.7}
