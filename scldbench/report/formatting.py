"""Plain-text pieces shared by the terminal, Markdown and HTML reports: numbers, intervals, scaled scores."""

from __future__ import annotations

import json
import math
from typing import Any

from scldbench import results
from scldbench.metrics.aggregate import ScaledScore, SeedSummary
from scldbench.report.leaderboard import Board, Row
from scldbench.report.metrics_info import PRIMARY_METRICS

MISSING = "–"
FLAG = "⚠"
BEST = "★"
TIED = "≈"


def number(value: Any) -> str:
    """A short, readable number: 3 decimals in [0.001, 10), fewer above, scientific below."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)
    x = float(value)
    if x == 0:
        return "0"
    size = abs(x)
    if size >= 100:
        return f"{x:.0f}"
    if size >= 10:
        return f"{x:.1f}"
    if size >= 0.001:
        return f"{x:.3f}"
    return f"{x:.1e}"


def interval(summary: SeedSummary | None) -> str:
    """'0.686 ± 0.709' (mean ± half-width of its 95% t-interval), just the mean with one value, '–' with none."""
    if summary is None or summary.n == 0:
        return MISSING
    if summary.n < 2 or not math.isfinite(summary.low):
        return number(summary.mean)
    return f"{number(summary.mean)} ± {number((summary.high - summary.low) / 2)}"


def scaled(score: ScaledScore | None) -> str:
    """'0.93', or '1.12 ⚠' when outside [0, 1]."""
    if score is None or not math.isfinite(score.scaled):
        return MISSING
    return f"{score.scaled:.2f}" + (f" {FLAG}" if score.outside else "")


def seeds_text(row: Row) -> str:
    return ",".join(str(s) for s in row.seeds)


def columns(board: Board, metrics: list[str] | None) -> list[str]:
    """The metric columns of a board: those asked for (and present), the primary metrics by default, or all of its
    metrics for ['all']."""
    if metrics is None:
        metrics = list(PRIMARY_METRICS)
    elif list(metrics) == ["all"]:
        return list(board.metrics)
    return [m for m in metrics if m in board.metrics]


def settings_text(settings: dict[str, Any]) -> str:
    """'n_components=50, n_trees=200': the settings as the jobs recorded them."""
    return results.settings_text(settings) or "settings not recorded"


def default_differences(protocol: str, settings: dict[str, Any]) -> list[str]:
    """'n_trees=200 (default 1000)' for each recorded setting that differs from the protocol's declared default."""
    from scldbench.protocols import PROTOCOLS
    from scldbench.suite import EvaluateSettings

    declared = PROTOCOLS.get(protocol)
    if declared is None:
        return []
    defaults = declared.record_settings(EvaluateSettings())
    same = lambda a, b: json.dumps(a, default=str) == json.dumps(b, default=str)  # noqa: E731
    return [f"{k}={v} (default {defaults[k]})" for k, v in sorted(settings.items())
            if k in defaults and not same(list(v) if isinstance(v, tuple) else v,
                                          list(defaults[k]) if isinstance(defaults[k], tuple) else defaults[k])]


def protocol_line(board: Board) -> str:
    """The protocol's declared description, unless the jobs were scored with other settings than it declares: then
    the settings that differ, so that a board never states a setting its jobs did not use."""
    differ = default_differences(board.protocol, board.settings)
    if differ:
        return f"Protocol {board.protocol}, scored with settings other than its defaults: {', '.join(differ)}."
    return f"Protocol {board.protocol}: {board.protocol_description}" if board.protocol_description else ""


def note_lines(board: Board) -> list[str]:
    """Lines every rendering shows under a board's title: fallback-dataset notes, the settings the jobs were
    scored with, the prepared data's fingerprint and the runs behind it."""
    lines = [f"note: {note}" for note in board.notes]
    lines.append(f"protocol settings used: {settings_text(board.settings)}")
    if board.fingerprint:
        lines.append(f"prepared data fingerprint: {board.fingerprint}")
    if board.runs:
        lines.append(f"runs: {', '.join(board.runs)}")
    return lines
