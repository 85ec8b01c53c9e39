"""Device resolution and a description of the machine for result records."""

from __future__ import annotations

import platform

import torch

from scldbench.errors import ScldbenchError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA on a machine without it is an error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ScldbenchError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    if name.split(":")[0] not in DEVICE_CHOICES:
        raise ScldbenchError(f"unknown device {name!r}; use one of auto, cpu, cuda")
    return torch.device(name)


def job_device(device: str, *, cpu_only: bool) -> str:
    """The device a job runs on: the run's `device`, or "cpu" for a generator that never uses a GPU (`cpu_only`)."""
    return "cpu" if cpu_only else device


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"
