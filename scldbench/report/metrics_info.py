"""What each metric means for ranking: which direction is better, its display name, and the column order."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fnmatch import fnmatch

#: generators that are controls, not contestants: shown and used for scaling, never marked best
CONTROLS = ("positive", "shuffle", "random")
NEGATIVE_CONTROL = "random"
POSITIVE_CONTROL = "positive"
#: raw scores that get a scaled score beside them (between the negative and the positive control)
SCALED_METRICS = ("rf_auc", "mmd")
#: the columns of the main leaderboard table, when present; every metric is in the full table
PRIMARY_METRICS = (
    "rf_auc", "mmd", "cluster_rf_auc_mean", "precision", "recall", "density", "coverage", "marker_overlap",
    "tstr_macro_f1", "fit_seconds",
)
#: timings are summarised like metrics and can be sorted on
TIMINGS = ("fit_seconds", "sample_seconds")

LABELS = {
    "rf_auc": "RF AUC", "mmd": "MMD", "cluster_rf_auc_mean": "cluster RF AUC", "cluster_mmd_mean": "cluster MMD",
    "marker_overlap": "marker overlap", "tstr_macro_f1": "TSTR F1", "fit_seconds": "fit s",
    "sample_seconds": "sample s",
}


@dataclass(frozen=True)
class Direction:
    """How to rank a metric: `kind` is 'lower', 'higher', 'target' (closest to `target`) or 'info' (no rank)."""

    kind: str
    target: float = 0.0

    def badness(self, value: float) -> float:
        """A number where smaller is better (NaN for 'info' metrics and missing values)."""
        if value is None or not math.isfinite(value) or self.kind == "info":
            return math.nan
        if self.kind == "lower":
            return value
        if self.kind == "higher":
            return -value
        return abs(value - self.target)

    def rule(self) -> str:
        return {
            "lower": "lower is better",
            "higher": "higher is better",
            "target": f"closest to {self.target:g} is best",
            "info": "not ranked",
        }[self.kind]


# first match wins; patterns are fnmatch-style
_RULES: tuple[tuple[str, Direction], ...] = (
    ("rf_auc", Direction("target", 0.5)),
    ("cluster_rf_auc_mean", Direction("target", 0.5)),
    ("density", Direction("target", 1.0)),
    ("memorisation_median_ratio", Direction("target", 1.0)),
    ("memorisation_close_fraction_excess", Direction("target", 1.0)),
    ("memorisation_exact_copy_fraction", Direction("lower")),
    ("memorisation_memorised", Direction("lower")),
    ("memorisation_*", Direction("info")),
    ("trtr_*", Direction("info")),
    ("augment_recall_downsampled", Direction("info")),
    ("augment_recall_full", Direction("info")),
    ("augment_macro_f1_downsampled", Direction("info")),
    ("augment_*", Direction("higher")),
    ("mmd", Direction("lower")),
    ("cluster_mmd_mean", Direction("lower")),
    ("*_ks", Direction("lower")),
    ("*_trend", Direction("lower")),
    ("*_mad", Direction("lower")),
    ("precision", Direction("higher")),
    ("recall", Direction("higher")),
    ("coverage", Direction("higher")),
    ("marker_overlap", Direction("higher")),
    ("tstr_*", Direction("higher")),
    ("fit_seconds", Direction("lower")),
    ("sample_seconds", Direction("lower")),
)


def direction(metric: str) -> Direction:
    """The ranking rule of `metric` ('info' for metrics this module does not know)."""
    for pattern, rule in _RULES:
        if fnmatch(metric, pattern):
            return rule
    return Direction("info")


def label(metric: str) -> str:
    return LABELS.get(metric, metric)


def metric_order(names: set[str] | list[str]) -> list[str]:
    """Primary metrics first (in their order), then the rest alphabetically, timings last."""
    names = set(names)
    primary = [m for m in PRIMARY_METRICS if m in names and m not in TIMINGS]
    rest = sorted(n for n in names if n not in primary and n not in TIMINGS)
    return primary + rest + [t for t in TIMINGS if t in names]


RANKING_NOTE = (
    "Best per metric (★) among generators that are not controls (positive, shuffle, random). RF AUC: closest to "
    "0.5 is best (|AUC − 0.5|, an AUC below 0.5 is chance, not better than real); density and the memorisation "
    "ratios: closest to 1; MMD, *_ks, *_trend, *_mad, times: lower; precision, recall, coverage, marker overlap, "
    "TSTR, augmentation gains: higher. Scaled = (random − x) / (random − positive): 1 = as good as held-out real "
    "cells, 0 = as bad as random; ⚠ marks a scaled score outside [0, 1]."
)
