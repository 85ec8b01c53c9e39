"""Detected genes per cell in every stored sample of a run folder, beside the job's recall and coverage.

Recall and coverage are measured with k-nearest-neighbour balls in a PCA of log-normalised counts, where
whether a gene is detected at all weighs as much as how high it is. A generator whose cells carry the right
library sizes but detect half the genes real cells detect sits off the real cells in that space, and its recall
and coverage fall towards zero whatever its other merits. This prints, for the real test cells the run stored and
for each job's stored sample (a run made with `save_samples = true`, as the report runs are): the median number
of detected genes per cell (also as a share of the real cells'), the share of non-zero counts equal to 1, and the
job's scgan-v1 RF AUC, recall and coverage from its record.

    python tests/benchmarks/bench_detection.py reports/runs/pbmc3k   # a run folder with samples/ and jobs/

Not collected by pytest (its name does not start with test_).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.sparse as sp


def detection(x) -> tuple[float, float]:
    """(median detected genes per cell, share of non-zero counts equal to 1)."""
    x = sp.csr_matrix(x)
    detected = np.diff(x.indptr)
    nonzero = x.data[x.data > 0]
    return float(np.median(detected)), float((nonzero == 1).mean()) if nonzero.size else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="run folder (holds real_test.h5ad, samples/ and jobs/)")
    ap.add_argument("--protocol", default="scgan-v1", help="protocol whose metrics are printed")
    args = ap.parse_args()

    from scldbench.store import RunStore

    store = RunStore(args.run)
    real = store.read_real_test()
    if real is None:
        raise SystemExit(f"{args.run} holds no real_test.h5ad: run the suite with save_samples = true")
    real_detected, real_ones = detection(real.X)
    print(f"{'job':<28} {'detected':>8} {'share':>6} {'ones':>5} {'RF AUC':>7} {'recall':>7} {'coverage':>8}")
    print(f"{'real test cells':<28} {real_detected:>8.0f} {1:>6.2f} {real_ones:>5.2f}")
    for record in sorted(store.records(), key=lambda r: (r.label, r.seed)):
        samples = store.read_samples(record.job_id)
        entry = record.scores.get(args.protocol)
        if samples is None or entry is None:
            continue
        detected, ones = detection(samples.X)
        m = entry.metrics
        print(f"{record.label + ' seed ' + str(record.seed):<28} {detected:>8.0f} {detected / real_detected:>6.2f} "
              f"{ones:>5.2f} {m.get('rf_auc', np.nan):>7.3f} {m.get('recall', np.nan):>7.3f} "
              f"{m.get('coverage', np.nan):>8.3f}")


if __name__ == "__main__":
    main()
