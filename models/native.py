"""The models' C code: built on first use, cached per CPU model, run on a shared pool of threads.

``models/_masks.c`` (the SNN's random masks, models/masks.py) and ``models/_neurons.c`` (the neuron
recurrences, models/fused.py) are compiled with the system C compiler (``$CC``, else ``cc``) the first
time they are needed, with ``-march=native``, and kept in ``$XDG_CACHE_HOME/snnbench`` (default
``~/.cache/snnbench``) under a name that hashes the source, the flags and the CPU model: a cache shared
by machines of different CPUs never hands one a library built for the other. ``SNNBENCH_NATIVE=0``
turns all of them off; without a compiler each falls back quietly to its torch path.

Threads: where torch's parallel backend is OpenMP (the Linux wheels: GNU OpenMP, ``torch/lib/libgomp.so.1``),
the kernels are built with ``-fopenmp`` and split their work over torch's own OpenMP threads (models/_parallel.h):
the loader hands them the runtime torch already loaded, as it has the same soname. A second pool of threads would
compete with torch's, which spin for milliseconds after each of torch's parallel regions waiting for the next: on
a 2-core machine, masks drawn between GEMMs on a pool of their own cost 1.5x their time. Where that build fails,
or would load a second OpenMP runtime, the plain build runs, its calls split over ``executor()``'s threads (ctypes
releases the GIL while C runs).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
OPENMP = ("-fopenmp",)
_threaded: dict[str, bool] = {}  # by library name: built with OpenMP, on torch's runtime
_RUNTIMES = re.compile(r"/lib(gomp|iomp5|omp)[^/]*\.so[^/]*$")


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
    headers = b"".join(h.read_bytes() for h in sorted(source.parent.glob("_*.h")))  # what the sources include
    text = source.read_bytes() + headers + " ".join(flags).encode() + cpu_model().encode()
    tag = hashlib.sha256(text).hexdigest()[:16]
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


def torch_openmp() -> bool:
    """Whether torch runs its CPU operations on OpenMP threads (then the kernels can share them)."""
    return "parallel backend: OpenMP" in torch.__config__.parallel_info()


def openmp_runtimes() -> set[str]:
    """The OpenMP runtimes mapped into this process, by file (Linux; elsewhere an empty set)."""
    try:
        with open("/proc/self/maps") as f:
            return {line.split()[-1] for line in f if _RUNTIMES.search(line.strip())}
    except OSError:
        return set()


def load(source: Path, name: str, flags: Sequence[str], bind: Callable[[ctypes.CDLL], object]) -> object:
    """``bind(library)`` (which declares the C functions' argument types and returns what the caller keeps), or
    False where native code is off or the library cannot be built or loaded. Built with OpenMP first where torch
    uses it (``threaded(name)`` says which build it was); a build that brings a runtime of its own is not kept."""
    if not enabled():
        return False
    for extra in (OPENMP, ()) if torch_openmp() else ((),):
        before = openmp_runtimes()
        try:
            lib = ctypes.CDLL(str(build(source, name, (*flags, *extra))))
        except (OSError, subprocess.SubprocessError):  # no compiler, no OpenMP, a failed build
            continue
        if extra and not openmp_runtimes() <= before:
            continue  # a second runtime, not torch's (it stays mapped, idle: its threads start only when used)
        try:
            bound = bind(lib)
        except AttributeError:  # a missing symbol
            return False
        _threaded[name] = bool(extra)
        return bound
    return False


def threaded(name: str) -> bool:
    """Whether library ``name`` was built with OpenMP (its calls split their own work over torch's threads)."""
    return _threaded.get(name, False)


def parallel(name: str, call: Callable[[int, int, int], int], count: int, align: int = 1, big: bool = True) -> list[int]:
    """``call(start, stop, parts)`` over ``[0, count)``: with OpenMP one call, which splits itself over ``parts`` =
    torch's thread count (1 when not ``big``); else the range split over the pool, each part a call with parts=1.
    Returns the calls' return codes."""
    if threaded(name):
        return [call(0, count, torch.get_num_threads() if big else 1)]
    parts = split(count, align) if big else [(0, count)]
    return run([lambda a=a, b=b: call(a, b, 1) for a, b in parts])


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
