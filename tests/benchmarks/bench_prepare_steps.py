"""Seconds and peak resident memory of each step of the pbmc suite's preparation (QC, normalisation, HVG, scaling,
PCA, neighbours, each Leiden call, split) on bench_atlas.py's simulated counts.

    python tests/benchmarks/bench_prepare_steps.py --cells 68579 --cache /tmp/atlas/simcache --threads 1

Each step is a function the preparation calls, wrapped by name (`STEPS`; names the code does not have are
skipped, so one list serves old and new code); a call's figures are its wall time, the process's CPU time (all
threads; on a busy machine the steadier figure) and the resident peak during it, sampled every 10 ms. Steps nested
in another are listed beside it, not subtracted. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

#: "module:attribute" of each step, outermost first
STEPS = (
    "scldbench.data.prepare:prepare",
    "scldbench.data.prepare:quality_filter",
    "scldbench.data.prepare:compute_clusters",
    "scldbench.data.clustering:large_data_graph",
    "scldbench.data.clustering:size_factors",
    "scldbench.data.clustering:normalised_moments",
    "scldbench.data.clustering:top_genes",
    "scldbench.data.clustering:log_normalised_genes",
    "scldbench.data.clustering:scaled_pca",
    "scldbench.data.neighbours:exact_neighbours",
    "scldbench.data.neighbours:approximate_neighbours",
    "scldbench.data.neighbours:umap_connectivities",
    "scldbench.data.clustering:leiden_graph",
    "scldbench.data.clustering:leiden_labels",
    "scanpy.preprocessing:normalize_total",
    "scanpy.preprocessing:log1p",
    "scanpy.preprocessing:highly_variable_genes",
    "scanpy.preprocessing:scale",
    "scanpy.preprocessing:pca",
    "scanpy.preprocessing:neighbors",
    "scanpy.tools:leiden",
    "scldbench.data.prepare:stratified_split",
)


def wrap_steps(calls: list[dict[str, Any]], track_usage: Any) -> None:
    for target in STEPS:
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if not hasattr(module, attr):
            continue
        original = getattr(module, attr)

        @functools.wraps(original)
        def timed(*args: Any, _original: Any = original, _name: str = attr, **kwargs: Any) -> Any:
            cpu = time.process_time()
            with track_usage(interval=0.01) as usage:
                result = _original(*args, **kwargs)
            cpu = time.process_time() - cpu
            extra = f" resolution {kwargs['resolution']:.4f}" if "resolution" in kwargs else ""
            calls.append({"step": _name + extra, "seconds": usage.seconds, "cpu_seconds": cpu,
                          "peak_rss_mb": usage.peak_rss_mb, "peak_rss_delta_mb": usage.peak_rss_delta_mb})
            print(f"{_name + extra:40s} {usage.seconds:8.2f} s (CPU {cpu:8.2f} s)  "
                  f"peak {usage.peak_rss_mb / 1024:6.2f} GiB (+{usage.peak_rss_delta_mb / 1024:5.2f})", flush=True)
            return result

        setattr(module, attr, timed)
        # the names bound elsewhere: `sc.pp` / `sc.tl`, and `from ... import` in scldbench's modules
        for name, other in list(sys.modules.items()):
            if (name.startswith("scldbench") or name in ("scanpy.pp", "scanpy.tl")) and \
                    getattr(other, attr, None) is original:
                setattr(other, attr, timed)

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=68_579)
    ap.add_argument("--genes", type=int, default=32_738)
    ap.add_argument("--library", type=float, default=1300.0)
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--clusters", type=int, default=10)
    ap.add_argument("--cache", default=None, help="folder of bench_atlas.py's simulated counts")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(Path(__file__).parent))
    import anndata as ad
    import pandas as pd
    from bench_atlas import simulated
    from bench_scld_scale import simulate_counts

    from scldbench.resources import track_usage

    counts, _ = simulated(args, simulate_counts)
    adata = ad.AnnData(counts, obs=pd.DataFrame(index=[f"c{i}" for i in range(args.cells)]),
                       var=pd.DataFrame(index=[f"g{j}" for j in range(args.genes)]))
    del counts
    calls: list[dict[str, Any]] = []
    wrap_steps(calls, track_usage)
    prep = importlib.import_module("scldbench.data.prepare")

    print(f"{args.cells} x {args.genes}, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}", flush=True)
    prepared = prep.prepare(adata, prep.PrepareSettings(n_clusters=args.clusters, seed=args.seed), use_cache=False)
    print(f"{prepared.info['n_genes']} genes after QC, {prepared.info['n_clusters']} clusters, "
          f"sizes {prepared.info['cluster_sizes']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"cells": args.cells, "threads": args.threads, "calls": calls,
                                               "info": prepared.info}, indent=2))


if __name__ == "__main__":
    main()
