"""Random input masks u ~ U[0, 1) for the SNN, drawn fast on every device.

On a GPU, ``torch.rand`` on the device is already fast. On the CPU, PyTorch's uniform
generator runs on one thread at about 3 ns a number and the SNN needs 100 million
numbers per batch of 1000 at T = 128: as much time as its matmuls. So on the CPU:

1. ``native``: ``_masks.c``, a counter-based generator (splitmix64 of the element's
   index and a key) that writes ``u * x`` in one pass, vectorized, on a pool of threads
   (ctypes releases the GIL). It is compiled on first use with the system C compiler and
   cached; set ``SNNBENCH_NATIVE=0`` to turn it off.
2. ``torch-threads``: without a compiler, a fixed number of chunks, each filled by its own
   ``torch.Generator`` on the same pool.

Either way the key or the chunk seeds come from the global generator, so a run repeats
under ``torch.manual_seed`` whatever the thread count.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

CHUNKS = 8  # fixed, so the numbers drawn do not depend on how many threads fill them
MIN_PARALLEL = 1 << 20  # below a million numbers one thread is quicker than handing out work
SOURCE = Path(__file__).with_name("_masks.c")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_native: object = None  # None: not tried yet; False: unavailable; else the C function


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads()), thread_name_prefix="masks")
        return _pool


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


def _compile() -> Path:
    flags = ["-O3", "-march=native", "-shared", "-fPIC"]
    tag = hashlib.sha256(SOURCE.read_bytes() + " ".join(flags).encode() + cpu_model().encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "snnbench"
    lib = cache / f"masks-{tag}.so"
    if not lib.exists():
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
        os.close(fd)
        compiler = os.environ.get("CC", "cc")
        subprocess.run([compiler, *flags, "-o", tmp, str(SOURCE)], check=True, capture_output=True, timeout=120)
        os.replace(tmp, lib)  # atomic: two processes compiling at once both end with a whole file
    return lib


def native():
    """The compiled ``masked_uniform`` function, or False where it cannot be built."""
    global _native
    with _lock:
        if _native is None:
            _native = False
            if os.environ.get("SNNBENCH_NATIVE", "1") != "0":
                try:
                    fn = ctypes.CDLL(str(_compile())).masked_uniform
                    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int64] * 4 + [ctypes.c_uint64]
                    fn.restype = None
                    _native = fn
                except (OSError, subprocess.SubprocessError):
                    pass
        return _native


def generator_name(device: str | torch.device = "cpu") -> str:
    """Which generator draws the masks on ``device``, for run.json and the speed table."""
    if torch.device(device).type != "cpu":
        return "torch.rand on the device"
    return "native splitmix64 (models/_masks.c)" if native() else f"torch, {CHUNKS} chunks on threads"


def _split(rows: int) -> list[tuple[int, int]]:
    parts = max(1, min(torch.get_num_threads(), rows))
    cuts = [rows * i // parts for i in range(parts + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def _run(jobs) -> None:
    if len(jobs) == 1:
        jobs[0]()
    else:
        list(_executor().map(lambda job: job(), jobs))


def masked_uniform_(out: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
    """Fill ``out`` (..., B, n) in place with ``u * x`` (or ``u`` when x is None), u ~ U[0, 1). Returns ``out``.

    ``x`` is (B, n), broadcast over the leading dimensions of ``out``.
    """
    fn = native() if out.device.type == "cpu" and out.dtype == torch.float32 and out.is_contiguous() else False
    if out.numel() < MIN_PARALLEL or not (fn or out.device.type == "cpu"):
        out.uniform_()
        return out if x is None else out.mul_(x)
    if fn:
        n = out.shape[-1]
        xs = (torch.ones(1, n) if x is None else x.detach()).to(torch.float32).contiguous()
        key = int(torch.randint(0, 2**63 - 1, ()).item())  # from the global generator: seeded runs repeat
        ptr, xptr, rows_x = out.data_ptr(), xs.data_ptr(), xs.numel() // n
        _run([lambda a=a, b=b: fn(ptr, xptr, n, rows_x, a, b, key) for a, b in _split(out.numel() // n)])
        return out
    seeds = torch.randint(0, 2**62, (CHUNKS,)).tolist()
    chunks = out.view(-1).chunk(CHUNKS)
    _run([lambda c=c, s=s: c.uniform_(generator=torch.Generator().manual_seed(s)) for c, s in zip(chunks, seeds)])
    return out if x is None else out.mul_(x)


def uniform_(out: torch.Tensor) -> torch.Tensor:
    """Fill ``out`` with U[0, 1) in place. Returns ``out``."""
    return masked_uniform_(out)
