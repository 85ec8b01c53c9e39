"""Checks of suite values against declared types and ranges, so that a wrong value stops the suite at load.

Types come from the annotations of the settings dataclasses and of generator constructors; ranges are declared
here, once, per setting.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any, Literal, Union

#: (low, high, low inclusive, high inclusive); None is open
Range = tuple[float | None, float | None, bool, bool]

AT_LEAST_0: Range = (0, None, True, False)
AT_LEAST_1: Range = (1, None, True, False)
POSITIVE: Range = (0, None, False, False)
FRACTION: Range = (0, 1, False, False)

RANGES: dict[str, Range] = {
    # [prepare]
    "prepare.min_genes": AT_LEAST_0, "prepare.min_cells": AT_LEAST_0, "prepare.n_clusters": (2, None, True, False),
    "prepare.cluster_resolution": POSITIVE, "prepare.test_fraction": FRACTION,
    "prepare.holdout_fraction": FRACTION, "prepare.max_cells": (10, None, True, False), "prepare.seed": AT_LEAST_0,
    # [evaluate]
    "evaluate.n_trees": AT_LEAST_1, "evaluate.min_cluster_cells": AT_LEAST_1, "evaluate.n_generated": AT_LEAST_1,
    "evaluate.sweep_cells": AT_LEAST_1, "evaluate.augment_keep": AT_LEAST_1, "evaluate.guidance": AT_LEAST_0,
    # time limits
    "timeout_seconds": POSITIVE, "timeout": POSITIVE,
}


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(annotation))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (tuple, list):
        return f"a list of {_describe(typing.get_args(annotation)[0])}" if typing.get_args(annotation) else "a list"
    if annotation is type(None):
        return "unset"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a table"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def type_problem(value: Any, annotation: Any) -> str | None:
    """Why `value` (from TOML) does not fit `annotation`, or None when it does (or the annotation is unknown)."""
    origin = typing.get_origin(annotation)
    if annotation is Any or annotation is None:
        return None
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        if any(type_problem(value, a) is None for a in options):
            return None
        return f"must be {_describe(annotation)}, got {value!r}"
    if origin is Literal:
        return None if value in typing.get_args(annotation) else f"must be {_describe(annotation)}, got {value!r}"
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            return f"must be {_describe(annotation)}, got {value!r}"
        inner = typing.get_args(annotation)[:1]
        for item in value:
            if inner and type_problem(item, inner[0]) is not None:
                return f"must be {_describe(annotation)}, got {value!r}"
        return None
    if annotation is type(None):
        return None if value is None else f"must be unset, got {value!r}"
    if annotation is bool:
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"must be an integer, got {value!r}"
    if annotation is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else f"must be a number, got {value!r}"
    if annotation is str:
        return None if isinstance(value, str) else f"must be a string, got {value!r}"
    if annotation is dict or origin is dict:
        return None if isinstance(value, dict) else f"must be a table, got {value!r}"
    return None


def range_problem(value: Any, where: str) -> str | None:
    """Why a number is out of its declared range (RANGES[where]), or None."""
    bounds = RANGES.get(where)
    if bounds is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    low, high, low_in, high_in = bounds
    if low is not None and (value < low or (value == low and not low_in)):
        return f"must be {'at least' if low_in else 'more than'} {low:g}, got {value!r}"
    if high is not None and (value > high or (value == high and not high_in)):
        return f"must be {'at most' if high_in else 'less than'} {high:g}, got {value!r}"
    return None


def hints(func: Any) -> dict[str, Any]:
    """Resolved annotations of `func`, or {} when they cannot be resolved (then types are not checked)."""
    try:
        return typing.get_type_hints(func)
    except Exception:
        return {}
