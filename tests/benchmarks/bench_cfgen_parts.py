"""CFGen's autoencoder apart from its flow: how close each stage's cells come to the real test cells.

The data are prepared as a suite prepares them; CFGen is fitted with the suite's `[params.cfgen]` (over which
`--fixed` goes) and three sets of cells are scored against the real test cells: the real holdout cells (the
ceiling of any generator), the autoencoder's reconstruction of the holdout cells (encoded, decoded with their
own library sizes, NB counts drawn: the ceiling of CFGen's count model, whatever the flow), and CFGen's
samples with the test set's cluster composition. Scores: RF AUC and MMD under scgan-v1, W2, RBF MMD^2 and
energy distance under hvg-pca30-v1, precision / recall / density / coverage (the suite's extras).

    python tests/benchmarks/bench_cfgen_parts.py --data /work/shared/data/pbmc3k_raw.h5ad --clusters 8
    python tests/benchmarks/bench_cfgen_parts.py --data /work/shared/data/mouse_bladder_2100.h5ad \
        --labels label --fixed '{"dispersion": "learned"}'

Not collected by pytest (its name does not start with test_). Run it single-threaded on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from suite_data import add_data_arguments, prepared_as_suite, scores_against_test

SHOWN = ("rf_auc", "mmd", "w2", "mmd_rbf", "energy_distance", "precision", "recall", "coverage")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(ap, suite_help="suite whose preparation and [params.cfgen] are used")
    ap.add_argument("--fixed", default="{}", help="CFGen parameters as JSON, over the suite's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trees", type=int, default=None, help="random-forest trees (default: the suite's)")
    ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    import numpy as np
    import scipy.sparse as sp
    import torch

    torch.set_num_threads(args.threads)

    from scldbench.baselines.cfgen import CFGen
    from scldbench.baselines.cfgen.dispersion import decoded_means
    from scldbench.counts.torch import sample_nb
    from scldbench.evaluation import labels_of
    from scldbench.suite import load_suite

    suite = load_suite(args.suite)
    data = prepared_as_suite(suite, args.data, args.labels, args.clusters)
    n_trees = args.trees or suite.evaluate.n_trees
    params = dict(suite.params.get("cfgen", {})) | json.loads(args.fixed)
    model = CFGen(**params, seed=args.seed, device="cpu")
    start = time.perf_counter()
    model.fit(data.train, labels_key=data.labels_key)
    print(f"fit {time.perf_counter() - start:.0f} s; {json.dumps(model.diagnostics_)}", flush=True)

    def score(cells: Any) -> dict[str, float]:
        return scores_against_test(data, cells, seed=args.seed, n_trees=n_trees, hvg=True)

    holdout = data.holdout.X
    x = torch.as_tensor(holdout.toarray() if sp.issparse(holdout) else np.asarray(holdout), dtype=torch.float32)
    torch.manual_seed(args.seed)
    with torch.no_grad():
        recon = sample_nb(decoded_means(model.autoencoder_, x), model.autoencoder_.log_theta.exp()).numpy()
    keys, counts = np.unique(labels_of(data.test, data.labels_key), return_counts=True)
    composition = {str(k): int(c) for k, c in zip(keys, counts, strict=True)}
    sample = model.sample(sum(composition.values()), labels=composition, seed=args.seed).X
    print(f"{'cells':<28}" + " ".join(f"{m:>15}" for m in SHOWN))
    for name, cells in (("real holdout", holdout), ("autoencoder (holdout)", recon), ("cfgen sample", sample)):
        scores = score(cells)
        print(f"{name:<28}" + " ".join(f"{scores[m]:15.3f}" for m in SHOWN), flush=True)


if __name__ == "__main__":
    main()
