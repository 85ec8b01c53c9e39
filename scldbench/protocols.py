"""Named, versioned evaluation protocols: how real and generated counts are normalised and scored.

Every result records the protocol that made it; numbers under different protocols are not compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA

from scldbench.data.counts import ArrayLike, to_dense
from scldbench.errors import ScldbenchError, suggest
from scldbench.metrics import mmd_multi_kernel, rf_auc


def normalise_total(x: ArrayLike, target: float) -> np.ndarray:
    """Scale every cell to `target` total counts (cells with no counts stay zero)."""
    dense = to_dense(x, np.float32)
    totals = dense.sum(axis=1, keepdims=True, dtype=np.float64)
    scale = np.divide(target, totals, out=np.zeros_like(totals), where=totals > 0).astype(np.float32)
    return dense * scale


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    #: counts -> the values the metrics see
    transform: Callable[[ArrayLike], np.ndarray]
    #: PCA for MMD fitted on "test" (real test cells) or "train" (real training cells)
    mmd_pca_fit_on: str
    n_components: int = 50
    n_trees: int = 1000
    test_size: float = 0.3
    knn: int = 25

    def embedding(self, real_test: np.ndarray, reference: np.ndarray | None, seed: int) -> PCA:
        basis = reference if self.mmd_pca_fit_on == "train" and reference is not None else real_test
        k = min(self.n_components, basis.shape[0] - 1, basis.shape[1])
        return PCA(n_components=k, random_state=seed).fit(basis)

    def evaluate(
        self,
        real_test: ArrayLike,
        generated: ArrayLike,
        *,
        reference: ArrayLike | None = None,
        seed: int = 0,
        n_trees: int | None = None,
    ) -> dict[str, float]:
        """RF AUC and MMD of generated vs real test cells; `reference` is real training data when the PCA needs it."""
        real = self.transform(real_test)
        gen = self.transform(generated)
        if real.shape[0] < 4 or gen.shape[0] < 4:
            raise ScldbenchError(f"too few cells to score ({real.shape[0]} real, {gen.shape[0]} generated); need >= 4")
        ref = self.transform(reference) if reference is not None and self.mmd_pca_fit_on == "train" else None
        pca = self.embedding(real, ref, seed)
        auc = rf_auc(real, gen, n_components=self.n_components, n_trees=n_trees or self.n_trees,
                     test_size=self.test_size, seed=seed)
        mmd = mmd_multi_kernel(pca.transform(real), pca.transform(gen), k=self.knn)
        return {"rf_auc": auc, "mmd": mmd}

    def describe(self) -> str:
        return f"{self.name}: {self.description}"


def _scgan_transform(x: ArrayLike) -> np.ndarray:
    return normalise_total(x, 20_000)


def _log_transform(x: ArrayLike) -> np.ndarray:
    return np.log1p(normalise_total(x, 1e4))


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="scgan-v1",
            description=(
                "counts normalised to 20,000 per cell, no log; RF AUC: stratified 70/30, PCA-50 fit on the 70%, "
                "1,000 trees, ROC AUC on the 30%; MMD: PCA-50 of real test cells, kernels m/2, m, 2m "
                "(m = median 25-NN distance of real cells), biased, sqrt"
            ),
            transform=_scgan_transform,
            mmd_pca_fit_on="test",
        ),
        Protocol(
            name="logpca-v1",
            description=(
                "log1p of counts normalised to 10,000; RF AUC as scgan-v1 on those values; MMD in the PCA-50 "
                "fit on real training cells"
            ),
            transform=_log_transform,
            mmd_pca_fit_on="train",
        ),
    )
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ScldbenchError(f"unknown protocol {name!r}{suggest(name, PROTOCOLS)}; use one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def dense_counts(x: ArrayLike) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)
