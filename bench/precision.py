"""Numeric precision of a training (``--precision``) and the peak memory it needs.

- ``fp32``: everything in float32 (the 2018 way, the default).
- ``bf16``: the synaptic matmuls in bfloat16 through ``torch.autocast`` (its lists: matmuls and linear layers in
  bf16, losses and reductions in float32); the models keep their neuron state and recurrence in float32 (they cast
  the currents back, models/snn.py and models/lif.py) and the optimizer updates float32 weights.
- ``fp16``: float16 matmuls with a gradient scaler; CUDA only (float16 without a scaler underflows, and the CPU has
  no fast float16 matmul).

``PeakMemory`` measures the most memory a stretch of work held: on CUDA the allocator's peak
(``max_memory_allocated`` after a reset), on Linux CPUs the process's peak resident set (VmHWM after writing 5 to
``/proc/self/clear_refs``, which resets it), elsewhere nothing (NaN).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT = "fp32"


def problem(precision: str, devices: list[str]) -> str | None:
    """Why ``precision`` cannot run on ``devices`` (one line), or None."""
    others = [d for d in devices if not d.startswith("cuda")]
    if precision == "fp16" and others:
        return f"--precision fp16 needs CUDA (a gradient scaler and fast float16 matmuls); not on {', '.join(others)}: use bf16"
    return None


def autocast(precision: str, device_type: str):
    """The context a forward pass runs in at ``precision`` on a device of ``device_type`` ("cpu", "cuda", "mps")."""
    if precision == DEFAULT:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=DTYPES[precision])


def scaler(precision: str):
    """fp16's gradient scaler (CUDA), or None."""
    return torch.amp.GradScaler("cuda") if precision == "fp16" else None


_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _rss_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])  # "VmHWM:   123456 kB"
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_cpu_peak() -> bool:
    try:
        _CLEAR.write_text("5")  # Linux >= 4.0: reset the peak resident set size to the current one
        return True
    except OSError:
        return False


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.mib``: the most memory held during the block, in MiB
    (CUDA: tensors allocated on the device; CPU: the whole process's resident set, libraries included; NaN where
    it cannot be measured). ``baseline_mib``: what was held when the block began (same measure), so that
    ``peak.mib - peak.baseline_mib`` is what the block added."""

    def __init__(self, device: str | torch.device):
        self.device = torch.device(device)
        self.mib = self.baseline_mib = math.nan

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_mib = torch.cuda.memory_allocated(self.device) / 2**20
        elif self.device.type == "cpu" and _reset_cpu_peak():
            rss = _rss_kib("VmRSS")
            self.baseline_mib = rss / 1024 if rss is not None else math.nan
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.device.type == "cpu" and not math.isnan(self.baseline_mib):
            hwm = _rss_kib("VmHWM")
            self.mib = hwm / 1024 if hwm is not None else math.nan
