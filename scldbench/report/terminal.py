"""Rich (terminal) renderings of the report tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from scldbench.record import JobRecord
from scldbench.report import formatting as fmt
from scldbench.report import tables
from scldbench.report.leaderboard import Board, win_rates
from scldbench.report.metrics_info import RANKING_NOTE
from scldbench.report.published import published_tables


def _text(cell: tables.Cell) -> Text:
    if cell.best:
        return Text(f"{cell.text} {fmt.BEST}", style="bold green")
    if cell.tied:
        return Text(f"{cell.text} {fmt.TIED}", style="green")
    if cell.warn:
        return Text(cell.text, style="yellow")
    if cell.error:
        return Text(cell.text, style="red")
    return Text(cell.text)


def rich_table(table: tables.TableData) -> Table:
    caption = Text("\n".join(table.notes), style="dim") if table.notes else None
    out = Table(title=Text(table.title, style="italic"), caption=caption, caption_justify="left")
    for i, header in enumerate(table.headers):
        out.add_column(Text(header, style="bold"), justify="left" if i in table.text_columns else "right",
                       overflow="fold", no_wrap=i == 0, max_width=None if i == 0 else 36)
    for row in table.rows:
        out.add_row(*(_text(c) for c in row))
    return out


def print_boards(console: Console, boards: Sequence[Board], metrics: Sequence[str] | None = None,
                 sort: str | None = None) -> None:
    for board in boards:
        console.print(rich_table(tables.leaderboard_table(board, metrics)))
        for note in board.notes:
            console.print(Text("note: ", style="yellow") + Text(str(note)), highlight=False)
        for table in published_tables(board):
            console.print(rich_table(table))
    for summary in win_rates(boards):
        console.print(rich_table(tables.win_rate_table(summary)))
    if sort:
        console.print(Text(f"rows sorted by {sort}, best first"), highlight=False)
    console.print(RANKING_NOTE, style="dim", highlight=False)


def print_run(console: Console, info: dict[str, Any], records: Sequence[JobRecord], boards: Sequence[Board],
              metrics: Sequence[str] | None = None) -> None:
    for name, value in tables.run_header(info, records):
        style = "yellow" if name == "note" else "bold"
        console.print(Text(f"{name}: ", style=style) + Text(value))
    print_boards(console, boards, metrics)
    for extra in (*tables.per_cluster_tables(records), tables.guidance_table(records)):
        if extra is not None:
            console.print(rich_table(extra))
    console.print(rich_table(tables.jobs_table(records)))
