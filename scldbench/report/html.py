"""One self-contained HTML file: inline CSS, figures as base64 PNG, no scripts and no external URLs."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from typing import Any

from scldbench.record import JobRecord
from scldbench.report import formatting as fmt
from scldbench.report import tables
from scldbench.report.leaderboard import Board, win_rates
from scldbench.report.metrics_info import RANKING_NOTE
from scldbench.report.published import published_tables

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1500px;
       padding: 0 1.5rem; color: #1d2330; background: #fff; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: .3rem; } h2 { margin-top: 2.2rem; border-bottom: 2px solid #e3e7ee; }
h3 { margin-top: 1.6rem; }
dl.header { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; font-size: .92rem; }
dl.header dt { font-weight: 600; color: #4a5568; } dl.header dd { margin: 0; }
.note { background: #fff7e0; border-left: 4px solid #e0a800; padding: .5rem .8rem; margin: .6rem 0; }
.rules { font-size: .85rem; color: #4a5568; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .84rem; margin: .5rem 0; }
th, td { padding: .28rem .55rem; border-bottom: 1px solid #e3e7ee; white-space: nowrap; }
th { background: #f3f5f9; text-align: left; white-space: normal; min-width: 2.5rem; max-width: 6.5rem;
     vertical-align: bottom; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
span.pm { display: block; font-size: .75em; color: #6b7280; font-weight: 400; }
td.best { font-weight: 700; background: #e3f5e6; }
td.tied { background: #f1f8f2; }
td.warn { background: #fde2e1; color: #9b1c1c; }
td.error { color: #b42318; white-space: normal; max-width: 40rem; }
tr.control td:first-child { color: #6b7280; font-style: italic; }
p.tnote { font-size: .8rem; color: #6b7280; margin: .1rem 0; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #e3e7ee; }
figcaption { font-size: .85rem; color: #4a5568; }
"""


def _cell_html(cell: tables.Cell, text_column: bool) -> str:
    classes = [] if text_column else ["num"]
    classes += [name for name, on in (("best", cell.best), ("tied", cell.tied), ("warn", cell.warn),
                                      ("error", cell.error)) if on]
    mean, sep, half = cell.text.partition(" ± ")
    text = escape(mean) + (f" {fmt.BEST}" if cell.best else f" {fmt.TIED}" if cell.tied else "")
    if sep and not text_column:
        text += f'<span class="pm">± {escape(half)}</span>'
    elif sep:
        text = escape(cell.text)
    attr = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{attr}>{text}</td>"


def table_html(table: tables.TableData, css_class: str = "", level: int = 3) -> str:
    head = "".join(f"<th>{escape(h)}</th>" if i in table.text_columns else f'<th class="num">{escape(h)}</th>'
                   for i, h in enumerate(table.headers))
    body = []
    for row in table.rows:
        control = ' class="control"' if row and row[0].text.endswith("(control)") else ""
        cells = "".join(_cell_html(c, i in table.text_columns) for i, c in enumerate(row))
        body.append(f"<tr{control}>{cells}</tr>")
    notes = "".join(f'<p class="tnote">{escape(n)}</p>' for n in table.notes)
    cls = f' class="{css_class}"' if css_class else ""
    return (f"<h{level}>{escape(table.title)}</h{level}>\n<div class=\"scroll\"><table{cls}><thead><tr>{head}</tr>"
            f"</thead>\n<tbody>{''.join(body)}</tbody></table></div>{notes}\n")


def figure_html(png: bytes | None, caption: str, alt: str) -> str:
    if not png:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>\n")


def board_html(board: Board, metrics: Sequence[str] | None = None, level: int = 3) -> str:
    parts = [table_html(tables.leaderboard_table(board, metrics), "leaderboard", level=level)]
    parts += [f'<div class="note">note: {escape(n)}</div>' for n in board.notes]
    if fmt.protocol_line(board):
        parts.append(f'<p class="rules">{escape(fmt.protocol_line(board))}</p>')
    parts.append(table_html(tables.all_metrics_table(board), "all-metrics", level=4))
    parts.extend(table_html(t, "published", level=4) for t in published_tables(board))
    return "\n".join(parts)


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def header_html(pairs: Sequence[tuple[str, str]]) -> str:
    items = []
    for name, value in pairs:
        if name == "note":
            items.append(f'</dl><div class="note">note: {escape(value)}</div><dl class="header">')
        else:
            items.append(f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>")
    return f'<dl class="header">{"".join(items)}</dl>'


def leaderboard_html(boards: Sequence[Board], figures: dict[str, bytes | None] | None = None,
                     metrics: Sequence[str] | None = None, sort: str | None = None) -> str:
    """The leaderboard page: one section per (dataset, protocol); `figures` maps board title -> training time."""
    figures = figures or {}
    parts = ["<h1>scldbench leaderboard</h1>", f'<p class="rules">{escape(RANKING_NOTE)}</p>']
    if sort:
        parts.append(f'<p class="rules">Rows sorted by <code>{escape(sort)}</code>, best first.</p>')
    parts += [table_html(tables.win_rate_table(s), "win-rates", level=2) for s in win_rates(boards)]
    for board in boards:
        parts.append(board_html(board, metrics, level=2))
        parts.append(figure_html(figures.get(board.title), "Training and sampling time per generator (log scale).",
                                 f"training time, {board.title}"))
    return page("scldbench leaderboard", "\n".join(parts))


def run_html(info: dict[str, Any], records: Sequence[JobRecord], boards: Sequence[Board],
             figures: dict[str, bytes | None], metrics: Sequence[str] | None = None) -> str:
    """The report of one run. `figures` keys: cluster_heatmap, guidance_sweep, embeddings, training_times."""
    parts = [f"<h1>scldbench report: {escape(str(info.get('suite', 'run')))}</h1>",
             header_html(tables.run_header(info, records)), "<h2>Leaderboard</h2>",
             f'<p class="rules">{escape(RANKING_NOTE)}</p>']
    parts += [board_html(b, metrics) for b in boards]
    cluster_tables = tables.per_cluster_tables(records)
    sections = [
        ("cluster_heatmap", "Per-cluster scores", cluster_tables,
         "Per-cluster RF AUC (paper Table 5): cells generated for a cluster against real test cells of it."),
        ("guidance_sweep", "Guidance sweep", [t for t in [tables.guidance_table(records)] if t is not None],
         "Fraction of cells generated for a cluster that a classifier trained on real cells puts in it, per w."),
        ("embeddings", "Real vs generated cells", [],
         "Each panel embeds the real test cells with one generator's cells (first seed)."),
        ("training_times", "Training time", [],
         "Fit and sample seconds per generator, mean over seeds, min–max whiskers (paper Figure 4)."),
    ]
    for key, heading, found, caption in sections:
        figure = figure_html(figures.get(key), caption, heading)
        if figure or found:
            parts.append(f'<h2 id="{key}">{escape(heading)}</h2>')
            parts.append(figure)
            parts.extend(table_html(table) for table in found)
    parts.append(table_html(tables.jobs_table(records), "jobs", level=2))
    return page(f"scldbench report: {info.get('suite', 'run')}", "\n".join(parts))
