"""The report commands of the CLI (`report`, `leaderboard`), registered on the main Typer app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

FORMAT_HELP = "rich (print to the terminal), md (Markdown file) or html (one self-contained HTML file)."
LEADERBOARD_FORMAT_HELP = (f"{FORMAT_HELP[:-1]}, or csv (every score of every job as one tidy table, the same as "
                           "scldbench.load_results).")
METRICS_HELP = "Comma-separated metric columns for the main table, or 'all' (default: the primary metrics)."


def register(app: typer.Typer, friendly: Callable[..., Any], console: Console) -> None:
    """Add the report commands to `app`; `friendly` turns user errors into one-line messages."""

    @app.command()
    @friendly
    def report(
        run_dir: Path = typer.Argument(..., help="A run folder made by `scldbench run`."),
        form: str = typer.Option("rich", "--format", "-f", help=FORMAT_HELP),
        output: Path = typer.Option(None, "--output", "-o", help="File to write (default RUN_DIR/report.md|html)."),
        metrics: str = typer.Option(None, "--metrics", help=METRICS_HELP),
        embedding: str = typer.Option("umap", "--embedding", help="Embedding of real vs generated cells in HTML: "
                                      "umap, pca or none."),
    ) -> None:
        """Report of one run: protocol, dataset, leaderboard, per-cluster scores, guidance, figures, jobs."""
        from scldbench.report import build

        build.check_choice(form, build.FORMATS, "--format")
        build.check_choice(embedding, build.EMBEDDINGS, "--embedding")
        chosen = build.parse_metrics(metrics)
        if form == "rich":
            from scldbench.report.leaderboard import leaderboard
            from scldbench.report.terminal import print_run

            _, info, records = build.load_run(run_dir)
            boards = leaderboard(records)
            build.check_metrics(chosen, boards)
            print_run(console, info, records, boards, chosen)
            return
        text = build.run_document(run_dir, form, chosen, embedding)
        path = build.write(output or run_dir / f"report.{form}", text)
        typer.echo(str(path))

    @app.command("leaderboard")
    @friendly
    def leaderboard_cmd(
        store: Path = typer.Argument(Path("runs"), help="A folder of runs (every run folder below it counts)."),
        sort: str = typer.Option(None, "--sort", help="Sort rows by this metric, best first, or by 'win_rate' or "
                                 "'label' (default: the board's primary metric)."),
        form: str = typer.Option("rich", "--format", "-f", help=LEADERBOARD_FORMAT_HELP),
        output: Path = typer.Option(None, "--output", "-o",
                                    help="File to write (default STORE/leaderboard.md|html, STORE/results.csv)."),
        metrics: str = typer.Option(None, "--metrics", help=METRICS_HELP),
    ) -> None:
        """One table per prepared dataset, protocol and settings across all runs in STORE, and a summary of win
        rates: mean ± half-width of the 95% t-interval over seeds, best marked only beyond its interval."""
        from scldbench.report import build

        build.check_choice(form, build.LEADERBOARD_FORMATS, "--format")
        if form == "csv":
            typer.echo(str(build.write(output or store / "results.csv", build.results_csv(store))))
            return
        chosen = build.parse_metrics(metrics)
        boards = build.store_boards(store, sort, chosen)
        chosen = build.with_sort_column(chosen, sort)
        if form == "rich":
            from scldbench.report.terminal import print_boards

            print_boards(console, boards, chosen, sort)
            return
        text = build.leaderboard_document(boards, form, chosen, sort)
        path = build.write(output or store / f"leaderboard.{form}", text)
        typer.echo(str(path))
