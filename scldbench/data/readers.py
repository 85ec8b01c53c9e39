"""Readers for user files: `.h5ad`, 10x `.h5`, and 10x matrix folders (matrix.mtx[.gz] + barcodes + genes/features)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import anndata as ad
import scanpy as sc
import scipy.sparse as sp

from scldbench.errors import ScldbenchError

log = logging.getLogger("scldbench.data")

SUPPORTED = ".h5ad, 10x .h5, or a 10x matrix folder (matrix.mtx[.gz], barcodes.tsv[.gz], genes/features.tsv[.gz])"


def _find_mtx_folder(path: Path) -> Path | None:
    """The folder holding matrix.mtx[.gz], searching one level of subfolders (10x tarballs nest them)."""
    candidates = [path, *sorted(p for p in path.rglob("*") if p.is_dir())]
    for folder in candidates:
        if (folder / "matrix.mtx").is_file() or (folder / "matrix.mtx.gz").is_file():
            return folder
    return None


def read_mtx_folder(folder: Path) -> ad.AnnData:
    has_features = any((folder / f).is_file() for f in ("features.tsv", "features.tsv.gz"))
    has_genes = any((folder / f).is_file() for f in ("genes.tsv", "genes.tsv.gz"))
    has_barcodes = any((folder / f).is_file() for f in ("barcodes.tsv", "barcodes.tsv.gz"))
    if not has_barcodes or not (has_features or has_genes):
        raise ScldbenchError(
            f"{folder} has a matrix.mtx but no barcodes.tsv and genes.tsv/features.tsv beside it; "
            "place the three files of the 10x matrix together"
        )
    adata = sc.read_10x_mtx(folder, var_names="gene_symbols", make_unique=True, cache=False)
    return adata


def _make_names_unique(adata: ad.AnnData, path: Path) -> None:
    """Repeated cell barcodes (samples merged without a suffix) and gene symbols get anndata's "-1", "-2" suffixes;
    a log line says how many."""
    for axis, names in (("cell", adata.obs_names), ("gene", adata.var_names)):
        repeated = int(names.duplicated().sum())
        if repeated:
            log.warning("%s: %d repeated %s names made unique (suffixes -1, -2, ...)", path.name, repeated, axis)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(Observation|Variable) names are not unique")
        adata.obs_names_make_unique()
        adata.var_names_make_unique()


def _read(path: Path) -> ad.AnnData:
    """The file or folder at `path` as it is, by its format."""
    if path.is_dir():
        folder = _find_mtx_folder(path)
        if folder is None:
            raise ScldbenchError(f"{path} is a folder without matrix.mtx[.gz]; give a {SUPPORTED}")
        return read_mtx_folder(folder)
    if path.suffix == ".h5ad":
        return ad.read_h5ad(path)
    if path.suffix in (".h5", ".hdf5"):
        return sc.read_10x_h5(path)
    if path.name.endswith((".mtx", ".mtx.gz")):
        return read_mtx_folder(path.parent)
    raise ScldbenchError(f"{path} has an unsupported format; give a {SUPPORTED}")


def read_counts(path: str | Path) -> ad.AnnData:
    """Read a count matrix from any supported format; raise a one-line error for anything else."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ScldbenchError(f"{path} does not exist; give the path of a {SUPPORTED}")
    try:
        with warnings.catch_warnings():
            # anndata warns of repeated cell or gene names at every copy; they are made unique below, once
            warnings.filterwarnings("ignore", message=r"(Observation|Variable) names are not unique")
            adata = _read(path)
    except ScldbenchError:
        raise
    except Exception as exc:
        raise ScldbenchError(
            f"could not read {path} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"check that it is an intact {SUPPORTED}"
        ) from exc
    _make_names_unique(adata, path)
    if adata.X is not None and not sp.issparse(adata.X):  # X may be absent when the counts are in a layer
        adata.X = sp.csr_matrix(adata.X)
    return adata
