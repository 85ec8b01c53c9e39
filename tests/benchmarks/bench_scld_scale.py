"""Benchmark SCLD's paper configuration at PBMC 68k's scale: wall time of each training stage and peak memory.

    python tests/benchmarks/bench_scld_scale.py --device cuda                      # 68,579 x 17,789, paper config
    python tests/benchmarks/bench_scld_scale.py --cells 4000 --genes 3000 --config '{"steps": 200, "ae_epochs": 2}'

The counts are simulated with PBMC-like sparsity unless `--data` names a real matrix: per-cell library sizes
log-normal about `--library` UMIs, heavy-tailed gene abundances, `--clusters` cell types that differ in a tenth of
their genes, gamma-Poisson (NB) noise; the script prints the density it reached. Target on one H100: the three
training stages (autoencoder, diffusion, scorer with its calibration draws) under 10 minutes together.
Not collected by pytest; run it by hand and copy the figures into notes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=68_579)
    ap.add_argument("--genes", type=int, default=17_789)
    ap.add_argument("--clusters", type=int, default=12)
    ap.add_argument("--library", type=float, default=1300.0, help="median UMIs per simulated cell")
    ap.add_argument("--data", default=None, help="a real .h5ad to fit instead of simulated counts")
    ap.add_argument("--labels-key", default=None, help="obs column with labels in --data")
    ap.add_argument("--config", default="{}", help="SCLD parameters as JSON over the defaults (the paper's)")
    ap.add_argument("--sample", type=int, default=10_000, help="cells to draw after the fit (0: none)")
    ap.add_argument("--samplers", nargs="+", default=["ddim", "ddpm"], choices=["ddim", "ddpm"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch / BLAS threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write all figures to this JSON file")
    return ap.parse_args()


def simulate_counts(
    n_cells: int, n_genes: int, n_clusters: int, median_library: float, seed: int, device: Any
) -> tuple[Any, np.ndarray]:
    """(CSR counts, cluster labels), drawn in blocks of cells so that only one block is ever dense."""
    import scipy.sparse as sp
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)
    rng = np.random.default_rng(seed)
    base = rng.lognormal(mean=0.0, sigma=2.7, size=n_genes)
    shifted = rng.random((n_clusters, n_genes)) < 0.1
    fold = np.exp(np.where(shifted, rng.normal(0.0, 1.5, (n_clusters, n_genes)), 0.0))
    profiles = base * fold
    profiles /= profiles.sum(axis=1, keepdims=True)
    profiles_t = torch.as_tensor(profiles, dtype=torch.float32, device=device)
    labels = rng.integers(0, n_clusters, n_cells)
    library = median_library * rng.lognormal(0.0, 0.45, n_cells)
    theta = 2.0
    blocks = []
    for start in range(0, n_cells, 4096):
        idx = slice(start, min(start + 4096, n_cells))
        mu = profiles_t[torch.as_tensor(labels[idx], device=device)]
        mu = mu * torch.as_tensor(library[idx], dtype=torch.float32, device=device)[:, None]
        rate = torch._standard_gamma(torch.full_like(mu, theta), generator=gen) * (mu / theta)
        blocks.append(sp.csr_matrix(torch.poisson(rate, generator=gen).cpu().numpy().astype(np.float32)))
    return sp.vstack(blocks, format="csr"), labels.astype(str)


def main() -> None:
    args = parse_args()
    # SCLD's own progress (autoencoder epochs, diffusion steps) with times, so that a run stopped early shows how far
    # it got
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("scldbench.scld").setLevel(logging.INFO)
    if args.threads is not None:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import anndata as ad
    import pandas as pd
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from scldbench.device import resolve_device
    from scldbench.resources import track_usage
    from scldbench.scld.generator import SCLD

    device = resolve_device(args.device)
    config = json.loads(Path(args.config).read_text()) if Path(args.config).is_file() else json.loads(args.config)
    t0 = time.perf_counter()
    if args.data:
        adata = ad.read_h5ad(args.data)
        labels_key = args.labels_key
        source = args.data
    else:
        counts, labels = simulate_counts(args.cells, args.genes, args.clusters, args.library, args.seed, device)
        adata = ad.AnnData(counts, obs=pd.DataFrame({"cluster": labels}, index=[f"c{i}" for i in range(len(labels))]))
        labels_key = "cluster"
        source = "simulated"
    nnz = adata.X.nnz if hasattr(adata.X, "nnz") else int(np.count_nonzero(adata.X))
    density = nnz / (adata.n_obs * adata.n_vars)
    genes_per_cell = nnz / adata.n_obs
    median_umis = float(np.median(np.asarray(adata.X.sum(axis=1)).ravel()))
    print(
        f"data {source}: {adata.n_obs} x {adata.n_vars}, density {density:.4f} ({genes_per_cell:.0f} genes per cell, "
        f"median {median_umis:.0f} UMIs), made in {time.perf_counter() - t0:.1f}s", flush=True
    )
    figures: dict[str, Any] = {
        "data": source,
        "shape": [adata.n_obs, adata.n_vars],
        "density": density,
        "config": config,
        "seed": args.seed,
        "device": str(device),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }

    model = SCLD(**config, seed=args.seed, device=str(device))
    with track_usage() as fit_usage:
        model.fit(adata, labels_key=labels_key)
    d = model.diagnostics_
    stages = {
        "autoencoder": d["ae_seconds"],
        "dispersion": d.get("dispersion_seconds", 0.0),
        "diffusion": d["diffusion_seconds"],
        "calibration draw": d.get("calibration_seconds", 0.0),
        "scorer": d.get("scorer_seconds", 0.0),
        "marginal sketch": d.get("marginal_seconds", 0.0),
    }
    figures |= {
        "fit_seconds": fit_usage.seconds,
        "stages_seconds": stages,
        "ae_steps_per_s": d["ae_steps_per_s"],
        "diffusion_steps_per_s": d["diffusion_steps_per_s"],
        "fit_peak_rss_mb": fit_usage.peak_rss_mb,
        "fit_peak_gpu_mb": fit_usage.peak_gpu_mb,
    }
    gpu = "" if fit_usage.peak_gpu_mb is None else f", peak GPU memory {fit_usage.peak_gpu_mb:,.0f} MiB"
    print(f"fit {fit_usage.seconds:.1f}s on {device}, peak resident memory {fit_usage.peak_rss_mb:,.0f} MiB{gpu}")
    for name, seconds in stages.items():
        print(f"  {name:17s} {seconds:8.1f}s")
    print(f"  autoencoder {d['ae_steps_per_s']:.1f} steps/s, diffusion {d['diffusion_steps_per_s']:.1f} steps/s",
          flush=True)
    save(figures, args.json)

    for sampler in args.samplers if args.sample > 0 else []:
        model.config = model.config.replace(sampler=sampler)
        with track_usage() as usage:
            out = model.sample(args.sample, seed=args.seed + 1)
        figures[f"sample_{sampler}_seconds"] = usage.seconds
        figures[f"sample_{sampler}_peak_gpu_mb"] = usage.peak_gpu_mb
        print(f"sample {sampler}: {out.n_obs} cells in {usage.seconds:.1f}s", flush=True)
        save(figures, args.json)


def save(figures: dict[str, Any], path: str | None) -> None:
    """The figures so far to `path` (after the fit and after each draw, so that a stopped run keeps them)."""
    if path:
        Path(path).write_text(json.dumps(figures, indent=2, default=float))


if __name__ == "__main__":
    main()
