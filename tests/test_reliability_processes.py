"""Real processes: two runs into one folder split the work; SIGTERM keeps finished jobs and exits with 143."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from scldbench.errors import EXIT_TERMINATED

PLUGIN = '''
import os, time
import numpy as np
from scldbench import Generator

class Counting(Generator):
    """Poisson at gene means; every fit appends a line to $RELPLUG_LOG, so a test can count computations."""
    name = "counting"

    def _fit(self, adata, labels):
        with open(os.environ["RELPLUG_LOG"], "a") as log:
            log.write(f"{os.getpid()} {self.seed}\\n")
        time.sleep(0.5)
        self.means = np.asarray(adata.X.mean(axis=0)).ravel()

    def _sample(self, n_cells, labels, guidance):
        return self._rng.poisson(self.means, size=(n_cells, self.n_genes)).astype(np.float32)

class Sleeper(Counting):
    name = "sleeper"

    def _fit(self, adata, labels):
        time.sleep(120)
'''

SUITE = """
name = "procs"
dataset = "pbmc68k-mini"
seeds = {seeds}
generators = {generators}
[evaluate]
n_trees = 20
per_cluster = false
extra_metrics = false
save_samples = {save}
"""


def _environment(tmp_path) -> dict[str, str]:
    (tmp_path / "relplug.py").write_text(textwrap.dedent(PLUGIN))
    dist = tmp_path / "relplug-0.1.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: relplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[scldbench.generators]\ncounting = relplug:Counting\nsleeper = relplug:Sleeper\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    env["RELPLUG_LOG"] = str(tmp_path / "fits.log")
    env["SCLDBENCH_CACHE"] = str(tmp_path / "cache")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return env


def _scldbench(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from scldbench.cli import app; app()", *args], env=env,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_two_runs_into_one_folder_compute_each_job_once(tmp_path):
    env = _environment(tmp_path)
    suite = tmp_path / "procs.toml"
    suite.write_text(SUITE.format(seeds=4, generators='["counting", "random", "positive"]', save="true"))
    out = tmp_path / "run"
    procs = [_scldbench("run", str(suite), "--out", str(out), env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    fits = (tmp_path / "fits.log").read_text().split()
    seeds = sorted(int(s) for s in fits[1::2])
    assert seeds == [0, 1, 2, 3], fits  # each counting job fitted exactly once across both processes
    records = [json.loads(p.read_text()) for p in sorted((out / "jobs").glob("*.json"))]
    assert len(records) == 12 and all(r["status"] == "ok" for r in records)
    assert len(list((out / "samples").glob("*.h5ad"))) == 12
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".lock"]
    assert leftovers == []


@pytest.mark.slow
def test_sigterm_keeps_finished_jobs_and_exits_143(tmp_path):
    env = _environment(tmp_path)
    suite = tmp_path / "procs.toml"
    suite.write_text(SUITE.format(seeds=1, generators='["random", "sleeper"]', save="false"))
    out = tmp_path / "run"
    proc = _scldbench("run", str(suite), "--out", str(out), env=env)
    deadline = time.time() + 300
    while not list((out / "jobs").glob("random-*.json")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # the sleeper is fitting now
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == EXIT_TERMINATED, output
    lines = [line for line in output.splitlines() if "terminated" in line]
    assert len(lines) == 1 and "finished jobs are kept" in lines[0]
    kept = [json.loads(p.read_text()) for p in (out / "jobs").glob("*.json")]
    assert [r["label"] for r in kept] == ["random"] and kept[0]["status"] == "ok"
    assert not list((out / "claims").glob("*.lock"))
