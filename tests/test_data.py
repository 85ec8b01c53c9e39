"""Readers, named datasets, downloads and checksums, on small files in the real formats."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from scldbench.data import datasets as ds
from scldbench.data.counts import check_counts
from scldbench.data.download import RemoteFile
from scldbench.data.readers import read_counts
from scldbench.errors import ScldbenchError
from tests.conftest import make_counts


def write_mtx_folder(adata: ad.AnnData, folder: Path, v3: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if v3 else ""
    buffer = io.BytesIO()
    scipy.io.mmwrite(buffer, sp.csr_matrix(adata.X.T).astype(np.int64))
    barcodes = "\n".join(adata.obs_names) + "\n"
    kind = "\tGene Expression" if v3 else ""
    genes = "".join(f"ENSG{i:05d}\t{g}{kind}\n" for i, g in enumerate(adata.var_names))
    name = "features.tsv" if v3 else "genes.tsv"
    for filename, payload in [("matrix.mtx", buffer.getvalue()), ("barcodes.tsv", barcodes.encode()),
                              (name, genes.encode())]:
        data = gzip.compress(payload) if v3 else payload
        (folder / f"{filename}{suffix}").write_bytes(data)
    return folder


def write_10x_h5(adata: ad.AnnData, path: Path) -> Path:
    x = sp.csc_matrix(adata.X.T).astype(np.int32)
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["data"], m["indices"], m["indptr"] = x.data, x.indices, x.indptr
        m["shape"] = np.array(x.shape, dtype=np.int32)
        m["barcodes"] = np.array(adata.obs_names, dtype="S")
        feats = m.create_group("features")
        feats["id"] = np.array([f"ENSG{i:05d}" for i in range(adata.n_vars)], dtype="S")
        feats["name"] = np.array(adata.var_names, dtype="S")
        feats["feature_type"] = np.array(["Gene Expression"] * adata.n_vars, dtype="S")
        feats["genome"] = np.array(["GRCh38"] * adata.n_vars, dtype="S")
        feats["_all_tag_keys"] = np.array([b"genome"])
    return path


def test_embedded_pbmc_counts_are_recovered_exactly(pbmc_mini):
    import scanpy as sc

    reduced = sc.datasets.pbmc68k_reduced()
    x = pbmc_mini.X.toarray()
    assert pbmc_mini.shape == (700, 765)
    assert np.array_equal(x, np.round(x)) and x.min() >= 0
    logged = np.log1p(x / reduced.obs["n_counts"].to_numpy()[:, None] * 1e4)
    np.testing.assert_allclose(logged, reduced.raw.X.toarray(), atol=2e-3)
    assert {"louvain", "bulk_labels"} <= set(pbmc_mini.obs.columns)


@pytest.mark.parametrize("v3", [True, False])
def test_mtx_folder_is_read(tmp_path, v3):
    data = make_counts()
    adata = read_counts(write_mtx_folder(data, tmp_path / "filtered" / "hg19", v3=v3))
    assert adata.shape == data.shape
    np.testing.assert_array_equal(adata.X.toarray(), data.X.toarray())
    # the parent folder works too, as a 10x tarball extracts into nested folders
    assert read_counts(tmp_path).shape == data.shape


def test_10x_h5_and_h5ad_are_read(tmp_path):
    data = make_counts()
    h5 = read_counts(write_10x_h5(data, tmp_path / "m.h5"))
    np.testing.assert_array_equal(h5.X.toarray(), data.X.toarray())
    data.write_h5ad(tmp_path / "m.h5ad")
    np.testing.assert_array_equal(read_counts(tmp_path / "m.h5ad").X.toarray(), data.X.toarray())


def test_repeated_cell_and_gene_names_are_made_unique_once_and_said(tmp_path, caplog):
    import warnings

    data = make_counts()
    cells, genes = list(data.obs_names), list(data.var_names)
    cells[30:] = cells[:30]  # two samples merged without a suffix
    genes[1] = genes[0]
    data.obs_names, data.var_names = cells, genes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data.write_h5ad(tmp_path / "merged.h5ad")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # anndata's warning about repeated names would be an error here
        read = read_counts(tmp_path / "merged.h5ad")
        read[:5].copy()
    assert read.obs_names.is_unique and read.var_names.is_unique
    assert list(read.obs_names[30:32]) == [f"{cells[0]}-1", f"{cells[1]}-1"] and read.var_names[1] == f"{genes[0]}-1"
    np.testing.assert_array_equal(read.X.toarray(), data.X.toarray())
    assert "30 repeated cell names" in caplog.text and "1 repeated gene names" in caplog.text


def test_unreadable_and_unsupported_files_give_one_line_errors(tmp_path):
    (tmp_path / "broken.h5ad").write_text("not hdf5")
    with pytest.raises(ScldbenchError, match="could not read .*broken.h5ad.*intact"):
        read_counts(tmp_path / "broken.h5ad")
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ScldbenchError, match="unsupported format"):
        read_counts(tmp_path / "table.csv")
    with pytest.raises(ScldbenchError, match="does not exist"):
        read_counts(tmp_path / "missing.h5ad")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScldbenchError, match="without matrix.mtx"):
        read_counts(tmp_path / "empty")


def test_check_counts_detects_non_count_input():
    with pytest.raises(ScldbenchError, match="log-normalised"):
        check_counts(np.log1p(np.array([[1.0, 3.0], [2.0, 0.0]])))
    with pytest.raises(ScldbenchError, match="negative"):
        check_counts(np.array([[-0.5, 1.0]]))
    check_counts(sp.csr_matrix(np.array([[0.0, 3.0], [2.0, 0.0]])))
    # counts that an EM quantifier split between genes: mostly whole, some fractional
    estimated = np.random.default_rng(0).poisson(3.0, size=(50, 40)).astype(float)
    estimated[::5, ::4] += 0.5
    with pytest.raises(ScldbenchError, match=r"non-integer values in \d+\.\d% of its entries.*estimated counts.*round"):
        check_counts(estimated)


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(ScldbenchError, match="unknown dataset 'pbmc68k-mni'.*did you mean: pbmc68k-mini"):
        ds.load_dataset("pbmc68k-mni")


def _tarball(tmp_path: Path, data: ad.AnnData) -> Path:
    folder = write_mtx_folder(data, tmp_path / "src" / "filtered_matrices_mex" / "hg19", v3=False)
    archive = tmp_path / "pbmc.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder.parent, arcname="filtered_matrices_mex")
    return archive


def test_download_records_checksum_then_verifies_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SCLDBENCH_CACHE", str(tmp_path / "cache"))
    data = make_counts(n_cells=30, n_genes=20)
    archive = _tarball(tmp_path, data)
    spec = ds.DatasetSpec(
        name="tiny-10x", description="", load=ds._load_10x_tarball,
        remote=RemoteFile(url=archive.as_uri(), filename="tiny.tar.gz"), published_shape=(30, 20),
    )
    adata = spec.load(spec)
    assert adata.shape == (30, 20)
    cached = tmp_path / "cache" / "datasets" / "tiny-10x"
    sums = json.loads((cached / "checksums.json").read_text())
    assert len(sums["tiny.tar.gz"]) == 64
    assert spec.load(spec).shape == (30, 20)  # second time from the cache
    with open(cached / "tiny.tar.gz", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(ScldbenchError, match="does not match the checksum recorded"):
        spec.load(spec)


def test_published_shape_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("SCLDBENCH_CACHE", str(tmp_path / "cache"))
    archive = _tarball(tmp_path, make_counts(n_cells=30, n_genes=20))
    spec = ds.DatasetSpec(
        name="tiny-10x", description="", load=ds._load_10x_tarball,
        remote=RemoteFile(url=archive.as_uri(), filename="tiny.tar.gz"), published_shape=(68_579, 32_738),
    )
    with pytest.raises(ScldbenchError, match="has 30 cells, but the published file has 68579"):
        spec.load(spec)


def test_failed_download_says_where_to_place_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SCLDBENCH_CACHE", str(tmp_path / "cache"))
    spec = ds.DatasetSpec(
        name="gone", description="", load=ds._load_10x_h5,
        remote=RemoteFile(url=(tmp_path / "nowhere.h5").as_uri(), filename="gone.h5"),
    )
    with pytest.raises(ScldbenchError, match=r"cannot download dataset 'gone'.*place it at .*gone\.h5"):
        spec.load(spec)


def test_brain_small_is_read_from_a_10x_h5_placed_by_hand(tmp_path, monkeypatch):
    monkeypatch.setenv("SCLDBENCH_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "datasets" / "brain-small"
    folder.mkdir(parents=True)
    write_10x_h5(make_counts(n_cells=25, n_genes=12), folder / ds.DATASETS["brain-small"].remote.filename)
    with pytest.raises(ScldbenchError, match="has 25 cells, but the published file has 20000"):
        ds.load_dataset("brain-small")
