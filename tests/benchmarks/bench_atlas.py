"""Atlas-size data through the pbmc suite's path: preparation, the fast generators, every metric; seconds and
peak resident memory per stage beside the targets.

    python tests/benchmarks/bench_atlas.py                        # 68,579 x 32,738, PBMC-like sparsity
    python tests/benchmarks/bench_atlas.py --cells 250000         # the second point: how each stage grows
    python tests/benchmarks/bench_atlas.py --cells 5000 --generators positive   # a quick check of the script
    python tests/benchmarks/bench_atlas.py --cache /tmp/atlas-counts              # simulate once, reuse after
    python tests/benchmarks/bench_atlas.py --prepare-only --threads 2            # preparation's figures alone

Counts come from bench_scld_scale.py's simulator (log-normal libraries, heavy-tailed gene abundances, clusters
differing in a tenth of their genes, NB noise). Preparation is the pbmc suite's (QC, 10 computed Leiden
clusters unless --labels, stratified split); each generator is fitted on the training cells and sampled for
the test cells; scoring is the protocol's RF AUC and MMD (whole data), the hvg-pca30-v1 distances, the biology
block (DE recovery, gene-gene correlation, with the holdout reference) and the extra metrics, each a stage of
its own; `--job` also scores the sample as a suite job does (every default protocol, per cluster, biology and
extras in one go). Targets: preparation
within 60 s and 8 GiB; scoring one job within 8 GiB. Peak memory is the process's resident peak during the
stage (what the machine must have), with the growth over the stage's start beside it. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any

TARGET_PREPARE_SECONDS = 60.0
TARGET_PEAK_MB = 8 * 1024.0


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=68_579)
    ap.add_argument("--genes", type=int, default=32_738)
    ap.add_argument("--library", type=float, default=1300.0, help="median UMIs per simulated cell")
    ap.add_argument("--groups", type=int, default=10, help="simulated cell types")
    ap.add_argument("--labels", action="store_true", help="use the simulated labels instead of computed clusters")
    ap.add_argument("--generators", nargs="+", default=["positive", "shuffle", "random", "nb"])
    ap.add_argument("--protocol", default="scgan-v1")
    ap.add_argument("--n-trees", type=int, default=1000)
    ap.add_argument("--no-extra", action="store_true", help="skip the metrics beyond RF AUC and MMD")
    ap.add_argument("--job", action="store_true", help="also score each sample as one suite job (per cluster too)")
    ap.add_argument("--prepare-only", action="store_true", help="stop after preparation (its figures only)")
    ap.add_argument("--cache", default=None, help="folder to keep the simulated counts in and reuse them from")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write all figures to this JSON file")
    return ap.parse_args()


def line(stage: str, usage: Any, target_s: float | None = None, target_mb: float | None = None, note: str = "") -> None:
    beside = []
    if target_s is not None:
        beside.append(f"target {target_s:.0f} s {'ok' if usage.seconds <= target_s else 'OVER'}")
    if target_mb is not None:
        beside.append(f"target {target_mb / 1024:.0f} GiB {'ok' if usage.peak_rss_mb <= target_mb else 'OVER'}")
    print(f"{stage:28s} {usage.seconds:8.1f} s  peak {usage.peak_rss_mb / 1024:6.2f} GiB "
          f"(+{usage.peak_rss_delta_mb / 1024:5.2f})  {'; '.join(beside)} {note}", flush=True)


def simulated(args: argparse.Namespace, simulate: Any) -> tuple[Any, Any]:
    """The simulated (counts, labels), from `--cache` when it holds them for these arguments."""
    import numpy as np
    import scipy.sparse as sp

    if args.cache is None:
        return simulate(args.cells, args.genes, args.groups, args.library, args.seed, "cpu")
    stem = Path(args.cache) / f"counts-{args.cells}x{args.genes}-g{args.groups}-l{args.library:g}-s{args.seed}"
    counts_file, labels_file = stem.with_suffix(".npz"), stem.with_suffix(".labels.npy")
    if counts_file.exists() and labels_file.exists():
        return sp.load_npz(counts_file).tocsr(), np.load(labels_file)
    counts, labels = simulate(args.cells, args.genes, args.groups, args.library, args.seed, "cpu")
    stem.parent.mkdir(parents=True, exist_ok=True)
    sp.save_npz(counts_file, counts, compressed=False)
    np.save(labels_file, labels)
    return counts, labels


def main() -> None:
    args = parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(Path(__file__).parent))
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp
    import torch
    from bench_scld_scale import simulate_counts

    from scldbench.data.prepare import PrepareSettings, prepare
    from scldbench.evaluation import biology_scores, extra_scores
    from scldbench.protocols import DEFAULT_PROTOCOLS, get_protocol
    from scldbench.registry import get_generator
    from scldbench.resources import track_usage
    from scldbench.scoring import ScoringContext, score_sample
    from scldbench.suite import EvaluateSettings

    torch.set_num_threads(args.threads)
    print(f"{args.cells} x {args.genes} simulated cells, {args.threads} thread(s), load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    figures: dict[str, Any] = {"cells": args.cells, "genes": args.genes, "threads": args.threads, "stages": {}}

    def keep(stage: str, usage: Any, **extra: Any) -> None:
        figures["stages"][stage] = {"seconds": usage.seconds, "peak_rss_mb": usage.peak_rss_mb,
                                    "peak_rss_delta_mb": usage.peak_rss_delta_mb, **extra}

    with track_usage() as usage:
        counts, labels = simulated(args, simulate_counts)
        obs = pd.DataFrame({"celltype": labels}, index=[f"c{i}" for i in range(args.cells)])
        adata = ad.AnnData(counts, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(args.genes)]))
    density = counts.nnz / (args.cells * args.genes)
    line("simulate", usage, note=f"density {density:.4f}, {counts.nnz / args.cells:.0f} genes per cell")
    keep("simulate", usage, density=density)

    settings = PrepareSettings(labels_key="celltype") if args.labels else PrepareSettings(n_clusters=10)
    with track_usage() as usage:
        prepared = prepare(adata, settings, use_cache=False)
    sparse = all(sp.issparse(p.X) for p in (prepared.train, prepared.test, prepared.holdout))
    line("prepare", usage, TARGET_PREPARE_SECONDS, TARGET_PEAK_MB,
         f"{prepared.info['n_genes']} genes after QC, {prepared.info['n_clusters']} clusters, sparse {sparse}")
    keep("prepare", usage, n_genes=prepared.info["n_genes"], sparse=sparse)
    del adata, counts
    if args.prepare_only:
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2, default=float))
        return

    # what a worker process receives once (the processes executor pickles the prepared data through a pipe)
    with track_usage() as usage:
        payload = pickle.dumps(prepared, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(payload)
    line("pickle + unpickle prepared", usage, note=f"{len(payload) / 2**20:.0f} MiB sent to each worker")
    keep("pickle + unpickle prepared", usage, mib=len(payload) / 2**20)
    del payload

    protocol = get_protocol(args.protocol)
    for name in args.generators:
        model = get_generator(name).create(seed=args.seed, device="cpu")
        fit_data = prepared.holdout if model.uses_holdout else prepared.train
        with track_usage() as usage:
            model.fit(fit_data, prepared.labels_key)
        line(f"{name}: fit", usage)
        keep(f"{name}: fit", usage)
        with track_usage() as usage:
            samples = model.sample(prepared.test.n_obs, seed=args.seed)
        line(f"{name}: sample", usage, note=f"sparse {sp.issparse(samples.X)}")
        keep(f"{name}: sample", usage, sparse=sp.issparse(samples.X))
        with track_usage() as usage:
            scores = protocol.evaluate(prepared.test.X, samples.X, reference=prepared.train.X, seed=args.seed,
                                       n_trees=args.n_trees)
        line(f"{name}: RF AUC + MMD", usage, target_mb=TARGET_PEAK_MB,
             note=" ".join(f"{k} {v:.3f}" for k, v in scores.items()))
        keep(f"{name}: RF AUC + MMD", usage, scores=scores)
        if not args.no_extra:
            hvg = get_protocol("hvg-pca30-v1")
            with track_usage() as usage:
                scores = hvg.evaluate(prepared.test.X, samples.X, reference=prepared.train.X, seed=args.seed)
            line(f"{name}: hvg-pca30-v1", usage, target_mb=TARGET_PEAK_MB,
                 note=" ".join(f"{k} {v:.3f}" for k, v in scores.items()))
            keep(f"{name}: hvg-pca30-v1", usage, scores=scores)
            settings = EvaluateSettings(n_trees=args.n_trees)
            with track_usage() as usage:
                bio, _ = biology_scores(ScoringContext(prepared), samples, settings)
            line(f"{name}: biology", usage, target_mb=TARGET_PEAK_MB,
                 note=" ".join(f"{k} {v:.3f}" for k, v in bio.items()))
            keep(f"{name}: biology", usage, scores=bio)
            with track_usage() as usage:
                more = extra_scores(prepared, samples, args.seed)
            line(f"{name}: extra metrics", usage, target_mb=TARGET_PEAK_MB)
            keep(f"{name}: extra metrics", usage, scores=more)
        if args.job:
            settings = EvaluateSettings(n_trees=args.n_trees)
            with track_usage() as usage:
                entries = score_sample(ScoringContext(prepared), samples, DEFAULT_PROTOCOLS, settings, args.seed)
            failed = {k: v.error for k, v in entries.items() if not v.ok}
            line(f"{name}: whole job", usage, target_mb=TARGET_PEAK_MB, note=f"failed {failed}" if failed else "")
            keep(f"{name}: whole job", usage, settings={k: v.settings for k, v in entries.items()}, failed=failed)
        del model, samples
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=float))


if __name__ == "__main__":
    main()
