"""The models' C code: built on first use, cached per CPU model, run on a shared pool of threads.

``models/_masks.c`` (the SNN's random masks, models/masks.py) and ``models/_neurons.c`` (the neuron
recurrences, models/fused.py) are compiled with the system C compiler (``$CC``, else ``cc``) the first
time they are needed, with ``-march=native``, and kept in ``$XDG_CACHE_HOME/snnbench`` (default
``~/.cache/snnbench``) under a name that hashes the source, the flags and the CPU model: a cache shared
by machines of different CPUs never hands one a library built for the other. ``SNNBENCH_NATIVE=0``
turns all of them off; without a compiler each falls back quietly to its torch path.

ctypes releases the GIL while C runs, so the kernels' chunks run in parallel on ``executor()``'s threads.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def enabled() -> bool:
    """False when ``SNNBENCH_NATIVE=0``: every C kernel is off, their torch paths run."""
    return os.environ.get("SNNBENCH_NATIVE", "1") != "0"


def cpu_model() -> str:
    """The CPU's model name (``-march=native`` builds differ between CPUs, so the cache is kept per model)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def build(source: Path, name: str, flags: Sequence[str]) -> Path:
    """The shared library of ``source`` built with ``flags``: from the cache, else compiled into it now.
    Raises OSError or subprocess.SubprocessError when it cannot be built."""
    tag = hashlib.sha256(source.read_bytes() + " ".join(flags).encode() + cpu_model().encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "snnbench"
    lib = cache / f"{name}-{tag}.so"
    if not lib.exists():
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
        os.close(fd)
        try:
            compiler = os.environ.get("CC", "cc")
            subprocess.run([compiler, *flags, "-o", tmp, str(source)], check=True, capture_output=True, timeout=120)
            os.replace(tmp, lib)  # atomic: two processes compiling at once both end with a whole file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return lib


def load(source: Path, name: str, flags: Sequence[str], bind: Callable[[ctypes.CDLL], object]) -> object:
    """``bind(library)`` (which declares the C functions' argument types and returns what the caller keeps), or
    False where native code is off or the library cannot be built or loaded."""
    if not enabled():
        return False
    try:
        return bind(ctypes.CDLL(str(build(source, name, flags))))
    except (OSError, subprocess.SubprocessError, AttributeError):  # no compiler, a failed build, a missing symbol
        return False


def executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads()), thread_name_prefix="native")
        return _pool


def split(count: int, align: int = 1) -> list[tuple[int, int]]:
    """``[0, count)`` in at most ``torch.get_num_threads()`` contiguous parts, the cuts multiples of ``align``."""
    units = -(-count // align)
    parts = max(1, min(torch.get_num_threads(), units))
    cuts = [min(count, units * i // parts * align) for i in range(parts + 1)]
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a] or [(0, count)]


def run(jobs: Sequence[Callable[[], object]]) -> list:
    """Each job's result; one job runs in this thread, several on the pool."""
    if len(jobs) == 1:
        return [jobs[0]()]
    return list(executor().map(lambda job: job(), jobs))
