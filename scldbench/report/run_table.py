"""The results table that `scldbench run` and `scldbench show` print: one row per generator and protocol, rich."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from scldbench.results import protocol_views


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _spread(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return ""
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f" ±{sd:.3f}"


SPREAD_NOTE = "± is the standard deviation over seeds (no ± with one seed)"


def group_records(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(label, protocol) -> that label's protocol views (see `scldbench.results.protocol_views`)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        for view in protocol_views(record):
            groups.setdefault((record["label"], view["protocol"] or "–"), []).append(view)
    return groups


def results_table(records: Sequence[dict[str, Any]], title: str, caption: str | None = None) -> Table:
    """One row per generator (label) and protocol: mean over seeds (± standard deviation) of each score."""
    caption = "\n".join(c for c in (caption, SPREAD_NOTE) if c)
    table = Table(title=title, caption=caption, caption_justify="left")
    for name, justify in [("generator", "left"), ("protocol", "left"), ("seeds", "right"), ("status", "left"),
                          ("RF AUC", "right"), ("MMD", "right"), ("cluster AUC", "right"), ("fit s", "right"),
                          ("sample s", "right"), ("fit +MB", "right")]:
        table.add_column(name, justify=justify)
    for (label, protocol), group in group_records(records).items():
        ok = [r for r in group if r["status"] == "ok"]
        failed = [r for r in group if r["status"] != "ok"]
        status = "ok" if not failed else f"[red]{len(failed)} failed[/red]: {escape(failed[0].get('error') or '')}"

        def metric(name: str, rows: list[dict[str, Any]] = ok) -> str:
            values = [r["metrics"].get(name) for r in rows]
            return _fmt(_mean(values)) + _spread(values)

        table.add_row(
            escape(str(label)), protocol, str(len(group)), status, metric("rf_auc"), metric("mmd"),
            metric("cluster_rf_auc_mean"), _fmt(_mean([r.get("fit_seconds") for r in ok]), 1),
            _fmt(_mean([r.get("sample_seconds") for r in ok]), 2),
            _fmt(_mean([r.get("fit_peak_rss_delta_mb") for r in ok]), 0),
        )
    return table
