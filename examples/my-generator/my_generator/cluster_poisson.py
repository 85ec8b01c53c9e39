"""Poisson counts around each cluster's mean expression profile, at library sizes drawn from that cluster."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from scldbench import Generator, ScldbenchError


class ClusterPoisson(Generator):
    """Each cell: a library size drawn from its cluster's training cells, counts Poisson around the cluster profile.

    Parameters
    ----------
    pseudocount
        Added to every gene's summed counts before the profile is normalised, so that a gene never seen in a
        cluster can still appear there.
    seed, device
        Passed to `Generator`; the base class seeds `self._rng` before every fit and sample.
    """

    name = "cluster-poisson"
    description = "Poisson around each cluster's mean profile, empirical library sizes"
    conditional = True

    def __init__(self, *, pseudocount: float = 0.0, seed: int = 0, device: str = "auto") -> None:
        super().__init__(seed=seed, device=device)
        if pseudocount < 0:
            raise ScldbenchError(f"cluster-poisson: pseudocount must be >= 0, got {pseudocount}")
        self.pseudocount = float(pseudocount)
        self.profiles_: dict[str, np.ndarray] = {}
        self.library_sizes_: dict[str, np.ndarray] = {}

    def _fit(self, adata, labels):
        x = sp.csr_matrix(adata.X, dtype=np.float64)
        groups = np.full(adata.n_obs, "all") if labels is None else labels
        for group in np.unique(groups):
            block = x[groups == group]
            summed = np.asarray(block.sum(axis=0)).ravel() + self.pseudocount
            self.profiles_[group] = summed / summed.sum()
            self.library_sizes_[group] = np.asarray(block.sum(axis=1)).ravel()

    def _sample(self, n_cells, labels, guidance):
        if labels is None:  # unconditional: the training composition, or one group when fitted without labels
            labels = self.proportional_labels(n_cells) if self.label_categories else np.full(n_cells, "all")
        depth = np.empty(n_cells)
        rates = np.empty((n_cells, self.n_genes))
        for group in np.unique(labels):
            rows = np.flatnonzero(labels == group)
            depth[rows] = self._rng.choice(self.library_sizes_[group], size=rows.size)
            rates[rows] = depth[rows, None] * self.profiles_[group][None, :]
        counts = self._rng.poisson(rates).astype(np.float32)
        # the labels go back with the cells, so unconditional samples still carry them
        return sp.csr_matrix(counts), (labels if self.label_categories else None)
