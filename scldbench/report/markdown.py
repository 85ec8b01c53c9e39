"""Markdown renderings: the leaderboard across runs and the report of one run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scldbench.record import JobRecord
from scldbench.report import formatting as fmt
from scldbench.report import tables
from scldbench.report.leaderboard import Board, win_rates
from scldbench.report.metrics_info import RANKING_NOTE
from scldbench.report.published import published_tables


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _cell(cell: tables.Cell) -> str:
    text = _escape(cell.text)
    if cell.best:
        return f"**{text}** {fmt.BEST}"
    if cell.tied:
        return f"{text} {fmt.TIED}"
    return text


def table_markdown(table: tables.TableData, level: int = 3) -> str:
    """A GitHub-flavoured Markdown table with its title as a heading and its notes below."""
    align = [":---" if i in table.text_columns else "---:" for i in range(len(table.headers))]
    lines = [f"{'#' * level} {_escape(table.title)}", ""]
    lines.append("| " + " | ".join(_escape(h) for h in table.headers) + " |")
    lines.append("| " + " | ".join(align) + " |")
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows)
    lines.append("")
    lines.extend(f"*{_escape(note)}*  " for note in table.notes)
    return "\n".join(lines).rstrip() + "\n"


def board_markdown(board: Board, metrics: Sequence[str] | None = None, full: bool = True) -> str:
    parts = [table_markdown(tables.leaderboard_table(board, metrics))]
    if fmt.protocol_line(board):
        parts.append(_escape(fmt.protocol_line(board)) + "\n")
    if full:
        parts.append(table_markdown(tables.all_metrics_table(board), level=4))
    parts.extend(table_markdown(t, level=4) for t in published_tables(board))
    return "\n".join(parts)


def leaderboard_markdown(boards: Sequence[Board], metrics: Sequence[str] | None = None,
                         sort: str | None = None) -> str:
    """The leaderboard: one section per (dataset, protocol), ranking rules stated once."""
    head = ["# scldbench leaderboard", "", RANKING_NOTE]
    if sort:
        head.append(f"Rows sorted by `{sort}`, best first.")
    summaries = [table_markdown(tables.win_rate_table(s), level=2) for s in win_rates(boards)]
    return "\n".join(head) + "\n\n" + "\n".join([*summaries, *(board_markdown(b, metrics) for b in boards)])


def run_markdown(info: dict[str, Any], records: Sequence[JobRecord], boards: Sequence[Board],
                 metrics: Sequence[str] | None = None) -> str:
    """The report of one run: what ran where, the leaderboard, per-cluster scores, guidance sweep, jobs."""
    lines = [f"# scldbench report: {info.get('suite', 'run')}", ""]
    lines.extend(f"- **{name}**: {_escape(value)}" for name, value in tables.run_header(info, records))
    lines += ["", RANKING_NOTE, ""]
    parts = ["\n".join(lines)]
    parts.extend(board_markdown(b, metrics) for b in boards)
    for extra in (*tables.per_cluster_tables(records), tables.guidance_table(records)):
        if extra is not None:
            parts.append(table_markdown(extra))
    parts.append(table_markdown(tables.jobs_table(records)))
    parts.append("Figures (per-cluster heatmap, guidance sweep, embeddings, training time) are in the HTML report: "
                 "`scldbench report RUN_DIR --format html`.\n")
    return "\n".join(parts)
