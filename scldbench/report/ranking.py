"""Ranking within a board: which generator is best on a metric (and whether beyond its interval), and the mean win
rate across metrics. Controls are shown on every board but never ranked: they take no part in either.

Win rate (HELM's mean win rate): on one seed and one metric, a generator's share of the other generators on the
board that it beats there (ties count half), by the metric's declared direction; averaged over the ranked metrics
it has on that seed. Generators are compared only within the same seed; the row reports the mean over seeds with
its 95% t-interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from scldbench.metrics.aggregate import SeedSummary, mean_interval
from scldbench.report.metrics_info import TIMINGS, Direction, direction, metric_order

if TYPE_CHECKING:
    from scldbench.report.leaderboard import Row

#: metrics that a control or a collapsed generator can "win" alone (precision is 1.0 for cells copied from one real
#: cell): they are marked best only where the same generator is marked on their partner too
PARTNERS = {"precision": "recall", "recall": "precision", "density": "coverage", "coverage": "density"}
BEST = "best"  # best mean, and its interval clear of every other generator's
TIED = "tied"  # best mean or overlapping it: an exact tie, an overlapping interval, or no interval (one seed)


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def ranked(metric: str) -> bool:
    return direction(metric).kind != "info"


def win_rate_metrics(metrics: Iterable[str]) -> list[str]:
    """The metrics a win rate averages over: every ranked metric of the board except timings."""
    return [m for m in metric_order(set(metrics)) if ranked(m) and m not in TIMINGS]


def primary_metric(metrics: Iterable[str]) -> str | None:
    """The metric rows are ranked by: the first ranked metric in the declared column order."""
    return next(iter(win_rate_metrics(metrics)), None)


def badness_range(rule: Direction, summary: SeedSummary | None) -> tuple[float, float]:
    """The interval of `summary` in the metric's 'smaller is better' scale (a point without an interval)."""
    if summary is None:
        return math.nan, math.nan
    point = rule.badness(summary.mean)
    if summary.n < 2 or not (math.isfinite(summary.low) and math.isfinite(summary.high)):
        return point, point
    if rule.kind == "lower":
        return summary.low, summary.high
    if rule.kind == "higher":
        return -summary.high, -summary.low
    ends = sorted((abs(summary.low - rule.target), abs(summary.high - rule.target)))
    if summary.low <= rule.target <= summary.high:
        return 0.0, ends[1]
    return ends[0], ends[1]


def mark_metric(rows: Sequence[Row], metric: str) -> dict[str, str]:
    """label -> BEST or TIED among the contestants with a value (nothing with fewer than two of them)."""
    rule = direction(metric)
    scored = [(rule.badness(r.mean(metric)), r) for r in rows if not r.is_control]
    scored = [(b, r) for b, r in scored if math.isfinite(b)]
    if len(scored) < 2 or rule.kind == "info":
        return {}
    top, best = min(scored, key=lambda item: item[0])
    summary = best.summaries[metric]
    _, high = badness_range(rule, summary)
    has_interval = summary.n >= 2 and math.isfinite(summary.low) and math.isfinite(summary.high)
    close = [r.label for b, r in scored if r is not best
             and (_same(b, top) or badness_range(rule, r.summaries.get(metric))[0] <= high)]
    if has_interval and not close:
        return {best.label: BEST}
    return {best.label: TIED} | dict.fromkeys(close, TIED)


def mark_rows(rows: Sequence[Row], metrics: Iterable[str]) -> dict[str, dict[str, str]]:
    """metric -> {label: BEST | TIED}; partnered metrics keep a mark only where the partner marks the same row."""
    metrics = list(metrics)
    raw = {m: mark_metric(rows, m) for m in metrics if ranked(m)}
    marks = {}
    for metric, found in raw.items():
        partner = PARTNERS.get(metric)
        if partner in raw:
            found = {label: kind for label, kind in found.items() if label in raw[partner]}
        if found:
            marks[metric] = found
    return marks


def _seed_value(row: Row, metric: str, seed: int) -> float:
    values = [v.metrics.get(metric) for v in row.ok if v.record.seed == seed]
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else math.nan


def seed_win_rates(rows: Sequence[Row], metrics: Iterable[str]) -> dict[str, dict[int, float]]:
    """label -> seed -> mean win rate of each contestant on that seed (see the module docstring)."""
    contestants = [r for r in rows if not r.is_control]
    metrics = win_rate_metrics(metrics)
    seeds = sorted({v.record.seed for r in contestants for v in r.ok})
    out: dict[str, dict[int, float]] = {r.label: {} for r in contestants}
    for seed in seeds:
        shares: dict[str, list[float]] = {r.label: [] for r in contestants}
        for metric in metrics:
            rule = direction(metric)
            values = [(r.label, rule.badness(_seed_value(r, metric, seed))) for r in contestants]
            values = [(label, b) for label, b in values if math.isfinite(b)]
            if len(values) < 2:
                continue
            for label, b in values:
                beaten = sum(0.5 if _same(b, o) else float(b < o) for other, o in values if other != label)
                shares[label].append(beaten / (len(values) - 1))
        for label, found in shares.items():
            if found:
                out[label][seed] = float(np.mean(found))
    return out


def win_rate_summaries(rows: Sequence[Row], metrics: Iterable[str], confidence: float = 0.95
                       ) -> dict[str, SeedSummary]:
    """label -> mean win rate over seeds with its t-interval (contestants only)."""
    return {label: mean_interval(per_seed.values(), confidence)
            for label, per_seed in seed_win_rates(rows, metrics).items()}
