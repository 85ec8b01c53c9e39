"""Reading results: job records of a store, each seen once per protocol that scored it, and `load_results`, a tidy
table of every score for people who plot results themselves.

`protocol_views` is the one place that turns a record into what a protocol's board sees (`ProtocolView`); every
report reads scores through it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from scldbench.errors import ScldbenchError
from scldbench.record import JobRecord, asked_settings, is_number
from scldbench.store import find_runs

#: how many hex digits of the data fingerprint name a dataset read from a file
SHORT_FINGERPRINT = 8


def _numeric(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


@dataclass(kw_only=True)
class ProtocolView:
    """A job record as one protocol's board sees it: the record, and that protocol's scores of it.

    Parameters
    ----------
    record
        The job record.
    protocol
        The protocol's name; None for a job that no protocol scored (it failed before scoring).
    description, settings
        The protocol's description and settings as the job recorded them.
    metrics
        The protocol's numeric metrics of the job.
    per_cluster
        Cluster -> the protocol's per-cluster scores.
    status, error
        ``"ok"``, or ``"failed"`` with its one-line error: the job's when it failed, else the protocol's.
    """

    record: JobRecord
    protocol: str | None
    description: str = ""
    settings: dict[str, Any]
    metrics: dict[str, float]
    per_cluster: dict[str, Any]
    status: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def protocol_views(record: JobRecord) -> list[ProtocolView]:
    """The record once per protocol that scored it.

    A job that failed is failed under every protocol; a job that finished but whose scoring under one protocol
    failed is failed there only (its error says why). A job with no scores at all (it failed before scoring) is one
    view with protocol None: reports add it to every board of its data.
    """
    scores = record.protocol_scores()
    if not scores:
        return [ProtocolView(record=record, protocol=None, settings={}, metrics={}, per_cluster={},
                             status=record.status or "failed", error=record.error)]
    return [
        ProtocolView(
            record=record, protocol=name, description=score.description, settings=dict(score.settings),
            metrics=score.numeric_metrics(), per_cluster=dict(score.per_cluster),
            status=(score.status or "ok") if record.ok else (record.status or "failed"),
            error=score.error if record.ok else record.error,
        )
        for name, score in scores.items()
    ]


def settings_key(settings: dict[str, Any]) -> str:
    """A canonical text of the asked protocol settings: views with different keys never share a board (the parts a
    job scored on the sparse path do not count: they follow from the data's size)."""
    return json.dumps(asked_settings(settings), sort_keys=True, default=str)


def settings_text(settings: dict[str, Any]) -> str:
    """'n_components=50, n_trees=200': settings as a reader sees them."""
    return ", ".join(f"{k}={v}" for k, v in sorted((settings or {}).items()))


def dataset_name(record: JobRecord) -> str:
    """A named dataset by its name; a file by its stem and a short data fingerprint, never by the path as typed."""
    from scldbench.data.datasets import DATASETS

    name = str(record.dataset or "?")
    if name in DATASETS:
        return name
    stem = Path(name).name
    for suffix in (".gz", ".h5ad", ".h5", ".mtx"):
        stem = stem.removesuffix(suffix)
    fingerprint = str(record.fingerprint or "")[:SHORT_FINGERPRINT]
    return f"{stem} [{fingerprint}]" if fingerprint else stem


def dedupe(views: Iterable[ProtocolView]) -> list[ProtocolView]:
    """One view per job key, protocol and settings: the same job found in two run folders counts once (a finished
    one wins), but one sample scored with other settings stays, apart."""
    chosen: dict[tuple[str, str, str], ProtocolView] = {}
    for view in views:
        key = (view.record.key, str(view.protocol), settings_key(view.settings))
        previous = chosen.get(key)
        if previous is None or (not previous.ok and view.ok):
            chosen[key] = view
    return list(chosen.values())


def with_run_info(record: JobRecord, run: str, info: dict[str, Any]) -> JobRecord:
    """`record` tagged with the run folder it was read from, its dataset, fingerprint and note filled in from the
    run's `run.json` where the record lacks them."""
    return replace(
        record, run=run,
        dataset=record.dataset if record.dataset is not None else info.get("dataset"),
        fingerprint=record.fingerprint if record.fingerprint is not None else info.get("fingerprint"),
        dataset_note=record.dataset_note or info.get("note") or record.dataset_note,
    )


def load_records(store: str | Path) -> list[JobRecord]:
    """Every job record of every run folder under `store` (a run folder itself counts), tagged with its run."""
    store = Path(store)
    runs = find_runs(store)
    if not runs:
        raise ScldbenchError(f"no runs under {store} (no run.json found); make one with `scldbench run SUITE --out "
                             f"{store}/NAME` or give the folder that holds your runs")
    records = []
    for run in runs:
        info = run.read_run()
        name = str(run.root.relative_to(store)) if run.root != store else run.root.name
        records.extend(with_run_info(r, name, info) for r in run.records())
    return records


COLUMNS = ("dataset", "fingerprint", "protocol", "settings", "generator", "label", "params", "seed", "metric",
           "value", "cluster", "status", "error", "run", "job_id")


def results_frame(records: Sequence[JobRecord]) -> pd.DataFrame:
    """The tidy table of `records` (see `load_results`)."""
    rows = []
    for view in dedupe(v for r in records for v in protocol_views(r)):
        record = view.record
        base = {
            "dataset": dataset_name(record), "fingerprint": record.fingerprint, "protocol": view.protocol,
            "settings": settings_key(view.settings), "generator": record.generator, "label": record.label,
            "params": json.dumps(record.params or {}, sort_keys=True, default=str), "seed": record.seed,
            "status": view.status, "error": view.error, "run": record.run, "job_id": record.job_id,
        }
        values = dict(view.metrics)
        if view.ok:
            timings = {"fit_seconds": record.fit_seconds, "sample_seconds": record.sample_seconds}
            values |= {name: float(value) for name, value in timings.items() if _numeric(value)}
        if not values:
            rows.append(base | {"metric": None, "value": math.nan, "cluster": None})
        rows.extend(base | {"metric": name, "value": value, "cluster": None} for name, value in values.items())
        for cluster, scores in view.per_cluster.items():
            rows.extend(base | {"metric": name, "value": float(value), "cluster": str(cluster)}
                        for name, value in (scores or {}).items() if _numeric(value))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["seed"] = frame["seed"].astype("Int64")
    frame["value"] = frame["value"].astype(float)
    return frame


def load_results(path: str | Path) -> pd.DataFrame:
    """Every score of every job under `path` (a run folder or a folder of runs) as one tidy table.

    One row per job x protocol x metric (`cluster` empty), plus one row per job x protocol x cluster x metric for
    per-cluster scores (`cluster` names the cluster). Columns: dataset (a name, or a file's stem with a short
    fingerprint), fingerprint (of the prepared data: data, labels, split, preparation settings), protocol,
    settings (the protocol settings as JSON text), generator, label, params (JSON text), seed, metric, value,
    cluster, status, error, run, job_id. A failed job keeps one row with an empty metric, so failures stay
    visible. Jobs found in two run folders count once. Compare values only within one (fingerprint, protocol,
    settings) group: the leaderboard never mixes them.

    Parameters
    ----------
    path
        A run folder made by `scldbench run` (or `run_suite`), or a folder holding run folders at any depth.

    Returns
    -------
    pandas.DataFrame
        The tidy table described above, one row per score.

    Raises
    ------
    ScldbenchError
        When `path` does not exist or holds no run.

    Examples
    --------
    >>> import scldbench
    >>> df = scldbench.load_results("runs")  # doctest: +SKIP
    >>> df[(df.metric == "rf_auc") & df.cluster.isna()].groupby(["dataset", "protocol", "label"]).value.mean()
    ... # doctest: +SKIP
    """
    return results_frame(load_records(path))
