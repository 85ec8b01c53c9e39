"""SCLD's fit-time draws, paired: the same autoencoder and diffusion calibrated with each way of drawing.

    python tests/benchmarks/bench_scld_fit_draws.py --data pbmc3k_raw.h5ad --n-clusters 8 --seeds 0 1 2
    python tests/benchmarks/bench_scld_fit_draws.py --data mouse_bladder_2100.h5ad --labels-key label --seeds 0 1 2

Per seed: one fit of the `cpu` preset's networks (autoencoder, count model, diffusion: timed per stage), then
stages 4-6 (latent calibration, scorer, marginal map) fitted again on that same model under each variant below,
timed, and a sample of the test set's size and composition drawn with the sampling sampler (DDPM) and scored
under scgan-v1 and hvg-pca30-v1. Pairing on the trained networks removes their seed-to-seed spread from the
comparison; what remains is the draws' and the forest's. The fit time of a variant is the training stages plus
its own stages 4-6, printed beside the targets. Not collected by pytest; run it by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

#: variant -> settings of stages 4-6 over the cpu preset's networks
VARIANTS: dict[str, dict[str, Any]] = {
    "ddpm-draws": {"fit_sampler": "same", "marginal_draw_per_cell": 0.0},
    "ddim50-draws": {"fit_sampler": "ddim", "fit_ddim_steps": 50, "marginal_draw_per_cell": 0.0},
    "ddim50-sized": {"fit_sampler": "ddim", "fit_ddim_steps": 50, "marginal_draw_per_cell": 4.0},
}
TARGETS = {"pbmc68k-mini": 60.0, "pbmc3k": 200.0}
TRAINING = ("ae_seconds", "dispersion_seconds", "diffusion_seconds")
CALIBRATING = ("calibration_seconds", "scorer_seconds", "marginal_seconds")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="pbmc68k-mini")
    ap.add_argument("--labels-key", default=None)
    ap.add_argument("--n-clusters", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--variants", nargs="+", default=["ddpm-draws", "ddim50-sized"], choices=list(VARIANTS))
    ap.add_argument("--trees", type=int, default=1000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    torch.set_num_threads(1)
    from scldbench.data import PrepareSettings, load_dataset, prepare
    from scldbench.protocols import get_protocol
    from scldbench.scld.generator import SCLD
    from scldbench.scld.stages import encode_cells

    adata, spec = load_dataset(args.data)
    labels_key = args.labels_key or spec.labels_key
    data = prepare(adata, PrepareSettings(labels_key=labels_key, n_clusters=None if labels_key else args.n_clusters))
    test_labels = data.test.obs[data.labels_key].astype(str).value_counts().to_dict()
    protocols = [get_protocol("scgan-v1"), get_protocol("hvg-pca30-v1")]
    name = Path(args.data).stem.split("_")[0]
    print(f"data {args.data}: {data.train.n_obs} train / {data.test.n_obs} test cells x {data.train.n_vars} genes")
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        first = VARIANTS[args.variants[0]]
        model = SCLD(preset="cpu", **first, seed=seed, device="cpu")
        cpu_start = time.process_time()
        model.fit(data.train, labels_key=data.labels_key)
        cpu_fit = time.process_time() - cpu_start
        d = dict(model.diagnostics_)
        training = {k: round(d[k], 1) for k in TRAINING}
        cpu_training = cpu_fit * sum(training.values()) / d["fit_seconds"]
        print(f"seed {seed}: training stages {training} (diffusion {d['diffusion_steps_per_s']:.1f} steps/s); "
              f"fit {d['fit_seconds']:.0f}s wall, {cpu_fit:.0f} CPU s", flush=True)
        labels = data.train.obs[data.labels_key].astype(str).to_numpy()
        cells = model._training_cells(data.train, labels)
        with torch.no_grad():
            latents, _ = encode_cells(cells, model.autoencoder_, model.config.counts.library == "latent")
            latents = model.diffusion_.scaler.to_diffusion(latents)
        for i, variant in enumerate(args.variants):
            if i:
                model.config = model.config.replace(**VARIANTS[variant])
                model.diagnostics_ = {}
                cpu_start, wall_start = time.process_time(), time.perf_counter()
                model._calibrate(cells, latents)
                d = model.diagnostics_
                d["fit_seconds"] = time.perf_counter() - wall_start
                cpu_fit = time.process_time() - cpu_start + cpu_training
            stages = {k: round(d.get(k, 0.0), 1) for k in CALIBRATING}
            fit_s = sum(training.values()) + sum(stages.values())
            # on a shared machine wall time depends on the neighbours: the fit's CPU seconds (one thread) are
            # what an idle core would take
            cpu_s = cpu_fit
            start = time.perf_counter()
            out = model.sample(data.test.n_obs, labels=test_labels, seed=seed + 1000)
            sample_s = time.perf_counter() - start
            row: dict[str, Any] = {"data": name, "seed": seed, "variant": variant, **training, **stages,
                                   "fit_s": round(fit_s, 1), "fit_cpu_s": round(cpu_s, 1),
                                   "sample_s": round(sample_s, 1),
                                   "latent_spread": d.get("latent_spread")}
            for protocol in protocols:
                scores = protocol.evaluate(data.test.X, out.X, reference=data.train.X, seed=seed, n_trees=args.trees)
                prefix = "" if protocol.name == "scgan-v1" else "hvg:"
                row |= {f"{prefix}{k}": scores[k] for k in ("rf_auc", "mmd", "w2", "mmd_rbf") if k in scores}
            rows.append(row)
            target = f" (target {TARGETS[name]:.0f}s)" if name in TARGETS else ""
            figures = " ".join(f"{k}={v:.3f}" for k, v in row.items() if k.endswith(("rf_auc", "mmd", "w2", "mmd_rbf")))
            print(f"  {variant:14s} stages 4-6 {stages}; fit {fit_s:.0f}s wall, {cpu_s:.0f} CPU s{target}; {figures}",
                  flush=True)
    print("\nmeans over seeds")
    for variant in args.variants:
        chosen = [r for r in rows if r["variant"] == variant]
        keys = [k for k in chosen[0] if k.endswith(("rf_auc", "mmd", "w2", "mmd_rbf", "_seconds", "fit_s", "cpu_s"))]
        print(f"  {variant:14s} " + " ".join(f"{k}={np.mean([r[k] for r in chosen]):.3f}" for k in keys))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=float))


if __name__ == "__main__":
    main()
