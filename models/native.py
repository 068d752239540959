"""The models' C code: built on first use, cached per CPU model, run on a shared pool of threads.

``models/_masks.c`` (the SNN's random masks, models/masks.py) and ``models/_neurons.c`` (the neuron
recurrences, models/fused.py) are compiled with the system C compiler (``$CC``, else ``cc``) the first
time they are needed, with ``-march=native``, and kept in ``$XDG_CACHE_HOME/snnbench`` (default
``~/.cache/snnbench``) under a name that hashes the source, the flags and the CPU model: a cache shared
by machines of different CPUs never hands one a library built for the other. ``SNNBENCH_NATIVE=0``
turns all of them off; without a compiler each falls back to its torch path, and ``failure(name)`` says why (the
compiler's first error line, ``cc not found``, ``SNNBENCH_NATIVE=0``): models/dispatch.py reports it, and bench.run
says so before it trains.

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
_failures: dict[str, str] = {}  # by library name: why it is not loaded (set by the last load that failed)
_pooled: dict[str, str] = {}  # by library name: why the plain build runs although torch uses OpenMP
_RUNTIMES = re.compile(r"/lib(gomp|iomp5|omp)[^/]*\.so[^/]*$")


def enabled() -> bool:
    """False when ``SNNBENCH_NATIVE=0``: every C kernel is off, their torch paths run."""
    return os.environ.get("SNNBENCH_NATIVE", "1") != "0"


def compiler() -> str:
    """The C compiler the builds run: ``$CC``, else ``cc``."""
    return os.environ.get("CC") or "cc"


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
            subprocess.run([compiler(), *flags, "-o", tmp, str(source)], check=True, capture_output=True, timeout=120)
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
    False where native code is off or the library cannot be built or loaded (``failure(name)`` then says why). Built
    with OpenMP first where torch uses it (``threaded(name)`` says which build it was, ``pooled(name)`` why not
    OpenMP); a build that brings a runtime of its own is not kept."""
    if not enabled():
        _failures[name] = "SNNBENCH_NATIVE=0"
        return False
    why_not_openmp = None
    for extra in (OPENMP, ()) if torch_openmp() else ((),):
        before = openmp_runtimes()
        try:
            lib = ctypes.CDLL(str(build(source, name, (*flags, *extra))))
        except (OSError, subprocess.SubprocessError) as exc:  # no compiler, no OpenMP, a failed build
            _failures[name] = why_not_openmp = why(exc)
            continue
        if extra and not openmp_runtimes() <= before:
            why_not_openmp = "its -fopenmp build loads an OpenMP runtime other than torch's"
            continue  # a second runtime, not torch's (it stays mapped, idle: its threads start only when used)
        try:
            bound = bind(lib)
        except AttributeError as exc:  # a missing symbol
            _failures[name] = f"the built library lacks a function ({exc})"
            return False
        _threaded[name] = bool(extra)
        _failures.pop(name, None)
        if not extra and why_not_openmp:
            _pooled[name] = why_not_openmp
        return bound
    return False


def why(exc: BaseException) -> str:
    """A failed build or load in one line: the compiler's first error line, ``cc not found``, its exit status."""
    cc = compiler()
    if isinstance(exc, FileNotFoundError) and exc.filename == cc:
        return f"no C compiler: {cc} not found"
    if isinstance(exc, PermissionError) and exc.filename == cc:
        return f"no C compiler: {cc} cannot be run (permission denied)"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"the C build took more than {exc.timeout:g} s"
    if isinstance(exc, subprocess.CalledProcessError):
        text = (exc.stderr or b"").decode(errors="replace") + (exc.stdout or b"").decode(errors="replace")
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        return f"the C build failed: {first}" if first else f"the C build failed: {cc} exited with status {exc.returncode}"
    return f"the C library cannot be built or loaded: {' '.join(str(exc).split())}"


def failure(name: str) -> str | None:
    """Why library ``name`` is not loaded (set by its last ``load`` that failed), or None."""
    return _failures.get(name)


def pooled(name: str) -> str | None:
    """Why library ``name`` runs on the thread pool although torch uses OpenMP (its -fopenmp build failed or would
    load a second runtime), or None: built with OpenMP, or torch's parallel backend is not OpenMP (then the pool is
    the design, not a fallback)."""
    return None if threaded(name) else _pooled.get(name)


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
