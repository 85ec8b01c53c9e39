"""Readers for user files: `.h5ad`, 10x `.h5`, and 10x matrix folders (matrix.mtx[.gz] + barcodes + genes/features)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import scanpy as sc
import scipy.sparse as sp

from scldbench.errors import ScldbenchError

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


def read_counts(path: str | Path) -> ad.AnnData:
    """Read a count matrix from any supported format; raise a one-line error for anything else."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ScldbenchError(f"{path} does not exist; give the path of a {SUPPORTED}")
    try:
        if path.is_dir():
            folder = _find_mtx_folder(path)
            if folder is None:
                raise ScldbenchError(f"{path} is a folder without matrix.mtx[.gz]; give a {SUPPORTED}")
            adata = read_mtx_folder(folder)
        elif path.suffix == ".h5ad":
            adata = ad.read_h5ad(path)
        elif path.suffix in (".h5", ".hdf5"):
            adata = sc.read_10x_h5(path)
        elif path.name.endswith((".mtx", ".mtx.gz")):
            adata = read_mtx_folder(path.parent)
        else:
            raise ScldbenchError(f"{path} has an unsupported format; give a {SUPPORTED}")
    except ScldbenchError:
        raise
    except Exception as exc:
        raise ScldbenchError(
            f"could not read {path} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"check that it is an intact {SUPPORTED}"
        ) from exc
    adata.var_names_make_unique()
    if adata.X is not None and not sp.issparse(adata.X):  # X may be absent when the counts are in a layer
        adata.X = sp.csr_matrix(adata.X)
    return adata
