"""From a run folder or a store to report text: reads the store, builds boards and figures, picks a renderer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scldbench.errors import ScldbenchError, suggest
from scldbench.record import JobRecord
from scldbench.report.leaderboard import Board, leaderboard
from scldbench.results import load_records, results_frame, with_run_info
from scldbench.store import RunStore

FORMATS = ("rich", "md", "html")
#: the leaderboard also writes the tidy table of every score (`scldbench.load_results`) as CSV
LEADERBOARD_FORMATS = (*FORMATS, "csv")
EMBEDDINGS = ("umap", "pca", "none")


def check_choice(value: str, allowed: Sequence[str], option: str) -> str:
    if value not in allowed:
        hint = suggest(value, allowed)
        raise ScldbenchError(f"{option} {value!r} is not known{hint}; use one of {', '.join(allowed)}")
    return value


def parse_metrics(value: str | None) -> list[str] | None:
    """'rf_auc,mmd' -> ['rf_auc', 'mmd']; 'all' -> ['all']; None -> None (the primary metrics)."""
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    return names or None


def check_metrics(metrics: Sequence[str] | None, boards: Sequence[Board]) -> None:
    if not metrics or list(metrics) == ["all"]:
        return
    known = sorted({m for b in boards for m in b.metrics})
    for name in metrics:
        if name not in known:
            raise ScldbenchError(
                f"--metrics names {name!r}, which no record holds{suggest(name, known)}; "
                f"choose from {', '.join(known)} or 'all'"
            )


def with_sort_column(metrics: Sequence[str] | None, sort: str | None) -> list[str] | None:
    """Show the sort metric even when it is not among the chosen columns."""
    from scldbench.report.metrics_info import PRIMARY_METRICS

    if sort is None or sort == "label":
        return list(metrics) if metrics is not None else None
    chosen = list(metrics) if metrics is not None else list(PRIMARY_METRICS)
    if chosen == ["all"] or sort in chosen:
        return chosen
    return [sort, *chosen]


def load_run(run_dir: Path) -> tuple[RunStore, dict[str, Any], list[JobRecord]]:
    if not run_dir.exists():
        raise ScldbenchError(f"{run_dir} does not exist; give a run folder made by `scldbench run ... --out DIR`")
    store = RunStore(run_dir)
    info = store.read_run()
    records = [with_run_info(r, run_dir.name, info) for r in store.records()]
    if not records:
        raise ScldbenchError(f"{run_dir} holds no job records yet; wait for `scldbench run` to finish a job")
    return store, info, records


def run_figures(store: RunStore, records: Sequence[JobRecord], embedding: str = "umap") -> dict[str, bytes | None]:
    from scldbench.report import plots
    from scldbench.report.tables import by_protocol

    first = next(iter(by_protocol(records).values()), [])
    figures = {
        "cluster_heatmap": plots.cluster_heatmap(first),
        "guidance_sweep": plots.guidance_sweep(records),
        "training_times": plots.training_times(records),
        "embeddings": None,
    }
    if embedding != "none":
        real = store.read_real_test()
        samples = plots.run_samples(records, store.read_samples)
        if real is not None and samples:
            figures["embeddings"] = plots.embeddings(real.X, samples, method=embedding)
    return figures


def run_document(run_dir: Path, form: str, metrics: Sequence[str] | None = None, embedding: str = "umap") -> str:
    """The Markdown or HTML report of one run folder."""
    store, info, records = load_run(run_dir)
    boards = leaderboard(records)
    check_metrics(metrics, boards)
    if form == "md":
        from scldbench.report.markdown import run_markdown

        return run_markdown(info, records, boards, metrics)
    from scldbench.report.html import run_html

    return run_html(info, records, boards, run_figures(store, records, embedding), metrics)


def leaderboard_document(boards: Sequence[Board], form: str, metrics: Sequence[str] | None = None,
                         sort: str | None = None) -> str:
    """The Markdown or HTML leaderboard of boards already built (and sorted)."""
    if form == "md":
        from scldbench.report.markdown import leaderboard_markdown

        return leaderboard_markdown(boards, metrics, sort)
    from scldbench.report.html import leaderboard_html
    from scldbench.report.plots import training_times

    figures = {b.title: training_times([v.record for row in b.rows for v in row.jobs]) for b in boards}
    return leaderboard_html(boards, figures, metrics, sort)


def store_boards(store: Path, sort: str | None, metrics: Sequence[str] | None) -> list[Board]:
    boards = leaderboard(load_records(store), sort)
    check_metrics(metrics, boards)
    return boards


def results_csv(store: Path) -> str:
    """The tidy table of every score under `store` (`scldbench.load_results`) as CSV text."""
    return results_frame(load_records(store)).to_csv(index=False)


def write(path: Path, text: str) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ScldbenchError(f"cannot write {path} ({exc.strerror}); give a writable --output path") from None
    return path
