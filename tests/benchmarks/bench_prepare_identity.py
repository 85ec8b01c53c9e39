"""Prepared data of the development datasets, as `scldbench run pbmc` prepares them, saved for comparison across
code versions: cell and gene names, cluster labels and split of each case, one JSON file per case.

    python tests/benchmarks/bench_prepare_identity.py save /tmp/prep-before      # on the old code
    python tests/benchmarks/bench_prepare_identity.py save /tmp/prep-after       # on the new code
    python tests/benchmarks/bench_prepare_identity.py compare /tmp/prep-before /tmp/prep-after

Cases: pbmc3k with 8 computed clusters (`--data pbmc3k_raw.h5ad --clusters 8`), the mouse bladder with its
`label` column (`--labels label`), and the suite's embedded default pbmc68k-mini; `--data-dir` says where the
two files are. Preparation is uncached, so the code under test computes everything. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

#: (case name, --data file or None for the suite's dataset, --labels, --clusters)
CASES = (
    ("pbmc3k-clusters8", "pbmc3k_raw.h5ad", None, 8),
    ("bladder-label", "mouse_bladder_2100.h5ad", "label", None),
    ("pbmc68k-mini", None, None, None),
)


def prepared_summary(data: str | None, labels: str | None, clusters: int | None) -> dict:
    """What the pbmc suite's preparation of `data` (with --labels / --clusters as given) produced."""
    import numpy as np

    from scldbench.data.layers import with_counts_from
    from scldbench.data.prepare import CLUSTER_KEY, SPLIT_KEY, _prepare_uncached, _validate_settings
    from scldbench.runner import resolve_data
    from scldbench.suite import load_suite

    suite = load_suite("pbmc")
    adata, spec, _ = resolve_data(suite, data)
    settings = suite.prepare_settings({"labels_key": spec.labels_key, "n_clusters": spec.n_clusters})
    if labels is not None:
        settings = replace(settings, labels_key=labels, n_clusters=None)
    if clusters is not None:
        settings = replace(settings, labels_key=None, n_clusters=clusters)
    _validate_settings(settings)
    full = _prepare_uncached(with_counts_from(adata, suite.layer), settings)
    x = full.X.tocsr()
    digest = hashlib.blake2b(digest_size=16)
    for part in (x.data, x.indices, x.indptr):
        digest.update(np.ascontiguousarray(part).tobytes())
    return {
        "obs_names": list(map(str, full.obs_names)),
        "var_names": list(map(str, full.var_names)),
        "labels": full.obs[CLUSTER_KEY].astype(str).tolist(),
        "split": full.obs[SPLIT_KEY].astype(str).tolist(),
        "counts_digest": digest.hexdigest(),
    }


def save(out: Path, data_dir: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, file, labels, clusters in CASES:
        data = None if file is None else str(data_dir / file)
        summary = prepared_summary(data, labels, clusters)
        (out / f"{name}.json").write_text(json.dumps(summary))
        print(f"{name}: {len(summary['obs_names'])} cells, {len(summary['var_names'])} genes, "
              f"{len(set(summary['labels']))} clusters", flush=True)


def compare(before: Path, after: Path) -> bool:
    same = True
    for name, *_ in CASES:
        a = json.loads((before / f"{name}.json").read_text())
        b = json.loads((after / f"{name}.json").read_text())
        differ = [key for key in a if a[key] != b.get(key)]
        print(f"{name}: {'identical' if not differ else 'DIFFERENT in ' + ', '.join(differ)}")
        same = same and not differ
    return same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save")
    s.add_argument("out", type=Path)
    s.add_argument("--data-dir", type=Path, default=Path("/work/shared/data"))
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = ap.parse_args()
    if args.command == "save":
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        save(args.out, args.data_dir)
    else:
        sys.exit(0 if compare(args.before, args.after) else 1)


if __name__ == "__main__":
    main()
