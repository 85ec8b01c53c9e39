"""Running a suite: resolve the dataset, prepare it once, then fit, sample and score every job into the store.

A job is (dataset, generator, params, seed); its content key decides whether a rerun into the same folder can
reuse a finished record. One failing job is recorded as failed and the others still run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import anndata as ad
import numpy as np

from scldbench import __version__
from scldbench.data.datasets import DatasetSpec, load_dataset
from scldbench.data.prepare import PreparedData, PrepareSettings, prepare
from scldbench.device import check_device_name, describe_device, job_device, resolve_device
from scldbench.errors import ScldbenchError, suggest
from scldbench.evaluation import augmentation_scores, guidance_sweep, rarest_cluster
from scldbench.executors import JobContext, executor_name, make_executor, resolve_execution
from scldbench.generator import check_whole_counts, library_size_warnings
from scldbench.jobguard import InterruptLatch, failure_message, time_limit
from scldbench.metrics.device import metrics_on
from scldbench.protocols import ScoringProtocol, get_protocol
from scldbench.provenance import versions
from scldbench.record import JobRecord
from scldbench.registry import generator_names, get_generator, list_generators, runtime_generators
from scldbench.scoring import (
    ScoringContext,
    extras_owner,
    missing_protocols,
    rescore,
    score_sample,
    scores_failed,
    shared_context,
    test_composition,
)
from scldbench.store import Claim, RunStore, safe_name
from scldbench.suite import GeneratorEntry, Suite

CONTROL_ORDER = ("positive", "shuffle", "random")
#: seconds between looks at jobs another process holds
CLAIM_POLL_SECONDS = 0.5

log = logging.getLogger("scldbench.runner")


@dataclass(frozen=True)
class Job:
    order: int
    generator: str
    label: str
    params: dict[str, Any]
    seed: int
    key: str
    #: seconds the job may run (None: no limit); not part of the key
    timeout: float | None = None

    @property
    def job_id(self) -> str:
        return f"{safe_name(self.label)}-seed{self.seed}-{self.key[:10]}"


class Reporter(Protocol):
    def start(self, jobs: Sequence[Job], note: str | None) -> None: ...
    def stage(self, job: Job, stage: str) -> None: ...
    def done(self, job: Job, record: JobRecord) -> None: ...


class SilentReporter:
    def start(self, jobs: Sequence[Job], note: str | None) -> None:
        pass

    def stage(self, job: Job, stage: str) -> None:
        pass

    def done(self, job: Job, record: JobRecord) -> None:
        pass


@dataclass
class RunRequest:
    """What to run: a suite and the overrides of the command line (`scldbench run`), for `run_suite`.

    Parameters
    ----------
    suite
        The suite, from `load_suite` (a built-in name or a .toml path).
    out
        The run folder; finished jobs found there are reused.
    data
        A named dataset, the path of an .h5ad, 10x .h5 or matrix folder, or an AnnData in memory (counts in X or
        in `layer`; it is not modified), instead of the suite's dataset.
    labels
        obs column with cell labels (instead of the suite's labels or computed clusters).
    clusters
        Compute this many Leiden clusters as labels.
    generators
        Labels or names of the suite's generators to run (None: all of them).
    seeds
        Run seeds 0..seeds-1 instead of the suite's seeds.
    seed
        Run this one seed (not together with `seeds`).
    layer
        The layer of the data holding raw counts, overriding the suite's `layer` (None: the suite's, else X).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    use_cache
        Reuse the cached preparation of the same data and settings.
    executor, workers, threads, address
        How jobs run: ``"serial"``, ``"processes"`` or ``"ray"`` (None: processes, as many as the machine's
        cores and memory allow), jobs at once, threads per job, and the Ray cluster to join.
    """

    suite: Suite
    out: Path | str
    data: str | ad.AnnData | None = None
    labels: str | None = None
    clusters: int | None = None
    generators: list[str] | None = None
    seeds: int | None = None
    device: str = "auto"
    use_cache: bool = True
    #: serial | processes | ray (None: processes, as many workers as the machine's cores and memory allow)
    executor: str | None = None
    workers: int | None = None
    threads: int | None = None
    #: Ray cluster address ("auto" joins a running cluster); None starts a local instance
    address: str | None = None
    seed: int | None = None
    layer: str | None = None


@dataclass
class RunResult:
    store: RunStore
    records: list[JobRecord]
    dataset: str
    note: str | None
    info: dict[str, Any] = field(default_factory=dict)


def resolve_data(suite: Suite, data: str | ad.AnnData | None) -> tuple[Any, Any, str | None]:
    """(AnnData, spec, note): the suite's dataset, the --data override (a name, a path or an AnnData), or the
    fallback with a note saying so."""
    if isinstance(data, ad.AnnData):
        name = f"AnnData {data.n_obs} x {data.n_vars}"
        return data, DatasetSpec(name=name, description="an AnnData passed in Python", load=lambda spec: data), None
    if data is not None:
        adata, spec = load_dataset(data)
        return adata, spec, None
    try:
        adata, spec = load_dataset(suite.dataset)
        return adata, spec, None
    except ScldbenchError as exc:
        if not suite.fallback_dataset:
            raise
        adata, spec = load_dataset(suite.fallback_dataset)
        note = f"dataset {suite.dataset!r} could not be had ({exc}); this run used {suite.fallback_dataset!r} instead"
        return adata, spec, note


def _entries(suite: Suite, only: list[str] | None, announce: bool = False) -> list[GeneratorEntry]:
    known = generator_names()
    for e in suite.generators:
        if e.name not in known:
            raise ScldbenchError(
                f"suite {suite.name!r} names unknown generator {e.name!r}{suggest(e.name, known)}; "
                "see `scldbench list generators`"
            )
    entries = list(suite.generators)
    if suite.include_all:
        labels = {e.label for e in entries}
        missing = {i.name: i.hint for i in list_generators() if not i.available and i.name not in labels}
        for name, hint in missing.items() if announce else ():  # "*": every generator this installation can run
            log.warning("generator %r left out of %s's \"*\": %s", name, suite.name, hint)
        defaults = [GeneratorEntry(n, n) for n in known if n not in labels and n not in missing]
        controls = sorted((e for e in defaults if e.name in CONTROL_ORDER), key=lambda e: CONTROL_ORDER.index(e.name))
        entries = [e for e in defaults if e.name not in CONTROL_ORDER] + entries + controls
    if only:
        available = {e.label for e in entries} | {e.name for e in entries}
        for name in only:
            if name not in available:
                raise ScldbenchError(
                    f"--generators names {name!r}, which this suite does not run{suggest(name, available)}; "
                    f"choose from {', '.join(sorted(available))}"
                )
        entries = [e for e in entries if e.label in only or e.name in only]
    return entries


#: the [evaluate] settings that change the sample (and so the job key); the rest only change scores
SAMPLING_KEYS = ("n_generated", "guidance")


def job_key(fingerprint: str, sampling: dict[str, Any], entry: GeneratorEntry, params: dict, seed: int) -> str:
    """Content hash of what makes a job's sample; protocols and scoring settings are not in it, so adding or
    changing a protocol rescores the stored sample instead of refitting."""
    payload = json.dumps(
        {"data": fingerprint, "sampling": sampling, "generator": entry.name, "params": params, "seed": seed,
         "version": __version__},
        sort_keys=True, default=str,
    )
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def resolved_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """A suite's parameters over the generator's own defaults, so that a changed default changes the job key
    and a stored result made under the old default is not reused."""
    try:
        klass = get_generator(name)
    except ScldbenchError:
        return params
    # settings that only change how fast a generator runs (its `runtime_params`) do not make another job
    left_out = ("seed", "device", *getattr(klass, "runtime_params", ()))
    return {k: v for k, v in (klass.parameters() | params).items() if k not in left_out}


def plan_jobs(suite: Suite, prepared: PreparedData, only: list[str] | None, seeds: Sequence[int],
              dataset: str | None = None) -> list[Job]:
    """The jobs of a run on `prepared` (the named `dataset`, which picks up the suite's `[fallback_params]`)."""
    jobs = []
    sampling = {k: getattr(suite.evaluate, k) for k in SAMPLING_KEYS}
    for order, entry in enumerate(_entries(suite, only, announce=True)):
        params = suite.generator_params(entry, dataset)
        resolved = resolved_params(entry.name, params)
        for seed in seeds:
            key = job_key(prepared.fingerprint, sampling, entry, resolved, seed)
            timeout = entry.timeout if entry.timeout is not None else suite.timeout_seconds
            jobs.append(Job(order, entry.name, entry.label, params, seed, key, timeout))
    return jobs


def run_job(
    job: Job, prepared: PreparedData, context: ScoringContext, suite: Suite, device: str, store: RunStore,
    reporter: Reporter, dataset: dict[str, Any], execution: dict[str, Any] | None = None,
) -> JobRecord:
    """Fit, sample once and score under every suite protocol; the record is written whatever happens.

    Anything the generator raises (an exception, `SystemExit`, `MemoryError`, `JobTimeout` past `job.timeout`)
    becomes a failed record with its reason; only KeyboardInterrupt (Ctrl-C, SIGTERM) stops the run. `execution`
    (executor, workers, threads) is stored in the record as it is. `device` is the run's; a `cpu_only`
    generator's job runs, and is scored, on the CPU.
    """
    device = job_device(device, cpu_only=get_generator(job.generator).cpu_only)
    record = JobRecord(
        job_id=job.job_id, key=job.key, order=job.order, suite=suite.name, dataset=dataset.get("dataset"),
        dataset_note=dataset.get("dataset_note"), generator=job.generator, label=job.label, params=job.params,
        seed=job.seed, fingerprint=prepared.fingerprint, status="running",
        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), versions=versions(),
        device=describe_device(resolve_device(device)), execution=execution,
    )
    t0 = time.perf_counter()
    latch = InterruptLatch()
    try:
        with time_limit(job.timeout), latch, metrics_on(device):
            _fit_sample_score(job, prepared, context, suite, device, store, reporter, record)
        failed = scores_failed(record.scores)
        record.status, record.error = ("failed", failed) if failed else ("ok", None)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - one failing job (even sys.exit or a timeout) must not stop the others
        if latch.interrupt is not None:  # Ctrl-C or SIGTERM, swallowed by a library inside the job
            raise latch.interrupt from exc
        record.status = "failed"
        record.error = failure_message(exc)
        record.traceback = traceback.format_exc()
    record.seconds = time.perf_counter() - t0
    record.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    store.write_record(job.job_id, record)
    return record


def _fit_sample_score(
    job: Job, prepared: PreparedData, context: ScoringContext, suite: Suite, device: str, store: RunStore,
    reporter: Reporter, record: JobRecord,
) -> None:
    settings = suite.evaluate
    generator = get_generator(job.generator).create(seed=job.seed, device=device, **job.params)
    record.params_resolved = dict(generator.get_params())
    reporter.stage(job, "fit")
    fit_data = prepared.holdout if generator.uses_holdout else prepared.train
    generator.fit(fit_data, prepared.labels_key)
    record.fit_seconds = generator.fit_usage.seconds
    record.fit_peak_rss_mb = generator.fit_usage.peak_rss_mb
    record.fit_peak_rss_delta_mb = generator.fit_usage.peak_rss_delta_mb
    record.fit_peak_gpu_mb = generator.fit_usage.peak_gpu_mb
    reporter.stage(job, "sample")
    n_cells = settings.n_generated or prepared.test.n_obs
    guidance = settings.guidance if generator.supports_guidance else None
    # one sample per job: a conditional generator makes as many cells of each cluster as the real test set has
    labels = None
    if generator.conditional and settings.n_generated is None:
        labels = test_composition(prepared)
        n_cells = sum(labels.values())
    samples = generator.sample(n_cells, labels=labels, guidance=guidance, seed=job.seed)
    check_whole_counts(samples.X, job.label)
    warnings = library_size_warnings(samples.X, largest_library(prepared))
    if warnings:
        record.output_warnings = warnings
    record.sample_seconds = generator.sample_usage.seconds
    record.sample_peak_rss_mb = generator.sample_usage.peak_rss_mb
    record.n_generated = n_cells
    if settings.save_samples:
        store.write_samples(job.job_id, samples)
    reporter.stage(job, "score")
    record.scores = score_sample(context, samples, suite.protocols, settings, job.seed)
    if generator.supports_guidance and settings.guidance_sweep:
        reporter.stage(job, "guidance sweep")
        clusters = list(settings.sweep_clusters) if settings.sweep_clusters else None
        record.guidance_sweep = guidance_sweep(
            generator, prepared, list(settings.guidance_sweep), clusters, settings.sweep_cells, job.seed
        )
    if generator.conditional and settings.augment_cluster and not generator.uses_holdout:
        reporter.stage(job, "augmentation")
        cluster = settings.augment_cluster
        if cluster == "rarest":
            cluster = rarest_cluster(prepared, settings.min_cluster_cells)
        make = lambda: get_generator(job.generator).create(seed=job.seed, device=device, **job.params)  # noqa: E731
        owner = record.scores[extras_owner(suite.protocols)]
        owner.metrics.update(augmentation_scores(make, prepared, cluster, settings.augment_keep, job.seed))
    if not generator.uses_holdout:
        reporter.stage(job, "diagnostics")
        checks = generator.diagnose(
            prepared.holdout, prepared.test, protocol="scgan-v1", seed=job.seed, n_trees=settings.n_trees
        )
        diagnostics = getattr(generator, "diagnostics_", None)
        record.diagnostics = (diagnostics if isinstance(diagnostics, dict) else {}) | checks


def largest_library(prepared: PreparedData) -> float:
    """The largest total count of any real cell (train, test or holdout): a ceiling no generated cell should pass."""
    return max(float(np.asarray(part.X.sum(axis=1)).max()) for part in (prepared.train, prepared.test,
                                                                         prepared.holdout) if part.n_obs)


def reuse(job: Job, store: RunStore, context: ScoringContext, suite: Suite, reporter: Reporter
          ) -> JobRecord | None:
    """The job's finished record from an earlier run into this folder, rescored from its stored sample under the
    suite protocols it lacks; None when the job must be computed. A reused record is written back."""
    previous = store.read_record(job.job_id)
    if previous is None or not previous.ok or previous.key != job.key:
        return None
    record = replace(previous, reused=True)
    if missing_protocols(previous, suite.protocols, suite.evaluate):
        stored = store.read_samples(job.job_id)
        if stored is None:
            return None
        reporter.stage(job, "score")
        record = rescore(record, context, stored, suite.protocols, suite.evaluate)
    store.write_record(job.job_id, record)
    return record


Batch = Callable[[list[Job]], Iterator[tuple[Job, JobRecord]]]
#: what `collect` returns for a job whose holder went away without finishing it
ORPHANED = "orphaned"


def run_claimed(jobs: Sequence[Job], store: RunStore, run_batch: Batch,
                reuse_record: Callable[[Job], JobRecord | None],
                on_done: Callable[[Job, JobRecord], None]) -> None:
    """Compute `jobs` through `run_batch`, each under its claim in the store, so that two runs into one folder
    split the work and never compute a job twice. A job another live process holds is waited for and its record
    taken; if that process dies first, the job is computed here."""
    todo, waiting = list(jobs), {}
    while todo or waiting:
        held: dict[str, tuple[Job, Claim]] = {}
        for job in todo:
            claim = store.claim(job.job_id)
            if claim is None:
                waiting[job.job_id] = (job, store.read_record(job.job_id))
                continue
            record = reuse_record(job)  # finished by another process since this run looked
            if record is not None:
                claim.release()
                on_done(job, record)
            else:
                held[job.job_id] = (job, claim)
        try:
            for job, record in run_batch([job for job, _ in held.values()]):
                held.pop(job.job_id)[1].release()
                on_done(job, record)
        finally:
            for _, claim in held.values():
                claim.release()
        todo = []
        while waiting and not todo:
            time.sleep(CLAIM_POLL_SECONDS)
            for job_id, (job, seen) in list(waiting.items()):
                record = collect(job, store, seen)
                if record is None:
                    continue
                del waiting[job_id]
                if record == ORPHANED:
                    todo.append(job)
                else:
                    on_done(job, reuse_record(job) or record)


def collect(job: Job, store: RunStore, seen: JobRecord | None) -> JobRecord | str | None:
    """After another process held `job`: its new record once the claim is gone, or None while it is held.

    `seen` is the record on disk when the wait began; if the claim went away and the record did not change,
    the other process died before finishing and the job is left to the caller to compute (ORPHANED).
    """
    if store.claimed(job.job_id):
        return None
    record = store.read_record(job.job_id)
    if record is not None and record.key == job.key and record != seen:
        return record
    return ORPHANED


@dataclass
class RunPlan:
    """A run before anything is fitted: the data prepared, the jobs planned, the run folder chosen."""

    request: RunRequest
    store: RunStore
    prepared: PreparedData
    dataset: str
    note: str | None
    settings: PrepareSettings
    seeds: tuple[int, ...]
    jobs: list[Job]
    layer: str | None
    protocols: list[ScoringProtocol]


def requested_seeds(request: RunRequest) -> tuple[int, ...]:
    """The seeds to run: `seed` alone, 0..`seeds`-1, or the suite's."""
    if request.seed is not None and request.seeds is not None:
        raise ScldbenchError("give either --seeds N (seeds 0..N-1) or --seed K (that one seed), not both")
    if request.seed is not None:
        if isinstance(request.seed, bool) or not isinstance(request.seed, int) or request.seed < 0:
            raise ScldbenchError(f"--seed must be a whole number of at least 0, got {request.seed!r}")
        return (request.seed,)
    return tuple(range(request.seeds)) if request.seeds else request.suite.seeds


def _run_device(request: RunRequest) -> str:
    """The run's device for its run.json: this machine's, or on Ray what was asked of the cluster (each job's record
    names the device it ran on)."""
    if executor_name(request.executor) == "ray":
        return f"{request.device} on the Ray cluster"
    return describe_device(resolve_device(request.device))


def plan_run(request: RunRequest) -> RunPlan:
    """Check the request, read and prepare the data, and plan the jobs; nothing is fitted or written."""
    suite = request.suite
    protocols = [get_protocol(name) for name in suite.protocols]
    if executor_name(request.executor) == "ray":
        check_device_name(request.device)  # the GPUs are the cluster's: Ray checks them when it starts
    else:
        resolve_device(request.device)
    if request.labels is not None and request.clusters is not None:
        raise ScldbenchError("give either --labels (an obs column) or --clusters (computed clusters), not both")
    seeds = requested_seeds(request)
    _entries(suite, request.generators)  # unknown --generators names fail before any data is read
    store = RunStore(request.out)
    store.check_writable()
    adata, spec, note = resolve_data(suite, request.data)
    defaults: dict[str, Any] = {"labels_key": spec.labels_key, "n_clusters": spec.n_clusters}
    settings = suite.prepare_settings(defaults)
    if request.labels is not None:
        settings = replace(settings, labels_key=request.labels, n_clusters=None)
    if request.clusters is not None:
        settings = replace(settings, labels_key=None, n_clusters=request.clusters)
    layer = request.layer if request.layer is not None else suite.layer
    prepared = prepare(adata, settings, use_cache=request.use_cache, layer=layer)
    jobs = plan_jobs(suite, prepared, request.generators, seeds, spec.name)
    budgets = suite.fallback_note(spec.name)
    if budgets:
        note = f"{note}; {budgets}" if note else budgets
    return RunPlan(request, store, prepared, spec.name, note, settings, seeds, jobs, layer, protocols)


#: what a planned job would do, by `planned_action`
REUSE, RESCORE, COMPUTE = "reuse", "rescore", "fit"


def planned_action(job: Job, store: RunStore, suite: Suite) -> str:
    """What running `job` into `store` would do: REUSE its finished record, RESCORE its stored sample under the
    protocols the record lacks, or COMPUTE it (fit, sample, score). Reads the folder only."""
    previous = store.read_record(job.job_id) or store.read_superseded(job.job_id)
    if previous is None or not previous.ok or previous.key != job.key:
        return COMPUTE
    if missing_protocols(previous, suite.protocols, suite.evaluate):
        return RESCORE if store.sample_path(job.job_id).is_file() else COMPUTE
    return REUSE


def run_suite(request: RunRequest, reporter: Reporter | None = None) -> RunResult:
    """Run a suite: prepare the data once, then fit, sample and score every job into the run folder.

    Parameters
    ----------
    request
        The suite and its overrides (see `RunRequest`).
    reporter
        Told when jobs start, change stage and finish (the CLI's progress display); None reports nothing.

    Returns
    -------
    RunResult
        The store (`result.store.root` is the run folder), one `JobRecord` per planned job in plan order (status,
        error, params, seed, times and `scores[protocol]`), the dataset used and the fallback note.

    Raises
    ------
    ScldbenchError
        For input the user can fix (unknown generator, dataset, layer or label column; data that is not counts);
        nothing is run then. A job that fails is recorded as failed and the others still run.

    Examples
    --------
    >>> import scldbench
    >>> suite = scldbench.load_suite("smoke")
    >>> result = scldbench.run_suite(scldbench.RunRequest(suite, out="runs/smoke"))  # doctest: +SKIP
    >>> [(r.label, r.status) for r in result.records]  # doctest: +SKIP
    """
    reporter = reporter or SilentReporter()
    plan = plan_run(request)
    suite, store, prepared, protocols = request.suite, plan.store, plan.prepared, plan.protocols
    settings, seeds, jobs, note = plan.settings, plan.seeds, plan.jobs, plan.note
    requested = plan.dataset if isinstance(request.data, ad.AnnData) else request.data or suite.dataset
    run_info = {
        "suite": suite.name, "suite_source": suite.source, "dataset": plan.dataset, "requested_dataset": requested,
        "note": note, "protocols": {p.name: p.description for p in protocols},
        "protocol": protocols[0].name, "protocol_description": protocols[0].description,
        "prepare": vars(settings), "layer": plan.layer, "data_info": prepared.info,
        "fingerprint": prepared.fingerprint, "seeds": list(seeds),
        "device": _run_device(request), "versions": versions(),
        "command": " ".join(sys.argv), "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "generators": [{"name": i.name, "available": i.available, "hint": i.hint} for i in list_generators()],
    }
    store.write_run(run_info)
    if suite.evaluate.save_samples:
        store.write_real_test(prepared.test)
    moved = store.set_aside(lambda r: r.fingerprint == prepared.fingerprint)
    if moved:
        log.warning("%d records in %s were made on other data; moved to jobs/superseded (this run's tables leave "
                    "them out)", moved, store.root)
    reporter.start(jobs, note)
    store.supersede({(job.label, job.seed): job.key for job in jobs})
    context = shared_context(prepared)
    done: dict[str, JobRecord] = {}

    def finish(job: Job, record: JobRecord) -> None:
        done[job.job_id] = record
        reporter.done(job, record)

    def reuse_record(job: Job) -> JobRecord | None:
        return reuse(job, store, context, suite, reporter)

    pending = []
    for job in jobs:
        record = reuse_record(job)
        if record is None:
            pending.append(job)
        else:
            finish(job, record)
    execution = resolve_execution(
        request.executor, len(pending), workers=request.workers, threads=request.threads, address=request.address,
        data_mb=_data_mb(prepared),
    )
    run_info["execution"] = execution.as_record()
    store.write_run(run_info)
    job_context = JobContext(suite, request.device, store.root, {"dataset": plan.dataset, "dataset_note": note},
                             runtime_generators())

    def run_batch(batch: list[Job]) -> Iterator[tuple[Job, JobRecord]]:
        if batch:
            yield from make_executor(execution).run(batch, prepared, job_context, reporter.stage)

    run_claimed(pending, store, run_batch, reuse_record, finish)
    records = [done[job.job_id] for job in jobs]
    return RunResult(store, records, plan.dataset, note, run_info)


def _data_mb(prepared: PreparedData) -> float:
    """Memory of the prepared matrices (what each worker process holds a copy of)."""
    total = 0
    for part in (prepared.train, prepared.test, prepared.holdout):
        x = part.X
        total += sum(a.nbytes for a in (x.data, x.indices, x.indptr)) if hasattr(x, "indptr") else x.nbytes
    return total / 2**20
