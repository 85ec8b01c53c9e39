"""Report tables as plain data (headers, cells with best/flag marks), rendered alike by rich, Markdown and HTML."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from scldbench.metrics.aggregate import mean_interval
from scldbench.report import formatting as fmt
from scldbench.report.leaderboard import Board
from scldbench.report.metrics_info import SCALED_METRICS, direction, label

Record = dict[str, Any]
INTERVAL_NOTE = "n: finished jobs; cells: mean ± half-width of the 95% t-interval over them (no ± with one job)."


@dataclass(frozen=True)
class Cell:
    text: str
    best: bool = False
    warn: bool = False
    error: bool = False


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
    """One row per generator: n jobs, seeds, status, then mean [95% interval] per metric (scaled beside)."""
    chosen = fmt.columns(board, list(metrics) if metrics is not None else None)
    table = TableData(
        board.title, ["generator", "n", "seeds", "status", *_metric_headers(chosen)], text_columns={0, 2, 3}
    )
    for row in board.rows:
        name = row.label + (" (control)" if row.is_control else "")
        cells = [Cell(name), Cell(str(len(row.ok))), Cell(fmt.seeds_text(row)),
                 Cell(row.status(), error=bool(row.failed))]
        for metric in chosen:
            cells.append(Cell(fmt.interval(row.summaries.get(metric)), best=fmt.is_best(board, metric, row)))
            if metric in SCALED_METRICS:
                score = row.scaled.get(metric)
                cells.append(Cell(fmt.scaled(score), warn=bool(score and score.outside)))
        table.rows.append(cells)
    table.notes = [*fmt.note_lines(board), INTERVAL_NOTE]
    return table


def all_metrics_table(board: Board) -> TableData:
    """Every metric (rows) by generator (columns), with its ranking rule: the long view of a board."""
    labels = [r.label for r in board.rows]
    table = TableData(f"{board.title}: all metrics", ["metric", "rule", *labels], text_columns={0, 1})
    for metric in board.metrics:
        cells = [Cell(metric), Cell(direction(metric).rule())]
        for row in board.rows:
            cells.append(Cell(fmt.number(row.mean(metric)), best=fmt.is_best(board, metric, row)))
        table.rows.append(cells)
    table.notes = ["means over finished jobs"]
    return table


def per_cluster_table(records: Sequence[Record]) -> TableData | None:
    """Generator x cluster: mean per-cluster RF AUC over seeds (paper Table 5); '–' where not scored."""
    from scldbench.report.plots import cluster_auc_matrix

    labels, clusters, matrix = cluster_auc_matrix(records)
    if not labels:
        return None
    table = TableData("Per-cluster RF AUC", ["generator", *clusters])
    for name, values in zip(labels, matrix, strict=True):
        table.rows.append([Cell(name), *(Cell(fmt.number(v)) for v in values)])
    skipped = _skipped_clusters(records)
    if skipped:
        table.notes = [f"not scored (too few real test cells): {', '.join(skipped)}"]
    return table


def _skipped_clusters(records: Sequence[Record]) -> list[str]:
    names = {c for r in records for c, v in (r.get("per_cluster") or {}).items() if "skipped" in v}
    return sorted(names, key=lambda c: (len(c), c))


def guidance_table(records: Sequence[Record]) -> TableData | None:
    """Generator, cluster, w -> mean on-target fraction over seeds (paper Figure 5 as numbers)."""
    points: dict[tuple[str, str, float], list[float]] = {}
    for record in records:
        for p in record.get("guidance_sweep") or []:
            key = (record["label"], str(p["cluster"]), float(p["guidance"]))
            points.setdefault(key, []).append(float(p["on_target"]))
    if not points:
        return None
    table = TableData("Guidance sweep: fraction of cells on target", ["generator", "cluster", "w", "on target", "n"],
                      text_columns={0, 1})
    for (name, cluster, w), values in points.items():
        summary = mean_interval(values)
        table.rows.append([Cell(name), Cell(cluster), Cell(f"{w:g}"), Cell(fmt.interval(summary)),
                           Cell(str(summary.n))])
    return table


def jobs_table(records: Sequence[Record]) -> TableData:
    """Every job with its status, timings, memory and error (failed jobs included)."""
    headers = ["job", "generator", "seed", "status", "fit s", "sample s", "fit peak MB", "RF AUC", "MMD", "error"]
    table = TableData("Jobs", headers, text_columns={0, 1, 3, 9})
    for r in records:
        metrics = r.get("metrics") or {}
        failed = r.get("status") != "ok"
        table.rows.append([
            Cell(str(r.get("job_id"))), Cell(str(r.get("label"))), Cell(str(r.get("seed"))),
            Cell(str(r.get("status")), error=failed), Cell(fmt.number(r.get("fit_seconds"))),
            Cell(fmt.number(r.get("sample_seconds"))), Cell(fmt.number(r.get("fit_peak_rss_mb"))),
            Cell(fmt.number(metrics.get("rf_auc"))), Cell(fmt.number(metrics.get("mmd"))),
            Cell(r.get("error") or "", error=failed),
        ])
    return table


def run_header(info: Record, records: Sequence[Record]) -> list[tuple[str, str]]:
    """(name, value) pairs describing a run: suite, dataset and note, protocol, data, device, versions, command."""
    data = info.get("data_info") or {}
    notes = sorted({n for n in [info.get("note"), *(r.get("dataset_note") for r in records)] if n})
    versions = info.get("versions") or next((r.get("versions") for r in records if r.get("versions")), {})
    pairs = [
        ("suite", str(info.get("suite", "–"))),
        ("dataset", str(info.get("dataset", "–"))),
        *(("note", n) for n in notes),
        ("cells", f"{data.get('n_train', '–')} train / {data.get('n_test', '–')} test, {data.get('n_genes', '–')} "
                  f"genes, {data.get('n_clusters', '–')} clusters"),
        ("protocol", f"{info.get('protocol', '–')}: {info.get('protocol_description', '')}"),
        ("device", str(info.get("device", "–"))),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
        ("command", str(info.get("command", "–"))),
        ("created", str(info.get("created_at", "–"))),
    ]
    return pairs
