"""What every record carries about the software and machine that made it."""

from __future__ import annotations

import platform
import sys
from functools import cache
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("scldbench", "torch", "numpy", "scipy", "scanpy", "anndata", "scikit-learn", "pandas")


@cache
def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out
