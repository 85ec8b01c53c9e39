"""Data prepared as `scldbench run <suite> --data ... [--labels | --clusters]` prepares it, for the bench scripts."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any


def add_data_arguments(ap: argparse.ArgumentParser, *, suite_help: str, default_data: str | None = None) -> None:
    """--data, --labels | --clusters and --suite, as `scldbench run` takes them."""
    ap.add_argument("--data", required=default_data is None, default=default_data,
                    help="dataset name or path (.h5ad, 10x .h5, folder)")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--labels", default=None, help="obs column with cell labels")
    group.add_argument("--clusters", type=int, default=None, help="compute this many clusters instead of labels")
    ap.add_argument("--suite", default="pbmc", help=suite_help)


def prepared_as_suite(suite: Any, data: str, labels: str | None = None, clusters: int | None = None) -> Any:
    """The suite's `[prepare]` settings over the dataset's defaults, `labels` or `clusters` as on the CLI."""
    from scldbench.data import load_dataset, prepare

    adata, spec = load_dataset(data)
    settings = suite.prepare_settings({"labels_key": spec.labels_key, "n_clusters": spec.n_clusters})
    if labels is not None:
        settings = replace(settings, labels_key=labels, n_clusters=None)
    if clusters is not None:
        settings = replace(settings, labels_key=None, n_clusters=clusters)
    return prepare(adata, settings)


def scores_against_test(data: Any, cells: Any, *, seed: int, n_trees: int, hvg: bool = False) -> dict[str, float]:
    """scgan-v1 scores (and hvg-pca30-v1's with `hvg`) of `cells` against the real test cells, plus precision /
    recall / density / coverage (k = 5) in a log-PCA-50 fitted on the training cells."""
    from scldbench.metrics import fit_log_pca, manifold_metrics
    from scldbench.protocols import get_protocol

    scores = get_protocol("scgan-v1").evaluate(data.test.X, cells, reference=data.train.X, seed=seed, n_trees=n_trees)
    if hvg:
        scores |= get_protocol("hvg-pca30-v1").evaluate(data.test.X, cells, reference=data.train.X, seed=seed)
    _, test_e, gen_e = fit_log_pca(data.train.X, data.test.X, cells, seed=seed)
    return scores | manifold_metrics(test_e, gen_e, k=5)
