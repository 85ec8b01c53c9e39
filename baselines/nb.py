"""An independent negative binomial per gene and per cluster: keeps every marginal, no co-expression.

Parametrisation: mean `mu` and dispersion `phi` (variance = mu + phi * mu^2); `phi = 0` is a Poisson, used for
genes whose variance does not exceed their mean. Two estimators:

- `"mle"` (default): the mean is the sample mean (its exact MLE for a constant-mean NB) and the dispersion is
  the root of the profile score in `phi`, found by bisection on log(1/phi) for all genes at once;
- `"moments"`: phi = (variance - mean) / mean^2.

With `library_size="empirical"` each cell's counts are NB(s * mu, phi), where the size factor s of a generated
cell is drawn from the cluster's training size factors (library size / cluster mean library size), so that
library sizes vary as in the data and genes co-vary through them. The default, `"none"`, is the plain per-gene
NB that the reference figures compare against: the simplest honest baseline, with the library-size
variation folded into each gene's dispersion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import anndata as ad
import numpy as np
import scipy.sparse as sp

from scldbench.counts.numpy import nb_mle, nb_moments, sample_nb, size_factors
from scldbench.errors import ScldbenchError
from scldbench.generator import Generator

#: the group name used when the model is fitted without labels
ALL_CELLS = "__all__"
#: dense entries (cells x genes) generated at a time, to keep memory bounded on large gene sets
_CHUNK_ENTRIES = 2**22


@dataclass
class NBFit:
    """Per-gene NB parameters of one group of cells."""

    mean: np.ndarray
    dispersion: np.ndarray
    #: training size factors (library size / group mean library size), kept for sampling
    size_factors: np.ndarray


def chunk_rows(n_genes: int) -> int:
    """How many cells to generate at a time so that a dense chunk stays near `_CHUNK_ENTRIES` values."""
    return max(1, _CHUNK_ENTRIES // max(n_genes, 1))


def groups_to_sample(
    generator: Generator, n_cells: int, labels: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The group of every cell to generate, and the labels to report when the caller asked for none.

    Unconditional sampling follows the training proportions; a model fitted without labels has one group.
    """
    if labels is not None:
        return labels, None
    if not generator.label_categories:
        return np.full(n_cells, ALL_CELLS), None
    drawn = generator.proportional_labels(n_cells)
    return drawn, drawn


def sample_by_group(
    generator: Generator,
    n_cells: int,
    labels: np.ndarray | None,
    draw: Callable[[str, int], sp.csr_matrix],
):
    """Cells drawn group by group with `draw(group, n)`, put back in the requested order (see `groups_to_sample`)."""
    labels, assigned = groups_to_sample(generator, n_cells, labels)
    blocks, order = [], []
    for group in np.unique(labels):
        idx = np.flatnonzero(labels == group)
        blocks.append(draw(str(group), idx.size))
        order.append(idx)
    out = sp.vstack(blocks, format="csr")[np.argsort(np.concatenate(order))]
    return (out, assigned) if assigned is not None else out


class NegativeBinomial(Generator):
    """Independent NB per gene and per cluster (MLE or moments); optional empirical library sizes."""

    name = "nb"
    description = "independent negative binomial per gene and per cluster (marginals only, no co-expression)"
    cpu_only = True
    conditional = True

    def __init__(
        self,
        *,
        method: str = "mle",
        library_size: str = "none",
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(seed=seed, device=device)
        if method not in ("mle", "moments"):
            raise ScldbenchError(f"nb: method must be 'mle' or 'moments', got {method!r}")
        if library_size not in ("none", "empirical"):
            raise ScldbenchError(f"nb: library_size must be 'none' or 'empirical', got {library_size!r}")
        self.method = method
        self.library_size = library_size
        self.params_: dict[str, NBFit] = {}

    def _fit(self, adata: ad.AnnData, labels: np.ndarray | None) -> None:
        x = sp.csr_matrix(adata.X, dtype=np.float64)
        groups = np.full(x.shape[0], ALL_CELLS) if labels is None else labels
        estimate = nb_mle if self.method == "mle" else nb_moments
        self.params_ = {}
        for group in np.unique(groups):
            block = x[groups == group]
            size = size_factors(block)
            mu, phi = estimate(block, size if self.library_size == "empirical" else None)
            self.params_[str(group)] = NBFit(mean=mu, dispersion=phi, size_factors=size.astype(np.float32))

    def _sample(self, n_cells: int, labels: np.ndarray | None, guidance: float | None):
        return sample_by_group(self, n_cells, labels, lambda group, n: self._sample_group(self.params_[group], n))

    def _sample_group(self, fit: NBFit, n: int) -> sp.csr_matrix:
        parts = []
        step = chunk_rows(fit.mean.size)
        for start in range(0, n, step):
            k = min(step, n - start)
            if self.library_size == "empirical":
                s = self._rng.choice(fit.size_factors.astype(np.float64), size=k)
            else:
                s = np.ones(k)
            parts.append(sp.csr_matrix(sample_nb(self._rng, s[:, None] * fit.mean[None, :], fit.dispersion)))
        return sp.vstack(parts, format="csr")

    def estimated_parameters(self) -> dict[str, dict[str, list[float]]]:
        """Per group: gene means and dispersions as plain lists."""
        return {
            g: {"mean": f.mean.tolist(), "dispersion": f.dispersion.tolist()} for g, f in self.params_.items()
        }
