"""Ranking and grouping: boards never mix prepared data, protocols or settings; win rates against a hand
computation; stars only beyond intervals, partnered metrics read together; load_results and the CSV."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

import scldbench
from scldbench.cli import app
from scldbench.protocols import PROTOCOLS
from scldbench.record import JobRecord
from scldbench.report import ranking
from scldbench.report.leaderboard import leaderboard, win_rates
from scldbench.report.markdown import leaderboard_markdown
from scldbench.results import load_records
from tests.record_factory import job, score, write_run

runner = CliRunner()
SPLIT_11 = "aaaaaaaa11111111aaaaaaaa"
SPLIT_5 = "bbbbbbbb55555555bbbbbbbb"
FILE_A = "cccccccc00000000cccccccc"
FILE_B = "dddddddd00000000dddddddd"


def controls_and(label: str, fingerprint: str, dataset: str, *, settings: dict | None = None,
                 shift: float = 0.0) -> list[dict]:
    """Two seeds of the positive and random controls and one generator on one prepared dataset."""
    records = []
    for seed in (0, 1):
        kw = {"fingerprint": fingerprint, "dataset": dataset, "settings": settings, "protocol": "scgan-v1"}
        records += [job("positive", seed, 0.50 + shift, 0.1, **kw), job("random", seed, 1.0, 1.5, **kw),
                    job(label, seed, 0.7 + 0.01 * seed + shift, 0.4, generator="nb", **kw)]
    return records


@pytest.fixture()
def mixed_store(tmp_path: Path) -> Path:
    """One store holding what a new user gets wrong: two splits (11 and 5 clusters) of one named dataset, two
    different files of the same name, and the same jobs rescored with 200 trees instead of 1,000."""
    store = tmp_path / "runs"
    write_run(store / "split11", controls_and("nb", SPLIT_11, "pbmc68k-mini"), dataset="pbmc68k-mini")
    write_run(store / "split5", controls_and("nb", SPLIT_5, "pbmc68k-mini", shift=0.05), dataset="pbmc68k-mini")
    write_run(store / "fileA", controls_and("nb", FILE_A, "/data/lab-a/cells.h5ad"), dataset="/data/lab-a/cells.h5ad")
    write_run(store / "fileB", controls_and("nb", FILE_B, "../lab-b/cells.h5ad"), dataset="../lab-b/cells.h5ad")
    rescored = controls_and("nb", SPLIT_11, "pbmc68k-mini", settings={"n_trees": 200, "n_components": 50})
    for record in rescored:  # the protocol's own description names its default, 1,000 trees
        record.scores["scgan-v1"].description = PROTOCOLS["scgan-v1"].description
    write_run(store / "trees200", rescored, dataset="pbmc68k-mini")
    return store


def test_splits_files_and_settings_never_share_a_board(mixed_store: Path) -> None:
    boards = leaderboard(load_records(mixed_store))
    assert len(boards) == 5
    titles = [b.title for b in boards]
    assert len(set(titles)) == 5
    for board in boards:
        # each board holds the two seeds of one prepared dataset under one setting: never n=4 from two splits
        assert board.row("positive").summaries["rf_auc"].n == 2
        assert len({v.record.fingerprint for row in board.rows for v in row.jobs}) == 1
        assert "/" not in board.title and "lab-a" not in board.title
    names = {b.dataset for b in boards}
    assert {"pbmc68k-mini [aaaaaaaa]", "pbmc68k-mini [bbbbbbbb]", "cells [cccccccc]", "cells [dddddddd]"} == names
    trees = {b.variant for b in boards if b.fingerprint == SPLIT_11}
    assert trees == {"n_trees=200", "n_trees=1000"}
    (two_hundred,) = [b for b in boards if b.variant == "n_trees=200"]
    assert two_hundred.settings == {"n_trees": 200, "n_components": 50}
    text = leaderboard_markdown([two_hundred])
    assert "protocol settings used: n_components=50, n_trees=200" in text and "n_trees=1000" not in text
    assert "1,000" not in text and "scored with settings other than its defaults: n_trees=200 (default 1000)" in text


def test_the_cli_shows_separate_boards_and_never_the_typed_path(mixed_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "lb.md"
    result = runner.invoke(app, ["leaderboard", str(mixed_store), "-f", "md", "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert sum(line.startswith("### ") for line in text.splitlines()) == 5
    assert "lab-a" not in text and "lab-b" not in text
    assert "### cells [cccccccc] · protocol scgan-v1" in text
    shown = runner.invoke(app, ["leaderboard", str(mixed_store)])
    assert shown.exit_code == 0, shown.output
    assert "cells [dddddddd]" in shown.output and "lab-b" not in shown.output


def test_one_sample_rescored_with_other_settings_keeps_both(tmp_path: Path) -> None:
    # the job key covers the sample, not the scoring settings: the same key under two settings is two views
    base = controls_and("nb", SPLIT_11, "pbmc68k-mini")
    other = controls_and("nb", SPLIT_11, "pbmc68k-mini", settings={"n_trees": 200, "n_components": 50})
    assert {r.key for r in base} == {r.key for r in other}
    boards = leaderboard(base + other)
    assert len(boards) == 2 and all(b.row("nb").summaries["rf_auc"].n == 2 for b in boards)
    # the same job found twice (two run folders) still counts once
    (board,) = leaderboard(base + [replace(r, run="copy") for r in base])
    assert board.row("nb").summaries["rf_auc"].n == 2


# seed -> label -> (rf_auc, mmd); C failed on seed 1
WIN_RATE_DATA = {
    0: {"A": (0.55, 0.2), "B": (0.45, 0.3), "C": (0.8, 0.2)},
    1: {"A": (0.6, 0.1), "B": (0.7, 0.5)},
    2: {"A": (0.52, 0.15), "B": (0.9, 0.9), "C": (0.85, 0.05)},
}
# by hand: per seed and metric, the share of the others beaten (ties half), averaged over the two metrics.
# seed 0: RF AUC |x-0.5| = .05, .05, .3 -> A .75, B .75, C 0; MMD .2, .3, .2 -> A .75, B 0, C .75
# seed 1: A beats B on both -> A 1, B 0
# seed 2: RF AUC .02, .4, .35 -> A 1, B 0, C .5; MMD .15, .9, .05 -> A .5, B 0, C 1
EXPECTED = {"A": [0.75, 1.0, 0.75], "B": [0.375, 0.0, 0.0], "C": [0.375, 0.75]}


def win_rate_records(with_controls: bool) -> list[JobRecord]:
    records = [job(label, seed, auc, mmd) for seed, row in WIN_RATE_DATA.items() for label, (auc, mmd) in row.items()]
    records.append(job("C", 1, status="failed", error="RuntimeError: diverged"))
    if with_controls:
        records += [job(name, seed, auc, mmd) for seed in WIN_RATE_DATA
                    for name, auc, mmd in (("positive", 0.5, 0.01), ("random", 1.0, 2.0))]
    return records


def test_win_rates_match_a_hand_computation_and_ignore_controls() -> None:
    (board,) = leaderboard(win_rate_records(with_controls=True))
    assert ranking.seed_win_rates(board.rows, board.metrics) == {
        label: dict(zip([s for s in WIN_RATE_DATA if label in WIN_RATE_DATA[s]], values, strict=True))
        for label, values in EXPECTED.items()
    }
    for label, values in EXPECTED.items():
        rate = board.row(label).win_rate
        half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
        assert rate.mean == pytest.approx(np.mean(values)) and rate.n == len(values)
        assert rate.high - rate.mean == pytest.approx(half)
    assert board.row("positive").win_rate is None and board.row("random").win_rate is None
    (without,) = leaderboard(win_rate_records(with_controls=False))
    assert {r.label: r.win_rate.mean for r in without.rows} == {
        label: pytest.approx(np.mean(v)) for label, v in EXPECTED.items()}
    (by_rate,) = leaderboard(win_rate_records(with_controls=True), sort="win_rate")
    assert [r.label for r in by_rate.rows][:3] == ["A", "C", "B"]
    assert {r.label for r in by_rate.rows[3:]} == {"positive", "random"}


def test_win_rates_over_datasets_only_for_generators_on_every_dataset() -> None:
    first = win_rate_records(with_controls=False)
    second = [job(label, seed, auc, mmd, fingerprint=SPLIT_5, dataset="pbmc68k-mini")
              for seed, label, auc, mmd in ((0, "A", 0.9, 0.9), (0, "B", 0.5, 0.1), (1, "A", 0.8, 0.8),
                                            (1, "B", 0.55, 0.2))]
    (summary,) = win_rates(leaderboard(first + second))
    assert summary.overall == pytest.approx({"A": (np.mean(EXPECTED["A"]) + 0.0) / 2,
                                             "B": (np.mean(EXPECTED["B"]) + 1.0) / 2})
    assert summary.labels == ["B", "A", "C"]  # C ran on one dataset only: shown per dataset, not overall
    text = leaderboard_markdown(leaderboard(first + second))
    assert "## Win rates · protocol p1" in text and "| C | 0.562 ± " in text and "| – |" in text


def board_of(values: dict[str, list[dict[str, float]]]) -> object:
    records = [job(label, seed, **metrics) for label, seeds in values.items() for seed, metrics in enumerate(seeds)]
    records += [job("random", seed, precision=1.0, recall=0.0, mmd=2.0) for seed in range(3)]
    (board,) = leaderboard(records)
    return board


def test_a_star_only_beyond_the_interval() -> None:
    clear = board_of({"A": [{"mmd": 0.10}, {"mmd": 0.11}, {"mmd": 0.12}],
                      "B": [{"mmd": 0.50}, {"mmd": 0.52}, {"mmd": 0.51}]})
    assert clear.marks["mmd"] == {"A": ranking.BEST}
    overlapping = board_of({"A": [{"mmd": 0.10}, {"mmd": 0.11}, {"mmd": 0.12}],
                            "B": [{"mmd": 0.50}, {"mmd": 0.52}, {"mmd": 0.51}],
                            "C": [{"mmd": 0.12}, {"mmd": 0.20}, {"mmd": 0.05}]})
    assert overlapping.marks["mmd"] == {"A": ranking.TIED, "C": ranking.TIED}
    one_seed = board_of({"A": [{"mmd": 0.1}], "B": [{"mmd": 0.5}]})
    assert one_seed.marks["mmd"] == {"A": ranking.TIED}  # no interval, no claim beyond it
    alone = board_of({"A": [{"mmd": 0.1}, {"mmd": 0.2}]})
    assert "mmd" not in alone.marks  # nothing to beat: no mark
    text = leaderboard_markdown([overlapping], metrics=["mmd"])
    assert "0.110 ± 0.025 ≈" in text and "★" not in text.split("|", 1)[1].split("*★")[0]


def test_precision_is_read_with_recall() -> None:
    # a collapsed generator: precision 1.0 (every cell copies one real cell) but recall near 0
    collapsed = [{"precision": 1.0, "recall": 0.05}, {"precision": 1.0, "recall": 0.06}, {"precision": 1.0,
                                                                                          "recall": 0.05}]
    honest = [{"precision": 0.8, "recall": 0.7}, {"precision": 0.81, "recall": 0.71}, {"precision": 0.79,
                                                                                       "recall": 0.69}]
    board = board_of({"collapsed": collapsed, "honest": honest})
    assert "precision" not in board.marks and "recall" not in board.marks
    assert ranking.mark_metric(board.rows, "precision") == {"collapsed": ranking.BEST}  # alone it would be starred
    better = [{"precision": 0.9, "recall": 0.8}, {"precision": 0.91, "recall": 0.81}, {"precision": 0.9,
                                                                                       "recall": 0.8}]
    board = board_of({"better": better, "honest": honest})
    assert board.marks["precision"] == {"better": ranking.BEST} and board.marks["recall"] == {"better": ranking.BEST}


def test_scaled_scores_keep_their_flag_outside_the_controls() -> None:
    records = [job("positive", s, 0.5, 0.1) for s in (0, 1)] + [job("random", s, 1.0, 1.0) for s in (0, 1)]
    records += [job("beyond", s, 0.5, 0.05) for s in (0, 1)] + [job("inside", s, 0.75, 0.55) for s in (0, 1)]
    (board,) = leaderboard(records)
    assert board.row("beyond").scaled["mmd"].outside and board.row("beyond").scaled["mmd"].scaled > 1
    assert not board.row("inside").scaled["mmd"].outside
    assert board.row("inside").scaled["mmd"].scaled == pytest.approx(0.5)
    beyond = next(line for line in leaderboard_markdown([board]).splitlines() if line.startswith("| beyond | 2"))
    assert "1.06 ⚠" in beyond


def test_a_protocol_that_failed_to_score_fails_only_there() -> None:
    records = [job("nb", s, 0.6, 0.3, more={"p2": score({}, status="failed", error="ValueError: too few cells")})
               for s in (0, 1)]
    records += [job("splat", s, 0.7, 0.4, more={"p2": score({"rf_auc": 0.8})}) for s in (0, 1)]
    records.append(job("vae", 0, status="failed", error="MemoryError: out of memory"))
    boards = {b.protocol: b for b in leaderboard(records)}
    assert set(boards) == {"p1", "p2"}
    assert boards["p1"].row("nb").status() == "ok"
    assert boards["p2"].row("nb").status() == "2 of 2 failed: ValueError: too few cells"
    # a job that failed before any scoring shows on every board of its data
    assert all(b.row("vae").status() == "1 of 1 failed: MemoryError: out of memory" for b in boards.values())


def test_records_written_before_the_scores_layout_are_read() -> None:
    legacy = {"job_id": "j", "key": "k", "label": "nb", "generator": "nb", "seed": 0, "status": "ok",
              "dataset": "pbmc68k-mini", "fingerprint": SPLIT_11, "protocol": "scgan-v1", "evaluate": {"n_trees": 50},
              "metrics": {"rf_auc": 0.7, "mmd": None}, "per_cluster": {"0": {"rf_auc": 0.8}}}
    (board,) = leaderboard([JobRecord.from_json(legacy)])
    assert board.protocol == "scgan-v1" and board.settings == {"n_trees": 50}
    assert board.row("nb").mean("rf_auc") == 0.7 and "mmd" not in board.metrics


def test_load_results_is_a_tidy_table(tmp_path: Path) -> None:
    records = [job("nb", s, 0.6 + s / 10, 0.3, per_cluster={"B cells": {"rf_auc": 0.7, "n_real": 40},
                                                             "rare": {"skipped": "3 real test cells"}},
                   more={"p2": score({"rf_auc": 0.9})}) for s in (0, 1)]
    records.append(job("vae", 0, status="failed", error="MemoryError: out of memory"))
    write_run(tmp_path / "runs" / "one", records, dataset="toy")
    frame = scldbench.load_results(tmp_path / "runs")
    assert list(frame.columns[:10]) == ["dataset", "fingerprint", "protocol", "settings", "generator", "label",
                                        "params", "seed", "metric", "value"]
    whole = frame[frame.cluster.isna() & (frame.status == "ok")]
    p1 = whole[whole.protocol == "p1"].pivot(index="seed", columns="metric", values="value")
    assert p1.loc[1, "rf_auc"] == pytest.approx(0.7) and p1.loc[0, "fit_seconds"] == 1.0
    assert set(whole[whole.protocol == "p2"].metric) == {"rf_auc", "fit_seconds", "sample_seconds"}
    clusters = frame[frame.cluster.notna()]
    assert set(clusters.cluster) == {"B cells"} and set(clusters.metric) == {"rf_auc", "n_real"}
    failed = frame[frame.label == "vae"]
    assert len(failed) == 1 and failed.status.iloc[0] == "failed" and failed.metric.isna().all()
    assert set(frame.dataset) == {"toy [01234567]"}
    out = tmp_path / "r.csv"
    result = runner.invoke(app, ["leaderboard", str(tmp_path / "runs"), "--format", "csv", "-o", str(out)])
    assert result.exit_code == 0, result.output
    back = pd.read_csv(out)
    assert len(back) == len(frame) and back.value.sum() == pytest.approx(frame.value.sum())


def test_the_report_of_one_run_reads_every_protocol(tmp_path: Path) -> None:
    clusters = {"T cells": {"rf_auc": 0.66}, "rare": {"skipped": "2 real test cells"}}
    records = [job(label, s, auc + s / 100, 0.3, per_cluster=clusters, settings={"n_trees": 200},
                   more={"hvg-pca30-v1": score({"rf_auc": auc + 0.1}, settings={"n_components": 30})
                         if label != "splat" else score({}, status="failed", error="ValueError: no HVGs")})
               for s in (0, 1) for label, auc in (("positive", 0.5), ("nb", 0.6), ("splat", 0.9))]
    for record in records:
        record.dataset, record.fingerprint = "/home/me/cells.h5ad", FILE_A
    run = write_run(tmp_path / "run", records, dataset="/home/me/cells.h5ad", fingerprint=FILE_A)
    result = runner.invoke(app, ["report", str(run), "--format", "md"])
    assert result.exit_code == 0, result.output
    text = (run / "report.md").read_text()
    assert "- **dataset**: cells [cccccccc]" in text and "/home/me" not in text
    assert "- **protocol**: p1 (n_trees=200)" in text and "- **protocol**: hvg-pca30-v1 (n_components=30)" in text
    assert "### cells [cccccccc] · protocol p1" in text and "### cells [cccccccc] · protocol hvg-pca30-v1" in text
    assert "### Per-cluster RF AUC · protocol p1" in text and "not scored (too few real test cells): rare" in text
    assert "| RF AUC (p1) | MMD (p1) | RF AUC (hvg-pca30-v1) | error |" in text
    assert text.count("hvg-pca30-v1: ValueError: no HVGs") == 2  # once per failed job, in the jobs table
    assert "| splat | 0 | 0,1 | 2 of 2 failed: ValueError: no HVGs |" in text
    html = runner.invoke(app, ["report", str(run), "--format", "html", "--embedding", "none"])
    assert html.exit_code == 0, html.output
    page = (run / "report.html").read_text()
    assert "Per-cluster RF AUC · protocol p1" in page and "/home/me" not in page.split("<dt>command</dt>")[0]
