"""The leaderboard: records of one or many runs -> one board per comparable group, one row per generator label.

A board holds the jobs that share the prepared data (its fingerprint: data, labels, split, preparation settings),
the protocol and the protocol's settings; jobs that differ in any of these never share a board. Each metric cell
is the mean over the row's finished jobs (seeds) with its 95% t-interval (`aggregate.mean_interval`); RF AUC and
MMD also get a score scaled between the `random` and `positive` controls (`aggregate.scale_scores`, applied to the
means), flagged when the controls do not bracket it. Rows carry their mean win rate (`ranking`). Failed jobs stay
in their row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from scldbench.errors import ScldbenchError, suggest
from scldbench.metrics.aggregate import ScaledScore, SeedSummary, mean_interval, scale_scores
from scldbench.record import JobRecord, asked_settings, is_number
from scldbench.report import ranking
from scldbench.report.metrics_info import (
    CONTROLS,
    NEGATIVE_CONTROL,
    POSITIVE_CONTROL,
    SCALED_METRICS,
    TIMINGS,
    direction,
    metric_order,
)
from scldbench.results import (
    SHORT_FINGERPRINT,
    ProtocolView,
    dataset_name,
    dedupe,
    load_records,
    protocol_views,
    settings_key,
    settings_text,
)

__all__ = ["Board", "Row", "build_boards", "leaderboard", "load_records"]


@dataclass
class Row:
    """One generator label within a board."""

    label: str
    generator: str
    jobs: list[ProtocolView]
    summaries: dict[str, SeedSummary] = field(default_factory=dict)
    scaled: dict[str, ScaledScore] = field(default_factory=dict)
    #: mean win rate over seeds (None for controls, which are not ranked)
    win_rate: SeedSummary | None = None

    @property
    def is_control(self) -> bool:
        return self.generator in CONTROLS

    @property
    def ok(self) -> list[ProtocolView]:
        return [v for v in self.jobs if v.ok]

    @property
    def failed(self) -> list[ProtocolView]:
        return [v for v in self.jobs if not v.ok]

    @property
    def seeds(self) -> list[int]:
        return sorted({v.record.seed for v in self.jobs})

    def status(self) -> str:
        """'ok', or 'k of n failed: <first error>'."""
        failed = self.failed
        if not failed:
            return "ok"
        error = failed[0].error or failed[0].status or "unknown error"
        return f"{len(failed)} of {len(self.jobs)} failed: {error}"

    def mean(self, metric: str) -> float:
        summary = self.summaries.get(metric)
        return summary.mean if summary is not None else math.nan


@dataclass
class Board:
    """One leaderboard table: every generator label run on one prepared dataset under one protocol and settings."""

    dataset: str
    protocol: str
    protocol_description: str
    notes: list[str]
    rows: list[Row]
    metrics: list[str]
    runs: list[str]
    fingerprint: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    #: metric -> {label: ranking.BEST | ranking.TIED}
    marks: dict[str, dict[str, str]] = field(default_factory=dict)
    #: what tells this board apart from another of the same dataset and protocol (their differing settings)
    variant: str = ""

    @property
    def title(self) -> str:
        return f"{self.dataset} · protocol {self.protocol}" + (f" · {self.variant}" if self.variant else "")

    @property
    def primary(self) -> str | None:
        return ranking.primary_metric(self.metrics)

    @property
    def best(self) -> dict[str, set[str]]:
        """metric -> labels best beyond their interval (the starred cells)."""
        return self._marked(ranking.BEST)

    @property
    def tied(self) -> dict[str, set[str]]:
        """metric -> labels with the best mean or an interval overlapping it, where no star could be given."""
        return self._marked(ranking.TIED)

    def _marked(self, kind: str) -> dict[str, set[str]]:
        out = {m: {label for label, k in found.items() if k == kind} for m, found in self.marks.items()}
        return {m: labels for m, labels in out.items() if labels}

    def mark(self, metric: str, label: str) -> str | None:
        return self.marks.get(metric, {}).get(label)

    def row(self, label: str) -> Row:
        return next(r for r in self.rows if r.label == label)


def record_values(view: ProtocolView) -> dict[str, float]:
    """The numeric metrics of a finished protocol view plus its job's timings."""
    values = dict(view.metrics)
    for name in TIMINGS:
        value = getattr(view.record, name, None)
        if is_number(value):
            values[name] = float(value)
    return values


def summarise_row(row: Row, confidence: float = 0.95) -> None:
    """Fill `row.summaries`: mean and interval of every metric over the row's finished jobs."""
    values = [record_values(r) for r in row.ok]
    names = {name for v in values for name in v}
    row.summaries = {name: mean_interval((v[name] for v in values if name in v), confidence) for name in names}


def _params_key(record: JobRecord) -> str:
    return json.dumps(record.params or {}, sort_keys=True, default=str)


def group_rows(views: Sequence[ProtocolView]) -> list[Row]:
    """Rows by label, in first-seen order; a label run with different params in different runs is split and
    its rows named `label (run)` so that different settings are never averaged together."""
    by_label: dict[str, dict[str, list[ProtocolView]]] = {}
    for view in views:
        by_label.setdefault(view.record.label, {}).setdefault(_params_key(view.record), []).append(view)
    rows = []
    for label, variants in by_label.items():
        for jobs in variants.values():
            name = label
            if len(variants) > 1:
                name = f"{label} ({', '.join(sorted({str(j.record.run or '?') for j in jobs}))})"
            jobs = sorted(jobs, key=lambda v: v.record.seed)
            rows.append(Row(name, jobs[0].record.generator, jobs))
    return rows


def _control_means(rows: Sequence[Row], generator: str) -> dict[str, float]:
    control = next((r for r in rows if r.generator == generator and r.ok), None)
    if control is None:
        return {}
    return {m: control.mean(m) for m in SCALED_METRICS if m in control.summaries}


def scale_rows(rows: Sequence[Row]) -> None:
    """Scaled RF AUC and MMD for every row, when both controls finished on this board; a scaled score outside
    [0, 1] (the controls do not bracket the generator) keeps its `outside` flag."""
    negative, positive = _control_means(rows, NEGATIVE_CONTROL), _control_means(rows, POSITIVE_CONTROL)
    for row in rows:
        means = {m: row.mean(m) for m in SCALED_METRICS if m in row.summaries}
        row.scaled = scale_scores(means, negative, positive)


def build_board(views: Sequence[ProtocolView], confidence: float = 0.95) -> Board:
    """One board from protocol views that share the prepared data, the protocol and its settings."""
    rows = group_rows(views)
    for row in rows:
        summarise_row(row, confidence)
    scale_rows(rows)
    metrics = metric_order({m for r in rows for m in r.summaries})
    rates = ranking.win_rate_summaries(rows, metrics, confidence)
    for row in rows:
        row.win_rate = rates.get(row.label)
    first = views[0]
    notes = sorted({v.record.dataset_note for v in views if v.record.dataset_note})
    runs = sorted({v.record.run for v in views if v.record.run})
    description = next((v.description for v in views if v.description), "")
    settings = asked_settings(next((v.settings for v in views if v.settings), {}))
    protocol = first.protocol or "none (no job was scored)"
    board = Board(dataset_name(first.record), protocol, description, notes, rows, metrics, runs,
                  fingerprint=first.record.fingerprint or "", settings=dict(settings))
    board.marks = ranking.mark_rows(rows, metrics)
    return board


def _data_key(view: ProtocolView) -> str:
    return view.record.fingerprint or f"dataset:{view.record.dataset}"


def group_views(records: Sequence[JobRecord]) -> list[list[ProtocolView]]:
    """Protocol views of `records` grouped by (prepared data, protocol, settings), in first-seen order. A job
    scored by no protocol (it failed first) joins every group of its data, so that its failure stays visible."""
    groups: dict[tuple[str, str, str], list[ProtocolView]] = {}
    unscored = []
    for view in dedupe(v for r in records for v in protocol_views(r)):
        if view.protocol is None:
            unscored.append(view)
        else:
            groups.setdefault((_data_key(view), view.protocol, settings_key(view.settings)), []).append(view)
    for view in unscored:
        targets = [key for key in groups if key[0] == _data_key(view)]
        for key in targets:
            groups[key].append(replace(view, protocol=key[1]))
        if not targets:
            groups.setdefault((_data_key(view), "", "{}"), []).append(view)
    return list(groups.values())


def tell_apart(boards: Sequence[Board]) -> None:
    """Make titles unique: a dataset name shared by different prepared data gets its short fingerprint, and boards
    of one dataset and protocol with different settings name the settings that differ."""
    fingerprints: dict[str, set[str]] = {}
    for board in boards:
        fingerprints.setdefault(board.dataset, set()).add(board.fingerprint)
    for board in boards:
        if len(fingerprints[board.dataset]) > 1 and not board.dataset.endswith("]"):
            board.dataset = f"{board.dataset} [{board.fingerprint[:SHORT_FINGERPRINT]}]"
    same: dict[str, list[Board]] = {}
    for board in boards:
        same.setdefault(board.title, []).append(board)
    for group in same.values():
        if len(group) < 2:
            continue
        keys = {k for b in group for k in b.settings}
        differ = sorted(k for k in keys if len({json.dumps(b.settings.get(k), default=str) for b in group}) > 1)
        for board in group:
            board.variant = settings_text({k: board.settings.get(k) for k in differ})


def build_boards(records: Sequence[JobRecord], confidence: float = 0.95) -> list[Board]:
    """One board per (prepared data, protocol, protocol settings), in first-seen order."""
    boards = [build_board(views, confidence) for views in group_views(records)]
    tell_apart(boards)
    return boards


WIN_RATE = "win_rate"


def sortable_metrics(boards: Sequence[Board]) -> list[str]:
    return metric_order({m for b in boards for m in b.metrics} | {"label", WIN_RATE})


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
    """Best first by `metric` (its ranking rule; 'info' metrics descending), missing values last; in place.
    None ranks by the board's primary metric; 'win_rate' by mean win rate (controls, not ranked, last)."""
    metric = metric or board.primary
    if metric is None:
        return
    if metric == "label":
        board.rows.sort(key=lambda r: r.label)
        return
    if metric == WIN_RATE:
        board.rows.sort(key=lambda r: -r.win_rate.mean if r.win_rate and math.isfinite(r.win_rate.mean) else 1.0)
        return
    rule = direction(metric)

    def key(row: Row) -> tuple[int, float]:
        value = row.mean(metric)
        badness = -value if rule.kind == "info" else rule.badness(value)
        return (0, badness) if math.isfinite(badness) else (1, 0.0)

    board.rows.sort(key=key)


def leaderboard(records: Sequence[JobRecord], sort: str | None = None, confidence: float = 0.95) -> list[Board]:
    """Boards from `records` (job records as stored), rows sorted by `sort`: a metric name, 'win_rate', 'label',
    or None for the board's primary metric."""
    boards = build_boards(records, confidence)
    check_sort(sort, boards)
    for board in boards:
        sort_rows(board, sort)
    return boards


@dataclass
class WinRates:
    """The summary of win rates under one protocol: per board, and over its boards (datasets)."""

    protocol: str
    boards: list[Board]
    #: contestant labels, best overall first (those not on every board after, by name)
    labels: list[str]
    #: label -> mean of its per-board mean win rates; only labels with a win rate on every board
    overall: dict[str, float]

    def rate(self, board: Board, label: str) -> SeedSummary | None:
        row = next((r for r in board.rows if r.label == label), None)
        return row.win_rate if row is not None else None


def win_rates(boards: Sequence[Board]) -> list[WinRates]:
    """One summary per protocol, over the boards of that protocol (one per dataset and settings)."""
    by_protocol: dict[str, list[Board]] = {}
    for board in boards:
        by_protocol.setdefault(board.protocol, []).append(board)
    out = []
    for protocol, group in by_protocol.items():
        labels = list(dict.fromkeys(r.label for b in group for r in b.rows if r.win_rate and r.win_rate.n))
        overall = {}
        for label in labels:
            rates = [next((r.win_rate for r in b.rows if r.label == label), None) for b in group]
            if all(rate is not None and rate.n for rate in rates):
                overall[label] = float(sum(rate.mean for rate in rates) / len(rates))
        labels.sort(key=lambda label: (label not in overall, -overall.get(label, 0.0), label))
        out.append(WinRates(protocol, list(group), labels, overall))
    return out
