"""Honest wall-clock timing: synchronize the device on both ends of the clock."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch


def synchronizer(device: torch.device | str) -> Callable[[], None]:
    """The function that waits for all queued work on ``device``; chosen once, a no-op on the CPU."""
    kind = torch.device(device).type
    if kind == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if kind == "mps":
        return torch.mps.synchronize
    return lambda: None


class Stopwatch:
    """``with Stopwatch(sync) as sw: ...`` then ``sw.seconds``; syncs before reading the clock. With ``energy`` (a
    function that reads the device's energy counter in joules, bench.energy), ``sw.joules`` is what the device used
    over the same span (NaN without a counter)."""

    def __init__(self, sync: Callable[[], None], energy: Callable[[], float] | None = None):
        self.sync = sync
        self.energy = energy
        self.seconds = self.joules = float("nan")

    def __enter__(self) -> Stopwatch:
        self.sync()
        self._joules = self.energy() if self.energy is not None else float("nan")
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.sync()
        self.seconds = time.perf_counter() - self._start
        if self.energy is not None:
            self.joules = self.energy() - self._joules


# glibc's mallopt parameters: big allocations from the heap, and the heap's top kept, not given back to the system
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest
TRIM_THRESHOLD = 1 << 30
_steady: str | None = None


def steady_allocator() -> str:
    """Make a step's time independent of the allocator's history (bench.speed, every training process), and say how.

    glibc serves an allocation above its mmap threshold (128 KB at first, raised as large blocks are freed) with fresh
    pages from the system, and gives the heap's top back when more than the trim threshold is free: the same training
    step then takes its (T, B, N) buffers as fresh pages (page faults: 500 to 5,500 a `lif` step here, 1 to 4 ms of its
    20 to 25) or as reused memory, depending on what ran before it in the process. Fixing the thresholds (32 MB, glibc's
    largest; 1 GB) makes every step reuse the memory freed by the one before. Elsewhere (no glibc), or with
    ``SNNBENCH_ALLOCATOR=system`` (to measure what this changes), nothing changes."""
    global _steady
    if _steady is None and os.environ.get("SNNBENCH_ALLOCATOR", "") == "system":
        _steady = "the system allocator's defaults (SNNBENCH_ALLOCATOR=system)"
    if _steady is None:
        import ctypes
        import ctypes.util

        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        except (OSError, AttributeError):
            ok = False
        _steady = (f"glibc malloc: mmap threshold {MMAP_THRESHOLD >> 20} MB, trim threshold {TRIM_THRESHOLD >> 20} MB"
                   if ok else "the system allocator's defaults")  # fmt: skip
    return _steady
