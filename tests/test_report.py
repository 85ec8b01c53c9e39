"""Reports: leaderboard numbers against an independent computation, best marks, control scaling and its flag,
failed jobs, sorting, Markdown, HTML and the report/leaderboard commands with their one-line errors."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from scldbench.cli import app
from scldbench.errors import ScldbenchError
from scldbench.record import JobRecord
from scldbench.report import formatting as fmt
from scldbench.report.leaderboard import leaderboard, load_records
from scldbench.report.markdown import leaderboard_markdown
from scldbench.results import protocol_views
from scldbench.store import RunStore
from tests.record_factory import job as record

runner = CliRunner()

SUITE = """
name = "report-test"
dataset = "pbmc68k-mini"
seeds = 2
generators = ["positive", "shuffle", "random"]
[evaluate]
n_trees = 50
min_cluster_cells = 20
extra_metrics = false
"""


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of the three controls, two seeds each (seconds)."""
    root = tmp_path_factory.mktemp("report")
    suite = root / "suite.toml"
    suite.write_text(SUITE)
    out = root / "store" / "run1"
    result = runner.invoke(app, ["run", str(suite), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def toy_records() -> list[JobRecord]:
    return [
        record("positive", 0, 0.50, 0.10), record("positive", 1, 0.52, 0.12),
        record("random", 0, 1.00, 1.50), record("random", 1, 1.00, 1.40),
        record("good", 0, 0.60, 0.30, generator="nb", precision=0.9, library_size_ks=0.2),
        record("good", 1, 0.62, 0.34, generator="nb", precision=0.8, library_size_ks=0.1),
        record("better-than-real", 0, 0.45, 0.05, generator="splat", precision=0.95, library_size_ks=0.3),
        record("broken", 0, None, None, generator="scld", status="failed", error="RuntimeError: diverged"),
        record("broken", 1, 0.90, 0.80, generator="scld"),
    ]


def independent_interval(values: list[float]) -> tuple[float, float, float]:
    x = np.array(values, dtype=float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def test_leaderboard_numbers_match_an_independent_computation(run_dir: Path) -> None:
    views = [v for r in RunStore(run_dir).records() for v in protocol_views(r) if v.protocol == "scgan-v1"]
    board = next(b for b in leaderboard(load_records(run_dir.parent)) if b.protocol == "scgan-v1")
    assert {r.label for r in board.rows} == {"positive", "shuffle", "random"}
    for row in board.rows:
        for metric in ("rf_auc", "mmd", "fit_seconds"):
            values = [v.metrics[metric] if metric in v.metrics else getattr(v.record, metric)
                      for v in views if v.record.label == row.label]
            mean, low, high = independent_interval(values)
            got = row.summaries[metric]
            assert got.n == 2
            assert got.mean == pytest.approx(mean) and got.low == pytest.approx(low)
            assert got.high == pytest.approx(high)
    # controls scale to exactly 1 (positive) and 0 (random); the shuffle lies between
    assert board.row("positive").scaled["rf_auc"].scaled == pytest.approx(1.0)
    assert board.row("random").scaled["mmd"].scaled == pytest.approx(0.0)
    shuffle = board.row("shuffle").scaled["rf_auc"]
    neg, pos = board.row("random").mean("rf_auc"), board.row("positive").mean("rf_auc")
    assert shuffle.scaled == pytest.approx((neg - board.row("shuffle").mean("rf_auc")) / (neg - pos))
    assert board.marks == {}  # only controls: nothing is marked best
    assert all(row.win_rate is None for row in board.rows)  # controls are not ranked
    assert board.dataset == "pbmc68k-mini" and board.settings["n_trees"] == 50


def test_best_marks_scaling_flag_and_failed_jobs() -> None:
    (board,) = leaderboard(toy_records())
    # RF AUC: closest to 0.5 has the best mean, so 0.45 (|−0.05|) leads 0.61 (|0.11|); but it has one seed (no
    # interval) and good's interval reaches 0.5: not distinguishable, both marked tied, nobody starred. MMD
    # lower; *_ks lower (good's interval overlaps 0.3); controls are never marked
    assert board.best == {}
    assert board.tied["rf_auc"] == {"better-than-real", "good"}
    assert "better-than-real" in board.tied["mmd"]
    assert board.tied["library_size_ks"] >= {"good"}
    assert not any(label in {"positive", "random"} for marked in board.tied.values() for label in marked)
    good = board.row("good")
    assert good.mean("rf_auc") == pytest.approx(0.61)
    scaled = good.scaled["rf_auc"]
    assert scaled.scaled == pytest.approx((1.0 - 0.61) / (1.0 - 0.51)) and not scaled.outside
    beyond = board.row("better-than-real").scaled
    assert beyond["rf_auc"].outside and beyond["rf_auc"].scaled > 1
    assert beyond["mmd"].outside
    assert fmt.scaled(beyond["mmd"]).endswith(fmt.FLAG)
    broken = board.row("broken")
    assert broken.status() == "1 of 2 failed: RuntimeError: diverged"
    assert broken.summaries["rf_auc"].n == 1 and broken.mean("rf_auc") == pytest.approx(0.9)


def test_all_failed_row_is_shown_and_sort_is_best_first() -> None:
    records = toy_records() + [record("dead", 0, None, None, generator="vae", status="failed", error="OOM")]
    (board,) = leaderboard(records, sort="mmd")
    assert [r.label for r in board.rows] == ["better-than-real", "positive", "good", "broken", "random", "dead"]
    (board,) = leaderboard(records, sort="rf_auc")
    assert [r.label for r in board.rows][:3] == ["positive", "better-than-real", "good"]  # |0.51-0.5| first
    (board,) = leaderboard(records, sort="precision")
    assert [r.label for r in board.rows][:2] == ["better-than-real", "good"]
    assert board.rows[-1].label == "dead" and board.rows[-1].status() == "1 of 1 failed: OOM"
    with pytest.raises(ScldbenchError, match="did you mean: mmd"):
        leaderboard(records, sort="mdd")


def test_note_runs_and_params_variants() -> None:
    note = "dataset 'pbmc68k' could not be had; this run used 'toy' instead"
    records = [replace(r, dataset_note=note, run="a") for r in toy_records()]
    variant = replace(record("good", 0, 0.7, 0.4, generator="nb"), params={"size_factors": True}, key="v", run="b")
    duplicate = replace(records[0], run="b")  # the same job found in a second run folder counts once
    (board,) = leaderboard(records + [variant, duplicate])
    assert board.notes == ["dataset 'pbmc68k' could not be had; this run used 'toy' instead"]
    assert {"good (a)", "good (b)"} <= {r.label for r in board.rows}
    assert board.row("positive").summaries["rf_auc"].n == 2
    text = leaderboard_markdown([board])
    assert "note: dataset 'pbmc68k' could not be had" in text


def test_markdown_holds_the_table() -> None:
    text = leaderboard_markdown(leaderboard(toy_records()), sort="mmd")
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| generator | n |"))
    assert "RF AUC" in header and "RF AUC scaled" in header and "MMD scaled" in header
    good = next(line for line in lines if line.startswith("| good | 2 |"))
    assert "0.610 ± " in good
    best = next(line for line in lines if line.startswith("| better-than-real | 1 |"))
    assert "0.450 ≈" in best and fmt.FLAG in best
    assert "| broken | 1 | 0,1 | 1 of 2 failed: RuntimeError: diverged |" in text
    assert "closest to 0.5 is best" in text and "sorted by `mmd`" in text


def test_report_command_formats(run_dir: Path, tmp_path: Path) -> None:
    shown = runner.invoke(app, ["report", str(run_dir)])
    assert shown.exit_code == 0, shown.output
    assert "positive (control)" in shown.output and "scgan-v1" in shown.output and "Jobs" in shown.output
    md = runner.invoke(app, ["report", str(run_dir), "--format", "md"])
    assert md.exit_code == 0, md.output
    path = run_dir / "report.md"
    assert md.output.strip() == str(path)
    text = path.read_text()
    assert "| positive (control) | 2 | 0,1 | ok |" in text and "### Per-cluster RF AUC" in text
    html_out = tmp_path / "r.html"
    html = runner.invoke(app, ["report", str(run_dir), "-f", "html", "-o", str(html_out), "--embedding", "pca"])
    assert html.exit_code == 0, html.output
    page = html_out.read_text()
    assert page.count("data:image/png;base64,") >= 3 and "<script" not in page and "http" not in page


def test_leaderboard_command(run_dir: Path, tmp_path: Path) -> None:
    store = run_dir.parent
    result = runner.invoke(app, ["leaderboard", str(store), "--sort", "mmd"])
    assert result.exit_code == 0, result.output
    assert result.output.index("positive") < result.output.index("shuffle") < result.output.index("random (")
    out = tmp_path / "lb.md"
    result = runner.invoke(app, ["leaderboard", str(store), "-f", "md", "-o", str(out), "--metrics", "mmd"])
    assert result.exit_code == 0 and out.is_file()
    assert "| generator | n | seeds | status | win rate | MMD | MMD scaled |" in out.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["leaderboard", "/nonexistent/store"], "does not exist"),
        (["report", "/nonexistent/run"], "does not exist"),
        (["report", "{run}", "--format", "pdf"], "--format 'pdf' is not known"),
        (["leaderboard", "{store}", "--format", "htm"], "did you mean: html"),
        (["leaderboard", "{store}", "--sort", "rf_acu"], "cannot sort by 'rf_acu'"),
        (["leaderboard", "{store}", "--metrics", "mdd"], "did you mean: mmd"),
        (["leaderboard", "{empty}"], "no runs under"),
    ],
)
def test_bad_input_is_one_line_exit_2(run_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    args = [a.format(run=run_dir, store=run_dir.parent, empty=tmp_path) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_unknown_sort_suggests_the_metric(run_dir: Path) -> None:
    result = runner.invoke(app, ["leaderboard", str(run_dir.parent), "--sort", "rf_acu"])
    assert "did you mean: rf_auc" in result.output


def test_records_of_a_run_keep_json_metrics(run_dir: Path) -> None:
    # the store is the single source of reports: every job file is plain JSON the leaderboard reads back
    files = sorted((run_dir / "jobs").glob("*.json"))
    assert len(files) == 6 and all(json.loads(f.read_text())["status"] == "ok" for f in files)
