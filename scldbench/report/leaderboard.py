"""The leaderboard: records of one or many runs -> one board per (dataset, protocol), one row per generator label.

Each metric cell is the mean over the row's finished jobs (seeds) with its 95% t-interval
(`aggregate.mean_interval`); RF AUC and MMD also get a score scaled between the `random` and `positive`
controls (`aggregate.scale_scores`, applied to the means). Failed jobs stay in their row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scldbench.errors import ScldbenchError, suggest
from scldbench.metrics.aggregate import ScaledScore, SeedSummary, mean_interval, scale_scores
from scldbench.records import protocol_views
from scldbench.report.metrics_info import (
    CONTROLS,
    NEGATIVE_CONTROL,
    POSITIVE_CONTROL,
    SCALED_METRICS,
    TIMINGS,
    direction,
    metric_order,
)
from scldbench.store import find_runs

Record = dict[str, Any]


@dataclass
class Row:
    """One generator label within a board."""

    label: str
    generator: str
    jobs: list[Record]
    summaries: dict[str, SeedSummary] = field(default_factory=dict)
    scaled: dict[str, ScaledScore] = field(default_factory=dict)

    @property
    def is_control(self) -> bool:
        return self.generator in CONTROLS

    @property
    def ok(self) -> list[Record]:
        return [r for r in self.jobs if r.get("status") == "ok"]

    @property
    def failed(self) -> list[Record]:
        return [r for r in self.jobs if r.get("status") != "ok"]

    @property
    def seeds(self) -> list[int]:
        return sorted({int(r.get("seed", 0)) for r in self.jobs})

    def status(self) -> str:
        """'ok', or 'k of n failed: <first error>'."""
        failed = self.failed
        if not failed:
            return "ok"
        error = failed[0].get("error") or failed[0].get("status") or "unknown error"
        return f"{len(failed)} of {len(self.jobs)} failed: {error}"

    def mean(self, metric: str) -> float:
        summary = self.summaries.get(metric)
        return summary.mean if summary is not None else math.nan


@dataclass
class Board:
    """One leaderboard table: every generator label run on one dataset under one protocol."""

    dataset: str
    protocol: str
    protocol_description: str
    notes: list[str]
    rows: list[Row]
    metrics: list[str]
    runs: list[str]
    best: dict[str, set[str]] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"{self.dataset} · protocol {self.protocol}"

    def row(self, label: str) -> Row:
        return next(r for r in self.rows if r.label == label)


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def record_values(record: Record) -> dict[str, float]:
    """The numeric metrics of a finished record plus its timings (None / non-numeric values left out)."""
    values = {k: float(v) for k, v in (record.get("metrics") or {}).items() if _numeric(v)}
    for name in TIMINGS:
        if _numeric(record.get(name)):
            values[name] = float(record[name])
    return values


def summarise_row(row: Row, confidence: float = 0.95) -> None:
    """Fill `row.summaries`: mean and interval of every metric over the row's finished jobs."""
    values = [record_values(r) for r in row.ok]
    names = {name for v in values for name in v}
    row.summaries = {name: mean_interval((v[name] for v in values if name in v), confidence) for name in names}


def _params_key(record: Record) -> str:
    return json.dumps(record.get("params") or {}, sort_keys=True, default=str)


def dedupe(records: Iterable[Record]) -> list[Record]:
    """One record per job key (the same job found in two run folders counts once; a finished one wins)."""
    chosen: dict[str, Record] = {}
    for record in records:
        key = record.get("key") or f"{record.get('_run')}/{record.get('job_id')}"
        previous = chosen.get(key)
        if previous is None or (previous.get("status") != "ok" and record.get("status") == "ok"):
            chosen[key] = record
    return list(chosen.values())


def group_rows(records: Sequence[Record]) -> list[Row]:
    """Rows by label, in first-seen order; a label run with different params in different runs is split and
    its rows named `label (run)` so that different settings are never averaged together."""
    by_label: dict[str, dict[str, list[Record]]] = {}
    for record in records:
        by_label.setdefault(record["label"], {}).setdefault(_params_key(record), []).append(record)
    rows = []
    for label, variants in by_label.items():
        for jobs in variants.values():
            name = label
            if len(variants) > 1:
                name = f"{label} ({', '.join(sorted({str(j.get('_run', '?')) for j in jobs}))})"
            jobs = sorted(jobs, key=lambda r: r.get("seed", 0))
            rows.append(Row(name, str(jobs[0].get("generator", label)), jobs))
    return rows


def _control_means(rows: Sequence[Row], generator: str) -> dict[str, float]:
    control = next((r for r in rows if r.generator == generator and r.ok), None)
    if control is None:
        return {}
    return {m: control.mean(m) for m in SCALED_METRICS if m in control.summaries}


def scale_rows(rows: Sequence[Row]) -> None:
    """Scaled RF AUC and MMD for every row, when both controls finished on this board."""
    negative, positive = _control_means(rows, NEGATIVE_CONTROL), _control_means(rows, POSITIVE_CONTROL)
    for row in rows:
        means = {m: row.mean(m) for m in SCALED_METRICS if m in row.summaries}
        row.scaled = scale_scores(means, negative, positive)


def find_best(rows: Sequence[Row], metrics: Iterable[str]) -> dict[str, set[str]]:
    """Per metric, the labels of the non-control rows with the best mean (ties share it)."""
    best: dict[str, set[str]] = {}
    for metric in metrics:
        rule = direction(metric)
        scored = [(rule.badness(r.mean(metric)), r.label) for r in rows if not r.is_control]
        scored = [(b, name) for b, name in scored if math.isfinite(b)]
        if scored:
            top = min(b for b, _ in scored)
            best[metric] = {name for b, name in scored if math.isclose(b, top, rel_tol=1e-12, abs_tol=1e-12)}
    return best


def build_board(records: Sequence[Record], confidence: float = 0.95) -> Board:
    """One board from records that share a dataset and protocol."""
    rows = group_rows(dedupe(records))
    for row in rows:
        summarise_row(row, confidence)
    scale_rows(rows)
    metrics = metric_order({m for r in rows for m in r.summaries})
    first = records[0]
    notes = sorted({r["dataset_note"] for r in records if r.get("dataset_note")})
    runs = sorted({str(r["_run"]) for r in records if r.get("_run")})
    description = next((r["protocol_description"] for r in records if r.get("protocol_description")), "")
    board = Board(str(first.get("dataset")), str(first.get("protocol")), description, notes, rows, metrics, runs)
    board.best = find_best(rows, metrics)
    return board


def build_boards(records: Sequence[Record], confidence: float = 0.95) -> list[Board]:
    """One board per (dataset, protocol), in first-seen order."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for record in (view for r in records for view in protocol_views(r)):
        groups.setdefault((str(record.get("dataset")), str(record.get("protocol"))), []).append(record)
    return [build_board(group, confidence) for group in groups.values()]


def _with_run_info(record: Record, run: str, info: Record) -> Record:
    out = dict(record)
    out["_run"] = run
    out.setdefault("dataset", info.get("dataset"))
    if not out.get("dataset_note") and info.get("note"):
        out["dataset_note"] = info["note"]
    out.setdefault("protocol_description", info.get("protocol_description"))
    return out


def load_records(store: str | Path) -> list[Record]:
    """Every job record of every run folder under `store` (a run folder itself counts), tagged with `_run`."""
    store = Path(store)
    runs = find_runs(store)
    if not runs:
        raise ScldbenchError(f"no runs under {store} (no run.json found); make one with `scldbench run SUITE --out "
                             f"{store}/NAME` or give the folder that holds your runs")
    records = []
    for run in runs:
        info = run.read_run()
        name = str(run.root.relative_to(store)) if run.root != store else run.root.name
        records.extend(_with_run_info(r, name, info) for r in run.records())
    return records


def sortable_metrics(boards: Sequence[Board]) -> list[str]:
    return metric_order({m for b in boards for m in b.metrics} | {"label"})


def check_sort(metric: str | None, boards: Sequence[Board]) -> None:
    """Raise a one-line error naming the known metrics when `metric` is not one of them."""
    if metric is None:
        return
    known = sortable_metrics(boards)
    if metric not in known:
        raise ScldbenchError(
            f"cannot sort by {metric!r}: no such metric in these runs{suggest(metric, known)}; "
            f"choose one of {', '.join(known)}"
        )


def sort_rows(board: Board, metric: str | None) -> None:
    """Best first by `metric` (its ranking rule; 'info' metrics descending), missing values last; in place."""
    if metric is None:
        return
    if metric == "label":
        board.rows.sort(key=lambda r: r.label)
        return
    rule = direction(metric)

    def key(row: Row) -> tuple[int, float]:
        value = row.mean(metric)
        badness = -value if rule.kind == "info" else rule.badness(value)
        return (0, badness) if math.isfinite(badness) else (1, 0.0)

    board.rows.sort(key=key)


def leaderboard(records: Sequence[Record], sort: str | None = None, confidence: float = 0.95) -> list[Board]:
    """Boards from `records`, rows sorted by `sort` (a metric name, 'label', or None for run order)."""
    boards = build_boards(records, confidence)
    check_sort(sort, boards)
    for board in boards:
        sort_rows(board, sort)
    return boards
