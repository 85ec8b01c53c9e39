"""The store: one folder per run, one JSON record per job written atomically; the source of every report."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import anndata as ad

from scldbench.errors import ScldbenchError

RUN_FILE = "run.json"
JOBS_DIR = "jobs"
SUPERSEDED_DIR = "superseded"
SAMPLES_DIR = "samples"
REAL_TEST_FILE = "real_test.h5ad"


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_clean(data), indent=2, sort_keys=False))
    os.replace(tmp, path)


class RunStore:
    """A run folder: `run.json` (what was asked), `jobs/<job>.json` (one per job), `samples/<job>.h5ad`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def write_run(self, info: dict[str, Any]) -> None:
        write_json(self.root / RUN_FILE, info)

    def read_run(self) -> dict[str, Any]:
        path = self.root / RUN_FILE
        if not path.is_file():
            raise ScldbenchError(
                f"{self.root} is not a run folder ({RUN_FILE} missing); give a folder made by `scldbench run`"
            )
        return json.loads(path.read_text())

    def job_path(self, job_id: str) -> Path:
        return self.root / JOBS_DIR / f"{job_id}.json"

    def write_record(self, job_id: str, record: dict[str, Any]) -> None:
        write_json(self.job_path(job_id), record)

    def read_record(self, job_id: str) -> dict[str, Any] | None:
        path = self.job_path(job_id)
        return json.loads(path.read_text()) if path.is_file() else None

    def supersede(self, planned: dict[tuple[str, int], str]) -> None:
        """Move records whose (label, seed) is planned under another key (other settings) to `jobs/superseded/`:
        they stay on disk, and reports of the run show only what its latest plan made. A superseded record whose
        key is planned again (settings changed back) moves back, so that its job is reused, not recomputed."""
        folder = self.root / JOBS_DIR
        old = folder / SUPERSEDED_DIR
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            label, seed, key = _identity(path)
            if (label, seed) in planned and planned[(label, seed)] != key:
                old.mkdir(exist_ok=True)
                os.replace(path, old / path.name)
        for path in sorted(old.glob("*.json")) if old.is_dir() else []:
            label, seed, key = _identity(path)
            if planned.get((label, seed)) == key and not (folder / path.name).exists():
                os.replace(path, folder / path.name)

    def records(self) -> list[dict[str, Any]]:
        self.read_run()
        folder = self.root / JOBS_DIR
        if not folder.is_dir():
            return []
        records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
        return sorted(records, key=lambda r: (r.get("order", 0), r.get("seed", 0)))

    def write_real_test(self, adata: ad.AnnData) -> None:
        """The real test cells every job was scored against, for reports (embeddings of real vs generated)."""
        path = self.root / REAL_TEST_FILE
        if not path.is_file():
            tmp = path.with_name(f".{path.stem}.part.h5ad")
            adata.write_h5ad(tmp, compression="gzip")
            os.replace(tmp, path)

    def read_real_test(self) -> ad.AnnData | None:
        path = self.root / REAL_TEST_FILE
        return ad.read_h5ad(path) if path.is_file() else None

    def read_samples(self, job_id: str) -> ad.AnnData | None:
        path = self.sample_path(job_id)
        return ad.read_h5ad(path) if path.is_file() else None

    def sample_path(self, job_id: str) -> Path:
        return self.root / SAMPLES_DIR / f"{job_id}.h5ad"

    def write_samples(self, job_id: str, adata: ad.AnnData) -> Path:
        path = self.sample_path(job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.part.h5ad")
        adata.write_h5ad(tmp, compression="gzip")
        os.replace(tmp, path)
        return path


def find_runs(store: str | Path) -> list[RunStore]:
    """Every run folder under `store` (a run folder itself counts)."""
    store = Path(store)
    if not store.exists():
        raise ScldbenchError(f"{store} does not exist; give a folder holding runs (the --out of `scldbench run`)")
    return [RunStore(p.parent) for p in sorted(store.rglob(RUN_FILE))]


def _identity(path: Path) -> tuple[Any, Any, Any]:
    """(label, seed, key) of a job record."""
    record = json.loads(path.read_text())
    return record.get("label"), record.get("seed"), record.get("key")
