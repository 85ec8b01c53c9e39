"""scldbench: a benchmark harness for generators of single-cell RNA-seq data.

The public Python API:

- `Generator`, `get_generator`, `list_generators`: the generators and their registry.
- `evaluate`: score generated cells against real cells under a named protocol.
- `load_suite`, `RunRequest`, `run_suite`: run a suite as `scldbench run` does.
- `load_results`: every score of a folder of runs as one tidy table.
- `JobRecord`: one job's record as stored in a run folder (`JobRecord.from_json`, `to_json`).
- `ScldbenchError`: the error raised for input the user can fix.

`import scldbench` stays light: the names above import their modules (torch, scanpy, ...) on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from scldbench.errors import ScldbenchError

__version__ = "0.3.0"

#: public name -> the module that defines it, imported on first access
_LAZY = {
    "Generator": "scldbench.generator",
    "get_generator": "scldbench.registry",
    "list_generators": "scldbench.registry",
    "evaluate": "scldbench.compare",
    "load_suite": "scldbench.suite",
    "RunRequest": "scldbench.runner",
    "run_suite": "scldbench.runner",
    "load_results": "scldbench.results",
    "JobRecord": "scldbench.record",
}

__all__ = ["Generator", "JobRecord", "RunRequest", "ScldbenchError", "__version__", "evaluate", "get_generator",
           "list_generators", "load_results", "load_suite", "run_suite"]

if TYPE_CHECKING:
    from scldbench.compare import evaluate
    from scldbench.generator import Generator
    from scldbench.record import JobRecord
    from scldbench.registry import get_generator, list_generators
    from scldbench.results import load_results
    from scldbench.runner import RunRequest, run_suite
    from scldbench.suite import load_suite


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scldbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
