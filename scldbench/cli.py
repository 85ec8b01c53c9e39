"""The `scldbench` command line: run suites, list what exists, show runs.

Importing this module stays light (typer, rich and scldbench.errors): every command imports what it needs when it
runs, so that `scldbench --help` and shell completion answer at once.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from scldbench.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_JOBS_FAILED,
    EXIT_TERMINATED,
    ScldbenchError,
    Terminated,
)
from scldbench.jobguard import raise_terminated

if TYPE_CHECKING:
    from scldbench.record import JobRecord

app = typer.Typer(
    help="Benchmark generators of single-cell RNA-seq data (SCLD and baselines) under a pinned protocol.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# output that is not a terminal (logs, pipes) gets wide tables, unless COLUMNS says how wide
_width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
console = Console(width=_width)
err_console = Console(stderr=True, width=_width)
METRICS_HELP = ("Metric columns of the table: 'all' (every metric and cost) or comma-separated names "
                "(default: each protocol's headline metrics and the fit time).")


class _WarningLine(logging.Handler):
    """Warnings of the store and runner (a damaged record skipped, records moved aside) as one line on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(Text("warning: ", style="yellow") + Text(record.getMessage()), highlight=False,
                          soft_wrap=True)


_logger = logging.getLogger("scldbench")
if not any(isinstance(h, _WarningLine) for h in _logger.handlers):
    _logger.addHandler(_WarningLine(level=logging.WARNING))


def friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a ScldbenchError into one line on stderr and exit code 2, with no traceback; Ctrl-C and SIGTERM
    into one line and exit codes 130 and 143 (see scldbench.errors for every exit code)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ScldbenchError as exc:
            err_console.print(Text("error: ", style="bold red") + Text(str(exc)), highlight=False, soft_wrap=True)
            raise typer.Exit(code=EXIT_BAD_INPUT) from None
        except Terminated:
            err_console.print("[bold red]terminated[/bold red] (SIGTERM): finished jobs are kept in the run folder; "
                              "run the same command again to finish the rest", highlight=False)
            raise typer.Exit(code=EXIT_TERMINATED) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/bold red]: finished jobs are kept in the run folder; "
                              "run the same command again to finish the rest", highlight=False)
            raise typer.Exit(code=EXIT_INTERRUPTED) from None

    return wrapper


def _print_version(value: bool) -> None:
    if value:
        from scldbench import __version__

        typer.echo(f"scldbench {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    pass


@app.command()
@friendly
def run(
    suite: str = typer.Argument(..., help="A built-in suite name (see `scldbench list suites`) or a .toml path."),
    data: str = typer.Option(None, "--data", help="Run on this dataset (name or .h5ad / 10x .h5 / matrix folder)."),
    layer: str = typer.Option(None, "--layer", help="The layer holding raw counts (e.g. counts; raw for adata.raw) "
                              "when X holds other values; overrides the suite's layer."),
    labels: str = typer.Option(None, "--labels", help="obs column with cell labels (otherwise clusters are computed)."),
    clusters: int = typer.Option(None, "--clusters", min=2, help="Compute this many Leiden clusters as labels."),
    generators: str = typer.Option(None, "--generators", help="Comma-separated generator names to run."),
    seeds: int = typer.Option(None, "--seeds", min=1, help="Number of seeds (0..N-1), overriding the suite."),
    seed: int = typer.Option(None, "--seed", min=0, help="Run this one seed (not with --seeds)."),
    out: Path = typer.Option(None, "--out", help="Run folder (default runs/<suite>); finished jobs there are reused."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Prepare the data again instead of using the cache."),
    executor: str = typer.Option(
        None, "--executor", help="serial, processes or ray (default: processes, as many as cores and memory allow)."
    ),
    workers: int = typer.Option(None, "--workers", help="Jobs at once for --executor processes (default: from the "
                                "machine's cores and free memory)."),
    threads: int = typer.Option(None, "--threads", help="BLAS / torch threads per job (default: cores / workers; "
                                "1 per Ray task)."),
    address: str = typer.Option(None, "--address", help="Ray cluster to join (`auto`: the running one); without it "
                                "--executor ray starts a local Ray on this machine."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Prepare the data and list the planned jobs (label, seed, "
                                 "job id) and which the run folder already holds; fit nothing."),
    metrics: str = typer.Option(None, "--metrics", help=METRICS_HELP),
    quiet: bool = typer.Option(False, "--quiet", help="Print only the final table."),
) -> None:
    """Run a suite: fit every generator, sample, score, and print the table."""
    if seed is not None and seeds is not None:
        raise ScldbenchError("give either --seeds N (seeds 0..N-1) or --seed K (that one seed), not both")
    previous = signal.signal(signal.SIGTERM, raise_terminated)  # a scheduler's kill ends like Ctrl-C
    try:
        _run(suite, data=data, layer=layer, labels=labels, clusters=clusters, generators=generators, seeds=seeds,
             seed=seed, out=out, device=device, no_cache=no_cache, executor=executor, workers=workers,
             threads=threads, address=address, dry_run=dry_run, metrics=metrics, quiet=quiet)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(suite: str, *, data: str | None, layer: str | None, labels: str | None, clusters: int | None,
         generators: str | None, seeds: int | None, seed: int | None, out: Path | None, device: str,
         no_cache: bool, executor: str | None, workers: int | None, threads: int | None, address: str | None,
         dry_run: bool, metrics: str | None, quiet: bool) -> None:
    from scldbench.report.run_table import check_metrics_declared
    from scldbench.runner import RunRequest, plan_run, run_suite
    from scldbench.store import safe_name
    from scldbench.suite import load_suite

    check_metrics_declared(_metric_choice(metrics))
    spec = load_suite(suite)
    chosen = [g.strip() for g in generators.split(",") if g.strip()] if generators else None
    request = RunRequest(
        suite=spec, out=out or Path("runs") / safe_name(spec.name), data=data, labels=labels, clusters=clusters,
        generators=chosen, seeds=seeds, seed=seed, layer=layer, device=device, use_cache=not no_cache,
        executor=executor, workers=workers, threads=threads, address=address,
    )
    if dry_run:
        _print_plan(plan_run(request))
        return
    if quiet:
        result = run_suite(request)
    elif console.is_terminal:
        from scldbench.progress import LiveReporter

        with LiveReporter(console) as reporter:
            result = run_suite(request, reporter)
    else:
        from scldbench.progress import LogReporter

        reporter = LogReporter(sys.stdout)
        try:
            result = run_suite(request, reporter)
        finally:
            reporter.close()
    console.print(_results(result.records, result.info, _metric_choice(metrics)))
    console.print(f"records: {result.store.root}")
    if any(not r.ok for r in result.records):
        raise typer.Exit(code=EXIT_JOBS_FAILED)


def _print_plan(plan: Any) -> None:
    """The jobs a run would do, and which the run folder already holds (`--dry-run`)."""
    from scldbench.runner import COMPUTE, RESCORE, REUSE, planned_action

    actions = {REUSE: "reuse (finished)", RESCORE: "rescore (stored sample)", COMPUTE: "fit"}
    info = plan.prepared.info
    title = (f"dry run: {len(plan.jobs)} jobs of {plan.request.suite.name} on {plan.dataset} "
             f"({info.get('n_train')} train / {info.get('n_test')} test cells, counts from "
             f"{'X' if plan.layer is None else f'layer {plan.layer!r}'}), into {plan.store.root}")
    table = Table()
    for name in ("generator", "seed", "job id", "would"):
        table.add_column(name, no_wrap=name != "would")
    counts = dict.fromkeys(actions, 0)
    for job in plan.jobs:
        action = planned_action(job, plan.store, plan.request.suite)
        counts[action] += 1
        table.add_row(escape(job.label), str(job.seed), job.job_id, actions[action])
    console.print(Text(title, style="bold"), highlight=False)
    if plan.note:
        console.print(Text("note: ", style="yellow") + Text(str(plan.note)), highlight=False)
    console.print(table)
    console.print(f"{counts[COMPUTE]} to fit, {counts[REUSE]} to reuse, {counts[RESCORE]} to rescore from stored "
                  "samples; nothing was fitted", highlight=False)


def _metric_choice(metrics: str | None) -> list[str] | None:
    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else []
    return names or None


def _results(records: list[JobRecord], info: dict[str, Any], metrics: list[str] | None = None) -> Any:
    from scldbench.report.run_table import results_table

    data = info.get("data_info", {})
    layer = f", counts from layer {info['layer']!r}" if info.get("layer") else ""
    title = (
        f"{info.get('suite')} on {info.get('dataset')} ({data.get('n_train')} train / {data.get('n_test')} test cells, "
        f"{data.get('n_genes')} genes, {data.get('n_clusters')} clusters{layer})"
    )
    caption = f"note: {escape(str(info['note']))}" if info.get("note") else None
    return results_table(records, escape(title), caption, metrics, width=console.width)


list_app = typer.Typer(help="List generators, datasets or suites.", no_args_is_help=True)
app.add_typer(list_app, name="list")


@list_app.command("generators")
@friendly
def list_generators_cmd() -> None:
    """Registered generators, what they can do, and how to install missing dependencies."""
    from scldbench.registry import list_generators

    table = Table(title="generators (entry-point group scldbench.generators)")
    for col in ("name", "conditional", "guidance", "GPU", "status", "description"):
        table.add_column(col)
    for info in list_generators():
        cls = info.cls
        yes = lambda flag: "yes" if flag else "-"  # noqa: E731
        status = "[green]available[/green]" if info.available else f"[red]unavailable[/red]: {info.hint}"
        table.add_row(
            info.name, yes(cls and cls.conditional), yes(cls and cls.supports_guidance),
            _gpu_use(cls), status, cls.description if cls else info.source,
        )
    console.print(table)


def _gpu_use(cls: type | None) -> str:
    """The GPU column of `list generators`."""
    if cls is None:
        return "-"
    return "needed" if cls.needs_gpu else "never" if cls.cpu_only else "used"


@list_app.command("datasets")
@friendly
def list_datasets_cmd() -> None:
    """Named datasets and where they come from."""
    from scldbench.data.cache import cache_dir
    from scldbench.data.datasets import DATASETS

    table = Table(title=f"datasets (cache: {cache_dir()})")
    for col in ("name", "source", "labels", "description"):
        table.add_column(col)
    for spec in DATASETS.values():
        if spec.offline:
            source = "embedded"
        else:
            cached = (cache_dir("datasets", spec.name) / spec.remote.filename).is_file()
            source = "downloaded" if cached else "download on first use"
        labels = spec.labels_key or (f"{spec.n_clusters} computed clusters" if spec.n_clusters else "computed")
        table.add_row(spec.name, source, labels, spec.description)
    console.print(table)
    console.print("Any .h5ad, 10x .h5 or 10x matrix folder can be given by path instead of a name.")


@list_app.command("suites")
@friendly
def list_suites_cmd() -> None:
    """Built-in suites."""
    from scldbench.suite import builtin_suites, load_suite

    table = Table(title="suites")
    for col in ("name", "dataset", "protocols", "seeds", "generators", "description"):
        table.add_column(col)
    for name in sorted(builtin_suites()):
        s = load_suite(name)
        gens = ", ".join((["all registered"] if s.include_all else []) + [e.label for e in s.generators])
        dataset = s.dataset + (f" (or {s.fallback_dataset})" if s.fallback_dataset else "")
        table.add_row(name, dataset, ", ".join(s.protocols), str(len(s.seeds)), gens, s.description)
    console.print(table)


@app.command()
@friendly
def show(
    run_dir: Path = typer.Argument(..., help="A run folder made by `scldbench run`."),
    as_json: bool = typer.Option(False, "--json", help="Print the records as one JSON list."),
    metrics: str = typer.Option(None, "--metrics", help=METRICS_HELP),
) -> None:
    """Show a finished (or partial) run."""
    from scldbench.store import RunStore

    store = RunStore(run_dir)
    info = store.read_run()
    records = store.records()
    if as_json:
        typer.echo(json.dumps([{k: v for k, v in r.to_json().items() if k != "traceback"} for r in records], indent=2))
        return
    from scldbench.report.run_table import check_metric_names

    check_metric_names(records, _metric_choice(metrics))
    console.print(_results(records, info, _metric_choice(metrics)))


from scldbench.report.commands import register as _register_report_commands  # noqa: E402

_register_report_commands(app, friendly, console)


def main() -> None:
    app()
