"""Honest wall-clock timing: synchronize the device on both ends of the clock."""

from __future__ import annotations

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
    """``with Stopwatch(sync) as sw: ...`` then ``sw.seconds``; syncs before reading the clock."""

    def __init__(self, sync: Callable[[], None]):
        self.sync = sync
        self.seconds = float("nan")

    def __enter__(self) -> Stopwatch:
        self.sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.sync()
        self.seconds = time.perf_counter() - self._start
