"""How much the composition of a generated sample moves the protocol's scores: the same fitted generators sampled
repeatedly with each cell's label drawn at random from the training proportions (multinomial) and with the exact
training composition (largest remainder, what unconditional sampling returns).

    python tests/benchmarks/bench_composition.py --data pbmc3k_raw.h5ad --n-clusters 8 --draws 6
    python tests/benchmarks/bench_composition.py --data mouse_bladder_2100.h5ad --labels-key label

Every draw gives all generators the same labels. Not collected by pytest; run it by hand and copy the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

# SCLD as the CPU suites run it (suites/pbmc.toml)
CPU_SUITE_SCLD = {"latent_dim": 16, "ae_hidden": 256, "denoiser_channels": [256, 128], "steps": 4000}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="pbmc68k-mini", help="dataset name or path (.h5ad, 10x .h5, folder)")
    ap.add_argument("--labels-key", default=None, help="obs column with labels (default: compute clusters)")
    ap.add_argument("--n-clusters", type=int, default=8, help="clusters to compute when there is no labels key")
    ap.add_argument("--seed", type=int, default=0, help="model seed")
    ap.add_argument("--draws", type=int, default=6, help="samples per generator and composition")
    ap.add_argument("--config", default=json.dumps(CPU_SUITE_SCLD), help="SCLD parameters as JSON")
    ap.add_argument("--trees", type=int, default=1000, help="random-forest trees (protocol: 1000)")
    ap.add_argument("--threads", type=int, default=1, help="torch / BLAS threads")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from scldbench.data import PrepareSettings, load_dataset, prepare
    from scldbench.generator import largest_remainder
    from scldbench.protocols import get_protocol
    from scldbench.registry import get_generator

    adata, spec = load_dataset(args.data)
    labels_key = args.labels_key or spec.labels_key
    data = prepare(adata, PrepareSettings(labels_key=labels_key, n_clusters=None if labels_key else args.n_clusters))
    protocol = get_protocol("scgan-v1")
    n = data.test.n_obs
    train_labels = data.train.obs[data.labels_key].astype(str).to_numpy()
    categories, counts = np.unique(train_labels, return_counts=True)
    share = counts / counts.sum()

    generators: dict[str, Any] = {
        "scld": get_generator("scld")(**json.loads(args.config), seed=args.seed),
        "nb": get_generator("nb")(seed=args.seed),
        "nb-libsize": get_generator("nb")(library_size="empirical", seed=args.seed),
    }
    for name, gen in generators.items():
        start = time.perf_counter()
        gen.fit(data.train, labels_key=data.labels_key)
        print(f"{name}: fitted in {time.perf_counter() - start:.0f}s", flush=True)

    scores: dict[tuple[str, str], list[dict[str, float]]] = {}
    for draw in range(args.draws):
        rng = np.random.default_rng(draw)
        labels = {
            "random": rng.choice(categories, size=n, p=share),
            "exact": rng.permutation(np.repeat(categories, largest_remainder(n, share, rng))),
        }
        for mode, chosen in labels.items():
            for name, gen in generators.items():
                cells = gen.sample(n, labels=chosen, seed=1000 + draw).X
                row = protocol.evaluate(data.test.X, cells, seed=draw, n_trees=args.trees)
                scores.setdefault((name, mode), []).append(row)
                print(f"draw {draw} {mode:6s} {name:10s} rf_auc={row['rf_auc']:.3f} mmd={row['mmd']:.4f}", flush=True)

    print(f"\n{args.data}: {args.draws} draws of {n} cells (mean, sd)")
    for (name, mode), rows in scores.items():
        auc = np.array([r["rf_auc"] for r in rows])
        mmd = np.array([r["mmd"] for r in rows])
        print(
            f"{name:10s} {mode:6s} rf_auc {auc.mean():.3f} ({auc.std(ddof=1):.3f})  "
            f"mmd {mmd.mean():.4f} ({mmd.std(ddof=1):.4f})  range {mmd.min():.4f}-{mmd.max():.4f}"
        )


if __name__ == "__main__":
    main()
