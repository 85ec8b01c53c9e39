"""Named datasets: the embedded PBMC subset and the papers' 10x downloads, plus any user file by path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scldbench.data.download import RemoteFile, extract_tar, fetch
from scldbench.data.readers import read_counts
from scldbench.errors import ScldbenchError, suggest


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    load: Callable[[DatasetSpec], ad.AnnData]
    labels_key: str | None = None
    n_clusters: int | None = None
    remote: RemoteFile | None = None
    #: (cells, genes) published for the raw file; checked after reading
    published_shape: tuple[int | None, int | None] | None = None
    offline: bool = False


def _load_pbmc68k_mini(spec: DatasetSpec) -> ad.AnnData:
    """700 real PBMC 68k cells shipped with scanpy; counts recovered from log1p(counts / n_counts * 1e4)."""
    import scanpy as sc

    reduced = sc.datasets.pbmc68k_reduced()
    logged = reduced.raw.X
    logged = logged.toarray() if sp.issparse(logged) else np.asarray(logged)
    counts = np.round(np.expm1(logged) * reduced.obs["n_counts"].to_numpy()[:, None] / 1e4)
    obs = reduced.obs[["louvain", "bulk_labels"]].copy()
    obs["louvain"] = obs["louvain"].astype(str).astype("category")
    return ad.AnnData(
        X=sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=pd.DataFrame(index=reduced.raw.var_names.copy())
    )


def _check_shape(spec: DatasetSpec, adata: ad.AnnData) -> None:
    if spec.published_shape is None:
        return
    for got, want, what in zip(adata.shape, spec.published_shape, ("cells", "genes"), strict=True):
        if want is not None and got != want:
            raise ScldbenchError(
                f"dataset {spec.name!r} has {got} {what}, but the published file has {want}; "
                "the download is incomplete or a different file: delete it from the cache and fetch it again"
            )


def _load_10x_tarball(spec: DatasetSpec) -> ad.AnnData:
    assert spec.remote is not None
    folder = extract_tar(fetch(spec.remote, spec.name))
    adata = read_counts(folder)
    _check_shape(spec, adata)
    return adata


def _load_10x_h5(spec: DatasetSpec) -> ad.AnnData:
    assert spec.remote is not None
    adata = read_counts(fetch(spec.remote, spec.name))
    _check_shape(spec, adata)
    return adata


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="pbmc68k-mini",
            description="700 real cells of 10x PBMC 68k shipped inside scanpy (765 genes), labels louvain, bulk_labels",
            load=_load_pbmc68k_mini,
            labels_key="louvain",
            offline=True,
        ),
        DatasetSpec(
            name="pbmc68k",
            description="10x fresh_68k_pbmc_donor_a filtered matrices (68,579 cells x 32,738 genes), 10 clusters",
            load=_load_10x_tarball,
            n_clusters=10,
            remote=RemoteFile(
                url="https://cf.10xgenomics.com/samples/cell-exp/1.1.0/fresh_68k_pbmc_donor_a/"
                "fresh_68k_pbmc_donor_a_filtered_gene_bc_matrices.tar.gz",
                filename="fresh_68k_pbmc_donor_a_filtered_gene_bc_matrices.tar.gz",
            ),
            published_shape=(68_579, 32_738),
        ),
        DatasetSpec(
            name="brain-small",
            description="10x 1.3M mouse brain, 20,000-cell subsample (neuron20k), 8 clusters",
            load=_load_10x_h5,
            n_clusters=8,
            remote=RemoteFile(
                url="https://cf.10xgenomics.com/samples/cell-exp/1.3.0/1M_neurons/1M_neurons_neuron20k.h5",
                filename="1M_neurons_neuron20k.h5",
            ),
            published_shape=(20_000, None),
        ),
    )
}


def is_dataset_path(name: str) -> bool:
    return "/" in name or Path(name).suffix in (".h5ad", ".h5", ".mtx", ".gz") or Path(name).exists()


def load_dataset(name: str) -> tuple[ad.AnnData, DatasetSpec]:
    """A named dataset or a user file; returns the raw-count AnnData and its spec."""
    if name in DATASETS:
        spec = DATASETS[name]
        return spec.load(spec), spec
    if is_dataset_path(name):
        path = Path(name).expanduser()
        spec = DatasetSpec(name=str(path), description=f"user file {path}", load=lambda s: read_counts(path))
        return read_counts(path), spec
    raise ScldbenchError(
        f"unknown dataset {name!r}{suggest(name, DATASETS)}; use one of {', '.join(DATASETS)} "
        "or the path of an .h5ad, 10x .h5 or matrix folder"
    )
