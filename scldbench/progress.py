"""Progress of a running suite that people can follow: a live display on a terminal, plain log lines elsewhere.

Both take the runner's reporter calls: `start(jobs, note)`, `stage(job, stage)` (the stage "start" means the job
was handed to a worker) and `done(job, record)`. Jobs may run at once (several workers), so each keeps its own
line and clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from scldbench.record import JobRecord

#: stage name the executors send when a job is handed to a worker
START = "start"
#: seconds between "still running" lines for a long stage
HEARTBEAT_SECONDS = 30.0


def main_scores(record: JobRecord) -> dict[str, float]:
    """RF AUC and MMD of a record (of its first protocol when it holds several)."""
    first = next(iter(record.protocol_scores().values()), None)
    metrics = first.numeric_metrics() if first is not None else {}
    return {k: metrics[k] for k in ("rf_auc", "mmd") if k in metrics}


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _name(job: Any) -> str:
    return f"{job.label} seed {job.seed}"


class LogReporter:
    """One plain line per job start and finish (time and main scores), and every ~30 s per long stage: for CI
    logs, SLURM output files and pipes, where a live display would print garbage."""

    def __init__(self, stream: TextIO, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self.stream = stream
        self.heartbeat = heartbeat
        self.total = 0
        self.finished = 0
        #: job key -> (job, stage, stage started, job started)
        self.running: dict[str, tuple[Any, str, float, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _line(self, text: str) -> None:
        with self._lock:
            self.stream.write(f"[{datetime.now().strftime('%H:%M:%S')}] {text}\n")
            self.stream.flush()

    def start(self, jobs: Sequence[Any], note: str | None) -> None:
        self.total = len(jobs)
        if note:
            self._line(f"note: {note}")
        self._line(f"{self.total} job(s) planned")
        if self._thread is None and self.heartbeat > 0:
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()

    def stage(self, job: Any, stage: str) -> None:
        now = time.monotonic()
        if stage == START or job.key not in self.running:
            self.running[job.key] = (job, stage, now, now)
            self._line(f"start {_name(job)} ({self.finished + len(self.running)}/{self.total})")
            if stage == START:
                return
        begun = self.running[job.key][3]
        self.running[job.key] = (job, stage, now, begun)

    def done(self, job: Any, record: JobRecord) -> None:
        self.running.pop(job.key, None)
        self.finished += 1
        took = f" in {_duration(record.seconds)}" if record.seconds is not None else ""
        progress = f"[{self.finished}/{self.total}]"
        if not record.ok:
            self._line(f"FAILED {_name(job)}{took} {progress}: {record.error}")
        elif record.reused:
            self._line(f"reused {_name(job)} {progress} (finished earlier, same settings)")
        else:
            scores = " ".join(f"{k} {v:.3f}" for k, v in main_scores(record).items())
            self._line(f"done {_name(job)}{took} {progress}{': ' + scores if scores else ''}")
        if self.finished >= self.total:
            self.close()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            now = time.monotonic()
            for job, stage, since, begun in list(self.running.values()):
                if stage != START and now - since >= self.heartbeat:
                    self._line(f"  {_name(job)}: {stage} for {_duration(now - since)} (job {_duration(now - begun)})")

    def close(self) -> None:
        self._stop.set()


class LiveReporter:
    """A rich display for a terminal: a bar over all jobs and a line per running job with its stage and clock."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=True,
        )
        self.overall: Any = None
        self.lines: dict[str, Any] = {}

    def __enter__(self) -> LiveReporter:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def start(self, jobs: Sequence[Any], note: str | None) -> None:
        if note:
            self.progress.console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
        self.overall = self.progress.add_task("jobs", total=len(jobs))

    def stage(self, job: Any, stage: str) -> None:
        text = f"  {_name(job)}: {'starting' if stage == START else stage}"
        if job.key not in self.lines:
            # total=None: an indeterminate (pulsing) bar, since a stage does not say how far along it is
            self.lines[job.key] = self.progress.add_task(text, total=None)
        else:
            self.progress.reset(self.lines[job.key], description=text, total=None)

    def done(self, job: Any, record: JobRecord) -> None:
        task = self.lines.pop(job.key, None)
        if task is not None:
            self.progress.remove_task(task)
        if not record.ok:
            self.progress.console.print(f"[red]failed[/red] {_name(job)}: {record.error}", highlight=False)
        else:
            scores = "  ".join(f"{k} {v:.3f}" for k, v in main_scores(record).items())
            took = f" in {_duration(record.seconds)}" if record.seconds is not None and not record.reused else ""
            self.progress.console.print(
                f"[green]done[/green] {_name(job)}{' (reused)' if record.reused else took}  {scores}",
                highlight=False,
            )
        self.progress.advance(self.overall)
