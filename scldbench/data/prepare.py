"""The protocol's preparation: QC filters, labels, and a cluster-stratified train / test / holdout split.

`train` is what generators learn from, `test` the real cells every score compares against, and `holdout` real
cells that only the `positive` control returns. Results are cached by a fingerprint of data and settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from scldbench.data.cache import cache_dir
from scldbench.data.clustering import large_data, large_data_graph, leiden_graph, leiden_labels
from scldbench.data.layers import CLI_CHOICE, check_counts_in, with_counts_from
from scldbench.data.neighbours import neighbour_transformer
from scldbench.data.quality import filter_csr
from scldbench.errors import ScldbenchError, suggest

CLUSTER_KEY = "cluster"
SPLIT_KEY = "split"
#: `uns` key of the prepared data: the cells left out (unlabelled, or in clusters too small to split)
LEFT_OUT_KEY = "left_out"

log = logging.getLogger("scldbench.data")


@dataclass(frozen=True)
class PrepareSettings:
    min_genes: int = 10
    min_cells: int = 3
    #: obs column with labels; None computes clusters
    labels_key: str | None = None
    #: target number of computed clusters (resolution searched); None uses resolution as given
    n_clusters: int | None = None
    cluster_resolution: float = 1.0
    test_fraction: float = 0.2
    holdout_fraction: float = 0.2
    #: keep at most this many cells (stratified subsample) before splitting; None keeps all
    max_cells: int | None = None
    seed: int = 0


@dataclass
class PreparedData:
    train: ad.AnnData
    test: ad.AnnData
    holdout: ad.AnnData
    labels_key: str
    fingerprint: str
    settings: PrepareSettings
    info: dict = field(default_factory=dict)

    @property
    def clusters(self) -> list[str]:
        return sorted(self.train.obs[self.labels_key].astype(str).unique())


def data_fingerprint(adata: ad.AnnData) -> str:
    digest = hashlib.blake2b(digest_size=16)
    x = adata.X if sp.issparse(adata.X) else sp.csr_matrix(adata.X)
    x = x.tocsr()
    for part in (x.data, x.indices, x.indptr):
        digest.update(np.ascontiguousarray(part).tobytes())
    digest.update(str(x.shape).encode())
    digest.update("\n".join(map(str, adata.var_names)).encode())
    digest.update("\n".join(map(str, adata.obs_names)).encode())
    for column in adata.obs.columns:
        digest.update(column.encode())
        digest.update("\n".join(map(str, adata.obs[column])).encode())
    return digest.hexdigest()


def quality_filter(adata: ad.AnnData, min_genes: int, min_cells: int) -> ad.AnnData:
    """Cells with at least `min_genes` genes, then genes in at least `min_cells` of those cells."""
    if sp.issparse(adata.X) and adata.X.format == "csr":
        adata = filter_csr(adata, min_genes, min_cells)
    else:
        adata = adata.copy()
        sc.pp.filter_cells(adata, min_genes=min_genes)
        sc.pp.filter_genes(adata, min_cells=min_cells)
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ScldbenchError(
            f"no cells or genes are left after QC (cells with >= {min_genes} genes, genes in >= {min_cells} cells); "
            "check that the file holds counts or lower min_genes / min_cells"
        )
    return adata


def compute_clusters(adata: ad.AnnData, n_clusters: int | None, resolution: float, seed: int) -> pd.Series:
    """Leiden clusters of log-normalised expression; with `n_clusters`, the resolution is searched to hit it.

    Sparse data of more than `clustering.DENSE_LIMIT` scaled values takes the lean path of
    scldbench/data/clustering.py (same steps, results equal up to float rounding); smaller data the scanpy calls
    below, whose results the checked-in records depend on."""
    if sp.issparse(adata.X) and large_data(adata.n_obs, adata.n_vars):
        graph = leiden_graph(large_data_graph(sp.csr_matrix(adata.X), seed))

        def leiden(res: float) -> pd.Series:
            return pd.Series(leiden_labels(graph, resolution=res, seed=seed), index=adata.obs_names)

        return _search_resolution(leiden, n_clusters, resolution)
    work = ad.AnnData(X=adata.X.astype(np.float32), obs=pd.DataFrame(index=adata.obs_names))
    sc.pp.normalize_total(work, target_sum=1e4)
    sc.pp.log1p(work)
    n_top = min(2000, work.n_vars)
    if work.n_vars > n_top:
        sc.pp.highly_variable_genes(work, n_top_genes=n_top, flavor="seurat")
        work = work[:, work.var["highly_variable"]].copy()
    sc.pp.scale(work, max_value=10)
    sc.pp.pca(work, n_comps=min(50, work.n_obs - 1, work.n_vars - 1), random_state=seed)
    sc.pp.neighbors(work, n_neighbors=15, random_state=seed,
                    transformer=neighbour_transformer(work.n_obs, n_neighbors=15, seed=seed))

    def leiden_scanpy(res: float) -> pd.Series:
        sc.tl.leiden(work, resolution=res, random_state=seed, key_added="_leiden", flavor="igraph", n_iterations=2)
        return work.obs["_leiden"].astype(str)

    return _search_resolution(leiden_scanpy, n_clusters, resolution)


def _search_resolution(leiden: Callable[[float], pd.Series], n_clusters: int | None, resolution: float) -> pd.Series:
    """`leiden(resolution)`, or with `n_clusters` the labels of the resolution bisected on [0.01, 5] that first
    gives that many clusters (else the closest seen)."""
    if n_clusters is None:
        return leiden(resolution)
    lo, hi, best = 0.01, 5.0, None
    for _ in range(30):
        mid = (lo + hi) / 2
        labels = leiden(mid)
        k = labels.nunique()
        if best is None or abs(k - n_clusters) < abs(best.nunique() - n_clusters):
            best = labels
        if k == n_clusters:
            break
        lo, hi = (mid, hi) if k < n_clusters else (lo, mid)
    return best


def split_parts(test_fraction: float, holdout_fraction: float) -> int:
    """How many parts a cluster is split into, so the fewest cells it needs: train, test and any holdout."""
    return 1 + (test_fraction > 0) + (holdout_fraction > 0)


def stratified_split(labels: np.ndarray, test_fraction: float, holdout_fraction: float, seed: int) -> np.ndarray:
    """'train' / 'test' / 'holdout' per cell, the same fractions inside every cluster."""
    rng = np.random.default_rng(seed)
    split = np.full(labels.size, "train", dtype=object)
    parts_needed = split_parts(test_fraction, holdout_fraction)
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        if idx.size < parts_needed:
            raise ScldbenchError(
                f"cluster {str(label)!r} has {idx.size} cell(s), too few to split into train/test/holdout; "
                "choose fewer clusters, relabel it, or drop it from the data"
            )
        n_test = max(int(round(test_fraction * idx.size)), 1) if test_fraction > 0 else 0
        n_hold = max(int(round(holdout_fraction * idx.size)), 1) if holdout_fraction > 0 else 0
        while n_test + n_hold >= idx.size:
            if n_hold >= n_test and n_hold > 1:
                n_hold -= 1
            else:
                n_test -= 1
        split[idx[:n_test]] = "test"
        split[idx[n_test : n_test + n_hold]] = "holdout"
    return split


def _subsample(labels: np.ndarray, max_cells: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        n = max(int(round(max_cells * idx.size / labels.size)), min(idx.size, 3))
        keep.append(rng.choice(idx, size=min(n, idx.size), replace=False))
    return np.sort(np.concatenate(keep))


def _validate_settings(s: PrepareSettings) -> None:
    if not (0 < s.test_fraction < 1) or not (0 <= s.holdout_fraction < 1) or s.test_fraction + s.holdout_fraction >= 1:
        raise ScldbenchError(
            f"test_fraction {s.test_fraction} and holdout_fraction {s.holdout_fraction} must be in [0, 1) with "
            "test_fraction > 0 and a sum below 1; fix the suite's [prepare] table"
        )


def prepared_fingerprint(counts: ad.AnnData, settings: PrepareSettings, layer: str | None = None) -> str:
    """The fingerprint of prepared data: the counts (X of `counts`, read from `layer` of the original data),
    labels, names, settings and the layer choice."""
    text = data_fingerprint(counts) + json.dumps(asdict(settings), sort_keys=True)
    if layer is not None:  # X-read data keeps the fingerprints it had before layers could be chosen
        text += f"\nlayer={layer}"
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def prepare(
    adata: ad.AnnData, settings: PrepareSettings, use_cache: bool = True, *, layer: str | None = None
) -> PreparedData:
    """QC, labels and the train / test / holdout split of `adata`'s counts, read from X or from `layer`.

    The prepared data always holds the counts in X; it is cached under its fingerprint (see `prepared_fingerprint`).
    """
    _validate_settings(settings)
    counts = with_counts_from(adata, layer)
    if counts.X is None:
        check_counts_in(adata, layer, "the dataset", CLI_CHOICE)  # says there is no X and names the layers
    fingerprint = prepared_fingerprint(counts, settings, layer)
    cached = cache_dir("prepared") / f"{fingerprint}.h5ad"
    if use_cache and cached.is_file():
        full = ad.read_h5ad(cached)
    else:
        check_counts_in(adata, layer, "the dataset's counts", CLI_CHOICE)
        full = _prepare_uncached(counts, settings)
        if use_cache:
            tmp = cached.with_name(f".{cached.stem}.{os.getpid()}-{uuid.uuid4().hex[:12]}.part.h5ad")
            try:  # a name of its own: two runs preparing the same data must not write one HDF5 file
                full.write_h5ad(tmp)
                os.replace(tmp, cached)
            finally:
                tmp.unlink(missing_ok=True)
    return _split_prepared(full, settings, fingerprint)


def _prepare_uncached(adata: ad.AnnData, settings: PrepareSettings) -> ad.AnnData:
    if settings.labels_key is not None and settings.labels_key not in adata.obs:
        raise ScldbenchError(
            f"label column {settings.labels_key!r} is not in the data"
            f"{suggest(settings.labels_key, adata.obs.columns)}; "
            f"available columns: {', '.join(map(str, adata.obs.columns)) or 'none'} (or omit --labels to cluster)"
        )
    full = quality_filter(adata, settings.min_genes, settings.min_cells)
    left_out: dict[str, Any] = {}
    if settings.labels_key is not None:
        missing = full.obs[settings.labels_key].isna().to_numpy()
        if missing.all():
            raise ScldbenchError(f"label column {settings.labels_key!r} has no values; choose another column or "
                                 "omit --labels to cluster")
        if missing.any():
            left_out["unlabelled cells"] = int(missing.sum())
            full = full[~missing].copy()
        labels = full.obs[settings.labels_key].astype(str)
    else:
        labels = compute_clusters(full, settings.n_clusters, settings.cluster_resolution, settings.seed)
    sizes, needed = labels.value_counts(), split_parts(settings.test_fraction, settings.holdout_fraction)
    small = sizes[sizes < needed]
    if len(small) == len(sizes):
        raise ScldbenchError(f"every cluster has fewer than {needed} cells, too few to split into train, test and "
                             "holdout; give more cells or fewer clusters")
    if len(small):
        left_out["clusters too small to split"] = {str(k): int(v) for k, v in small.sort_index().items()}
        keep = ~labels.isin(small.index).to_numpy()
        full, labels = full[keep].copy(), labels[keep]
    full.obs[CLUSTER_KEY] = pd.Categorical(labels.to_numpy())
    if settings.max_cells is not None and full.n_obs > settings.max_cells:
        full = full[_subsample(full.obs[CLUSTER_KEY].to_numpy().astype(str), settings.max_cells, settings.seed)].copy()
    full.obs[SPLIT_KEY] = stratified_split(
        full.obs[CLUSTER_KEY].to_numpy().astype(str), settings.test_fraction, settings.holdout_fraction, settings.seed
    )
    full.obs[SPLIT_KEY] = full.obs[SPLIT_KEY].astype("category")
    full.X = sp.csr_matrix(full.X, dtype=np.float32)
    keep_obs = [c for c in full.obs.columns if c in (CLUSTER_KEY, SPLIT_KEY) or c == settings.labels_key]
    return ad.AnnData(X=full.X, obs=full.obs[keep_obs].copy(), var=pd.DataFrame(index=full.var_names.copy()),
                      uns={LEFT_OUT_KEY: left_out} if left_out else None)


def _describe_left_out(left_out: dict[str, Any]) -> str:
    """'12 unlabelled cells; clusters too small to split: Platelet (2 cells)'."""
    parts = []
    if "unlabelled cells" in left_out:
        parts.append(f"{left_out['unlabelled cells']} unlabelled cells")
    small = left_out.get("clusters too small to split", {})
    if small:
        listed = ", ".join(f"{name} ({n} cell{'s' if n != 1 else ''})" for name, n in small.items())
        parts.append(f"clusters too small to split into train, test and holdout: {listed} (relabel them to keep them)")
    return "; ".join(parts)


def _split_prepared(full: ad.AnnData, settings: PrepareSettings, fingerprint: str) -> PreparedData:
    parts = {name: full[full.obs[SPLIT_KEY] == name].copy() for name in ("train", "test", "holdout")}
    left_out = full.uns.get(LEFT_OUT_KEY, {})
    info = {
        "n_cells": int(full.n_obs),
        "n_genes": int(full.n_vars),
        "n_clusters": int(full.obs[CLUSTER_KEY].nunique()),
        **{f"n_{k}": int(v.n_obs) for k, v in parts.items()},
        "cluster_sizes": {str(k): int(v) for k, v in full.obs[CLUSTER_KEY].value_counts().sort_index().items()},
    }
    if left_out:  # plain ints: a cached file gives numpy scalars back
        info["left_out"] = {key: {str(k): int(v) for k, v in value.items()} if isinstance(value, dict) else int(value)
                            for key, value in left_out.items()}
        log.warning("left out of the benchmark: %s", _describe_left_out(info["left_out"]))
    return PreparedData(
        train=parts["train"], test=parts["test"], holdout=parts["holdout"], labels_key=CLUSTER_KEY,
        fingerprint=fingerprint, settings=settings, info=info,
    )

