"""Faults a user meets: misbehaving plugins, damaged or foreign records, bracketed text, claims, bad --out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from scldbench import registry
from scldbench.cli import app
from scldbench.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_JOBS_FAILED, EXIT_TERMINATED
from scldbench.generator import Generator
from scldbench.store import RunStore

runner = CliRunner()

SUITE = """
name = "faults"
dataset = "pbmc68k-mini"
seeds = 1
generators = {generators}
[evaluate]
n_trees = 20
per_cluster = false
extra_metrics = false
save_samples = false
"""


def suite_file(tmp_path, generators: str) -> str:
    path = tmp_path / "faults.toml"
    path.write_text(SUITE.format(generators=generators))
    return str(path)


class _Means(Generator):
    """Poisson at the training gene means; subclasses misbehave in one way each."""

    def _fit(self, adata, labels):
        self.means = np.asarray(adata.X.mean(axis=0)).ravel()

    def _sample(self, n_cells, labels, guidance):
        return self._rng.poisson(self.means, size=(n_cells, self.n_genes)).astype(np.float32)


class Brackets(_Means):
    def _fit(self, adata, labels):
        raise RuntimeError("[/counts] [red]x[/red]")


class Exits(_Means):
    def _fit(self, adata, labels):
        sys.exit(3)


class Swallows(_Means):
    """Handles a signal as Lightning's trainer (inside scvi-tools) does: its own handler calls the one installed
    before it, a KeyboardInterrupt becomes sys.exit(1), and a signal seen without one ends the fit with
    SystemExit (Lightning's SIGTERMException). The plugin sends the signal to its own process."""

    def _fit(self, adata, labels):
        signum, seen = int(os.environ["SWALLOWS_SIGNAL"]), []
        previous = signal.getsignal(signum)

        def handler(number, frame):
            seen.append(number)
            if callable(previous):
                previous(number, frame)

        signal.signal(signum, handler)
        try:
            os.kill(os.getpid(), signum)
            for _ in range(300):
                time.sleep(0.1)
                if seen:
                    raise SystemExit(1)
        except KeyboardInterrupt:
            sys.exit(1)
        finally:
            signal.signal(signum, previous)


class Hangs(_Means):
    def _fit(self, adata, labels):
        time.sleep(600)


class NoMemory(_Means):
    def _fit(self, adata, labels):
        raise MemoryError()


class Halves(_Means):
    def _sample(self, n_cells, labels, guidance):
        return np.full((n_cells, self.n_genes), 0.5, dtype=np.float32)


class Huge(_Means):
    def _sample(self, n_cells, labels, guidance):
        out = super()._sample(n_cells, labels, guidance)
        out[0, 0] = 1e9
        return out


class Inventive(_Means):
    def _sample(self, n_cells, labels, guidance):
        return super()._sample(n_cells, labels, guidance), np.repeat("never-seen", n_cells)


@pytest.fixture()
def plugins():
    made = {"brackets": Brackets, "exits": Exits, "hangs": Hangs, "no-memory": NoMemory, "halves": Halves,
            "huge": Huge, "inventive": Inventive, "swallows": Swallows}
    for name, cls in made.items():
        registry.register(name, cls)
    yield
    for name in made:
        registry.unregister(name)


def _records(out) -> dict[str, dict]:
    shown = runner.invoke(app, ["show", str(out), "--json"])
    assert shown.exit_code == 0, shown.output
    return {r["label"]: r for r in json.loads(shown.output)}


def test_a_bracketed_error_is_recorded_and_shown_literally(tmp_path, plugins):
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", suite_file(tmp_path, '["brackets", "random"]'), "--out", str(out)])
    assert result.exit_code == EXIT_JOBS_FAILED, result.output
    assert "[/counts] [red]x[/red]" in result.output
    records = _records(out)
    assert records["brackets"]["status"] == "failed" and records["random"]["status"] == "ok"
    assert records["brackets"]["error"] == "RuntimeError: [/counts] [red]x[/red]"
    shown = runner.invoke(app, ["show", str(out)])
    assert shown.exit_code == 0 and "[/counts] [red]x[/red]" in shown.output.replace("\n", "")


def test_bracketed_paths_in_messages_are_literal(tmp_path):
    result = runner.invoke(app, ["run", suite_file(tmp_path, '["random"]'), "--data", str(tmp_path / "[/x] [red]y")])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "[/x] [red]y" in result.output and "MarkupError" not in result.output


def test_plugins_that_exit_run_out_of_memory_or_hang_fail_alone(tmp_path, plugins):
    generators = '["exits", "no-memory", { name = "hangs", timeout = 1 }, "random"]'
    out = tmp_path / "run"
    started = time.perf_counter()
    result = runner.invoke(app, ["run", suite_file(tmp_path, generators), "--out", str(out)])
    assert time.perf_counter() - started < 60
    assert result.exit_code == EXIT_JOBS_FAILED, result.output
    records = _records(out)
    assert "sys.exit(3)" in records["exits"]["error"]
    assert records["no-memory"]["error"].startswith("out of memory")
    assert records["hangs"]["error"].startswith("timed out after 1 s")
    assert records["random"]["status"] == "ok"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, EXIT_TERMINATED)],
                         ids=["ctrl-c", "sigterm"])
def test_an_interrupt_a_plugin_swallows_still_stops_the_run(tmp_path, plugins, monkeypatch, signum, code):
    monkeypatch.setenv("SWALLOWS_SIGNAL", str(int(signum)))
    # Ctrl-C as in a terminal: a shell starts background jobs (CI runners among them) with SIGINT ignored
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    out = tmp_path / "run"
    try:
        result = runner.invoke(app, ["run", suite_file(tmp_path, '["swallows", "random"]'), "--out", str(out),
                                     "--executor", "serial"])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the job's latch is undone
    finally:
        signal.signal(signal.SIGINT, before)
    assert result.exit_code == code, result.output
    assert "finished jobs are kept" in result.output
    assert not list((out / "jobs").glob("*.json"))  # no failed record for the interrupted job, no job after it


def test_sigterm_to_a_worker_inside_a_swallowing_plugin_records_the_kill(tmp_path, plugins, monkeypatch):
    # the plugin sends SIGTERM to its own worker process, as a scheduler or the OOM guard of a cluster might
    monkeypatch.setenv("SWALLOWS_SIGNAL", str(int(signal.SIGTERM)))
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", suite_file(tmp_path, '["swallows", "random"]'), "--out", str(out),
                                 "--executor", "processes", "--workers", "1"])
    assert result.exit_code == EXIT_JOBS_FAILED, result.output
    records = _records(out)
    assert records["swallows"]["error"].startswith("the worker process running this job was killed by SIGTERM")
    assert records["random"]["status"] == "ok"


def test_output_checks_refuse_fractions_and_unseen_labels_and_flag_huge_counts(tmp_path, plugins):
    out = tmp_path / "run"
    runner.invoke(app, ["run", suite_file(tmp_path, '["halves", "inventive", "huge"]'), "--out", str(out)])
    records = _records(out)
    assert records["halves"]["status"] == "failed" and "the first is 0.5" in records["halves"]["error"]
    assert records["inventive"]["status"] == "failed" and "'never-seen'" in records["inventive"]["error"]
    assert records["huge"]["status"] == "ok"
    assert any("exceeds every real cell's total" in w for w in records["huge"]["output_warnings"])


def test_damaged_records_are_skipped_with_a_warning_and_recomputed(tmp_path):
    out = tmp_path / "run"
    suite = suite_file(tmp_path, '["positive", "random", "shuffle", "nb"]')
    assert runner.invoke(app, ["run", suite, "--out", str(out)]).exit_code == 0
    jobs = sorted((out / "jobs").glob("*.json"))
    jobs[0].write_text(jobs[0].read_text()[:40])  # truncated
    jobs[1].write_text("[1, 2]")  # not an object
    record = json.loads(jobs[2].read_text())
    del record["status"]
    jobs[2].write_text(json.dumps(record))  # a field missing
    for command in (["show", str(out)], ["report", str(out)], ["leaderboard", str(tmp_path)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (command, result.output)
        for path in jobs[:3]:
            assert path.name in result.output.replace("\n", "")
        assert "Traceback" not in result.output
    rerun = runner.invoke(app, ["run", suite, "--out", str(out)])
    assert rerun.exit_code == 0, rerun.output
    records = _records(out)
    assert len(records) == 4 and sum(bool(r.get("reused")) for r in records.values()) == 1


def test_a_damaged_run_file_is_one_line_for_show_and_skipped_by_the_leaderboard(tmp_path):
    out = tmp_path / "runs" / "a"
    assert runner.invoke(app, ["run", suite_file(tmp_path, '["random"]'), "--out", str(out)]).exit_code == 0
    (out / "run.json").write_text("")
    shown = runner.invoke(app, ["show", str(out)])
    assert shown.exit_code == EXIT_BAD_INPUT and "run.json is damaged" in shown.output
    assert "Traceback" not in shown.output
    board = runner.invoke(app, ["leaderboard", str(tmp_path / "runs")])
    assert "run.json is damaged" in board.output and "Traceback" not in board.output


def test_records_made_on_other_data_are_moved_aside(tmp_path, pbmc_mini):
    other = tmp_path / "other.h5ad"
    pbmc_mini[: pbmc_mini.n_obs - 40].copy().write_h5ad(other)
    out = tmp_path / "run"
    assert runner.invoke(app, ["run", suite_file(tmp_path, '["positive", "random"]'), "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["run", suite_file(tmp_path, '["positive"]'), "--out", str(out), "--data", str(other),
                                 "--labels", "louvain"])
    assert result.exit_code == 0, result.output
    assert "moved to jobs/superseded" in result.output.replace("\n", " ")
    records = _records(out)
    assert list(records) == ["positive"]
    assert records["positive"]["fingerprint"] == json.loads((out / "run.json").read_text())["fingerprint"]
    assert len(list((out / "jobs" / "superseded").glob("*.json"))) == 2


def test_claims_are_exclusive_released_and_taken_over_from_dead_processes(tmp_path):
    store = RunStore(tmp_path)
    first = store.claim("job-a")
    assert first is not None and store.claim("job-a") is None and store.claimed("job-a")
    first.release()
    assert not store.claimed("job-a")
    with store.claim("job-a") as held:
        assert held.path.is_file()
    assert not held.path.exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.claim_path("job-b").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    assert store.claim("job-b") is not None  # its owner is gone


def test_bad_out_is_refused_before_data_is_read(tmp_path):
    file = tmp_path / "a-file"
    file.write_text("x")
    missing = str(tmp_path / "no-such.h5ad")
    for out in (file, file / "below"):
        result = runner.invoke(app, ["run", suite_file(tmp_path, '["random"]'), "--out", str(out), "--data", missing])
        assert result.exit_code == EXIT_BAD_INPUT and "is a file" in result.output and "no-such" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--labels", "louvain", "--clusters", "5"], "not both"),
        (["--generators", "rnadom"], "did you mean: random"),
    ],
)
def test_option_mistakes_are_found_before_data_is_read(tmp_path, args, message):
    missing = str(tmp_path / "no-such.h5ad")
    result = runner.invoke(app, ["run", suite_file(tmp_path, '["random"]'), "--data", missing, *args])
    assert result.exit_code == EXIT_BAD_INPUT and message in result.output and "no-such" not in result.output
