"""Report tables as plain data (headers, cells with best/flag marks), rendered alike by rich, Markdown and HTML."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from scldbench.metrics.aggregate import mean_interval
from scldbench.record import JobRecord, asked_settings
from scldbench.report import formatting as fmt
from scldbench.report import ranking
from scldbench.report.leaderboard import Board, WinRates
from scldbench.report.metrics_info import SCALED_METRICS, direction, label
from scldbench.results import ProtocolView, dataset_name, protocol_views

INTERVAL_NOTE = ("n: finished jobs; every ± is the half-width of the 95% t-interval over seeds (no ± with one "
                 "seed).")
WIN_RATE_NOTE = ("win rate: per ranked metric (timings excluded), the share of the other non-control generators "
                 "on this board it beats on the same seed, ties counting half, averaged over metrics; mean ± "
                 "half-width of its 95% t-interval over seeds. Controls are shown, not ranked.")
MARKS_NOTE = (f"{fmt.BEST}: best mean, its 95% interval clear of every other generator's; {fmt.TIED}: best mean "
              "or overlapping it (a tie, overlapping intervals, or one seed: not distinguishable). Precision and "
              "recall, density and coverage are marked only where the same generator is marked on both.")


@dataclass(frozen=True)
class Cell:
    text: str
    best: bool = False
    warn: bool = False
    error: bool = False
    tied: bool = False


def marked(board: Board, metric: str, row_label: str, text: str) -> Cell:
    kind = board.mark(metric, row_label)
    return Cell(text, best=kind == ranking.BEST, tied=kind == ranking.TIED)


@dataclass
class TableData:
    title: str
    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: columns (by index) that hold text rather than numbers (left-aligned)
    text_columns: set[int] = field(default_factory=lambda: {0})


def _metric_headers(metrics: Sequence[str]) -> list[str]:
    headers = []
    for metric in metrics:
        headers.append(label(metric))
        if metric in SCALED_METRICS:
            headers.append(f"{label(metric)} scaled")
    return headers


def leaderboard_table(board: Board, metrics: Sequence[str] | None = None) -> TableData:
    """One row per generator: n jobs, seeds, status, win rate, then mean ± interval per metric (scaled beside)."""
    chosen = fmt.columns(board, list(metrics) if metrics is not None else None)
    table = TableData(
        board.title, ["generator", "n", "seeds", "status", "win rate", *_metric_headers(chosen)],
        text_columns={0, 2, 3},
    )
    for row in board.rows:
        name = row.label + (" (control)" if row.is_control else "")
        rate = "control" if row.is_control else fmt.interval(row.win_rate)
        cells = [Cell(name), Cell(str(len(row.ok))), Cell(fmt.seeds_text(row)),
                 Cell(row.status(), error=bool(row.failed)), Cell(rate)]
        for metric in chosen:
            cells.append(marked(board, metric, row.label, fmt.interval(row.summaries.get(metric))))
            if metric in SCALED_METRICS:
                score = row.scaled.get(metric)
                cells.append(Cell(fmt.scaled(score), warn=bool(score and score.outside)))
        table.rows.append(cells)
    ranked_by = f"rows ranked by {label(board.primary)}" if board.primary else "rows in run order"
    table.notes = [*fmt.note_lines(board), f"{ranked_by}; {INTERVAL_NOTE}", WIN_RATE_NOTE, MARKS_NOTE]
    return table


def win_rate_table(summary: WinRates) -> TableData:
    """Generators by board (dataset) under one protocol: mean win rate ± interval over seeds, and over datasets."""
    headers = ["generator", *(b.dataset + (f" · {b.variant}" if b.variant else "") for b in summary.boards),
               "over datasets"]
    table = TableData(f"Win rates · protocol {summary.protocol}", headers)
    for name in summary.labels:
        cells = [Cell(name)]
        for board in summary.boards:
            cells.append(Cell(fmt.interval(summary.rate(board, name))))
        overall = summary.overall.get(name)
        cells.append(Cell(fmt.number(overall) if overall is not None else fmt.MISSING))
        table.rows.append(cells)
    table.notes = [
        "per dataset: mean win rate ± half-width of its 95% t-interval over seeds (generators compared within "
        "the same seed); over datasets: the mean of the per-dataset win rates, only for generators present on "
        f"every dataset of this protocol ({fmt.MISSING} otherwise).",
    ]
    return table


def all_metrics_table(board: Board) -> TableData:
    """Every metric (rows) by generator (columns), with its ranking rule: the long view of a board."""
    labels = [r.label for r in board.rows]
    table = TableData(f"{board.title}: all metrics", ["metric", "rule", *labels], text_columns={0, 1})
    for metric in board.metrics:
        cells = [Cell(metric), Cell(direction(metric).rule())]
        for row in board.rows:
            cells.append(marked(board, metric, row.label, fmt.number(row.mean(metric))))
        table.rows.append(cells)
    table.notes = ["means over finished jobs (no ±: the intervals are in the table above)"]
    return table


def by_protocol(records: Sequence[JobRecord]) -> dict[str, list[ProtocolView]]:
    """protocol -> the views of `records` under it (jobs scored by no protocol left out)."""
    out: dict[str, list[ProtocolView]] = {}
    for record in records:
        for view in protocol_views(record):
            if view.protocol is not None:
                out.setdefault(view.protocol, []).append(view)
    return out


def per_cluster_tables(records: Sequence[JobRecord]) -> list[TableData]:
    """Per protocol, generator x cluster: mean per-cluster RF AUC over seeds (paper Table 5); '–' where not
    scored."""
    from scldbench.report.plots import cluster_auc_matrix

    out = []
    for protocol, views in by_protocol(records).items():
        labels, clusters, matrix = cluster_auc_matrix(views)
        if not labels:
            continue
        table = TableData(f"Per-cluster RF AUC · protocol {protocol}", ["generator", *clusters])
        for name, values in zip(labels, matrix, strict=True):
            table.rows.append([Cell(name), *(Cell(fmt.number(v)) for v in values)])
        table.notes = ["means over finished jobs"]
        skipped = _skipped_clusters(views)
        if skipped:
            table.notes.append(f"not scored (too few real test cells): {', '.join(skipped)}")
        out.append(table)
    return out


def _skipped_clusters(views: Sequence[ProtocolView]) -> list[str]:
    names = {c for v in views for c, scores in v.per_cluster.items() if "skipped" in scores}
    return sorted(names, key=lambda c: (len(c), c))


def guidance_table(records: Sequence[JobRecord]) -> TableData | None:
    """Generator, cluster, w -> mean on-target fraction over seeds (paper Figure 5 as numbers)."""
    points: dict[tuple[str, str, float], list[float]] = {}
    for record in records:
        for p in record.guidance_sweep or []:
            key = (record.label, str(p["cluster"]), float(p["guidance"]))
            points.setdefault(key, []).append(float(p["on_target"]))
    if not points:
        return None
    table = TableData("Guidance sweep: fraction of cells on target", ["generator", "cluster", "w", "on target", "n"],
                      text_columns={0, 1})
    for (name, cluster, w), values in points.items():
        summary = mean_interval(values)
        table.rows.append([Cell(name), Cell(cluster), Cell(f"{w:g}"), Cell(fmt.interval(summary)),
                           Cell(str(summary.n))])
    table.notes = ["on target: mean over seeds ± half-width of its 95% t-interval (no ± with one seed)"]
    return table


JOB_METRICS = 2  # the first ranked metrics of each protocol shown per job


def jobs_table(records: Sequence[JobRecord]) -> TableData:
    """Every job with its status, timings, memory, each protocol's first ranked scores and the error (failed jobs
    included; a protocol whose scoring failed shows its error)."""
    views = {p: {id(v.record): v for v in found} for p, found in by_protocol(records).items()}
    scored = [(p, m) for p, vs in views.items()
              for m in ranking.win_rate_metrics({m for v in vs.values() for m in v.metrics})[:JOB_METRICS]]
    headers = ["job", "generator", "seed", "status", "fit s", "sample s", "fit peak MB",
               *(f"{label(m)} ({p})" for p, m in scored), "error"]
    table = TableData("Jobs", headers, text_columns={0, 1, 3, len(headers) - 1})
    for r in records:
        failed = not r.ok
        errors = [r.error] if failed else []
        cells = [Cell(r.job_id), Cell(r.label), Cell(str(r.seed)), Cell(r.status, error=failed),
                 Cell(fmt.number(r.fit_seconds)), Cell(fmt.number(r.sample_seconds)),
                 Cell(fmt.number(r.fit_peak_rss_mb))]
        for protocol, metric in scored:
            view = views[protocol].get(id(r))
            cells.append(Cell(fmt.number(view.metrics.get(metric) if view else None)))
        for protocol, found in views.items():
            view = found.get(id(r))
            if not failed and view is not None and not view.ok:
                errors.append(f"{protocol}: {view.error or view.status}")
        text = "; ".join(e for e in errors if e)
        cells.append(Cell(text, error=bool(text)))
        table.rows.append(cells)
    return table


def run_header(info: dict[str, Any], records: Sequence[JobRecord]) -> list[tuple[str, str]]:
    """(name, value) pairs describing a run: suite, dataset and note, protocol, data, device, versions, command."""
    data = info.get("data_info") or {}
    notes = sorted({n for n in [info.get("note"), *(r.dataset_note for r in records)] if n})
    versions = info.get("versions") or next((r.versions for r in records if r.versions), {})
    pairs = [
        ("suite", str(info.get("suite", "–"))),
        ("dataset", ", ".join(sorted({dataset_name(r) for r in records})) or "–"),
        *(("note", n) for n in notes),
        ("cells", f"{data.get('n_train', '–')} train / {data.get('n_test', '–')} test, {data.get('n_genes', '–')} "
                  f"genes, {data.get('n_clusters', '–')} clusters"),
        *(("protocol", f"{name} ({fmt.settings_text(settings)})") for name, settings in _protocols(records)),
        ("device", str(info.get("device", "–"))),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
        ("command", str(info.get("command", "–"))),
        ("created", str(info.get("created_at", "–"))),
    ]
    return pairs


def _protocols(records: Sequence[JobRecord]) -> list[tuple[str, dict[str, Any]]]:
    """(protocol, the settings its jobs were scored with) for each protocol and settings found in `records`."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for name, views in by_protocol(records).items():
        for view in views:
            if view.ok:
                asked = asked_settings(view.settings)
                seen.setdefault((name, repr(sorted(asked.items()))), asked)
    return [(name, settings) for (name, _), settings in seen.items()]
