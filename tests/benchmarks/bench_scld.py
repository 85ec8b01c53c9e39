"""Benchmark SCLD under protocols scgan-v1 and hvg-pca30-v1: quality beside the controls (and `nb`), the
autoencoder ceiling, training throughput and wall time per stage, and DDPM vs DDIM sampling time and quality.

    python tests/benchmarks/bench_scld.py --data pbmc3k_raw.h5ad --n-clusters 8 --seeds 0 1 2
    python tests/benchmarks/bench_scld.py --data pbmc68k-mini --labels-key louvain --config '{"steps": 2000}'

Not collected by pytest (its name does not start with test_); run it by hand and copy the figures into notes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

PAPER_LITERAL: dict[str, Any] = {
    # the paper read literally: MSE autoencoder on log values, decoded means, no count model
    "ae_loss": "mse",
    "count_sampling": "mean",
    "ae_latent_activation": "relu",
    "ae_anchor": "none",
    "library": "empirical",
    "latent_scaling": "standard",
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="pbmc68k-mini", help="dataset name or path (.h5ad, 10x .h5, folder)")
    ap.add_argument("--labels-key", default=None, help="obs column with labels (default: compute clusters)")
    ap.add_argument("--n-clusters", type=int, default=8, help="clusters to compute when there is no labels key")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="model seeds (one fit per seed)")
    ap.add_argument("--config", default="{}", help="SCLD parameters as JSON, or the path of a JSON file")
    ap.add_argument("--paper", action="store_true", help="start from the paper-literal config (MSE AE, means)")
    ap.add_argument("--guidance", type=float, default=None, help="guidance weight w at sampling (default: config)")
    ap.add_argument("--ddim-steps", type=int, default=None, help="DDIM steps for the fast sampler")
    ap.add_argument("--no-ddpm", action="store_true", help="skip ancestral DDPM sampling (slow on CPU)")
    ap.add_argument("--trees", type=int, default=1000, help="random-forest trees (protocol: 1000)")
    ap.add_argument("--no-baselines", action="store_true", help="skip the controls and nb")
    ap.add_argument("--threads", type=int, default=1, help="torch / BLAS threads")
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--protocols", nargs="+", default=["scgan-v1", "hvg-pca30-v1"], help="protocols every sample is scored under"
    )
    ap.add_argument("--json", default=None, help="write all figures to this JSON file")
    return ap.parse_args()


def load_config(text: str) -> dict[str, Any]:
    return json.loads(Path(text).read_text()) if Path(text).is_file() else json.loads(text)


def main() -> None:
    args = parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from scldbench.data import PrepareSettings, load_dataset, prepare
    from scldbench.protocols import get_protocol
    from scldbench.registry import get_generator
    from scldbench.scld.generator import SCLD

    config = (PAPER_LITERAL if args.paper else {}) | load_config(args.config)
    if args.ddim_steps is not None:
        config["ddim_steps"] = args.ddim_steps
    adata, spec = load_dataset(args.data)
    labels_key = args.labels_key or spec.labels_key
    settings = PrepareSettings(labels_key=labels_key, n_clusters=None if labels_key else args.n_clusters)
    t0 = time.perf_counter()
    data = prepare(adata, settings)
    print(
        f"data {args.data}: {data.info['n_train']} train / {data.info['n_test']} test / "
        f"{data.info['n_holdout']} holdout cells x {data.info['n_genes']} genes, {data.info['n_clusters']} clusters "
        f"(prepared in {time.perf_counter() - t0:.1f}s)"
    )
    protocols = [get_protocol(name) for name in args.protocols]
    n_test = data.test.n_obs
    test_labels = data.test.obs[data.labels_key].astype(str).value_counts().to_dict()
    results: dict[str, Any] = {"data": args.data, "config": config, "rows": []}

    def score(name: str, counts: Any, seed: int, **extra: Any) -> dict[str, Any]:
        row: dict[str, Any] = {"model": name, "seed": seed}
        for protocol in protocols:
            scores = protocol.evaluate(data.test.X, counts, reference=data.train.X, seed=seed, n_trees=args.trees)
            prefix = "" if protocol.name == "scgan-v1" else f"{protocol.name}:"
            row |= {f"{prefix}{k}": v for k, v in scores.items()}
        row |= extra
        results["rows"].append(row)
        shown = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        print(shown, flush=True)
        return row

    if not args.no_baselines:
        for name in ("positive", "random", "nb"):
            try:
                klass = get_generator(name)
            except Exception as exc:  # a baseline that is not there yet is skipped, not fatal
                print(f"{name}: skipped ({exc})")
                continue
            for seed in args.seeds:
                gen = klass(seed=seed)
                source = data.holdout if klass.uses_holdout else data.train
                start = time.perf_counter()
                gen.fit(source, labels_key=data.labels_key)
                fit_s = time.perf_counter() - start
                out = gen.sample(n_test, labels=test_labels if klass.conditional else None, seed=seed)
                score(name, out.X, seed, fit_s=fit_s)

    for seed in args.seeds:
        model = SCLD(**config, seed=seed, device=args.device)
        start = time.perf_counter()
        model.fit(data.train, labels_key=data.labels_key)
        fit_s = time.perf_counter() - start
        d = model.diagnostics_
        print(
            f"scld seed {seed}: fit {fit_s:.1f}s on {d['device']}; autoencoder {d['ae_seconds']:.1f}s "
            f"({d['ae_steps_per_s']:.1f} steps/s), diffusion {d['diffusion_seconds']:.1f}s "
            f"({d['diffusion_steps_per_s']:.1f} steps/s), scorer {d.get('scorer_seconds', 0.0):.1f}s "
            f"(held-out AUC {d.get('scorer_validation_auc', float('nan')):.2f}, "
            f"epoch {d.get('scorer_epochs_kept', float('nan')):.0f}), calibration "
            f"{d.get('calibration_seconds', 0.0):.1f}s (latent spread {d.get('latent_spread', 1.0):.2f})"
        )
        stages = {k: round(v, 1) for k, v in d.items() if k.endswith("_seconds")}
        print(f"scld seed {seed}: seconds per stage {stages}")
        ceiling = model.autoencoder_ceiling(data.test, data.holdout, seed=seed, n_trees=args.trees)
        row = {"model": "scld-ae-ceiling", "seed": seed, **ceiling, "stage_seconds": stages}
        results["rows"].append(row)
        print(f"scld autoencoder ceiling seed {seed}: rf_auc={ceiling['rf_auc']:.3f} mmd={ceiling['mmd']:.3f}")
        samplers = ["ddim"] if args.no_ddpm else ["ddim", "ddpm"]
        for sampler in samplers:
            model.config = model.config.replace(sampler=sampler)
            start = time.perf_counter()
            out = model.sample(n_test, labels=test_labels, guidance=args.guidance, seed=seed + 1000)
            sample_s = time.perf_counter() - start
            score(
                f"scld-{sampler}",
                out.X,
                seed,
                sample_s=round(sample_s, 2),
                fit_s=round(fit_s, 1),
                diffusion_steps_per_s=round(d["diffusion_steps_per_s"], 1),
            )
    print("\nsummary (mean +- sd over seeds)")
    for name in dict.fromkeys(r["model"] for r in results["rows"]):
        rows = [r for r in results["rows"] if r["model"] == name]
        shown = [k for k in rows[0] if k.split(":")[-1] in ("rf_auc", "mmd", "w2", "mmd_rbf")]
        figures = "   ".join(
            f"{k} {np.mean([r[k] for r in rows]):.3f} +- {np.std([r[k] for r in rows]):.3f}" for k in shown
        )
        extra = ""
        if "sample_s" in rows[0]:
            extra = f"  sample {np.mean([r['sample_s'] for r in rows]):.1f}s for {n_test} cells"
        print(f"  {name:18s} {figures}{extra}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
