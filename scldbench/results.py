"""Reading results: job records of a store, each seen once per protocol that scored it, and `load_results`, a tidy
table of every score for people who plot results themselves.

`protocol_views` is the one place that knows where a record keeps its scores; every report reads records through
it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from scldbench.errors import ScldbenchError
from scldbench.store import find_runs

Record = dict[str, Any]
#: the fields a protocol view adds to a job record (read from record["scores"][protocol])
VIEW_FIELDS = ("protocol", "protocol_description", "settings", "metrics", "per_cluster", "status", "error")
#: how many hex digits of the data fingerprint name a dataset read from a file
SHORT_FINGERPRINT = 8


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _scores(record: Record) -> dict[str, Record]:
    """protocol -> {"description", "settings", "metrics", "per_cluster", "status", "error"} of one record."""
    scores = record.get("scores")
    if isinstance(scores, dict):
        return scores
    if record.get("protocol"):  # records written before 0.3.0 kept one protocol's scores at the top level
        return {str(record["protocol"]): {
            "description": record.get("protocol_description") or "", "settings": record.get("evaluate") or {},
            "metrics": record.get("metrics") or {}, "per_cluster": record.get("per_cluster") or {},
            "status": record.get("status"), "error": record.get("error"),
        }}
    return {}


def protocol_views(record: Record) -> list[Record]:
    """The record once per protocol that scored it: a copy whose `protocol`, `protocol_description`, `settings`,
    `metrics` (numeric only), `per_cluster`, `status` and `error` are that protocol's.

    A job that failed is failed under every protocol; a job that finished but whose scoring under one protocol
    failed is failed there only (its error says why). A job with no scores at all (it failed before scoring) is one
    view with protocol None: reports add it to every board of its data.
    """
    job_ok = record.get("status") == "ok"
    scores = _scores(record)
    if not scores:
        return [dict(record) | {"protocol": None, "protocol_description": "", "settings": {}, "metrics": {},
                                "per_cluster": {}, "status": record.get("status") or "failed",
                                "error": record.get("error")}]
    views = []
    for name, score in scores.items():
        score = score or {}
        status = (score.get("status") or "ok") if job_ok else (record.get("status") or "failed")
        error = score.get("error") if job_ok else record.get("error")
        views.append(dict(record) | {
            "protocol": name, "protocol_description": score.get("description") or "",
            "settings": dict(score.get("settings") or {}),
            "metrics": {k: float(v) for k, v in (score.get("metrics") or {}).items() if _numeric(v)},
            "per_cluster": dict(score.get("per_cluster") or {}), "status": status, "error": error,
        })
    return views


def settings_key(settings: Record) -> str:
    """A canonical text of protocol settings: views with different keys never share a board."""
    return json.dumps(settings or {}, sort_keys=True, default=str)


def settings_text(settings: Record) -> str:
    """'n_components=50, n_trees=200': settings as a reader sees them."""
    return ", ".join(f"{k}={v}" for k, v in sorted((settings or {}).items()))


def dataset_name(record: Record) -> str:
    """A named dataset by its name; a file by its stem and a short data fingerprint, never by the path as typed."""
    from scldbench.data.datasets import DATASETS

    name = str(record.get("dataset") or "?")
    if name in DATASETS:
        return name
    stem = Path(name).name
    for suffix in (".gz", ".h5ad", ".h5", ".mtx"):
        stem = stem.removesuffix(suffix)
    fingerprint = str(record.get("fingerprint") or "")[:SHORT_FINGERPRINT]
    return f"{stem} [{fingerprint}]" if fingerprint else stem


def dedupe(records: Iterable[Record]) -> list[Record]:
    """One record per job key, or per job key, protocol and settings for protocol views: the same job found in two
    run folders counts once (a finished one wins), but one sample scored with other settings stays, apart."""
    chosen: dict[tuple[str, str, str], Record] = {}
    for record in records:
        job = record.get("key") or f"{record.get('_run')}/{record.get('job_id')}"
        key = (str(job), str(record.get("protocol")), settings_key(record.get("settings") or {}))
        previous = chosen.get(key)
        if previous is None or (previous.get("status") != "ok" and record.get("status") == "ok"):
            chosen[key] = record
    return list(chosen.values())


def _with_run_info(record: Record, run: str, info: Record) -> Record:
    out = dict(record)
    out["_run"] = run
    out.setdefault("dataset", info.get("dataset"))
    out.setdefault("fingerprint", info.get("fingerprint"))
    if not out.get("dataset_note") and info.get("note"):
        out["dataset_note"] = info["note"]
    return out


def load_records(store: str | Path) -> list[Record]:
    """Every job record of every run folder under `store` (a run folder itself counts), tagged with `_run`."""
    store = Path(store)
    runs = find_runs(store)
    if not runs:
        raise ScldbenchError(f"no runs under {store} (no run.json found); make one with `scldbench run SUITE --out "
                             f"{store}/NAME` or give the folder that holds your runs")
    records = []
    for run in runs:
        info = run.read_run()
        name = str(run.root.relative_to(store)) if run.root != store else run.root.name
        records.extend(_with_run_info(r, name, info) for r in run.records())
    return records


COLUMNS = ("dataset", "fingerprint", "protocol", "settings", "generator", "label", "params", "seed", "metric",
           "value", "cluster", "status", "error", "run", "job_id")


def results_frame(records: Sequence[Record]) -> pd.DataFrame:
    """The tidy table of `records` (see `load_results`)."""
    rows = []
    for view in dedupe(v for r in records for v in protocol_views(r)):
        base = {
            "dataset": dataset_name(view), "fingerprint": view.get("fingerprint"), "protocol": view["protocol"],
            "settings": settings_key(view["settings"]), "generator": view.get("generator"),
            "label": view.get("label"), "params": json.dumps(view.get("params") or {}, sort_keys=True,
                                                             default=str),
            "seed": view.get("seed"), "status": view["status"], "error": view.get("error"),
            "run": view.get("_run"), "job_id": view.get("job_id"),
        }
        values = dict(view["metrics"])
        if view["status"] == "ok":
            values |= {t: float(view[t]) for t in ("fit_seconds", "sample_seconds") if _numeric(view.get(t))}
        if not values:
            rows.append(base | {"metric": None, "value": math.nan, "cluster": None})
        rows.extend(base | {"metric": name, "value": value, "cluster": None} for name, value in values.items())
        for cluster, scores in view["per_cluster"].items():
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
