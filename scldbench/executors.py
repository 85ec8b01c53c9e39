"""Executors: where a suite's jobs run. `serial` (one after another in this process), `processes` (spawned worker
processes on this machine) and `ray` (one Ray task per job, on a local instance or a cluster).

Every executor hands each finished record to the caller as soon as it exists, so the store fills while the suite
runs; a job whose worker dies (out-of-memory kill, segfault, `os._exit`) becomes a failed record with the reason,
and the other jobs go on. Heavy libraries are imported inside functions, so that a worker can limit its BLAS and
torch threads through the environment before numpy or torch load.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scldbench.errors import ScldbenchError, Terminated, suggest
from scldbench.jobguard import raise_terminated
from scldbench.progress import START
from scldbench.threads import THREAD_ENV_VARS, available_cores, limit_threads, threads_limited

if TYPE_CHECKING:
    from scldbench.data.prepare import PreparedData
    from scldbench.record import JobRecord
    from scldbench.runner import Job
    from scldbench.suite import Suite

EXECUTORS = ("serial", "processes", "ray")
#: environment variable naming the executor used when --executor is not given
EXECUTOR_ENV_VAR = "SCLDBENCH_EXECUTOR"
#: memory a worker process needs besides its data (torch, scanpy, a model and its scores)
WORKER_BASE_MB = 1500.0

OnStage = Callable[["Job", str], None]


@dataclass(frozen=True)
class Execution:
    """How jobs run: the executor, how many at once, and the BLAS / torch threads each one uses."""

    executor: str
    workers: int
    threads: int
    address: str | None = None

    def as_record(self) -> dict[str, Any]:
        return {"executor": self.executor, "workers": self.workers, "threads": self.threads}


@dataclass
class JobContext:
    """What every job of a run shares besides its `Job`: sent once to each worker, not once per job."""

    suite: Suite
    device: str
    store_root: Path
    dataset: dict[str, Any]
    #: generators registered at run time in this process (notebooks, tests): workers register them too
    runtime_generators: dict[str, type] = field(default_factory=dict)


def available_memory_mb() -> float | None:
    """Memory the kernel says can be had without swapping (MemAvailable), or None where it cannot tell."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def default_workers(n_jobs: int, data_mb: float = 0.0) -> int:
    """As many workers as there are cores, as fit in available memory (each holds its own copy of the data
    and a model), and as there are jobs to run."""
    workers = available_cores()
    memory = available_memory_mb()
    if memory is not None:
        workers = min(workers, int(memory // (WORKER_BASE_MB + 4 * data_mb)))
    return max(1, min(workers, n_jobs))


def executor_name(executor: str | None) -> str:
    """The executor asked for, default $SCLDBENCH_EXECUTOR, else `processes`; an unknown name is an error."""
    name = executor or os.environ.get(EXECUTOR_ENV_VAR) or "processes"
    if name not in EXECUTORS:
        raise ScldbenchError(f"unknown executor {name!r}{suggest(name, EXECUTORS)}; use one of {', '.join(EXECUTORS)}")
    return name


def resolve_execution(
    executor: str | None, n_jobs: int, *, workers: int | None = None, threads: int | None = None,
    address: str | None = None, data_mb: float = 0.0,
) -> Execution:
    """The executor the user asked for (default: $SCLDBENCH_EXECUTOR, else `processes`), with workers and
    threads filled in from the machine. `processes` with one worker runs in this process."""
    name = executor_name(executor)
    if workers is not None and workers < 1:
        raise ScldbenchError(f"--workers must be at least 1 (got {workers})")
    if threads is not None and threads < 1:
        raise ScldbenchError(f"--threads must be at least 1 (got {threads})")
    if address is not None and name != "ray":
        raise ScldbenchError(f"--address is for --executor ray (a Ray cluster), not {name!r}; drop it or add "
                             "--executor ray")
    cores = available_cores()
    if name == "serial":
        return Execution("serial", 1, threads or cores)
    if name == "ray":
        return Execution("ray", workers or 0, threads or 1, address)
    count = workers or default_workers(n_jobs, data_mb)
    if count == 1 and workers is None:
        return Execution("serial", 1, threads or cores)
    return Execution("processes", count, threads or max(1, cores // count))


def make_executor(execution: Execution) -> SerialExecutor | ProcessExecutor | RayExecutor:
    if execution.executor == "ray":
        return RayExecutor(execution)
    if execution.executor == "processes":
        return ProcessExecutor(execution)
    return SerialExecutor(execution)


# ---- running one job (in whichever process) ----


def run_one(job: Job, prepared: PreparedData, ctx: JobContext, execution: Execution,
            on_stage: OnStage | None) -> JobRecord:
    """Run one job through `runner.run_job` (which writes its record) and return the record.

    The thread limits are set afresh for every job: a library may raise them as a side effect (scanpy's numba
    kernels raise torch's OpenMP threads), and a worker runs many jobs.
    """
    from scldbench.runner import SilentReporter, run_job
    from scldbench.scoring import shared_context
    from scldbench.store import RunStore

    reporter = _StageReporter(on_stage) if on_stage else SilentReporter()
    with threads_limited(execution.threads):
        return run_job(
            job, prepared, shared_context(prepared), ctx.suite, ctx.device, RunStore(ctx.store_root), reporter,
            ctx.dataset, execution=execution.as_record(),
        )


class _StageReporter:
    def __init__(self, on_stage: OnStage) -> None:
        self.on_stage = on_stage

    def start(self, jobs: Sequence[Job], note: str | None) -> None:
        pass

    def stage(self, job: Job, stage: str) -> None:
        self.on_stage(job, stage)

    def done(self, job: Job, record: JobRecord) -> None:
        pass


def failed_record(job: Job, ctx: JobContext, fingerprint: str, execution: Execution, error: str,
                  started: float, started_at: str, details: str | None = None) -> JobRecord:
    """The record of a job whose worker never returned one (it died, or the task system lost it)."""
    from scldbench.provenance import versions
    from scldbench.record import JobRecord

    return JobRecord(
        job_id=job.job_id, key=job.key, order=job.order, suite=ctx.suite.name, dataset=ctx.dataset.get("dataset"),
        dataset_note=ctx.dataset.get("dataset_note"), generator=job.generator, label=job.label, params=job.params,
        seed=job.seed, fingerprint=fingerprint, status="failed", error=error, traceback=details,
        started_at=started_at, finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=time.time() - started, versions=versions(), execution=execution.as_record(),
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def death_reason(exitcode: int | None) -> str:
    """One line on why a worker process ended without returning its job's record."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = (
            " (usually the out-of-memory killer: run fewer --workers at once or give the job more memory)"
            if -exitcode == signal.SIGKILL else ""
        )
        return f"the worker process running this job was killed by {name}{hint}"
    return f"the worker process running this job exited with code {exitcode} before returning a result"


# ---- serial ----


class SerialExecutor:
    """One job after another in this process."""

    def __init__(self, execution: Execution) -> None:
        self.execution = execution

    def run(self, jobs: Sequence[Job], prepared: PreparedData, ctx: JobContext,
            on_stage: OnStage | None = None) -> Iterator[tuple[Job, JobRecord]]:
        for job in jobs:
            if on_stage:
                on_stage(job, START)
            yield job, run_one(job, prepared, ctx, self.execution, on_stage)


# ---- processes ----


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration (a spawned worker inherits them before it imports numpy)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _worker_main(conn: Any, execution: Execution) -> None:
    """A worker process: receive the run's context and data once, then jobs until told to stop.

    SIGTERM (the parent stopping it, or a scheduler ending every process of the run) ends the worker like
    Ctrl-C: the job it holds stops without a record, even inside a library that catches the interrupt, and the
    worker then dies by that signal, so a parent still running records the job as killed by it.
    """
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        _worker_loop(conn, execution)
    except KeyboardInterrupt as exc:
        signum = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _worker_loop(conn: Any, execution: Execution) -> None:
    limit_threads(execution.threads)
    from scldbench import registry

    try:
        ctx, prepared = conn.recv()
    except EOFError:
        return
    for name, cls in ctx.runtime_generators.items():
        registry.register(name, cls)
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the parent is gone
            return
        if job is None:
            return
        record = run_one(job, prepared, ctx, execution, lambda j, stage: conn.send(("stage", j.key, stage)))
        conn.send(("done", job.key, record))


@dataclass
class _Worker:
    process: Any
    conn: Any
    job: Job | None = None
    started: float = 0.0
    started_at: str = ""


class ProcessExecutor:
    """Jobs in `workers` spawned processes (spawn: safe with torch and threads), one job per worker at a time.

    The parent knows which job each worker holds, so a worker that dies turns into a failed record for exactly
    that job; a fresh worker takes its place for the jobs still waiting.
    """

    def __init__(self, execution: Execution) -> None:
        self.execution = execution

    def _start(self, mp_context: Any, payload: tuple[JobContext, PreparedData]) -> _Worker:
        worker = self._spawn(mp_context)
        worker.conn.send(payload)
        return worker

    def _spawn(self, mp_context: Any) -> _Worker:
        parent, child = mp_context.Pipe()
        env = dict.fromkeys(THREAD_ENV_VARS, str(self.execution.threads))
        # not a daemon: libraries (joblib) refuse to parallelise inside daemon processes; a worker whose parent
        # dies stops at its next read from the closed pipe
        process = mp_context.Process(target=_worker_main, args=(child, self.execution), daemon=False)
        with _environment(env):
            process.start()
        child.close()
        return _Worker(process, parent)

    def run(self, jobs: Sequence[Job], prepared: PreparedData, ctx: JobContext,
            on_stage: OnStage | None = None) -> Iterator[tuple[Job, JobRecord]]:
        import multiprocessing
        from multiprocessing.connection import wait

        mp_context = multiprocessing.get_context("spawn")
        payload = (ctx, prepared)
        waiting = deque(jobs)
        by_key = {job.key: job for job in jobs}
        # all workers start importing at once; each then takes the data when it is ready for it
        workers = [self._spawn(mp_context) for _ in range(min(self.execution.workers, len(jobs)))]
        for w in workers:
            w.conn.send(payload)
        try:
            while waiting or any(w.job for w in workers):
                for w in workers:
                    if w.job is None and waiting:
                        w.job, w.started, w.started_at = waiting.popleft(), time.time(), _now()
                        w.conn.send(w.job)
                        if on_stage:
                            on_stage(w.job, START)
                busy = [w for w in workers if w.job is not None]
                wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for w in busy:
                    finished = self._collect(w, by_key, on_stage)
                    if finished is not None:
                        yield finished
                    elif not w.process.is_alive() and w.job is not None:
                        yield w.job, self._lost(w, ctx, prepared.fingerprint)
                        workers[workers.index(w)] = self._start(mp_context, payload) if waiting else w
        finally:
            for w in workers:
                with contextlib.suppress(OSError, ValueError):
                    w.conn.send(None)
            for w in workers:
                w.process.join(timeout=5)
                if w.process.is_alive():
                    w.process.terminate()
                    w.process.join(timeout=5)

    def _collect(self, w: _Worker, by_key: dict[str, Job], on_stage: OnStage | None):
        """Messages from a worker: stage changes go to `on_stage`; a finished job is returned."""
        try:
            while w.conn.poll():
                kind, key, value = w.conn.recv()
                if kind == "stage":
                    if on_stage:
                        on_stage(by_key[key], value)
                else:
                    job, w.job = w.job, None
                    return job, value
        except (EOFError, OSError):  # the worker is gone; its sentinel says so next
            w.process.join(timeout=5)
        return None

    def _lost(self, w: _Worker, ctx: JobContext, fingerprint: str) -> JobRecord:
        w.process.join(timeout=5)
        record = failed_record(w.job, ctx, fingerprint, self.execution, death_reason(w.process.exitcode),
                               w.started, w.started_at)
        from scldbench.store import RunStore

        RunStore(ctx.store_root).write_record(w.job.job_id, record)
        w.job = None
        return record


# ---- ray ----


def _ray_job(job: Job, ctx: JobContext, prepared: PreparedData, execution: Execution) -> JobRecord:
    """A Ray task: one job, with the task's CPU share as its thread limit."""
    limit_threads(execution.threads)
    from scldbench import registry

    for name, cls in ctx.runtime_generators.items():
        registry.register(name, cls)
    return run_one(job, prepared, ctx, execution, None)


class RayExecutor:
    """One Ray task per job; records are written to the store by the driver as each task finishes.

    `address="auto"` (or a `ray://` / `host:port` address) joins a running cluster; without one a local Ray
    instance is started on the loopback interface only, and shut down afterwards. The run folder must be on a
    filesystem every node sees (the tasks write their generated cells there), as on any SLURM cluster.
    """

    def __init__(self, execution: Execution) -> None:
        self.execution = execution

    @staticmethod
    def _gpus(job: Job, ctx: JobContext, cluster_gpus: float) -> float:
        """One GPU for a job that runs on one: `--device cuda`, or `auto` on a cluster with GPUs, unless the
        generator is `cpu_only`."""
        from scldbench.registry import get_generator

        if get_generator(job.generator).cpu_only:
            return 0.0
        return 1.0 if ctx.device.startswith("cuda") or (ctx.device == "auto" and cluster_gpus > 0) else 0.0

    def run(self, jobs: Sequence[Job], prepared: PreparedData, ctx: JobContext,
            on_stage: OnStage | None = None) -> Iterator[tuple[Job, JobRecord]]:
        try:
            import ray
        except ImportError:
            raise ScldbenchError(
                "--executor ray needs Ray; install it with `pip install \"scldbench[ray]\"`"
            ) from None
        from scldbench.store import RunStore

        started_here = not ray.is_initialized()
        if started_here:
            if self.execution.address:
                ray.init(address=self.execution.address, log_to_driver=False)
            else:
                ray.init(num_cpus=available_cores(), include_dashboard=False, _node_ip_address="127.0.0.1",
                         log_to_driver=False)
        store = RunStore(ctx.store_root)
        try:
            cpus = ray.cluster_resources().get("CPU", 1)
            self.execution = replace(self.execution, workers=max(1, int(cpus // self.execution.threads)))
            cluster_gpus = ray.cluster_resources().get("GPU", 0)
            if cluster_gpus == 0 and any(self._gpus(job, ctx, cluster_gpus) for job in jobs):
                raise ScldbenchError(
                    "--device cuda was asked for but the Ray cluster has no GPU; start its nodes with their GPUs "
                    "(`ray start --num-gpus N`) or run with --device cpu or auto"
                )
            data = ray.put(prepared)
            task = ray.remote(max_retries=0)(_ray_job)
            pending: dict[Any, tuple[Job, float, str]] = {}
            for job in jobs:
                ref = task.options(num_cpus=self.execution.threads, num_gpus=self._gpus(job, ctx, cluster_gpus)).remote(
                    job, ctx, data, self.execution
                )
                pending[ref] = (job, time.time(), _now())
                if on_stage:
                    on_stage(job, START)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                job, started, started_at = pending.pop(ready[0])
                try:
                    record = ray.get(ready[0])
                except Exception as exc:  # the task system lost the job: a dead worker, a node gone
                    error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                    record = failed_record(job, ctx, prepared.fingerprint, self.execution, error, started,
                                           started_at, traceback.format_exc())
                store.write_record(job.job_id, record)
                yield job, record
        finally:
            if started_here:
                ray.shutdown()
