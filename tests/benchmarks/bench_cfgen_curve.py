"""CFGen's learning curve: protocol scores against training budget (autoencoder epochs, flow-matching epochs).

    python tests/benchmarks/bench_cfgen_curve.py --data ../shared/data/pbmc3k_raw.h5ad --n-clusters 8

Each budget is a fresh fit of the CPU-sized network (suites/pbmc.toml) on the prepared training cells, sampled
with as many cells per cluster as the real test set holds and scored by scgan-v1 (RF AUC, MMD) and the
precision / recall / coverage of the extra scores. Not collected by pytest; run it by hand and copy the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time

# the CPU network of suites/pbmc.toml; the budgets vary only the epochs
CPU_NETWORK = {"latent_dim": 32, "encoder_layers": [256, 128], "flow_hidden": 256, "embedding_dim": 128}
BUDGETS = [(5, 100), (15, 300), (30, 400)]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="pbmc68k-mini", help="dataset name or path (.h5ad, 10x .h5, folder)")
    ap.add_argument("--labels-key", default=None, help="obs column with labels (default: compute clusters)")
    ap.add_argument("--n-clusters", type=int, default=8, help="clusters to compute when there is no labels key")
    ap.add_argument("--budgets", default=json.dumps(BUDGETS), help="JSON list of [ae_epochs, flow_epochs]")
    ap.add_argument("--network", default=json.dumps(CPU_NETWORK), help="other CFGen parameters as JSON")
    ap.add_argument("--seed", type=int, default=0, help="model and scoring seed")
    ap.add_argument("--trees", type=int, default=1000, help="random-forest trees (protocol: 1000)")
    ap.add_argument("--threads", type=int, default=1, help="torch / BLAS threads")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from scldbench.baselines.cfgen import CFGen
    from scldbench.data import PrepareSettings, load_dataset, prepare
    from scldbench.evaluation import extra_scores
    from scldbench.protocols import get_protocol

    adata, spec = load_dataset(args.data)
    labels_key = args.labels_key or spec.labels_key
    data = prepare(adata, PrepareSettings(labels_key=labels_key, n_clusters=None if labels_key else args.n_clusters))
    protocol = get_protocol("scgan-v1")
    request = data.test.obs[data.labels_key].astype(str).value_counts().to_dict()
    print(f"{args.data}: {data.train.n_obs} training cells, {data.test.n_obs} test cells, {data.train.n_vars} genes")
    print("ae_epochs flow_epochs fit_s sample_s rf_auc mmd precision recall coverage", flush=True)
    for ae_epochs, flow_epochs in json.loads(args.budgets):
        gen = CFGen(**json.loads(args.network), ae_epochs=ae_epochs, flow_epochs=flow_epochs, seed=args.seed,
                    device="cpu")
        start = time.perf_counter()
        gen.fit(data.train, labels_key=data.labels_key)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        cells = gen.sample(data.test.n_obs, labels=request, seed=args.seed)
        sample_s = time.perf_counter() - start
        row = protocol.evaluate(data.test.X, cells.X, seed=args.seed, n_trees=args.trees)
        row |= extra_scores(data, cells, args.seed)
        print(f"{ae_epochs} {flow_epochs} {fit_s:.0f} {sample_s:.1f} {row['rf_auc']:.3f} {row['mmd']:.4f} "
              f"{row['precision']:.3f} {row['recall']:.3f} {row['coverage']:.3f}", flush=True)


if __name__ == "__main__":
    main()
