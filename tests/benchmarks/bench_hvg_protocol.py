"""Cost of scoring one job's sample under hvg-pca30-v1 (and, for comparison, scgan-v1) at pbmc3k scale.

    python tests/benchmarks/bench_hvg_protocol.py --data ../shared/data/pbmc3k_raw.h5ad --n-clusters 8

    python tests/benchmarks/bench_hvg_protocol.py --data ../shared/data/pbmc3k_raw.h5ad --n-clusters 8 --with-scgan

A per-cluster negative binomial is fitted on the training cells and sampled once with the real test
composition (as the runner does); the sample is then scored with a fresh scoring context (HVG selection, PCA,
real markers and real-vs-real references included, as for a run's first job) and again with the context
warm (as for every later job). Each figure is printed beside its target. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import time

#: seconds to score one job under hvg-pca30-v1 on 2 CPU cores (first job of a run: nothing cached)
TARGET_SECONDS = 30.0


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="pbmc68k-mini", help="dataset name or path (.h5ad, 10x .h5, folder)")
    ap.add_argument("--labels-key", default=None, help="obs column with labels (default: compute clusters)")
    ap.add_argument("--n-clusters", type=int, default=8, help="clusters to compute when there is no labels key")
    ap.add_argument("--trees", type=int, default=1000, help="random-forest trees for scgan-v1 (protocol: 1000)")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS threads (on a shared 2-core machine, 2 BLAS threads made the PCA 20x slower)")
    ap.add_argument("--with-scgan", action="store_true", help="time scgan-v1 too (1,000-tree forests: minutes)")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from scldbench.data import PrepareSettings, load_dataset, prepare
    from scldbench.registry import get_generator
    from scldbench.scoring import ScoringContext, score_sample, test_composition
    from scldbench.suite import EvaluateSettings

    adata, spec = load_dataset(args.data)
    labels_key = args.labels_key or spec.labels_key
    data = prepare(adata, PrepareSettings(labels_key=labels_key, n_clusters=None if labels_key else args.n_clusters))
    print(f"{args.data}: {data.train.n_obs} train / {data.test.n_obs} test / {data.holdout.n_obs} holdout cells, "
          f"{data.test.n_vars} genes, {len(data.clusters)} clusters", flush=True)
    generator = get_generator("nb")(seed=0).fit(data.train, labels_key=data.labels_key)
    composition = test_composition(data)
    sample = generator.sample(sum(composition.values()), labels=composition, seed=0)
    settings = EvaluateSettings(n_trees=args.trees)

    rows = []
    for protocol in ("hvg-pca30-v1", "scgan-v1") if args.with_scgan else ("hvg-pca30-v1",):
        context = ScoringContext(data)
        for state in ("cold", "warm"):
            start = time.perf_counter()
            scores = score_sample(context, sample, [protocol], settings, seed=0, extras_under="")[protocol]
            seconds = time.perf_counter() - start
            if scores["status"] != "ok":
                raise SystemExit(f"{protocol} failed: {scores['error']}")
            rows.append((protocol, state, seconds, scores["metrics"]))
    print(f"\n{'protocol':<14} {'context':<7} {'seconds':>8}   target")
    for protocol, state, seconds, _ in rows:
        target = f"<= {TARGET_SECONDS:.0f} s" if protocol == "hvg-pca30-v1" else "(reference)"
        print(f"{protocol:<14} {state:<7} {seconds:8.1f}   {target}")
    hvg = rows[0][3]
    shown = ("w1", "w2", "mmd_rbf", "energy_distance", "cluster_w1_mean", "cluster_w2_mean", "cluster_mmd_rbf_mean",
             "cluster_energy_distance_mean", "de_overlap", "de_overlap_reference", "de_lfc_spearman",
             "de_lfc_spearman_reference", "gene_corr", "gene_corr_reference", "gene_corr_all",
             "gene_corr_all_reference")
    print("\nhvg-pca30-v1 scores of the per-cluster NB sample:")
    for name in shown:
        print(f"  {name:<30} {hvg.get(name, float('nan')):.4f}")
    cold = rows[0][2]
    print(f"\nhvg-pca30-v1, first job of a run: {cold:.1f} s (target <= {TARGET_SECONDS:.0f} s): "
          f"{'met' if cold <= TARGET_SECONDS else 'MISSED'}")


if __name__ == "__main__":
    main()
