"""Job records in the store's layout (record.scores[protocol]), written by hand for report tests, and a store of
run folders built from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scldbench.record import JobRecord
from scldbench.store import RunStore

FINGERPRINT = "0123456789abcdef01234567"
SETTINGS = {"n_trees": 1000, "n_components": 50}


def job(label: str, seed: int, rf_auc: float | None = None, mmd: float | None = None, *,
        generator: str | None = None, status: str = "ok", error: str | None = None, protocol: str = "p1",
        settings: dict[str, Any] | None = None, dataset: str = "toy", fingerprint: str = FINGERPRINT,
        per_cluster: dict[str, dict[str, Any]] | None = None, more: dict[str, dict[str, Any]] | None = None,
        params: dict[str, Any] | None = None, **metrics: float) -> JobRecord:
    """One job record. Its metrics (rf_auc, mmd and any keyword) are scored under `protocol` with `settings`;
    `more` adds other protocols as {name: score entry}. A failed job (status != 'ok') holds no scores."""
    values = {k: v for k, v in {"rf_auc": rf_auc, "mmd": mmd, **metrics}.items() if v is not None}
    scores = {protocol: {
        "description": f"toy protocol {protocol}", "settings": dict(SETTINGS if settings is None else settings),
        "metrics": values, "per_cluster": per_cluster or {}, "status": "ok", "error": None,
    }} | (more or {})
    return JobRecord.from_json({
        "job_id": f"{label}-{protocol}-seed{seed}-{fingerprint[:4]}", "key": f"{label}-{seed}-{fingerprint}",
        "order": 0, "suite": "toy-suite", "dataset": dataset, "dataset_note": None, "generator": generator or label,
        "label": label, "params": params or {}, "params_resolved": params or {}, "seed": seed,
        "fingerprint": fingerprint, "status": status, "error": error, "traceback": None,
        "fit_seconds": 1.0 + seed if status == "ok" else None, "sample_seconds": 0.1 if status == "ok" else None,
        "fit_peak_rss_mb": 100.0, "scores": scores if status == "ok" else {},
    })


def score(metrics: dict[str, float], *, settings: dict[str, Any] | None = None, status: str = "ok",
          error: str | None = None) -> dict[str, Any]:
    """A score entry for `job(..., more={name: score(...)})`."""
    return {"description": "another toy protocol", "settings": dict(SETTINGS if settings is None else settings),
            "metrics": metrics, "per_cluster": {}, "status": status, "error": error}


def write_run(root: Path, records: list[JobRecord], **info: Any) -> Path:
    """A run folder holding `records` (run.json from `info`)."""
    store = RunStore(root)
    store.write_run({"suite": "toy-suite", **info})
    for record in records:
        store.write_record(record.job_id, record)
    return root
