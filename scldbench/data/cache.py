"""The user cache folder (datasets, prepared splits), overridable with SCLDBENCH_CACHE."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "SCLDBENCH_CACHE"


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get(ENV_VAR) or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scldbench")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
