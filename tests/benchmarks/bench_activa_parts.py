"""ACTIVA taken apart: where its generated cells lose the spread of real cells.

The data are prepared as a suite prepares them; ACTIVA is fitted with the suite's `[params.activa]` (over which
`--fixed` goes). Printed:

- the real training cells' KL to the prior, their mean posterior variance, and the aggregate posterior (the
  encoder means of the training cells): the norm of its mean and the largest and median variance along its
  principal axes. Prior samples only look like real cells when this is close to N(0, I);
- the spread of each set of cells: the per-gene standard deviation of the scaled values (what the networks
  read), averaged over genes;
- scores against the real test cells (scgan-v1 RF AUC and MMD, and precision / recall / coverage with k = 5 in
  a log-PCA-50 fitted on the training cells) of: held-out real cells (the ceiling); reconstructions of them
  (encoder mean, then decoder: the ceiling of the autoencoder); decoded prior samples; decoded samples of a
  Gaussian fitted to the aggregate posterior; and ACTIVA's own sample with the test set's cluster composition.
  Decoded profiles become Poisson counts at library sizes drawn from the held-out cells, as ACTIVA's sample
  draws them from the training cells.

    python tests/benchmarks/bench_activa_parts.py --data pbmc68k-mini --fixed '{"epochs": 60}'
    python tests/benchmarks/bench_activa_parts.py --data /work/shared/data/pbmc3k_raw.h5ad --clusters 8

Not collected by pytest (its name does not start with test_). Run it single-threaded on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from suite_data import add_data_arguments, prepared_as_suite, scores_against_test

SHOWN = ("rf_auc", "mmd", "precision", "recall", "coverage")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(ap, suite_help="suite whose preparation and [params.activa] are used")
    ap.add_argument("--fixed", default="{}", help="ACTIVA parameters as JSON, over the suite's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trees", type=int, default=200, help="random-forest trees")
    ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    from scldbench.threads import limit_threads

    limit_threads(args.threads)
    import numpy as np
    import torch

    from scldbench.baselines._torch_common import dense_counts, scale_counts, to_counts, unscale
    from scldbench.baselines.activa import Activa, kl_normal
    from scldbench.evaluation import labels_of
    from scldbench.suite import load_suite

    suite = load_suite(args.suite)
    data = prepared_as_suite(suite, args.data, args.labels, args.clusters)
    params = dict(suite.params.get("activa", {})) | json.loads(args.fixed)
    model = Activa(**params, seed=args.seed, device="cpu")
    start = time.perf_counter()
    model.fit(data.train, labels_key=data.labels_key)
    print(f"fit {time.perf_counter() - start:.0f} s with {params}", flush=True)

    train, holdout = dense_counts(data.train.X), dense_counts(data.holdout.X)
    scaled_train = torch.as_tensor(scale_counts(train, model.total, model.log_scale))
    scaled_holdout = torch.as_tensor(scale_counts(holdout, model.total, model.log_scale))
    model.encoder_.eval()
    model.decoder_.eval()
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    with torch.no_grad():
        mu, logvar = model.encoder_(scaled_train)
        centre, cov = mu.mean(0).numpy(), np.cov(mu.numpy().T)
        axes = np.linalg.eigvalsh(cov)
        print(f"real-cell KL {kl_normal(mu, logvar).mean().item():.1f} nats, mean posterior variance "
              f"{logvar.exp().mean().item():.3f}; aggregate posterior: mean norm {np.linalg.norm(centre):.2f}, "
              f"variance along its axes largest {axes.max():.3g}, median {np.median(axes):.3g}")
        n = holdout.shape[0]
        chol = np.linalg.cholesky(cov + 1e-6 * np.eye(cov.shape[0]))
        aggregate = centre + rng.standard_normal((n, cov.shape[0])) @ chol.T
        decoded = {
            "reconstructions": model.decoder_(model.encoder_(scaled_holdout)[0]),
            "decoded prior": model.decoder_(torch.randn(n, model.latent_dim)),
            "decoded aggregate": model.decoder_(torch.as_tensor(aggregate, dtype=torch.float32)),
        }

    def spread(values: Any) -> float:
        return float(np.asarray(values).std(axis=0).mean())

    def as_counts(values: torch.Tensor) -> np.ndarray:
        libraries = rng.permutation(holdout.sum(1))
        return to_counts(unscale(values, model.log_scale).numpy(), libraries, "poisson", rng)

    keys, counts = np.unique(labels_of(data.test, data.labels_key), return_counts=True)
    composition = {str(k): int(c) for k, c in zip(keys, counts, strict=True)}
    sets = {"real holdout": (holdout, spread(scaled_holdout))}
    sets |= {name: (as_counts(v), spread(v)) for name, v in decoded.items()}
    sets["activa sample"] = (model.sample(sum(composition.values()), labels=composition, seed=args.seed).X, None)
    print(f"{'cells':<20}{'spread':>8}" + "".join(f"{m:>11}" for m in SHOWN))
    for name, (cells, width) in sets.items():
        scores = scores_against_test(data, cells, seed=args.seed, n_trees=args.trees)
        shown = "" if width is None else f"{width:.3f}"
        print(f"{name:<20}{shown:>8}" + "".join(f"{scores[m]:11.3f}" for m in SHOWN), flush=True)


if __name__ == "__main__":
    main()
