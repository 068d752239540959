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
                    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int64] * 5 + [ctypes.c_uint64, ctypes.c_int]
                    fn.restype = ctypes.c_int  # -1: the row counts do not fit (nothing written)
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


def _run(jobs) -> list:
    if len(jobs) == 1:
        return [jobs[0]()]
    return list(_executor().map(lambda job: job(), jobs))


def _check(out: torch.Tensor, x: torch.Tensor | None) -> None:
    """ValueError, before anything is drawn, for what every path would misread or broadcast silently."""
    if not out.is_floating_point():
        raise ValueError(f"masked_uniform_: out must be a floating-point tensor, got {out.dtype}")
    if not out.is_contiguous():
        raise ValueError(f"masked_uniform_: out must be contiguous, got strides {out.stride()} for shape {tuple(out.shape)}")
    if x is None:
        return
    if out.dim() < 2:
        raise ValueError(f"masked_uniform_: out must be (..., B, n) to be masked by x (B, n), got shape {tuple(out.shape)}")
    if x.shape != out.shape[-2:]:
        raise ValueError(
            f"masked_uniform_: x must be (B, n) = {tuple(out.shape[-2:])}, the last two dims of out "
            f"{tuple(out.shape)}; got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"masked_uniform_: x must be a floating-point tensor, got {x.dtype}")
    if x.device != out.device:
        raise ValueError(f"masked_uniform_: x is on {x.device} but out is on {out.device}")


def _fill_native(fn, out: torch.Tensor, xs: torch.Tensor, key: int, spikes: bool = False) -> None:
    """``out`` (..., B, n) <- u * ``xs`` (rows_x, n) by the C kernel, which sees raw pointers and row counts
    only: it reads ``xs`` row ``r % rows_x`` for row ``r`` of ``out``. So each thing it assumes is checked here."""
    for name, t in (("out", out), ("x", xs)):
        if t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous():
            raise ValueError(
                f"native mask kernel: {name} must be float32, contiguous, on the CPU; "
                f"got {t.dtype}, strides {t.stride()}, on {t.device}"
            )
    n = out.shape[-1] if out.dim() else 0
    rows, rows_x = out.numel() // max(n, 1), xs.shape[0] if xs.dim() == 2 else 0
    if n == 0 or rows_x == 0 or xs.shape[1] != n or rows % rows_x:
        raise ValueError(
            f"native mask kernel: x {tuple(xs.shape)} must be (rows_x, n) with n = {n} and rows_x dividing "
            f"the {rows} rows of out {tuple(out.shape)}"
        )
    ptr, xptr = out.data_ptr(), xs.data_ptr()
    codes = _run([lambda a=a, b=b: fn(ptr, xptr, n, rows, rows_x, a, b, key, int(spikes)) for a, b in _split(rows)])
    if any(codes):
        raise ValueError(f"native mask kernel refused n={n}, rows={rows}, rows_x={rows_x}")


def masked_uniform_(out: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
    """Fill ``out`` (..., B, n) in place with ``u * x`` (or ``u`` when x is None), u ~ U[0, 1). Returns ``out``.

    ``x`` is (B, n), broadcast over the leading dimensions of ``out``. ValueError, with nothing drawn, when
    ``out`` is not a contiguous floating-point tensor, or ``x`` is not a floating-point (B, n) on out's device.
    """
    _check(out, x)
    fn = native() if out.device.type == "cpu" and out.dtype == torch.float32 else False
    if out.numel() < MIN_PARALLEL or not (fn or out.device.type == "cpu"):
        out.uniform_()
        return out if x is None else out.mul_(x)
    if fn:
        n = out.shape[-1]
        xs = (torch.ones(1, n) if x is None else x.detach()).to(torch.float32).contiguous()
        key = int(torch.randint(0, 2**63 - 1, ()).item())  # from the global generator: seeded runs repeat
        _fill_native(fn, out, xs, key)
        return out
    seeds = torch.randint(0, 2**62, (CHUNKS,)).tolist()
    chunks = out.view(-1).chunk(CHUNKS)
    _run([lambda c=c, s=s: c.uniform_(generator=torch.Generator().manual_seed(s)) for c, s in zip(chunks, seeds)])
    return out if x is None else out.mul_(x)


def bernoulli_(out: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Fill ``out`` (..., B, n) in place with spikes: 1.0 where u < ``p`` (B, n), else 0.0, u ~ U[0, 1) fresh per element.
    The u are those ``uniform_`` would draw from the same generator state, so this equals ``(uniform_(out) < p)``."""
    _check(out, p)
    fn = native() if out.device.type == "cpu" and out.dtype == torch.float32 else False
    if out.numel() < MIN_PARALLEL or not fn:
        u = masked_uniform_(out)
        return torch.lt(u, p, out=out)  # a float out: 1.0 where true
    key = int(torch.randint(0, 2**63 - 1, ()).item())
    _fill_native(fn, out, p.detach().to(torch.float32).contiguous(), key, spikes=True)
    return out


def workspace(owner: object, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A scratch tensor for a model's random input, kept on ``owner`` and reused across calls: a fresh 400 MB
    allocation per batch costs its page faults again (as long as drawing the numbers). Autograd's version counter
    guards it: backward through a graph whose input was overwritten by a later call raises instead of using wrong
    numbers."""
    buf = owner.__dict__.get("_scratch")
    if buf is None or buf.shape != shape or buf.device != like.device or buf.dtype != like.dtype:
        buf = torch.empty(shape, device=like.device, dtype=like.dtype)
        owner.__dict__["_scratch"] = buf
    return buf


def uniform_(out: torch.Tensor) -> torch.Tensor:
    """Fill ``out`` with U[0, 1) in place. Returns ``out``."""
    return masked_uniform_(out)
