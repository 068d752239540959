"""Which devices exist here, and turning ``--device`` words into canonical names."""

from __future__ import annotations

import os

import torch

from models.masks import cpu_model  # the models need it first: their native build is cached per CPU


class DeviceError(ValueError):
    """A device that is unknown or not available on this machine."""


def cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def available_devices() -> list[str]:
    """Every device this machine can run on, CPU first; CUDA devices always carry their index."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def resolve_devices(words: list[str]) -> list[str]:
    """``["all"]`` -> every available device; ``cuda`` -> ``cuda:0``. Raises DeviceError."""
    here = available_devices()
    result: list[str] = []
    for word in words:
        names = here if word == "all" else [_canonical(word)]
        for name in names:
            if name not in here:
                raise DeviceError(f"device {word!r} is not available here; available: {', '.join(here)} (or all)")
            if name not in result:
                result.append(name)
    return result


def _canonical(word: str) -> str:
    try:
        device = torch.device(word)
    except RuntimeError:
        raise DeviceError(f"unknown device {word!r}; use cpu, cuda, cuda:N, mps or all") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unknown device {word!r}; use cpu, cuda, cuda:N, mps or all")
    if device.type == "cuda":
        return f"cuda:{device.index or 0}"
    return device.type


def device_name(device: str) -> str:
    """The hardware behind a device name, for run.json and the report."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    if device == "mps":
        return "Apple GPU (mps)"
    return cpu_model()
