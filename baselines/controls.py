"""Controls that bracket every score: `positive` (real held-out cells), `random` and `shuffle` (negatives)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

from scldbench.generator import Generator


class PositiveControl(Generator):
    """Returns real cells that no generator trained on: the best score a generator could reach."""

    name = "positive"
    description = "held-out real cells (the floor: AUC about 0.5)"
    conditional = True
    uses_holdout = True
    cpu_only = True

    def _fit(self, adata: ad.AnnData, labels: np.ndarray | None) -> None:
        self.cells_ = sp.csr_matrix(adata.X, dtype=np.float32)
        self.labels_ = labels

    def _sample(self, n_cells: int, labels: np.ndarray | None, guidance: float | None):
        n_real = self.cells_.shape[0]
        if labels is None:
            idx = self._draw(np.arange(n_real), n_cells)
            return self.cells_[idx], (self.labels_[idx] if self.labels_ is not None else None)
        idx = np.empty(n_cells, dtype=np.int64)
        for label in np.unique(labels):
            want = np.flatnonzero(labels == label)
            idx[want] = self._draw(np.flatnonzero(self.labels_ == label), want.size)
        return self.cells_[idx]

    def _draw(self, pool: np.ndarray, n: int) -> np.ndarray:
        # without replacement while the pool lasts, so that a positive control never repeats a cell needlessly
        if n <= pool.size:
            return self._rng.choice(pool, size=n, replace=False)
        return np.concatenate([self._rng.permutation(pool), self._rng.choice(pool, size=n - pool.size)])


class RandomControl(Generator):
    """Counts with no gene structure: every gene drawn from the same Poisson at the data's mean count."""

    name = "random"
    description = "Poisson noise with no gene structure (the ceiling: AUC about 1.0)"
    cpu_only = True

    def _fit(self, adata: ad.AnnData, labels: np.ndarray | None) -> None:
        self.rate_ = float(adata.X.sum()) / (adata.n_obs * adata.n_vars)

    def _sample(self, n_cells: int, labels: np.ndarray | None, guidance: float | None):
        return sp.csr_matrix(self._rng.poisson(self.rate_, size=(n_cells, self.n_genes)).astype(np.float32))


class ShuffleControl(Generator):
    """Each gene's training values permuted independently: marginals kept, co-expression destroyed."""

    name = "shuffle"
    description = "per-gene permutation of training cells (marginals kept, co-expression lost)"
    cpu_only = True

    def _fit(self, adata: ad.AnnData, labels: np.ndarray | None) -> None:
        self.columns_ = sp.csc_matrix(adata.X, dtype=np.float32)

    def _sample(self, n_cells: int, labels: np.ndarray | None, guidance: float | None):
        n_real = self.columns_.shape[0]
        out = np.zeros((n_cells, self.n_genes), dtype=np.float32)
        for j in range(self.n_genes):
            column = self.columns_[:, j].toarray().ravel()
            out[:, j] = column[self._rng.integers(0, n_real, size=n_cells)]
        return sp.csr_matrix(out)
