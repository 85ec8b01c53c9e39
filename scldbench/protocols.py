"""Named, versioned evaluation protocols: how real and generated counts are normalised, embedded and scored.

A protocol is a small declared object: name, version, description, the settings that fix its numbers (recorded
beside every score it makes) and its own evaluate function. Every result records the protocol that made it;
numbers under different protocols are never compared.

- `ScoringProtocol.evaluate(real, generated, reference=..., seed=..., n_trees=...)`: the whole-data scores of two
  count matrices (what diagnostics and benchmarks call).
- `ScoringProtocol.score(context, generated, seed=..., settings=...)`: one job's stored sample scored in full
  (whole data and per cluster), see scldbench.scoring.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA

from scldbench.counts.numpy import normalise_total, normalise_total_csr, normalise_total_sparse
from scldbench.data.counts import ArrayLike
from scldbench.errors import ScldbenchError, suggest
from scldbench.metrics import catalogue, mmd_multi_kernel, rf_auc
from scldbench.metrics.pca import DENSE_LIMIT, fit_pca, sparse_path

if TYPE_CHECKING:
    import anndata as ad

    from scldbench.scoring import ScoringContext
    from scldbench.suite import EvaluateSettings

Scores = dict[str, float]
PerCluster = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class ScoringProtocol:
    """A pinned, versioned way of scoring generated cells against real test cells.

    `compare(real, generated, reference, seed, n_trees)` gives whole-data scores of two count matrices;
    `score_sample(protocol, context, generated, seed, settings)` gives (metrics, per_cluster) of a job's sample.
    `shared` names the protocol-independent score blocks recorded under this protocol too ("biology":
    DE recovery and gene-gene correlation; "extras": manifold, data properties, memorisation, TSTR).
    """

    name: str
    version: int
    description: str
    settings: Mapping[str, Any]
    compare: Callable[..., Scores] = field(repr=False)
    score_sample: Callable[..., tuple[Scores, PerCluster]] = field(repr=False)
    #: the suite [evaluate] settings that change this protocol's numbers (recorded with them)
    scoring_keys: tuple[str, ...] = ("n_trees", "min_cluster_cells")
    #: the catalogue space whose metrics this protocol computes (see scldbench.metrics.catalogue)
    space: str = ""
    #: values (cells x genes) above which the protocol keeps normalised counts sparse (None: no such path)
    dense_limit: int | None = None
    #: (protocol, context, generated, settings) -> the parts of a job scored on the sparse path ("all",
    #: cluster names), recorded with the job's settings as `sparse_path`
    sparse_parts: Callable[..., list[str]] | None = field(default=None, repr=False)

    def evaluate(
        self,
        real_test: ArrayLike,
        generated: ArrayLike,
        *,
        reference: ArrayLike | None = None,
        seed: int = 0,
        n_trees: int | None = None,
    ) -> Scores:
        """Whole-data scores of generated vs real test counts; `reference` is real training counts when needed."""
        real_n, gen_n = real_test.shape[0], generated.shape[0]
        if real_n < 4 or gen_n < 4:
            raise ScldbenchError(f"too few cells to score ({real_n} real, {gen_n} generated); need >= 4")
        limit = {} if self.dense_limit is None else {"dense_limit": self.dense_limit}
        return self.compare(real_test, generated, reference=reference, seed=seed, n_trees=n_trees, **limit)

    def score(
        self, context: ScoringContext, generated: ad.AnnData, *, seed: int, settings: EvaluateSettings
    ) -> tuple[Scores, PerCluster]:
        """(metrics, per_cluster) of one job's sample under this protocol."""
        return self.score_sample(self, context, generated, seed=seed, settings=settings)

    def sparse_path(self, context: ScoringContext, generated: ad.AnnData, settings: EvaluateSettings) -> list[str]:
        """The parts of one job's scoring ("all", cluster names) that ran on the sparse path."""
        if self.sparse_parts is None:
            return []
        return self.sparse_parts(self, context, generated, settings)

    def record_settings(self, settings: EvaluateSettings) -> dict[str, Any]:
        """What a record stores as this protocol's settings: its own plus the suite's scoring settings it uses."""
        return {"version": self.version, **dict(self.settings), **{k: getattr(settings, k) for k in self.scoring_keys}}

    def describe(self) -> str:
        return f"{self.name}: {self.description}"


# scgan-v1 and logpca-v1: RF AUC and multi-kernel MMD on normalised counts


def _scgan_transform(x: ArrayLike, sparse: bool = False) -> ArrayLike:
    if sparse:
        return normalise_total_sparse(x, 20_000, dtype=np.float32)
    return normalise_total(x, 20_000, dtype=np.float32)


def _log_transform(x: ArrayLike, sparse: bool = False) -> ArrayLike:
    if sparse:
        m = normalise_total_sparse(x, 1e4, dtype=np.float32)
        np.log1p(m.data, out=m.data)
        return m
    return np.log1p(normalise_total(x, 1e4, dtype=np.float32))


def _rf_mmd(transform: Callable[..., ArrayLike], mmd_pca_fit_on: str) -> Callable[..., Scores]:
    def compare(real_test: ArrayLike, generated: ArrayLike, *, reference: ArrayLike | None = None, seed: int = 0,
                n_trees: int | None = None, dense_limit: int | None = DENSE_LIMIT) -> Scores:
        with_reference = mmd_pca_fit_on == "train" and reference is not None
        sparse = sparse_path(_rf_mmd_cells(real_test, generated, reference if with_reference else None),
                             real_test.shape[1], dense_limit)
        real, gen = transform(real_test, sparse), transform(generated, sparse)
        basis = transform(reference, sparse) if with_reference else real
        k = min(50, basis.shape[0] - 1, basis.shape[1])
        pca = fit_pca(basis, k, seed)
        del basis
        auc = rf_auc(real, gen, n_components=50, n_trees=n_trees or 1000, test_size=0.3, seed=seed)
        mmd = mmd_multi_kernel(pca.transform(real), pca.transform(gen), k=25)
        return {"rf_auc": auc, "mmd": mmd}

    return compare


def _rf_mmd_cells(real_test: ArrayLike, generated: ArrayLike, reference: ArrayLike | None) -> int:
    """The cells whose normalised values rf_mmd holds at once: real test, generated and any PCA reference."""
    return real_test.shape[0] + generated.shape[0] + (0 if reference is None else reference.shape[0])


def _labels(adata: ad.AnnData, key: str) -> np.ndarray | None:
    if key not in adata.obs or adata.obs[key].isna().any():
        return None
    return adata.obs[key].astype(str).to_numpy()


def _cluster_rows(context: ScoringContext, generated: ad.AnnData, settings: EvaluateSettings):
    """For each cluster: (name, real test rows, generated rows, or the reason it is skipped)."""
    prepared = context.prepared
    real_labels = _labels(prepared.test, prepared.labels_key)
    gen_labels = _labels(generated, prepared.labels_key)
    if gen_labels is None:
        return
    for cluster in prepared.clusters:
        real_rows = np.flatnonzero(real_labels == cluster)
        gen_rows = np.flatnonzero(gen_labels == cluster)
        skipped = None
        if real_rows.size < settings.min_cluster_cells:
            skipped = f"fewer than {settings.min_cluster_cells} test cells"
        elif gen_rows.size < 4:
            skipped = f"{gen_rows.size} generated cells (need >= 4)"
        yield cluster, real_rows, gen_rows, skipped


def _per_cluster_counts(context: ScoringContext, generated: ad.AnnData, settings: EvaluateSettings):
    """For each cluster: (name, real test counts, generated counts, or the reason it is skipped)."""
    for cluster, real_rows, gen_rows, skipped in _cluster_rows(context, generated, settings):
        if skipped:
            yield cluster, real_rows.size, gen_rows.size, None, None, skipped
        else:
            yield (cluster, real_rows.size, gen_rows.size, context.prepared.test.X[real_rows],
                   generated.X[gen_rows], None)


def _rf_mmd_sparse_parts(protocol: ScoringProtocol, context: ScoringContext, generated: ad.AnnData,
                         settings: EvaluateSettings) -> list[str]:
    prepared = context.prepared
    reference = prepared.train.X if protocol.settings["mmd_pca_fit_on"] == "train" else None
    n_genes = prepared.test.n_vars
    parts = []
    if sparse_path(_rf_mmd_cells(prepared.test.X, generated.X, reference), n_genes, protocol.dense_limit):
        parts.append("all")
    if settings.per_cluster:
        parts += [cluster for cluster, real_rows, gen_rows, skipped in _cluster_rows(context, generated, settings)
                  if not skipped and sparse_path(real_rows.size + gen_rows.size, n_genes, protocol.dense_limit)]
    return parts


def _score_rf_mmd(protocol: ScoringProtocol, context: ScoringContext, generated: ad.AnnData, *, seed: int,
                  settings: EvaluateSettings) -> tuple[Scores, PerCluster]:
    prepared = context.prepared
    metrics = protocol.evaluate(prepared.test.X, generated.X, reference=prepared.train.X, seed=seed,
                                n_trees=settings.n_trees)
    per_cluster: PerCluster = {}
    if settings.per_cluster:
        for cluster, n_real, n_gen, real, gen, skipped in _per_cluster_counts(context, generated, settings):
            if skipped:
                per_cluster[cluster] = {"n_real": int(n_real), "n_generated": int(n_gen), "skipped": skipped}
                continue
            scores = protocol.evaluate(real, gen, seed=seed, n_trees=settings.n_trees)
            per_cluster[cluster] = {"n_real": int(n_real), "n_generated": int(n_gen), **scores}
    metrics.update(cluster_summaries(per_cluster, ("rf_auc", "mmd")))
    return metrics, per_cluster


def cluster_summaries(per_cluster: PerCluster, names: tuple[str, ...]) -> Scores:
    """cluster_<name>_mean over the scored clusters, weighted by real test cells where the catalogue says so."""
    out: Scores = {}
    for name in names:
        scored = [v for v in per_cluster.values() if np.isfinite(v.get(name, np.nan))]
        if not scored:
            continue
        weights = None
        if catalogue.find(name).per_cluster == "weighted":
            weights = [v["n_real"] for v in scored]
        out[f"cluster_{name}_mean"] = float(np.average([v[name] for v in scored], weights=weights))
    return out


# hvg-pca30-v1: CFGen-style distribution distances in PCA-30 of 2,000 HVGs

HVG_SETTINGS: dict[str, Any] = {
    "n_hvg": 2000, "hvg_flavor": "seurat_v3", "hvg_fit_on": "train", "normalise_total": 10_000, "log1p": True,
    "n_components": 30, "pca_fit_on": "test", "mmd_rbf_gammas": [2.0, 1.0, 0.5, 0.1, 0.01, 0.005],
    "max_cells": 4000,
}


@dataclass(frozen=True)
class HvgSpace:
    """The hvg-pca30 embedding: HVG columns (chosen on training counts) and a PCA fitted on real test cells."""

    genes: np.ndarray
    pca: PCA

    def embed(self, counts: ArrayLike) -> np.ndarray:

        values = normalise_total_csr(counts, HVG_SETTINGS["normalise_total"], log=True)[:, self.genes].toarray()
        return self.pca.transform(values)


def highly_variable_genes(train_counts: ArrayLike, n_top: int) -> np.ndarray:
    """Column indices of the `n_top` highly variable genes of raw training counts (scanpy, flavor seurat_v3)."""
    import warnings

    import anndata as ad
    import scanpy as sc

    n_genes = train_counts.shape[1]
    if n_genes <= n_top:
        return np.arange(n_genes)
    adata = ad.AnnData(X=sp.csr_matrix(train_counts, dtype=np.float32))
    adata.var_names = [f"g{i}" for i in range(n_genes)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=n_top, inplace=False)
    except ImportError as exc:
        raise ScldbenchError(f"hvg-pca30-v1 needs scikit-misc for seurat_v3 HVGs ({exc}); pip install scikit-misc") \
            from exc
    return np.sort(np.flatnonzero(np.asarray(table["highly_variable"], dtype=bool)))


def fit_hvg_space(train_counts: ArrayLike, test_counts: ArrayLike) -> HvgSpace:
    """HVGs on the training counts; PCA-30 (full SVD, so no seed) of the real test cells' log1p CP10k HVGs."""

    genes = highly_variable_genes(train_counts, HVG_SETTINGS["n_hvg"])
    values = normalise_total_csr(test_counts, HVG_SETTINGS["normalise_total"], log=True)[:, genes].toarray()
    k = min(HVG_SETTINGS["n_components"], values.shape[0] - 1, values.shape[1])
    return HvgSpace(genes, PCA(n_components=k, svd_solver="full").fit(values))


def _cap(x: np.ndarray, seed: int) -> np.ndarray:
    limit = HVG_SETTINGS["max_cells"]
    if len(x) <= limit:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), limit, replace=False))]


def distribution_distances(real: np.ndarray, generated: np.ndarray, *, seed: int = 0) -> Scores:
    """Every two-sample metric the catalogue declares in the hvg-pca30 space, on two embedded point sets."""
    real, generated = _cap(real, seed), _cap(generated, seed + 1)
    return {m.name: float(m.compute()(real, generated)) for m in catalogue.two_sample_metrics("hvg-pca30")}


def _hvg_compare(real_test: ArrayLike, generated: ArrayLike, *, reference: ArrayLike | None = None, seed: int = 0,
                 n_trees: int | None = None) -> Scores:
    if reference is None:
        raise ScldbenchError("hvg-pca30-v1 chooses its genes on real training cells; pass reference=<train counts>")
    space = fit_hvg_space(reference, real_test)
    return distribution_distances(space.embed(real_test), space.embed(generated), seed=seed)


def _score_hvg(protocol: ScoringProtocol, context: ScoringContext, generated: ad.AnnData, *, seed: int,
               settings: EvaluateSettings) -> tuple[Scores, PerCluster]:
    prepared = context.prepared
    space: HvgSpace = context.memo("hvg-space", lambda: fit_hvg_space(prepared.train.X, prepared.test.X))
    real_all = context.memo("hvg-real-test", lambda: space.embed(prepared.test.X))
    gen_all = space.embed(generated.X)
    if len(real_all) < 4 or len(gen_all) < 4:
        raise ScldbenchError(f"too few cells to score ({len(real_all)} real, {len(gen_all)} generated); need >= 4")
    metrics = distribution_distances(real_all, gen_all, seed=seed)
    per_cluster: PerCluster = {}
    if settings.per_cluster:
        real_labels = _labels(prepared.test, prepared.labels_key)
        gen_labels = _labels(generated, prepared.labels_key)
        for cluster, n_real, n_gen, _, _, skipped in _per_cluster_counts(context, generated, settings):
            entry: dict[str, Any] = {"n_real": int(n_real), "n_generated": int(n_gen)}
            if skipped:
                per_cluster[cluster] = entry | {"skipped": skipped}
                continue
            real = real_all[real_labels == cluster]
            gen = gen_all[gen_labels == cluster]
            per_cluster[cluster] = entry | distribution_distances(real, gen, seed=seed)
    names = tuple(m.name for m in catalogue.two_sample_metrics("hvg-pca30"))
    metrics.update(cluster_summaries(per_cluster, names))
    return metrics, per_cluster


PROTOCOLS: dict[str, ScoringProtocol] = {
    p.name: p
    for p in (
        ScoringProtocol(
            name="scgan-v1",
            version=1,
            description=(
                "counts normalised to 20,000 per cell, no log; RF AUC: stratified 70/30, PCA-50 fit on the 70%, "
                "1,000 trees, ROC AUC on the 30%; MMD: PCA-50 of real test cells, kernels m/2, m, 2m "
                "(m = median 25-NN distance of real cells), biased, sqrt; per cluster: the sample's cells of "
                "each cluster vs real test cells of it (unweighted mean); also DE recovery, gene-gene "
                "correlation (log1p CP10k) and the protocol-independent extras. Where the real test and "
                f"generated cells scored together hold more than {DENSE_LIMIT / 1e6:,.0f} million values (cells x "
                "genes), the "
                "normalised counts stay sparse and each PCA is centred implicitly (same randomized solver and "
                "seed; values agree with the dense computation to float rounding); the job's settings then "
                "list those parts under sparse_path"
            ),
            settings=MappingProxyType({
                "normalise_total": 20_000, "log1p": False, "n_components": 50, "rf_pca_fit_on": "70% split",
                "rf_test_size": 0.3, "mmd_pca_fit_on": "test", "mmd_knn": 25, "mmd_scales": [0.5, 1.0, 2.0],
                "cluster_mean": "unweighted",
            }),
            compare=_rf_mmd(_scgan_transform, "test"),
            score_sample=_score_rf_mmd,
            space="scgan-v1",
            dense_limit=DENSE_LIMIT,
            sparse_parts=_rf_mmd_sparse_parts,
        ),
        ScoringProtocol(
            name="logpca-v1",
            version=1,
            description=(
                "log1p of counts normalised to 10,000; RF AUC as scgan-v1 on those values; MMD in the PCA-50 "
                "fit on real training cells; per cluster as scgan-v1; also DE recovery and gene-gene correlation. "
                f"Sparse above {DENSE_LIMIT / 1e6:,.0f} million values as scgan-v1, counting the training cells "
                "too, on which the MMD's PCA is fitted"
            ),
            settings=MappingProxyType({
                "normalise_total": 10_000, "log1p": True, "n_components": 50, "rf_pca_fit_on": "70% split",
                "rf_test_size": 0.3, "mmd_pca_fit_on": "train", "mmd_knn": 25, "mmd_scales": [0.5, 1.0, 2.0],
                "cluster_mean": "unweighted",
            }),
            compare=_rf_mmd(_log_transform, "train"),
            score_sample=_score_rf_mmd,
            space="scgan-v1",
            dense_limit=DENSE_LIMIT,
            sparse_parts=_rf_mmd_sparse_parts,
        ),
        ScoringProtocol(
            name="hvg-pca30-v1",
            version=1,
            description=(
                "2,000 highly variable genes chosen on the real training counts (scanpy seurat_v3; all genes when "
                "there are fewer), log1p of counts normalised to 10,000 per cell, PCA-30 (full SVD) fitted on "
                "real test cells, generated cells projected with the same genes, centring and loadings; exact "
                "W1 and W2 (POT emd2, uniform weights, Euclidean / squared Euclidean cost), RBF MMD² averaged "
                "over gamma in {2, 1, 0.5, 0.1, 0.01, 0.005}, energy distance; at most 4,000 cells a side "
                "(seeded subsample); whole data, and per cell type with the sample's cells of that type vs real "
                "test cells of it, averaged weighted by real test cells (cluster_*_mean). Unconditional "
                "generators (no labels in the sample) get whole-data values only. Also DE recovery and "
                "gene-gene correlation (log1p CP10k)"
            ),
            settings=MappingProxyType(HVG_SETTINGS),
            compare=_hvg_compare,
            score_sample=_score_hvg,
            scoring_keys=("min_cluster_cells",),
            space="hvg-pca30",
        ),
    )
}

#: the protocols a suite runs when it names none
DEFAULT_PROTOCOLS: tuple[str, ...] = ("scgan-v1", "hvg-pca30-v1")
#: protocol-independent scores are recorded once, under this protocol when the suite runs it, else the first
EXTRAS_PROTOCOL = "scgan-v1"


def get_protocol(name: str) -> ScoringProtocol:
    if name not in PROTOCOLS:
        raise ScldbenchError(f"unknown protocol {name!r}{suggest(name, PROTOCOLS)}; use one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def dense_counts(x: ArrayLike) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)
