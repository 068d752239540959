"""Measured energy: a device's own cumulative energy counter, read where the clock is read.

On an NVIDIA GPU (Volta or newer) NVML keeps the board's energy since the driver loaded, in millijoules
(``nvmlDeviceGetTotalEnergyConsumption``, read through ``nvidia-ml-py``: ``pip install nvidia-ml-py``). A training
reads it, after synchronizing the device, at both ends of each epoch's training pass and of its test pass, the same
spans as ``train_seconds`` and ``eval_seconds``; the differences are ``train_joules`` and ``eval_joules``. What it
measures is the whole board: idle and static power included, and any other process's work on the same GPU, so
trainings that share a GPU (``parallel`` > 1) record none. NVML refreshes the counter every 20 to 100 ms: spans of a
second or more read it to within a few percent.

Where no counter is read (a CPU: RAPL is not read, and on the machines snnbench is developed on there is none; Apple's
mps; a GPU without the counter, a MIG slice, no ``nvidia-ml-py``) the columns stay empty, and the counter's
description says why in run.json's provenance (``energy_counter``), which the report quotes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

NONE = "none"  # the first word of a description when no counter is read


class EnergyCounter:
    """``read()``: the device's energy counter in joules (NaN without one); ``description``: which counter, or why
    none ("none: ...")."""

    def __init__(self, read: Callable[[], float] | None, description: str):
        self._read = read
        self.description = description

    @property
    def available(self) -> bool:
        return self._read is not None

    def read(self) -> float:
        return self._read() if self._read is not None else math.nan


def counter(device: str, parallel: int | None = 1) -> EnergyCounter:
    """The energy counter of ``device`` for a training that ``parallel`` trainings share the device with (itself
    included; None: unknown, taken as alone)."""
    if not device.startswith("cuda"):
        return EnergyCounter(None, f"{NONE}: snnbench reads NVML, which measures NVIDIA GPUs only")
    if parallel is not None and parallel > 1:
        return EnergyCounter(None, f"{NONE}: {parallel} trainings share {device}, and its counter measures the whole GPU")
    try:
        import pynvml
    except ImportError:
        return EnergyCounter(None, f"{NONE}: nvidia-ml-py is not installed (pip install nvidia-ml-py)")
    try:
        pynvml.nvmlInit()
        handle = _handle(pynvml, device)
        name = pynvml.nvmlDeviceGetName(handle)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # NotSupported before Volta and on MIG slices
    except pynvml.NVMLError as exc:
        return EnergyCounter(None, f"{NONE}: NVML on {device}: {exc}")
    except LookupError as exc:
        return EnergyCounter(None, f"{NONE}: {exc}")
    name = name.decode() if isinstance(name, bytes) else str(name)
    return EnergyCounter(lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0,
                         f"nvml: {name}, total energy consumption (mJ since the driver loaded)")  # fmt: skip


def _handle(pynvml, device: str):
    """NVML's handle of the GPU that torch calls ``device``: by its UUID (NVML numbers GPUs in PCI order, CUDA by speed
    unless CUDA_DEVICE_ORDER says otherwise, and CUDA_VISIBLE_DEVICES renumbers them), else by index where nothing
    renumbers them."""
    import torch

    index = torch.device(device).index or 0
    uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", "") or "")
    if uuid:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
        except pynvml.NVMLError:
            pass
    if os.environ.get("CUDA_VISIBLE_DEVICES") is None and os.environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    if os.environ.get("CUDA_VISIBLE_DEVICES") is None and torch.cuda.device_count() == 1:
        return pynvml.nvmlDeviceGetHandleByIndex(0)
    raise LookupError(f"NVML: no GPU with {device}'s UUID {uuid or '(none)'}, and its index may not be NVML's")
