"""The protocol's MMD in two bases: the PCA of the real test cells (`scgan-v1`) and a PCA of the real training cells
(a diagnostic), for the samples a run stored; and how many cells of each real split sit apart from their cluster.

    python tests/benchmarks/bench_mmd_basis.py runs/pbmc3k --data pbmc3k_raw.h5ad --n-clusters 8
    python tests/benchmarks/bench_mmd_basis.py runs/bladder --data mouse_bladder_2100.h5ad \\
        --labels-key label

The data arguments must be those the run was made with (the script checks that the test cells agree).
Not collected by pytest; run it by hand and copy the figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad
import numpy as np
from scipy.spatial.distance import cdist

GENERATORS = ("positive", "nb", "nb-libsize", "scld")
SCALES = (0.5, 1.0, 2.0)
APART = 0.4  # mean kernel (summed over the three bandwidths) to the rest of the cluster below this: "apart"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a run folder (scldbench run --out)")
    ap.add_argument("--data", required=True, help="the dataset the run used")
    ap.add_argument("--labels-key", default=None, help="obs column with labels (default: compute clusters)")
    ap.add_argument("--n-clusters", type=int, default=8, help="clusters to compute when there is no labels key")
    ap.add_argument("--generators", nargs="+", default=list(GENERATORS))
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    from scldbench.data import PrepareSettings, load_dataset, prepare
    from scldbench.metrics.mmd import median_knn_distance, mmd_multi_kernel
    from scldbench.protocols import get_protocol

    adata, spec = load_dataset(args.data)
    labels_key = args.labels_key or spec.labels_key
    data = prepare(adata, PrepareSettings(labels_key=labels_key, n_clusters=None if labels_key else args.n_clusters))
    stored = ad.read_h5ad(args.run / "real_test.h5ad")
    if list(stored.obs_names) != list(data.test.obs_names):
        raise SystemExit(f"{args.run}: its test cells are not this split's; pass the data arguments the run used")
    protocol = get_protocol("scgan-v1")
    test = protocol.transform(data.test.X)
    bases = {
        "test": protocol.embedding(test, None, seed=0),
        "train": protocol.embedding(protocol.transform(data.train.X), None, seed=0),
    }

    embedded = {basis: pca.transform(test) for basis, pca in bases.items()}
    scales = {basis: median_knn_distance(x, protocol.knn) for basis, x in embedded.items()}
    largest = data.test.obs[data.labels_key].astype(str).value_counts().index[0]

    def spread(cells: np.ndarray, pca: object, scale: float) -> np.ndarray:
        """Each cell's mean kernel to the cells of its group (itself included), in the given basis."""
        x = pca.transform(cells)
        d2 = cdist(x, x, "sqeuclidean")
        return sum(np.exp(-d2 / (scale * s) ** 2) for s in SCALES).mean(axis=1)

    print("MMD by basis (mean over the stored seeds, then per seed); mean kernel within the largest cluster")
    for name in args.generators:
        files = sorted((args.run / "samples").glob(f"{name}-seed*.h5ad"))
        if not files:
            print(f"{name}: no stored samples")
            continue
        values: dict[str, list[float]] = {basis: [] for basis in bases}
        within = []
        for path in files:
            sample = ad.read_h5ad(path)
            cells = protocol.transform(sample.X)
            if data.labels_key in sample.obs:
                mask = sample.obs[data.labels_key].astype(str).to_numpy() == largest
                within.append(spread(cells[mask], bases["test"], scales["test"]).mean())
            for basis, pca in bases.items():
                values[basis].append(mmd_multi_kernel(embedded[basis], pca.transform(cells), k=protocol.knn))
        shown = "  ".join(
            f"PCA of {basis} cells {np.mean(v):.4f} ({', '.join(f'{x:.4f}' for x in v)})" for basis, v in values.items()
        )
        kernel = f"  within {np.mean(within):.3f}" if within else ""
        print(f"{name:11s} {shown}{kernel}")

    print(f"\nlargest cluster {largest!r}: share of cells apart from their split's cluster (mean kernel < {APART})")
    for basis, pca in bases.items():
        shares = []
        for part_name in ("test", "train", "holdout"):
            part = getattr(data, part_name)
            inside = part.obs[data.labels_key].astype(str).to_numpy() == largest
            kernel = spread(protocol.transform(part.X[inside]), pca, scales[basis])
            shares.append(f"{part_name} {np.mean(kernel < APART):.3f} (mean kernel {kernel.mean():.3f})")
        print(f"PCA of {basis} cells: " + ", ".join(shares))


if __name__ == "__main__":
    main()
