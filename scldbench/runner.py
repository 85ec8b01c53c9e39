"""Running a suite: resolve the dataset, prepare it once, then fit, sample and score every job into the store.

A job is (dataset, generator, params, seed); its content key decides whether a rerun into the same folder can
reuse a finished record. One failing job is recorded as failed and the others still run.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from typing import Protocol as TypingProtocol

from scldbench import __version__
from scldbench.data.datasets import load_dataset
from scldbench.data.prepare import PreparedData, prepare
from scldbench.device import describe_device, resolve_device
from scldbench.errors import ScldbenchError, suggest
from scldbench.evaluation import (
    augmentation_scores,
    extra_scores,
    guidance_sweep,
    rarest_cluster,
    score_clusters,
    summarise_clusters,
)
from scldbench.executors import JobContext, make_executor, resolve_execution
from scldbench.protocols import Protocol, get_protocol
from scldbench.provenance import versions
from scldbench.registry import generator_names, get_generator, list_generators, runtime_generators
from scldbench.store import RunStore
from scldbench.suite import GeneratorEntry, Suite

CONTROL_ORDER = ("positive", "shuffle", "random")


@dataclass(frozen=True)
class Job:
    order: int
    generator: str
    label: str
    params: dict[str, Any]
    seed: int
    key: str

    @property
    def job_id(self) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.label)
        return f"{safe}-seed{self.seed}-{self.key[:10]}"


class Reporter(TypingProtocol):
    def start(self, jobs: Sequence[Job], note: str | None) -> None: ...
    def stage(self, job: Job, stage: str) -> None: ...
    def done(self, job: Job, record: dict[str, Any]) -> None: ...


class SilentReporter:
    def start(self, jobs: Sequence[Job], note: str | None) -> None:
        pass

    def stage(self, job: Job, stage: str) -> None:
        pass

    def done(self, job: Job, record: dict[str, Any]) -> None:
        pass


@dataclass
class RunRequest:
    suite: Suite
    out: Path
    data: str | None = None
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


@dataclass
class RunResult:
    store: RunStore
    records: list[dict[str, Any]]
    dataset: str
    note: str | None
    info: dict[str, Any] = field(default_factory=dict)


def resolve_data(suite: Suite, data: str | None) -> tuple[Any, Any, str | None]:
    """(AnnData, spec, note): the suite's dataset, the --data override, or the fallback with a note saying so."""
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


def _entries(suite: Suite, only: list[str] | None) -> list[GeneratorEntry]:
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
        defaults = [GeneratorEntry(n, n) for n in known if n not in labels]
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


def job_key(fingerprint: str, protocol: str, evaluate: dict[str, Any], entry: GeneratorEntry, params: dict,
            seed: int) -> str:
    payload = json.dumps(
        {"data": fingerprint, "protocol": protocol, "evaluate": evaluate, "generator": entry.name,
         "params": params, "seed": seed, "version": __version__},
        sort_keys=True, default=str,
    )
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def resolved_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """A suite's parameters over the generator's own defaults, so that a changed default changes the job key
    and a stored result made under the old default is not reused."""
    try:
        defaults = get_generator(name).parameters()
    except ScldbenchError:
        return params
    return {k: v for k, v in defaults.items() if k not in ("seed", "device")} | params


def plan_jobs(suite: Suite, prepared: PreparedData, only: list[str] | None, seeds: Sequence[int]) -> list[Job]:
    jobs = []
    evaluate = vars(suite.evaluate)
    for order, entry in enumerate(_entries(suite, only)):
        params = suite.params.get(entry.name, {}) | entry.params
        resolved = resolved_params(entry.name, params)
        for seed in seeds:
            key = job_key(prepared.fingerprint, suite.protocol, evaluate, entry, resolved, seed)
            jobs.append(Job(order, entry.name, entry.label, params, seed, key))
    return jobs


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, ScldbenchError) else f"{type(exc).__name__}: {text}"


def run_job(
    job: Job, prepared: PreparedData, protocol: Protocol, suite: Suite, device: str, store: RunStore,
    reporter: Reporter, dataset: dict[str, Any], execution: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit, sample and score one job; the record is written whatever happens (failures included).
    `execution` (executor, workers, threads) is stored in the record as it is."""
    settings = suite.evaluate
    record: dict[str, Any] = {
        "job_id": job.job_id, "key": job.key, "order": job.order, "suite": suite.name, **dataset,
        "generator": job.generator,
        "label": job.label, "params": job.params, "seed": job.seed, "protocol": protocol.name,
        "fingerprint": prepared.fingerprint, "evaluate": vars(settings),
        "protocol_description": protocol.description, "status": "running", "error": None,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(), "device": describe_device(resolve_device(device)),
        "fit_seconds": None, "sample_seconds": None, "metrics": {}, "per_cluster": {}, "execution": execution,
    }
    t0 = time.perf_counter()
    try:
        generator = get_generator(job.generator).create(seed=job.seed, device=device, **job.params)
        record["params_resolved"] = {k: v for k, v in generator.get_params().items()}
        reporter.stage(job, "fit")
        fit_data = prepared.holdout if generator.uses_holdout else prepared.train
        generator.fit(fit_data, prepared.labels_key)
        record["fit_seconds"] = generator.fit_usage.seconds
        record["fit_peak_rss_mb"] = generator.fit_usage.peak_rss_mb
        record["fit_peak_rss_delta_mb"] = generator.fit_usage.peak_rss_delta_mb
        record["fit_peak_gpu_mb"] = generator.fit_usage.peak_gpu_mb
        reporter.stage(job, "sample")
        n_cells = settings.n_generated or prepared.test.n_obs
        guidance = settings.guidance if generator.supports_guidance else None
        samples = generator.sample(n_cells, guidance=guidance, seed=job.seed)
        record["sample_seconds"] = generator.sample_usage.seconds
        record["sample_peak_rss_mb"] = generator.sample_usage.peak_rss_mb
        record["n_generated"] = n_cells
        if settings.save_samples:
            store.write_samples(job.job_id, samples)
        reporter.stage(job, "score")
        record["metrics"] = protocol.evaluate(
            prepared.test.X, samples.X, reference=prepared.train.X, seed=job.seed, n_trees=settings.n_trees
        )
        if settings.extra_metrics:
            reporter.stage(job, "more scores")
            record["metrics"].update(extra_scores(prepared, samples, job.seed))
        if generator.conditional and settings.per_cluster:
            reporter.stage(job, "per-cluster")
            record["per_cluster"] = score_clusters(generator, prepared, protocol, settings, guidance, job.seed)
            record["metrics"].update(summarise_clusters(record["per_cluster"]))
        if generator.supports_guidance and settings.guidance_sweep:
            reporter.stage(job, "guidance sweep")
            clusters = list(settings.sweep_clusters) if settings.sweep_clusters else None
            record["guidance_sweep"] = guidance_sweep(
                generator, prepared, list(settings.guidance_sweep), clusters, settings.sweep_cells, job.seed
            )
        if generator.conditional and settings.augment_cluster and not generator.uses_holdout:
            reporter.stage(job, "augmentation")
            cluster = settings.augment_cluster
            if cluster == "rarest":
                cluster = rarest_cluster(prepared, settings.min_cluster_cells)
            make = lambda: get_generator(job.generator).create(seed=job.seed, device=device, **job.params)  # noqa: E731
            record["metrics"].update(augmentation_scores(make, prepared, cluster, settings.augment_keep, job.seed))
        if not generator.uses_holdout:
            reporter.stage(job, "diagnostics")
            checks = generator.diagnose(
                prepared.holdout, prepared.test, protocol=protocol.name, seed=job.seed, n_trees=settings.n_trees
            )
            diagnostics = getattr(generator, "diagnostics", None)
            record["diagnostics"] = (diagnostics if isinstance(diagnostics, dict) else {}) | checks
        record["status"] = "ok"
    except Exception as exc:  # one failing job must not stop the others
        record["status"] = "failed"
        record["error"] = _one_line(exc)
        record["traceback"] = traceback.format_exc()
    record["seconds"] = time.perf_counter() - t0
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    store.write_record(job.job_id, record)
    return record


def run_suite(request: RunRequest, reporter: Reporter | None = None) -> RunResult:
    reporter = reporter or SilentReporter()
    suite = request.suite
    protocol = get_protocol(suite.protocol)
    resolve_device(request.device)
    adata, spec, note = resolve_data(suite, request.data)
    defaults: dict[str, Any] = {"labels_key": spec.labels_key, "n_clusters": spec.n_clusters}
    settings = suite.prepare_settings(defaults)
    if request.labels is not None and request.clusters is not None:
        raise ScldbenchError("give either --labels (an obs column) or --clusters (computed clusters), not both")
    if request.labels is not None:
        settings = replace(settings, labels_key=request.labels, n_clusters=None)
    if request.clusters is not None:
        settings = replace(settings, labels_key=None, n_clusters=request.clusters)
    prepared = prepare(adata, settings, use_cache=request.use_cache)
    seeds = tuple(range(request.seeds)) if request.seeds else suite.seeds
    jobs = plan_jobs(suite, prepared, request.generators, seeds)
    store = RunStore(request.out)
    run_info = {
        "suite": suite.name, "suite_source": suite.source, "dataset": spec.name, "requested_dataset":
        request.data or suite.dataset, "note": note, "protocol": protocol.name,
        "protocol_description": protocol.description, "prepare": vars(settings), "data_info": prepared.info,
        "fingerprint": prepared.fingerprint, "seeds": list(seeds),
        "device": describe_device(resolve_device(request.device)), "versions": versions(),
        "command": " ".join(sys.argv), "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "generators": [{"name": i.name, "available": i.available, "hint": i.hint} for i in list_generators()],
    }
    store.write_run(run_info)
    if suite.evaluate.save_samples:
        store.write_real_test(prepared.test)
    reporter.start(jobs, note)
    store.supersede({(job.label, job.seed): job.key for job in jobs})
    records: dict[str, dict[str, Any]] = {}
    pending = []
    for job in jobs:
        previous = store.read_record(job.job_id)
        if previous is not None and previous.get("status") == "ok" and previous.get("key") == job.key:
            records[job.key] = previous | {"reused": True}
            store.write_record(job.job_id, records[job.key])
            reporter.done(job, records[job.key])
        else:
            pending.append(job)
    execution = resolve_execution(
        request.executor, len(pending), workers=request.workers, threads=request.threads, address=request.address,
        data_mb=_data_mb(prepared),
    )
    run_info["execution"] = execution.as_record()
    store.write_run(run_info)
    if pending:
        context = JobContext(suite, request.device, store.root, {"dataset": spec.name, "dataset_note": note},
                             runtime_generators())
        for job, record in make_executor(execution).run(pending, prepared, context, reporter.stage):
            records[job.key] = record
            reporter.done(job, record)
    return RunResult(store, [records[job.key] for job in jobs], spec.name, note, run_info)


def _data_mb(prepared: PreparedData) -> float:
    """Memory of the prepared matrices (what each worker process holds a copy of)."""
    total = 0
    for part in (prepared.train, prepared.test, prepared.holdout):
        x = part.X
        total += sum(a.nbytes for a in (x.data, x.indices, x.indptr)) if hasattr(x, "indptr") else x.nbytes
    return total / 2**20
