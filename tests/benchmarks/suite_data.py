"""Data prepared as `scldbench run <suite> --data ... [--labels | --clusters]` prepares it, for the bench scripts."""

from __future__ import annotations

from dataclasses import replace
from typing import Any


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
