"""Across-seed summaries (mean and t-interval) and scores scaled between negative and positive controls."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats


class SeedSummary(NamedTuple):
    """Mean over seeds and its two-sided t-interval; `low`/`high` are NaN with fewer than 2 finite values."""

    mean: float
    low: float
    high: float
    sd: float
    n: int


class ScaledScore(NamedTuple):
    """A raw score, its value scaled between the controls, and whether the scaled value left [0, 1]."""

    raw: float
    scaled: float
    outside: bool


def mean_interval(values: Iterable[float], confidence: float = 0.95) -> SeedSummary:
    """Mean of the finite `values` and the Student-t interval mean +- t_{(1+c)/2, n-1} * sd / sqrt(n).

    sd is the sample standard deviation (ddof 1), 0 when the values agree to 12 significant digits. NaN and
    infinite values are dropped (n counts the rest); with one value the interval and sd are NaN, with none
    everything is NaN and n is 0.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = np.asarray(list(values), dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return SeedSummary(float("nan"), float("nan"), float("nan"), float("nan"), 0)
    mean = float(x.mean())
    if n == 1:
        return SeedSummary(mean, float("nan"), float("nan"), float("nan"), 1)
    # values equal up to float rounding (the same score summed in another order) have no spread to report
    sd = 0.0 if np.ptp(x) <= 1e-12 * np.abs(x).max() else float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, df=n - 1)) * sd / np.sqrt(n)
    return SeedSummary(mean, mean - half, mean + half, sd, n)


def summarise_seeds(
    records: Sequence[Mapping[str, float]], confidence: float = 0.95
) -> dict[str, SeedSummary]:
    """One SeedSummary per metric name found in any record (a record lacking a metric contributes nothing)."""
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    return {
        name: mean_interval((r[name] for r in records if name in r), confidence) for name in names
    }


def scale_between_controls(value: float, negative: float, positive: float) -> float:
    """(negative - value) / (negative - positive): 1 = as good as the positive control, 0 = as the negative.

    Works for lower-is-better and higher-is-better metrics alike; NaN when the controls coincide or any input
    is NaN.
    """
    value, negative, positive = float(value), float(negative), float(positive)
    span = negative - positive
    if not np.isfinite(span) or span == 0 or not np.isfinite(value):
        return float("nan")
    return (negative - value) / span


def scale_scores(
    scores: Mapping[str, float],
    negative: Mapping[str, float],
    positive: Mapping[str, float],
    *,
    tolerance: float = 0.0,
) -> dict[str, ScaledScore]:
    """Scale every metric that both controls report; `outside` is True when scaled < -tol or > 1 + tol.

    A NaN scaled value (controls equal, or missing values) is not flagged.
    """
    out = {}
    for name, raw in scores.items():
        if name not in negative or name not in positive:
            continue
        scaled = scale_between_controls(raw, negative[name], positive[name])
        outside = bool(np.isfinite(scaled) and (scaled < -tolerance or scaled > 1 + tolerance))
        out[name] = ScaledScore(float(raw), scaled, outside)
    return out
