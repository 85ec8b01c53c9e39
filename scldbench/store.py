"""The store: one folder per run, one JSON record per job written atomically; the source of every report.

A run folder belongs to one prepared dataset (its fingerprint, in `run.json`). Records made on other data are
moved to `jobs/superseded/` when a new run starts there, and readers skip them. A damaged record (not JSON, not
an object, a field missing or of the wrong type: `JobRecord.from_json`) is skipped with a one-line warning naming
the file; a rerun computes its job again.
Two processes may run into one folder: every write goes through a unique temporary name, and a job is computed
only by the process holding its claim (`claims/<job_id>.lock`, created with O_CREAT | O_EXCL).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anndata as ad

from scldbench.errors import ScldbenchError
from scldbench.record import DamagedRecord, JobRecord

RUN_FILE = "run.json"
JOBS_DIR = "jobs"
SUPERSEDED_DIR = "superseded"
SAMPLES_DIR = "samples"
CLAIMS_DIR = "claims"
REAL_TEST_FILE = "real_test.h5ad"

log = logging.getLogger("scldbench.store")


class DamagedFile(ScldbenchError):
    """A store file that cannot be read as what it should be (truncated, not JSON, wrong shape)."""


def safe_name(name: str) -> str:
    """`name` as one safe folder name: no separators, no leading dots, only letters, digits, `_`, `.` and `-`."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).lstrip(".")
    return safe or "run"


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


def _temporary(path: Path, suffix: str = ".tmp") -> Path:
    """A temporary name beside `path` that no other writer (process or thread) can pick."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}{suffix}")


def _replace_atomically(path: Path, write: Callable[[Path], None], suffix: str = ".tmp") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path, suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(_clean(data), indent=2, sort_keys=False)
    _replace_atomically(path, lambda tmp: tmp.write_text(text))


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; DamagedFile (one line naming the file) when it is unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedFile(f"{path} is damaged ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise DamagedFile(f"{path} is damaged (holds a JSON {type(data).__name__}, not an object)")
    return data


def _warn_once(path: Path, message: str, warned: set[tuple[str, int]] | None) -> None:
    """Warn about a damaged file once per version of it and per `warned` set (a rerun reads a record twice)."""
    try:
        version = (str(path), path.stat().st_mtime_ns)
    except OSError:
        version = (str(path), 0)
    if warned is None or version not in warned:
        if warned is not None:
            warned.add(version)
        log.warning("%s", message)


def read_record_file(path: Path, warned: set[tuple[str, int]] | None = None) -> JobRecord | None:
    """A job record, or None (with a one-line warning naming the file) when it is damaged."""
    try:
        return JobRecord.from_json(read_json_object(path))
    except DamagedFile as exc:
        _warn_once(path, f"{exc}; skipped (a rerun computes its job again)", warned)
    except DamagedRecord as exc:
        _warn_once(path, f"{path} is damaged ({exc}); skipped (a rerun computes its job again)", warned)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


class RunStore:
    """A run folder: `run.json` (what was asked), `jobs/<job>.json` (one per job), `samples/<job>.h5ad`,
    `claims/<job>.lock` (which process computes a job now)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._warned: set[tuple[str, int]] = set()

    # ----------------------------------------------------------------- the run
    def check_writable(self) -> None:
        """Raise ScldbenchError unless the run folder can be made and written (before any data is read)."""
        if self.root.exists() and not self.root.is_dir():
            raise ScldbenchError(f"--out {self.root} is a file, not a folder; give a folder path for the run")
        existing = self.root
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise ScldbenchError(f"--out {self.root}: {existing} is a file, not a folder; give another path")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ScldbenchError(f"--out {self.root}: {existing} is not writable; give a folder you can write to")

    def write_run(self, info: dict[str, Any]) -> None:
        write_json(self.root / RUN_FILE, info)

    def read_run(self) -> dict[str, Any]:
        path = self.root / RUN_FILE
        if not path.is_file():
            raise ScldbenchError(
                f"{self.root} is not a run folder ({RUN_FILE} missing); give a folder made by `scldbench run`"
            )
        try:
            return read_json_object(path)
        except DamagedFile as exc:
            raise DamagedFile(f"{exc}; run the suite into this folder again to rewrite it") from None

    # ----------------------------------------------------------------- records
    def job_path(self, job_id: str) -> Path:
        return self.root / JOBS_DIR / f"{job_id}.json"

    def write_record(self, job_id: str, record: JobRecord) -> None:
        write_json(self.job_path(job_id), record.to_json())

    def read_record(self, job_id: str) -> JobRecord | None:
        """The job's record; None when there is none or it is damaged (then the job is computed again)."""
        path = self.job_path(job_id)
        return read_record_file(path, self._warned) if path.is_file() else None

    def read_superseded(self, job_id: str) -> JobRecord | None:
        """The job's record set aside in `jobs/superseded/` (a rerun under its settings moves it back), or None."""
        path = self.root / JOBS_DIR / SUPERSEDED_DIR / f"{job_id}.json"
        return _quiet_record(path) if path.is_file() else None

    def _move_aside(self, path: Path) -> bool:
        target = self.root / JOBS_DIR / SUPERSEDED_DIR / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, target)
        except FileNotFoundError:  # another process moved it first
            return False
        return True

    def set_aside(self, comparable: Callable[[JobRecord], bool]) -> int:
        """Move every record for which `comparable` is false (made on other data) to `jobs/superseded/`.

        Returns how many moved; damaged records stay where they are (readers skip them, a rerun overwrites them).
        """
        folder = self.root / JOBS_DIR
        moved = 0
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            record = _quiet_record(path)
            if record is not None and not comparable(record):
                moved += self._move_aside(path)
        return moved

    def supersede(self, planned: dict[tuple[str, int], str]) -> None:
        """Move records whose (label, seed) is planned under another key (other settings) to `jobs/superseded/`:
        they stay on disk, and reports of the run show only what its latest plan made. A superseded record whose
        key is planned again (settings changed back) moves back, so that its job is reused, not recomputed."""
        folder = self.root / JOBS_DIR
        old = folder / SUPERSEDED_DIR
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            record = _quiet_record(path)
            if record is None:
                continue
            if planned.get((record.label, record.seed), record.key) != record.key:
                self._move_aside(path)
        for path in sorted(old.glob("*.json")) if old.is_dir() else []:
            record = _quiet_record(path)
            if record is None:
                continue
            if planned.get((record.label, record.seed)) == record.key and not (folder / path.name).exists():
                with contextlib.suppress(FileNotFoundError):  # another process moved it back first
                    os.replace(path, folder / path.name)

    def records(self) -> list[JobRecord]:
        """The run's readable records made on its data, in plan order; others are skipped with a warning."""
        info = self.read_run()
        folder = self.root / JOBS_DIR
        if not folder.is_dir():
            return []
        fingerprint = info.get("fingerprint")
        records = []
        for path in sorted(folder.glob("*.json")):
            record = read_record_file(path, self._warned)
            if record is None:
                continue
            if fingerprint and record.fingerprint not in (None, fingerprint):
                log.warning("%s was made on other data than this run's; skipped (a rerun moves it to %s/%s)",
                            path, JOBS_DIR, SUPERSEDED_DIR)
                continue
            records.append(record)
        return sorted(records, key=lambda r: (r.order or 0, r.seed))

    # ----------------------------------------------------------------- claims
    def claim_path(self, job_id: str) -> Path:
        return self.root / CLAIMS_DIR / f"{job_id}.lock"

    def claim(self, job_id: str) -> Claim | None:
        """Claim a job for this process: a Claim (a context manager releasing it) or None when another live
        process holds it. A claim left by a process that is gone (same host, pid no longer running) is taken over.
        """
        path = self.claim_path(job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale(path):
                    return None
                continue
            owner = {"pid": os.getpid(), "host": socket.gethostname(),
                     "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            with os.fdopen(fd, "w") as handle:
                json.dump(owner, handle)
            return Claim(path)
        return None

    def _stale(self, path: Path) -> bool:
        """True (and the lock removed) when `path` was left by a process of this host that no longer runs."""
        try:
            owner = json.loads(path.read_text() or "{}")
        except FileNotFoundError:
            return True  # released meanwhile: try again
        except (OSError, json.JSONDecodeError):
            owner = {}
        pid, host = owner.get("pid"), owner.get("host")
        if not isinstance(pid, int) or host != socket.gethostname():
            # an owner being written right now, or another host's: only old unreadable locks count as stale
            if isinstance(pid, int):
                return False
            try:
                age = datetime.now().timestamp() - path.stat().st_mtime
            except FileNotFoundError:
                return True
            if age < 60:
                return False
        elif _pid_alive(pid):
            return False
        # rename first, so that two processes cannot both remove the lock and a third's fresh one
        grave = _temporary(path, ".stale")
        try:
            os.replace(path, grave)
        except FileNotFoundError:
            return True
        grave.unlink(missing_ok=True)
        return True

    def claimed(self, job_id: str) -> bool:
        """True while some live process holds the job's claim."""
        path = self.claim_path(job_id)
        return path.exists() and not self._stale(path)

    # ----------------------------------------------------------------- data files
    def write_real_test(self, adata: ad.AnnData) -> None:
        """The real test cells every job was scored against, for reports (embeddings of real vs generated)."""
        path = self.root / REAL_TEST_FILE
        if not path.is_file():
            _replace_atomically(path, lambda tmp: adata.write_h5ad(tmp, compression="gzip"), ".part.h5ad")

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
        _replace_atomically(path, lambda tmp: adata.write_h5ad(tmp, compression="gzip"), ".part.h5ad")
        return path


class Claim:
    """A held job claim; leaving the `with` block (or `release()`) removes the lock file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def release(self) -> None:
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def find_runs(store: str | Path) -> list[RunStore]:
    """Every run folder under `store` (a run folder itself counts); a damaged run.json is skipped with a warning."""
    store = Path(store)
    if not store.exists():
        raise ScldbenchError(f"{store} does not exist; give a folder holding runs (the --out of `scldbench run`)")
    runs = []
    for path in sorted(store.rglob(RUN_FILE)):
        try:
            read_json_object(path)
        except DamagedFile as exc:
            log.warning("%s; run skipped", exc)
            continue
        runs.append(RunStore(path.parent))
    return runs


def _quiet_record(path: Path) -> JobRecord | None:
    try:
        return JobRecord.from_json(read_json_object(path))
    except (DamagedFile, DamagedRecord):
        return None
