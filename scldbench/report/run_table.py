"""The rich terminal tables of a run's records (`scldbench run`, `scldbench show`): one table per protocol.

By default each table is compact enough for a 100-column terminal: the protocol's headline metrics (the primary
metrics the catalogue declares for its space, without their cluster means), the fit time and the status, with a
failed job's error cut to one line; `metrics=["all"]` turns each table so that every metric and cost is a row,
and a list of names chooses the metric columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from scldbench.errors import ScldbenchError, suggest
from scldbench.record import JobRecord
from scldbench.results import ProtocolView, protocol_views

#: characters of a failed job's error shown in the table (the record keeps all of it)
ERROR_CHARS = 60
SPREAD_NOTE = "± is the standard deviation over seeds (no ± with one seed)"
#: costs: (header, record field, digits); the first is in the compact table, all of them with --metrics all
COSTS = (("fit s", "fit_seconds", 1), ("sample s", "sample_seconds", 2), ("fit +MB", "fit_peak_rss_delta_mb", 0))


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


def one_line(text: str, limit: int = ERROR_CHARS) -> str:
    """The first non-empty line of `text`, cut to `limit` characters with an ellipsis."""
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def group_records(records: Sequence[JobRecord]) -> dict[str, dict[str, list[ProtocolView]]]:
    """protocol -> label -> that label's views under the protocol (see `scldbench.results.protocol_views`); a job
    that failed before scoring counts under every protocol."""
    views = [v for r in records for v in protocol_views(r)]
    protocols = list(dict.fromkeys(v.protocol for v in views if v.protocol is not None)) or ["–"]
    groups: dict[str, dict[str, list[ProtocolView]]] = {p: {} for p in protocols}
    for view in views:
        for protocol in [view.protocol] if view.protocol is not None else protocols:
            groups[protocol].setdefault(view.record.label, []).append(view)
    return groups


def headline_metrics(protocol: str, present: Sequence[str]) -> list[str]:
    """The compact table's metric columns for `protocol`: the catalogue's primary metrics of the protocol's space
    (not their cluster means) that the records hold; else the first two primary metrics they hold."""
    from scldbench.metrics import catalogue
    from scldbench.protocols import PROTOCOLS

    space = PROTOCOLS[protocol].space if protocol in PROTOCOLS else None
    names = [m.name for m in catalogue.METRICS if m.primary and m.per_cluster and m.space == space]
    return [n for n in names if n in present] or [n for n in catalogue.primary_metrics() if n in present][:2]


def _ordered(present: Sequence[str]) -> list[str]:
    """Metric names in catalogue order, then the undeclared ones alphabetically."""
    from scldbench.metrics import catalogue

    declared = [m.name for m in catalogue.METRICS if not m.is_pattern]
    return [n for n in declared if n in present] + sorted(n for n in present if n not in declared)


def check_metric_names(records: Sequence[JobRecord], metrics: Sequence[str] | None) -> None:
    """Refuse names in `metrics` that no record holds (one line naming the known ones)."""
    if not metrics or list(metrics) == ["all"]:
        return
    known = sorted({m for r in records for v in protocol_views(r) for m in v.metrics})
    for name in metrics:
        if name not in known:
            raise ScldbenchError(f"--metrics names {name!r}, which no record holds{suggest(name, known)}; "
                                 f"choose from {', '.join(known) or 'none (no job was scored)'} or 'all'")


def check_metrics_declared(metrics: Sequence[str] | None) -> None:
    """Refuse names in `metrics` that the metric catalogue does not declare (checked before a run starts)."""
    from scldbench.metrics import catalogue

    if not metrics or list(metrics) == ["all"]:
        return
    declared = [m.name for m in catalogue.METRICS if not m.is_pattern]
    for name in metrics:
        if catalogue.find(name) is None:
            raise ScldbenchError(f"--metrics names {name!r}, which is not a metric{suggest(name, declared)}; "
                                 "give 'all' or names from `scldbench show RUN --metrics all`")


def _label(name: str) -> str:
    from scldbench.report.metrics_info import LABELS

    return LABELS.get(name, name)


def _summary(views: list[ProtocolView], name: str, digits: int = 3, field: bool = False) -> str:
    """Mean (± standard deviation) over the ok views of a metric (or, with `field`, of a record field)."""
    values = [getattr(v.record, name) if field else v.metrics.get(name) for v in views if v.ok]
    return _fmt(_mean(values), digits) + ("" if field else _spread(values))


def _status(views: list[ProtocolView]) -> Text:
    """'ok', or 'N failed: <the first error on one line>' cut with an ellipsis where the column ends."""
    failed = [v for v in views if not v.ok]
    if not failed:
        return Text("ok")
    error = one_line(failed[0].error or "")
    return Text(f"{len(failed)} failed" + (f": {error}" if error else ""), style="red", no_wrap=True,
                overflow="ellipsis")


def protocol_table(protocol: str, groups: dict[str, list[ProtocolView]], metrics: Sequence[str] | None,
                   title: str) -> Table:
    """One row per generator (label): mean over seeds (± standard deviation) of the headline metrics of the
    protocol (`metrics` None) or of the named ones, the fit time and the status."""
    present = {m for views in groups.values() for v in views for m in v.metrics}
    columns = [m for m in metrics if m in present] if metrics else headline_metrics(protocol, present)
    table = Table(title=title)
    table.add_column("generator", no_wrap=True)
    table.add_column("seeds", justify="right")
    for name in columns:
        table.add_column(_label(name), justify="right", no_wrap=True)
    header, field, digits = COSTS[0]
    table.add_column(header, justify="right", no_wrap=True)
    table.add_column("status")
    for label, views in groups.items():
        table.add_row(escape(label), str(len(views)), *(_summary(views, name) for name in columns),
                      _summary(views, field, digits, field=True), _status(views))
    return table


def _chunks(labels: list[str], widths: list[int], room: int) -> list[list[int]]:
    """Indexes of `labels` in runs whose columns (`widths`, borders included) fit in `room` characters."""
    chunks: list[list[int]] = [[]]
    used = 0
    for i, width in enumerate(widths):
        if chunks[-1] and used + width > room:
            chunks.append([])
            used = 0
        chunks[-1].append(i)
        used += width
    return chunks


def protocol_tables_all(protocol: str, groups: dict[str, list[ProtocolView]], title: str, width: int
                        ) -> list[Table]:
    """Every metric and cost of the protocol, one row each (by the name `--metrics` takes) and one column per
    generator; generators that do not fit in `width` go on to a further table."""
    present = {m for views in groups.values() for v in views for m in v.metrics}
    names = _ordered(present)
    labels = list(groups)
    rows: list[tuple[str, list[Any]]] = [("seeds", [str(len(groups[label])) for label in labels])]
    rows += [(name, [_summary(groups[label], name) for label in labels]) for name in names]
    rows += [(header, [_summary(groups[label], field, digits, field=True) for label in labels])
             for header, field, digits in COSTS]
    statuses = [_status(groups[label]) for label in labels]
    name_width = max(len(name) for name, _ in rows) + 3
    widths = [max(len(label), 8, *(len(str(values[i])) for _, values in rows)) + 3 for i, label in enumerate(labels)]
    chunks = _chunks(labels, widths, max(width - name_width - 1, 20))
    tables = []
    for n, chunk in enumerate(chunks, start=1):
        part = f" ({n}/{len(chunks)})" if len(chunks) > 1 else ""
        table = Table(title=f"{title}{part}")
        table.add_column("metric", no_wrap=True)
        for i in chunk:
            table.add_column(escape(labels[i]), justify="right", no_wrap=True, max_width=widths[i] - 3)
        for name, values in rows:
            table.add_row(name, *(values[i] for i in chunk))
        table.add_row("status", *(statuses[i] for i in chunk))
        tables.append(table)
    return tables


def results_table(records: Sequence[JobRecord], title: str, caption: str | None = None,
                  metrics: Sequence[str] | None = None, width: int = 100) -> Group:
    """The run's tables, one per protocol, under `title` (rich markup), with `caption` and the spread note below.

    `metrics`: None for the compact columns (one row per generator), ``["all"]`` for every metric and cost (one
    row per metric, one column per generator, split into tables that fit `width`), or metric names (a protocol
    whose records lack one shows the others).
    """
    parts: list[Any] = [Text.from_markup(title, style="bold")]
    for protocol, groups in group_records(records).items():
        if metrics and list(metrics) == ["all"]:
            parts.extend(protocol_tables_all(protocol, groups, f"protocol {protocol}", width))
        else:
            parts.append(protocol_table(protocol, groups, metrics, f"protocol {protocol}"))
    notes = [n for n in (caption, SPREAD_NOTE) if n]
    parts.append(Text.from_markup("\n".join(notes), style="dim"))
    return Group(*parts)
