"""Random-forest real-vs-generated ROC AUC: 0.5 when the forest cannot tell generated cells from real ones."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from scldbench.data.counts import ArrayLike
from scldbench.metrics.forest import fit_forest
from scldbench.metrics.pca import fit_pca
from scldbench.threads import thread_budget


def rf_auc(
    real: ArrayLike,
    generated: ArrayLike,
    *,
    n_components: int = 50,
    n_trees: int = 1000,
    test_size: float = 0.3,
    seed: int = 0,
    n_jobs: int | None = None,
) -> float:
    """ROC AUC of a random forest told real (0) from generated (1) cells.

    Stratified split into a fitting part and a `test_size` evaluation part; PCA to `n_components` fitted on the
    fitting part only; a forest of `n_trees` trees on `n_jobs` threads (default: this process's thread budget,
    so that worker processes running at once do not oversubscribe the cores); AUC on the evaluation part.
    Sparse input (either set) stays sparse: rows are split by index and the PCA is centred implicitly
    (`scldbench.metrics.pca.fit_pca`), which agrees with dense input's PCA to float rounding.
    """
    sparse = sp.issparse(real) or sp.issparse(generated)
    if sparse:
        real, generated = sp.csr_matrix(real, dtype=np.float32), sp.csr_matrix(generated, dtype=np.float32)
    else:
        real, generated = np.asarray(real, dtype=np.float32), np.asarray(generated, dtype=np.float32)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"real {real.shape} and generated {generated.shape} must be 2-D with equal columns")
    x = sp.vstack([real, generated], format="csr") if sparse else np.vstack([real, generated])
    y = np.r_[np.zeros(real.shape[0]), np.ones(generated.shape[0])]
    # splitting row numbers gives the rows splitting x itself would, without a second copy of x
    fit_rows, eval_rows = train_test_split(np.arange(len(y)), test_size=test_size, stratify=y, random_state=seed)
    x_fit, y_fit, y_eval = x[fit_rows], y[fit_rows], y[eval_rows]
    k = min(n_components, x_fit.shape[0], x_fit.shape[1])
    pca = fit_pca(x_fit, k, seed)
    features = pca.transform(x_fit)
    del x_fit
    forest = fit_forest(features, y_fit, n_trees=n_trees, seed=seed, n_jobs=n_jobs or thread_budget())
    return float(roc_auc_score(y_eval, forest.predict_proba(pca.transform(x[eval_rows]))[:, 1]))
