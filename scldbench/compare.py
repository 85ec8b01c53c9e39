"""`scldbench.evaluate`: score generated cells against real cells under a named protocol, outside any suite.

It is the protocols' own whole-data comparison (scldbench.protocols), with the input checks a suite run makes:
both matrices hold raw counts over the same genes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from scldbench.errors import ScldbenchError

EVALUATE_CHOICE = "evaluate(..., layer=NAME)"


def _counts(value: Any, name: str, layer: str | None) -> tuple[Any, list[str] | None]:
    """(count matrix, gene names or None) of one input, refused with one line unless it holds raw counts."""
    import anndata as ad

    from scldbench.data.counts import check_counts
    from scldbench.data.layers import check_counts_in, with_counts_from

    if isinstance(value, ad.AnnData):
        counts = with_counts_from(value, layer)
        check_counts_in(value, layer, name, EVALUATE_CHOICE)
        return counts.X, list(map(str, value.var_names))
    if sp.issparse(value):
        matrix = sp.csr_matrix(value)
    elif isinstance(value, np.ndarray):
        matrix = value
    else:
        raise ScldbenchError(f"{name} must be an AnnData, a numpy array or a scipy sparse matrix (cells x genes), "
                             f"got {type(value).__name__}")
    if matrix.ndim != 2:
        raise ScldbenchError(f"{name} must be a 2-D cells x genes matrix, got shape {matrix.shape}")
    check_counts(matrix, name)
    return matrix, None


def _same_genes(real: tuple[Any, list[str] | None], other: tuple[Any, list[str] | None], name: str) -> None:
    (real_x, real_genes), (other_x, other_genes) = real, other
    if real_x.shape[1] != other_x.shape[1]:
        raise ScldbenchError(f"{name} has {other_x.shape[1]} genes but real has {real_x.shape[1]}; give both "
                             "the same genes in the same order")
    if real_genes is not None and other_genes is not None and real_genes != other_genes:
        first = next(i for i, (a, b) in enumerate(zip(real_genes, other_genes, strict=True)) if a != b)
        raise ScldbenchError(f"{name} and real name different genes (column {first}: {other_genes[first]!r} vs "
                             f"{real_genes[first]!r}); reorder it, e.g. {name}[:, real.var_names]")


def evaluate(
    real: Any,
    generated: Any,
    *,
    protocol: str = "scgan-v1",
    seed: int = 0,
    reference: Any = None,
    layer: str | None = None,
    n_trees: int | None = None,
) -> dict[str, float]:
    """Score generated cells against real cells under a named, versioned protocol.

    The whole-data scores exactly as a suite run records them for the protocol (see `scldbench list` and the
    protocols page of the documentation); per-cluster scores and the extra metrics need a suite run.

    Parameters
    ----------
    real
        Real cells that the generator never saw (the protocol's test cells): an AnnData, a numpy array or a
        scipy sparse matrix of raw counts, cells x genes.
    generated
        Generated cells over the same genes in the same order, as raw counts (AnnData, array or sparse matrix).
    protocol
        ``"scgan-v1"`` (RF AUC and multi-kernel MMD on counts scaled to 20,000), ``"logpca-v1"`` or
        ``"hvg-pca30-v1"`` (W1, W2, RBF MMD², energy distance in PCA-30 of 2,000 HVGs; needs `reference`).
    seed
        Seed of every random choice (forest, splits, subsamples): equal inputs and seed give equal scores.
    reference
        Real training cells (the generator's training data), for protocols that fit on them: ``hvg-pca30-v1``
        chooses its genes there, ``logpca-v1`` fits its MMD PCA there (else on `real`).
    layer
        The layer of `real` and `reference` (when they are AnnData) holding raw counts, e.g. ``"counts"`` when
        their X holds log-normalised values; None reads X. `generated` is read from X.
    n_trees
        Trees of the RF AUC forest (None: the protocol's 1,000).

    Returns
    -------
    dict of str to float
        Metric name -> value, e.g. ``{"rf_auc": 0.61, "mmd": 0.12}`` for ``scgan-v1``.

    Raises
    ------
    ScldbenchError
        Unknown protocol or layer, values that are not raw counts, different genes, fewer than 4 cells a side.

    Examples
    --------
    >>> import scldbench
    >>> scores = scldbench.evaluate(real_test, model.sample(real_test.n_obs), seed=0)  # doctest: +SKIP
    >>> scores["rf_auc"]  # 0.5: indistinguishable from real cells  # doctest: +SKIP
    """
    from scldbench.protocols import get_protocol

    chosen = get_protocol(protocol)
    real_counts = _counts(real, "real", layer)
    generated_counts = _counts(generated, "generated", None)
    _same_genes(real_counts, generated_counts, "generated")
    reference_x = None
    if reference is not None:
        reference_counts = _counts(reference, "reference", layer)
        _same_genes(real_counts, reference_counts, "reference")
        reference_x = reference_counts[0]
    scores = chosen.evaluate(real_counts[0], generated_counts[0], reference=reference_x, seed=int(seed),
                             n_trees=n_trees)
    return {name: float(value) for name, value in scores.items()}
