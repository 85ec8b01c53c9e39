"""Executors: worker processes give the records serial running gives, survive a dying worker, and limit threads;
a real local Ray instance runs a suite into the same store."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from scldbench import registry
from scldbench.errors import ScldbenchError
from scldbench.executors import JobContext, RayExecutor, available_cores, death_reason, resolve_execution
from scldbench.generator import Generator
from scldbench.runner import Job, RunRequest, run_suite
from scldbench.suite import load_suite, parse_suite
from tests.test_generator_contract import TINY

SMOKE_PLUS = """
name = "smoke-plus"
dataset = "pbmc68k-mini"
seeds = 1
protocols = ["scgan-v1"]
generators = {generators}
[evaluate]
n_trees = 50
extra_metrics = false
per_cluster = false
save_samples = false
"""


def suite(generators: str):
    return parse_suite(tomllib.loads(SMOKE_PLUS.format(generators=generators)), "smoke-plus.toml")


class ExitsDuringFit(Generator):
    name = "exits"

    def _fit(self, adata, labels):
        os._exit(3)

    def _sample(self, n_cells, labels, guidance):
        raise AssertionError


class KilledDuringFit(Generator):
    name = "killed"

    def _fit(self, adata, labels):
        os.kill(os.getpid(), signal.SIGKILL)

    def _sample(self, n_cells, labels, guidance):
        raise AssertionError


class ReportsThreads(Generator):
    """Fails on purpose with the thread limits it sees, so that the record carries them."""

    name = "threads-probe"

    def _fit(self, adata, labels):
        import torch

        raise RuntimeError(f"threads torch={torch.get_num_threads()} omp={os.environ.get('OMP_NUM_THREADS')}")

    def _sample(self, n_cells, labels, guidance):
        raise AssertionError


@pytest.fixture()
def dying_generators():
    extra = {"exits": ExitsDuringFit, "killed": KilledDuringFit, "threads-probe": ReportsThreads}
    for name, cls in extra.items():
        registry.register(name, cls)
    yield
    for name in extra:
        registry.unregister(name)


def _metrics(records):
    """(label, seed, protocol, metric) -> value: every score of every record."""
    return {(r.label, r.seed, protocol, name): value for r in records for protocol, entry in r.scores.items()
            for name, value in entry.metrics.items()}


@pytest.mark.slow
def test_processes_give_the_records_serial_gives(tmp_path):
    smoke = load_suite("smoke")
    # one BLAS thread on both sides, so that float sums run in the same order
    serial = run_suite(RunRequest(suite=smoke, out=tmp_path / "serial", executor="serial", threads=1))
    parallel = run_suite(RunRequest(suite=smoke, out=tmp_path / "processes", executor="processes", workers=2,
                                    threads=1))
    assert [r.status for r in parallel.records] == ["ok"] * 3
    assert _metrics(parallel.records) == _metrics(serial.records)
    assert [r.label for r in parallel.records] == [r.label for r in serial.records]  # plan order kept
    for record in parallel.records:
        assert record.execution == {"executor": "processes", "workers": 2, "threads": 1}
    on_disk = json.loads((tmp_path / "processes" / "run.json").read_text())
    assert on_disk["execution"]["executor"] == "processes"
    assert serial.records[0].execution["executor"] == "serial"


@pytest.mark.slow
def test_a_dying_worker_becomes_a_failed_record_and_the_others_finish(tmp_path, dying_generators):
    chosen = suite('["exits", "killed", "random", "threads-probe", "shuffle"]')
    result = run_suite(RunRequest(suite=chosen, out=tmp_path / "run", executor="processes", workers=2, threads=1))
    by_label = {r.label: r for r in result.records}
    assert by_label["exits"].status == "failed"
    assert "exited with code 3" in by_label["exits"].error
    assert by_label["killed"].status == "failed" and "SIGKILL" in by_label["killed"].error
    assert by_label["random"].status == "ok" and by_label["shuffle"].status == "ok"
    # each worker limits its own threads, in torch and in the environment BLAS reads at import
    assert by_label["threads-probe"].error == "RuntimeError: threads torch=1 omp=1"
    stored = {json.loads(p.read_text())["label"]: json.loads(p.read_text()) for p in (tmp_path / "run" / "jobs").glob(
        "*.json")}
    assert stored["killed"]["status"] == "failed" and stored["random"]["status"] == "ok"
    # a rerun keeps the finished jobs and tries the failed ones again
    again = run_suite(RunRequest(suite=chosen, out=tmp_path / "run", executor="serial", generators=["random"]))
    assert again.records[0].reused


def test_death_reasons_name_the_signal_and_the_likely_cause():
    assert "SIGKILL" in death_reason(-9) and "out-of-memory" in death_reason(-9)
    assert "SIGSEGV" in death_reason(-11)
    assert "code 1" in death_reason(1)


def test_execution_defaults_and_mistakes(monkeypatch):
    monkeypatch.delenv("SCLDBENCH_EXECUTOR", raising=False)
    default = resolve_execution(None, 50)
    assert default.executor in ("processes", "serial") and 1 <= default.workers <= available_cores()
    assert default.workers * default.threads <= max(available_cores(), default.workers)
    assert resolve_execution(None, 1).executor == "serial"  # one job: no worker to start
    assert resolve_execution("processes", 8, workers=2).as_record()["workers"] == 2
    monkeypatch.setenv("SCLDBENCH_EXECUTOR", "serial")
    assert resolve_execution(None, 50).executor == "serial"
    with pytest.raises(ScldbenchError, match="unknown executor 'prosesses'.*did you mean: processes"):
        resolve_execution("prosesses", 3)
    with pytest.raises(ScldbenchError, match="--address is for --executor ray"):
        resolve_execution("processes", 3, address="auto")
    with pytest.raises(ScldbenchError, match="--workers must be at least 1"):
        resolve_execution("processes", 3, workers=0)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (scldbench[ray])")
def test_a_local_ray_instance_runs_the_smoke_suite_and_a_failing_job(tmp_path, dying_generators):
    chosen = suite('["positive", "shuffle", "random", { name = "threads-probe", label = "broken" }]')
    result = run_suite(RunRequest(suite=chosen, out=tmp_path / "run", executor="ray", threads=1))
    by_label = {r.label: r for r in result.records}
    assert [by_label[k].status for k in ("positive", "shuffle", "random")] == ["ok"] * 3
    assert by_label["broken"].status == "failed" and by_label["broken"].error.startswith("RuntimeError: threads")
    assert by_label["positive"].execution["executor"] == "ray"
    assert by_label["positive"].scores["scgan-v1"].metrics["rf_auc"] < 0.7 < by_label["random"].scores[
        "scgan-v1"].metrics["rf_auc"]
    assert len(list((tmp_path / "run" / "jobs").glob("*.json"))) == 4
    # a rerun reuses what Ray finished, without starting Ray for nothing
    again = run_suite(RunRequest(suite=chosen, out=tmp_path / "run", executor="ray", generators=["positive"]))
    assert again.records[0].reused


def test_the_controls_and_statistical_baselines_never_use_a_gpu_and_the_networks_may():
    cpu_only = {info.name for info in registry.list_generators() if info.cls is not None and info.cls.cpu_only}
    assert cpu_only == {"positive", "random", "shuffle", "nb", "splat", "sugar", "copula"}
    with pytest.raises(TypeError, match="both needs_gpu and cpu_only"):
        type("Confused", (ExitsDuringFit,), {"needs_gpu": True, "cpu_only": True})


@pytest.mark.parametrize(("generator", "device", "cluster_gpus", "gpus"), [
    ("scld", "cuda", 1, 1.0), ("scld", "auto", 2, 1.0), ("scld", "auto", 0, 0.0), ("scld", "cpu", 1, 0.0),
    ("positive", "cuda", 1, 0.0), ("copula", "auto", 4, 0.0),
])
def test_ray_asks_for_a_gpu_only_for_jobs_that_run_on_one(generator, device, cluster_gpus, gpus, tmp_path):
    job = Job(0, generator, generator, {}, 0, "0" * 64)
    ctx = JobContext(suite=None, device=device, store_root=tmp_path, dataset={})
    assert RayExecutor._gpus(job, ctx, cluster_gpus) == gpus


# the contract tests' tiny SCLD as a suite entry (JSON strings, numbers and lists are TOML values)
TINY_SCLD = ('{ name = "scld", params = { '
             + ", ".join(f"{key} = {json.dumps(value)}" for key, value in TINY["scld"].items()) + " } }")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (scldbench[ray])")
def test_ray_refuses_a_cuda_run_on_a_cluster_without_a_gpu(tmp_path):
    import ray
    import torch

    if torch.cuda.is_available():
        pytest.skip("the local Ray instance would have this machine's GPU")
    # the GPUs that count are the cluster's, not the driver's: the run is planned, and Ray refuses it
    request = RunRequest(suite=suite(f'["positive", {TINY_SCLD}]'), out=tmp_path / "run", executor="ray",
                         device="cuda")
    with pytest.raises(ScldbenchError, match="the Ray cluster has no GPU"):
        run_suite(request)
    assert not ray.is_initialized()  # the local instance it started is stopped again
    assert not list((tmp_path / "run" / "jobs").glob("*.json"))


@pytest.mark.gpu
@pytest.mark.parametrize("executor", ["serial", "processes", "ray"])
def test_a_cuda_run_puts_network_jobs_on_the_gpu_and_cpu_only_jobs_on_the_cpu(executor, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (scldbench[ray])")
    result = run_suite(RunRequest(suite=suite(f'["positive", "random", {TINY_SCLD}]'), out=tmp_path / "run",
                                  executor=executor, device="cuda"))
    by_label = {r.label: r for r in result.records}
    assert all(r.status == "ok" for r in result.records), [(r.label, r.error) for r in result.records]
    assert by_label["scld"].device.startswith("cuda") and by_label["scld"].fit_peak_gpu_mb > 0
    assert by_label["positive"].device.startswith("cpu") and by_label["random"].device.startswith("cpu")
    assert by_label["positive"].scores["scgan-v1"].metrics["rf_auc"] < 0.7 < by_label["random"].scores[
        "scgan-v1"].metrics["rf_auc"]
