"""Device resolution and a description of the machine for result records."""

from __future__ import annotations

import platform

import torch

from scldbench.errors import ScldbenchError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def check_device_name(device: str | torch.device) -> str:
    """`device` as a string, refused unless it is auto, cpu or cuda[:N] (whether this machine has it or not)."""
    name = str(device)
    if name.split(":")[0] not in DEVICE_CHOICES or (name.startswith("auto") and name != "auto"):
        raise ScldbenchError(f"unknown device {name!r}; use one of auto, cpu, cuda")
    return name


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA on a machine without it is an error."""
    name = check_device_name(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ScldbenchError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def job_device(device: str, *, cpu_only: bool) -> str:
    """The device a job runs on: the run's `device`, or "cpu" for a generator that never uses a GPU (`cpu_only`)."""
    return "cpu" if cpu_only else device


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"
