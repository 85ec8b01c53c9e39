"""The device metrics do their heavy array work on: the CPU unless the job being scored runs on a GPU.

Scoring sets it for the duration of a job (`metrics_on`); a metric that can use a GPU reads it through
`metric_device` unless its caller names a device itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch

from scldbench.device import resolve_device

#: None: the CPU
_CURRENT: ContextVar[torch.device | None] = ContextVar("scldbench_metric_device", default=None)


def metric_device(device: str | torch.device | None = None) -> torch.device:
    """`device` resolved ("auto", "cpu", "cuda"), or the device set by the enclosing `metrics_on` (default CPU)."""
    if device is None:
        return _CURRENT.get() or torch.device("cpu")
    return resolve_device(device)


@contextlib.contextmanager
def metrics_on(device: str | torch.device) -> Iterator[torch.device]:
    """Metrics inside the block run on `device` (resolved; an unavailable CUDA device is an error)."""
    token = _CURRENT.set(resolve_device(device))
    try:
        yield metric_device()
    finally:
        _CURRENT.reset(token)
