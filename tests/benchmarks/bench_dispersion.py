"""Benchmark SCLD's maximum-likelihood NB dispersion: seconds per fit at a given number of cells, genes, clusters.

    python tests/benchmarks/bench_dispersion.py --cells 2048 --genes 17789 --clusters 12

SCLD fits at most 2,048 cells (a random subset of larger training sets). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import time

import torch

from scldbench.scld.dispersion import nb_theta_mle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=2048)
    ap.add_argument("--genes", type=int, default=17_789)
    ap.add_argument("--clusters", type=int, default=12)
    ap.add_argument("--theta", type=float, default=2.0, help="true inverse dispersion of the simulated counts")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    # scRNA-like means: most genes low, a few high
    means = torch._standard_gamma(torch.full((args.cells, args.genes), 0.3), generator=gen) / 0.6 + 1e-4
    rates = torch._standard_gamma(torch.full_like(means, args.theta), generator=gen) * means / args.theta
    counts = torch.poisson(rates, generator=gen)
    group = torch.randint(0, args.clusters, (args.cells,), generator=gen)
    counts, means, group = counts.to(args.device), means.to(args.device), group.to(args.device)
    print(
        f"{args.cells} cells x {args.genes} genes, {args.clusters} clusters, non-zero share "
        f"{float((counts > 0).float().mean()):.3f}, device {args.device}, {args.threads} thread(s)"
    )
    for name, g, k in (("per cluster", group, args.clusters), ("pooled", torch.zeros_like(group), 1)):
        t0 = time.perf_counter()
        log_theta = nb_theta_mle(counts, means, g, k, floor=0.01)
        seconds = time.perf_counter() - t0
        finite = log_theta[log_theta < 10]
        print(f"{name}: {seconds:.1f} s, median theta {float(finite.exp().median()):.2f} (true {args.theta})")


if __name__ == "__main__":
    main()
