"""Speed targets of the scale work, each figure printed beside its target.

    python tests/benchmarks/bench_speed.py                    # MMD and RF AUC on 2 threads
    python tests/benchmarks/bench_speed.py --only scld run    # SCLD fit on the 700-cell subset; `scldbench run pbmc`
    python tests/benchmarks/bench_speed.py --only scld3k --pbmc3k /path/to/pbmc3k_raw.h5ad
    python tests/benchmarks/bench_speed.py --only mmd --device cuda   # the MMD's kernel sums on a GPU

Stages:
  mmd   MMD of 10,000 vs 10,000 cells in 50 dimensions (the protocol's kernel and bandwidth)   target  2 s
  rf    RF AUC of 7,000 vs 7,000 cells, the protocol's 1,000 trees on 50 PCs                   target 60 s
  scld  SCLD fit on the embedded 700-cell PBMC subset at the pbmc suite's CPU sizes            target 60 s
  scld3k  SCLD fit on pbmc3k (8 clusters, as the reports prepare it) at the same sizes         target 200 s
  run   `scldbench run pbmc` (embedded fallback, defaults) into a fresh cache and run folder   target 240 s
Each line gives wall seconds and the process CPU seconds (on a shared machine the CPU figure is the steadier one;
children's CPU is included for `run`). Not collected by pytest; run it by hand and copy the figures into notes.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"mmd": 2.0, "rf": 60.0, "scld": 60.0, "scld3k": 200.0, "run": 240.0}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", default=["mmd", "rf"], choices=list(TARGETS))
    ap.add_argument("--threads", type=int, default=2, help="threads for the metrics and SCLD (default 2)")
    ap.add_argument("--trees", type=int, default=1000, help="RF trees (the protocol's 1,000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pbmc3k", default=None, help="pbmc3k_raw.h5ad, for the scld3k stage")
    ap.add_argument("--device", default="cpu", help="where the MMD's kernel sums run: cpu or cuda (default cpu)")
    return ap.parse_args()


def report(name: str, wall: float, cpu: float, extra: str = "") -> None:
    target = TARGETS[name]
    verdict = "ok" if wall <= target else "over"
    print(f"{name:6s} {wall:8.2f} s wall  {cpu:8.2f} s cpu   target {target:6.0f} s  {verdict}  {extra}", flush=True)


def timed(func):
    wall, cpu = time.perf_counter(), time.process_time()
    value = func()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def bench_mmd(args: argparse.Namespace) -> None:
    import numpy as np

    from scldbench.metrics import mmd_multi_kernel

    rng = np.random.default_rng(args.seed)
    real = rng.normal(size=(10_000, 50)) * np.linspace(3, 0.5, 50)
    generated = rng.normal(size=(10_000, 50)) * np.linspace(3, 0.5, 50) + 0.05
    if args.device != "cpu":  # the device's context and kernels start outside the timing
        mmd_multi_kernel(real[:100], generated[:100], device=args.device)
    value, wall, cpu = timed(lambda: mmd_multi_kernel(real, generated, threads=args.threads, device=args.device))
    report("mmd", wall, cpu, f"mmd {value:.6f} on {args.device}")


def bench_rf(args: argparse.Namespace) -> None:
    import numpy as np

    from scldbench.metrics import rf_auc

    rng = np.random.default_rng(args.seed)
    # log-normalised-like features of 2,000 genes for 7,000 real and 7,000 generated cells
    means = rng.gamma(0.6, 1.0, size=2000)
    real = np.log1p(rng.poisson(means, size=(7000, 2000))).astype(np.float32)
    generated = np.log1p(rng.poisson(means * 1.05, size=(7000, 2000))).astype(np.float32)
    value, wall, cpu = timed(lambda: rf_auc(real, generated, n_trees=args.trees, seed=args.seed, n_jobs=args.threads))
    report("rf", wall, cpu, f"auc {value:.3f} ({args.trees} trees)")


def bench_scld(args: argparse.Namespace, data: str | None = None, clusters: int | None = None) -> None:
    from suite_data import prepared_as_suite

    from scldbench.registry import get_generator
    from scldbench.suite import load_suite

    suite = load_suite("pbmc")
    prepared = prepared_as_suite(suite, data or suite.fallback_dataset, clusters=clusters)
    model = get_generator("scld").create(seed=args.seed, device="cpu", **suite.params.get("scld", {}))
    _, wall, cpu = timed(lambda: model.fit(prepared.train, prepared.labels_key))
    stages = {k: v for k, v in model.diagnostics_.items() if k.endswith("_seconds")}
    report("scld" if data is None else "scld3k", wall, cpu,
           f"{prepared.train.n_obs} cells; " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))


def bench_scld3k(args: argparse.Namespace) -> None:
    if args.pbmc3k is None:
        raise SystemExit("the scld3k stage needs --pbmc3k PATH (pbmc3k_raw.h5ad)")
    bench_scld(args, args.pbmc3k, clusters=8)


def bench_run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {"SCLDBENCH_CACHE": str(Path(tmp) / "cache")}
        script = str(Path(sys.executable).with_name("scldbench"))
        command = [script, "run", "pbmc", "--out", str(Path(tmp) / "run"), "--quiet"]
        wall = time.perf_counter()
        subprocess.run(command, env=env, check=False)
        wall = time.perf_counter() - wall
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        report("run", wall, usage.ru_utime + usage.ru_stime, "(default executor)")


def main() -> None:
    args = parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    print(f"cores {os.cpu_count()}, threads {args.threads}, load average {os.getloadavg()[0]:.1f}", flush=True)
    for name in args.only:
        stages = {"mmd": bench_mmd, "rf": bench_rf, "scld": bench_scld, "scld3k": bench_scld3k, "run": bench_run}
        stages[name](args)


if __name__ == "__main__":
    main()
