"""Downstream utility of generated cells: cell-type classifiers trained on them and tested on real cells.

The classifier is one fixed pipeline: log1p of counts scaled to 1e4 per cell, PCA (fitted on the classifier's
own training cells only), then multinomial logistic regression ("logreg") or a k-nearest-neighbour vote
("knn"). Inputs are raw counts (cells x genes, dense or sparse) and label arrays; nothing is read
from elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from scldbench.counts.numpy import log_normalise, log_normalise_sparse
from scldbench.data.counts import ArrayLike
from scldbench.metrics.pca import SparseInputPCA

CLASSIFIERS = ("logreg", "knn")

#: generated cells for the augmentation test: an array, or a callable (x_train, y_train, n_cells) -> counts
#: that receives the downsampled real training set, so that a generator can be fitted without the removed
#: cells
GeneratedCells = ArrayLike | Callable[[np.ndarray, np.ndarray, int], ArrayLike]


def make_classifier(
    kind: str = "logreg", *, n_components: int = 30, n_samples: int, seed: int = 0, sparse: bool = False
) -> Pipeline:
    """PCA (`n_components`, fewer when `n_samples` is small), scaling, logistic regression or 15-NN.

    `sparse`: the PCA takes sparse input and centres it implicitly (`scldbench.metrics.pca.fit_pca`).
    """
    if kind not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {kind!r}; use one of {', '.join(CLASSIFIERS)}")
    k = max(1, min(n_components, n_samples - 1))
    head = (
        LogisticRegression(max_iter=2000, C=1.0, random_state=seed)
        if kind == "logreg"
        else KNeighborsClassifier(n_neighbors=min(15, n_samples))
    )
    pca = SparseInputPCA(k, seed) if sparse else PCA(n_components=k, random_state=seed)
    steps = [("pca", pca), ("scale", StandardScaler()), ("clf", head)]
    return Pipeline(steps)


def _fit_predict(
    x_train: ArrayLike, y_train: np.ndarray, x_test: ArrayLike, *, kind: str, n_components: int, seed: int
) -> np.ndarray:
    n_comp = min(n_components, x_train.shape[1])
    model = make_classifier(kind, n_components=n_comp, n_samples=x_train.shape[0], seed=seed,
                            sparse=sp.issparse(x_train))
    return model.fit(x_train, y_train).predict(x_test)


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    present = np.unique(y_true)
    f1 = f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
    return float(f1), float(balanced_accuracy_score(y_true, y_pred))


def _labels(y: Sequence) -> np.ndarray:
    return np.asarray(y).astype(str)


def train_synthetic_test_real(
    generated: ArrayLike,
    generated_labels: Sequence,
    real_train: ArrayLike,
    real_train_labels: Sequence,
    real_test: ArrayLike,
    real_test_labels: Sequence,
    *,
    classifier: str = "logreg",
    n_components: int = 30,
    seed: int = 0,
    sparse: bool = False,
) -> dict[str, float]:
    """Train-synthetic-test-real (TSTR) against train-real-test-real (TRTR) on the same real test cells.

    `sparse`: log-normalised values stay sparse and the classifiers' PCA is centred implicitly (for data too
    large to hold dense; values differ from the dense computation by float rounding).

    Macro-F1 is averaged over the labels present in the real test cells (a label the classifier never predicts
    scores 0); balanced accuracy is the mean per-label recall over those labels. Returns:
        tstr_macro_f1, tstr_balanced_accuracy: classifier trained on generated labelled cells.
        trtr_macro_f1, trtr_balanced_accuracy: the same classifier trained on the real training cells.
        tstr_trtr_f1_ratio: tstr_macro_f1 / trtr_macro_f1 (1 = generated cells teach as well as real ones).
    """
    y_gen, y_train, y_test = _labels(generated_labels), _labels(real_train_labels), _labels(real_test_labels)
    norm = log_normalise_sparse if sparse else log_normalise
    x_gen, x_train, x_test = norm(generated), norm(real_train), norm(real_test)
    if not (x_gen.shape[1] == x_train.shape[1] == x_test.shape[1]):
        raise ValueError("generated, real_train and real_test need the same genes")
    if np.unique(y_gen).size < 2:
        raise ValueError("generated cells carry fewer than 2 labels; a classifier needs at least 2")
    opts = {"kind": classifier, "n_components": n_components, "seed": seed}
    tstr = _scores(y_test, _fit_predict(x_gen, y_gen, x_test, **opts))
    trtr = _scores(y_test, _fit_predict(x_train, y_train, x_test, **opts))
    return {
        "tstr_macro_f1": tstr[0],
        "tstr_balanced_accuracy": tstr[1],
        "trtr_macro_f1": trtr[0],
        "trtr_balanced_accuracy": trtr[1],
        "tstr_trtr_f1_ratio": tstr[0] / trtr[0] if trtr[0] > 0 else float("nan"),
    }


def augmentation_benefit(
    real_train: ArrayLike,
    real_train_labels: Sequence,
    real_test: ArrayLike,
    real_test_labels: Sequence,
    rare_label: str,
    generated: GeneratedCells,
    *,
    n_keep: int = 10,
    n_generated: int | None = None,
    classifier: str = "logreg",
    n_components: int = 30,
    seed: int = 0,
) -> dict[str, float]:
    """Recall of a rare cluster whose real training cells are cut to `n_keep`, without and with generated.

    The real training cells of `rare_label` are downsampled at random (seed `seed`) to `n_keep`; a classifier
    is trained on that set ("downsampled") and on that set plus generated cells labelled `rare_label`
    ("augmented"), and one on all real training cells ("full", the reference). All are tested on the same real
    test cells. `generated` is an array of generated rare-cluster counts (all of them are added; mind that a
    generator fitted on the full training set has seen the removed cells), or a callable
    (x_train_downsampled_counts, y_train_downsampled, n_cells) -> counts, asked for `n_generated` cells
    (default: as many as were removed). Returns:
        recall_downsampled, recall_augmented, recall_full: recall of `rare_label` on the real test cells.
        augmentation_benefit: recall_augmented - recall_downsampled.
        macro_f1_downsampled, macro_f1_augmented: macro-F1 over all test labels (does augmentation
            cost the other labels?).
        n_kept, n_added: real rare cells kept and generated cells added.
    """
    y_train, y_test = _labels(real_train_labels), _labels(real_test_labels)
    rare_label = str(rare_label)
    rare = np.flatnonzero(y_train == rare_label)
    if rare.size == 0 or not (y_test == rare_label).any():
        raise ValueError(f"label {rare_label!r} needs cells in both real_train and real_test")
    counts_train = real_train.tocsr() if hasattr(real_train, "tocsr") else np.asarray(real_train)
    rng = np.random.default_rng(seed)
    kept = rng.choice(rare, size=min(n_keep, rare.size), replace=False)
    rows = np.sort(np.concatenate([np.flatnonzero(y_train != rare_label), kept]))
    down_counts, y_down = counts_train[rows], y_train[rows]
    if callable(generated):
        n_add = rare.size - kept.size if n_generated is None else n_generated
        extra = generated(down_counts, y_down, n_add) if n_add > 0 else np.zeros((0, counts_train.shape[1]))
    else:
        extra = generated
    x_extra = log_normalise(extra)
    x_down, x_full, x_test = log_normalise(down_counts), log_normalise(counts_train), log_normalise(real_test)
    if x_extra.shape[0] and x_extra.shape[1] != x_down.shape[1]:
        raise ValueError(f"generated cells have {x_extra.shape[1]} genes, real cells {x_down.shape[1]}")
    x_aug = np.vstack([x_down, x_extra.reshape(-1, x_down.shape[1])])
    y_aug = np.concatenate([y_down, np.repeat(rare_label, x_extra.shape[0])])
    opts = {"kind": classifier, "n_components": n_components, "seed": seed}
    pred_down = _fit_predict(x_down, y_down, x_test, **opts)
    pred_aug = _fit_predict(x_aug, y_aug, x_test, **opts)
    pred_full = _fit_predict(x_full, y_train, x_test, **opts)

    def recall(pred: np.ndarray) -> float:
        return float(recall_score(y_test, pred, labels=[rare_label], average="macro", zero_division=0))

    return {
        "recall_downsampled": recall(pred_down),
        "recall_augmented": recall(pred_aug),
        "recall_full": recall(pred_full),
        "augmentation_benefit": recall(pred_aug) - recall(pred_down),
        "macro_f1_downsampled": _scores(y_test, pred_down)[0],
        "macro_f1_augmented": _scores(y_test, pred_aug)[0],
        "n_kept": float(kept.size),
        "n_added": float(x_extra.shape[0]),
    }
