"""What each metric means for ranking: which direction is better, its display name, and the column order.

A reader of scldbench.metrics.catalogue, where every metric is declared once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scldbench.metrics import catalogue

#: generators that are controls, not contestants: shown and used for scaling, never marked best
CONTROLS = ("positive", "shuffle", "random")
NEGATIVE_CONTROL = "random"
POSITIVE_CONTROL = "positive"
#: raw scores that get a scaled score beside them (between the negative and the positive control)
SCALED_METRICS = ("rf_auc", "mmd")
#: the columns of the main leaderboard table, when present; every metric is in the full table
PRIMARY_METRICS = catalogue.primary_metrics()
#: timings are summarised like metrics and can be sorted on
TIMINGS = tuple(m.name for m in catalogue.METRICS if m.space == "time")
#: display names of the metrics declared by exact name
LABELS = {m.name: m.label for m in catalogue.METRICS if not m.is_pattern}


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


def direction(metric: str) -> Direction:
    """The ranking rule of `metric` from the catalogue ('info' for metrics it does not declare)."""
    declared = catalogue.find(metric)
    if declared is None:
        return Direction("info")
    return Direction(declared.direction, declared.target if declared.target is not None else 0.0)


def label(metric: str) -> str:
    declared = catalogue.find(metric)
    return declared.label if declared is not None and not declared.is_pattern else metric


def partner(metric: str) -> str | None:
    """The metric `metric` must be read (and marked best) together with, e.g. precision -> recall."""
    declared = catalogue.find(metric)
    return declared.partner if declared is not None else None


def space(metric: str) -> str | None:
    """Where `metric` is computed (a protocol's space, "counts", ...), or None when undeclared."""
    declared = catalogue.find(metric)
    return declared.space if declared is not None else None


def metric_order(names: set[str] | list[str]) -> list[str]:
    """Primary metrics first (in their order), then the rest alphabetically, timings last."""
    names = set(names)
    primary = [m for m in PRIMARY_METRICS if m in names and m not in TIMINGS]
    rest = sorted(n for n in names if n not in primary and n not in TIMINGS)
    return primary + rest + [t for t in TIMINGS if t in names]


RANKING_NOTE = (
    "Best per metric (★) among generators that are not controls (positive, shuffle, random). RF AUC: closest to "
    "0.5 is best (|AUC − 0.5|, an AUC below 0.5 is chance, not better than real); density and the memorisation "
    "ratios: closest to 1; MMD, W1, W2, RBF MMD², energy distance, *_ks, *_trend, *_mad, times: lower; "
    "precision, recall, coverage, DE overlap and LFC ρ, gene corr, TSTR, augmentation gains: higher; *_reference "
    "(held-out real cells through the same metric) not ranked. Scaled = (random − x) / (random − positive): 1 = as "
    "good as held-out real cells, 0 = as bad as random; ⚠ marks a scaled score outside [0, 1]."
)
