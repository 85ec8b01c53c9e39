"""Learning curve of one registered generator: scores and fit seconds at several training lengths.

The data are prepared as a suite prepares them (the suite's `[prepare]` table over the dataset's defaults, the
same cache), the generator is fitted on the training cells at every budget of its training-length parameter,
sampled once (a conditional generator with the real test cells' cluster composition, an unconditional one
with as many cells as the test set), and scored against the real test cells: RF AUC and MMD under the
protocol (scgan-v1 by default), precision, recall, density and coverage in the PCA-50 of log-normalised
training cells (the suite's extra metrics), and the fit seconds.

    python tests/benchmarks/bench_learning_curve.py --data /work/shared/data/pbmc3k_raw.h5ad --clusters 8 \
        --generator activa --param epochs --budgets 5 15 40 --json /tmp/lc-activa.json
    python tests/benchmarks/bench_learning_curve.py --data pbmc68k-mini --generator scgan --param steps \
        --budgets 500 2000 --fixed '{"batch_size": 64}' --seeds 0 1

Not collected by pytest (its name does not start with test_). Pick a CPU setting where the curve stops
improving or where the fit takes `--target-seconds` (15 minutes by default), whichever comes first; the
`target` column says which budgets fit under it. Run it single-threaded on a shared machine (`--threads 1`).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from suite_data import add_data_arguments, prepared_as_suite

METRICS = ("rf_auc", "mmd", "precision", "recall", "density", "coverage")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(ap, default_data="pbmc68k-mini",
                       suite_help="suite whose preparation, protocol and params are used")
    ap.add_argument("--generator", required=True, help="registered generator name")
    ap.add_argument("--param", required=True, help="the generator's training-length parameter (steps, epochs)")
    ap.add_argument("--budgets", type=float, nargs="+", required=True, help="values of --param to fit at")
    ap.add_argument("--fixed", default="{}", help="further parameters as JSON (or a JSON file), over the suite's")
    ap.add_argument("--no-suite-params", action="store_true", help="ignore the suite's [params.<generator>]")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="model seeds (one fit per seed and budget)")
    ap.add_argument("--protocol", default=None, help="protocol for RF AUC and MMD (default: the suite's)")
    ap.add_argument("--trees", type=int, default=None, help="random-forest trees (default: the suite's)")
    ap.add_argument("--target-seconds", type=float, default=900.0, help="the fit-time ceiling for a CPU setting")
    ap.add_argument("--threads", type=int, default=1, help="torch / BLAS threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="write every row to this JSON file (rewritten after each fit)")
    return ap.parse_args()


def load_json(text: str) -> dict[str, Any]:
    return json.loads(Path(text).read_text()) if Path(text).is_file() else json.loads(text)


def as_budget(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def main() -> None:
    args = parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)

    from scldbench.evaluation import labels_of
    from scldbench.metrics import fit_log_pca, manifold_metrics
    from scldbench.protocols import get_protocol
    from scldbench.registry import get_generator
    from scldbench.suite import load_suite

    suite = load_suite(args.suite)
    data = prepared_as_suite(suite, args.data, args.labels, args.clusters)
    info = data.info
    print(f"data {args.data}: {info['n_train']} train / {info['n_test']} test cells x {info['n_genes']} genes, "
          f"{info['n_clusters']} clusters; suite {suite.name}; {args.threads} thread(s)", flush=True)

    protocol = get_protocol(args.protocol or suite.protocol)
    n_trees = args.trees or suite.evaluate.n_trees
    klass = get_generator(args.generator)
    base = ({} if args.no_suite_params else dict(suite.params.get(args.generator, {}))) | load_json(args.fixed)
    test_labels = labels_of(data.test, data.labels_key)
    composition = None
    if klass.conditional and test_labels is not None:
        keys, counts = np.unique(test_labels, return_counts=True)
        composition = {str(k): int(c) for k, c in zip(keys, counts, strict=True)}
    results: dict[str, Any] = {
        "data": args.data, "suite": suite.name, "generator": args.generator, "param": args.param,
        "fixed": base, "protocol": protocol.name, "n_trees": n_trees, "threads": args.threads,
        "target_seconds": args.target_seconds, "info": info, "rows": [],
    }
    header = f"{args.param:>10} {'seed':>4} " + " ".join(f"{m:>9}" for m in METRICS) + f" {'fit_s':>8} target"
    print(header, flush=True)
    for budget in args.budgets:
        for seed in args.seeds:
            params = base | {args.param: as_budget(budget)}
            model = klass(**params, seed=seed, device=args.device)
            start = time.perf_counter()
            model.fit(data.train, labels_key=data.labels_key)
            fit_s = time.perf_counter() - start
            if composition is not None:
                out = model.sample(sum(composition.values()), labels=composition, seed=seed)
            else:
                out = model.sample(data.test.n_obs, seed=seed)
            scores = protocol.evaluate(data.test.X, out.X, reference=data.train.X, seed=seed, n_trees=n_trees)
            _, test_e, gen_e = fit_log_pca(data.train.X, data.test.X, out.X, seed=seed)
            scores |= manifold_metrics(test_e, gen_e, k=5)
            row = {args.param: as_budget(budget), "seed": seed, **scores, "fit_seconds": fit_s,
                   "within_target": fit_s <= args.target_seconds, "params": params}
            diagnostics = getattr(model, "diagnostics_", None)
            if isinstance(diagnostics, dict):
                row["diagnostics"] = diagnostics
            results["rows"].append(row)
            shown = " ".join(f"{scores[m]:9.3f}" for m in METRICS)
            mark = "ok" if row["within_target"] else f"over {args.target_seconds:.0f}s"
            print(f"{row[args.param]!s:>10} {seed:>4} {shown} {fit_s:8.1f} {mark}", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
