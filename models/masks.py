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
under ``torch.manual_seed`` whatever the thread count. The two draw other numbers: a run without
the C generator has other masks, so other accuracies. models/dispatch.py makes the choice (the
kernels ``masks.uniform``, ``masks.spikes`` and the C-only ``masks.rows`` are registered here) and
says which ran and why; below ``MIN_PARALLEL`` numbers, and on a GPU, ``torch.rand``'s generator
draws them whatever is built.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import torch

from models import dispatch
from models import native as _build
from models.native import cpu_model as cpu_model  # bench.devices and run.json name the CPU from here

CHUNKS = 8  # fixed, so the numbers drawn do not depend on how many threads fill them
MIN_PARALLEL = 1 << 20  # below a million numbers one thread is quicker than handing out work
SOURCE = Path(__file__).with_name("_masks.c")

FLAGS = ("-O3", "-march=native", "-shared", "-fPIC")

_lock = threading.Lock()
_native: object = None  # None: not tried yet; False: unavailable; else the C function


def _bind(lib: ctypes.CDLL):
    fn = lib.masked_uniform
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int64] * 5 + [ctypes.c_uint64, ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int  # -1: the row counts do not fit (nothing written)
    return fn


def native():
    """The compiled ``masked_uniform`` function, or False where it cannot be built (models/native.py: the build,
    its cache and ``SNNBENCH_NATIVE=0``)."""
    global _native
    with _lock:
        if _native is None:
            _native = _build.load(SOURCE, "masks", FLAGS, _bind)
        return _native


PROVIDER = dispatch.c_library("masks", lambda: native())  # the first backend of the masks' kernels: dispatch


def generator_name(device: str | torch.device = "cpu") -> str:
    """Which generator draws the masks (at least MIN_PARALLEL numbers of float32) on ``device``: recorded in run.json
    (``environment.cpu_mask_generator``) and in ``models.dispatch.provenance``'s ``mask_generator``. Another generator
    draws other numbers, so a run's accuracies depend on it."""
    if torch.device(device).type != "cpu":
        return "torch.rand on the device"
    return "native splitmix64 (models/_masks.c)" if native() else f"torch, {CHUNKS} chunks on threads"


_run = _build.run


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


def _fill_native(fn, out: torch.Tensor, xs: torch.Tensor, key: int, spikes: bool = False, first_row: int = 0) -> None:
    """``out`` (..., B, n) <- u * ``xs`` (rows_x, n) by the C kernel, which sees raw pointers and row counts
    only: it reads ``xs`` row ``r % rows_x`` for row ``r`` of ``out``. So each thing it assumes is checked here."""
    bf16 = out.dtype == torch.bfloat16 and not spikes  # masks written in bfloat16 directly
    for name, t in (("out", out), ("x", xs)):
        ok = t.dtype == torch.float32 or (t is out and bf16)
        if not ok or t.device.type != "cpu" or not t.is_contiguous():
            kinds = "float32 (out: or bfloat16 masks)" if name == "out" else "float32"
            raise ValueError(
                f"native mask kernel: {name} must be {kinds}, contiguous, on the CPU; "
                f"got {t.dtype}, strides {t.stride()}, on {t.device}"
            )
    n = out.shape[-1] if out.dim() else 0
    rows, rows_x = out.numel() // max(n, 1), xs.shape[0] if xs.dim() == 2 else 0
    if n == 0 or rows_x == 0 or xs.shape[1] != n or rows % rows_x:
        raise ValueError(
            f"native mask kernel: x {tuple(xs.shape)} must be (rows_x, n) with n = {n} and rows_x dividing "
            f"the {rows} rows of out {tuple(out.shape)}"
        )
    if first_row < 0 or first_row % rows_x:
        raise ValueError(f"native mask kernel: first_row {first_row} must be a multiple >= 0 of x's {rows_x} rows")
    # ``out`` holds rows first_row .. first_row + rows of a virtual (first_row + rows, n) tensor: the kernel writes row r
    # at base + r n, so base is out's address less first_row rows (never written: the kernel writes [a, b) only)
    ptr, xptr, total = out.data_ptr() - first_row * n * out.element_size(), xs.data_ptr(), first_row + rows

    def call(a: int, b: int, parts: int) -> int:
        return fn(ptr, xptr, n, total, rows_x, first_row + a, first_row + b, key, 2 if bf16 else int(spikes), parts)

    if any(_build.parallel("masks", call, rows)):
        raise ValueError(f"native mask kernel refused n={n}, rows={rows}, rows_x={rows_x}")


def masked_uniform_(out: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
    """Fill ``out`` (..., B, n) in place with ``u * x`` (or ``u`` when x is None), u ~ U[0, 1). Returns ``out``.

    ``x`` is (B, n), broadcast over the leading dimensions of ``out``. ValueError, with nothing drawn, when
    ``out`` is not a contiguous floating-point tensor, or ``x`` is not a floating-point (B, n) on out's device.
    """
    _check(out, x)
    return dispatch.call("masks.uniform", out, x)


def _native_refusal(out: torch.Tensor, x: torch.Tensor | None = None) -> str | None:
    """Why the C generator does not fill ``out`` (the dispatcher has checked the device and the build), or None."""
    return str(out.dtype).removeprefix("torch.") if out.dtype != torch.float32 else _small(out)


def _small(out: torch.Tensor, x: torch.Tensor | None = None) -> str | None:
    """Fewer numbers than are worth handing out to threads: torch.rand's generator draws them."""
    return f"{out.numel()} numbers, below MIN_PARALLEL" if out.numel() < MIN_PARALLEL else None


def _uniform_native(out: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
    n = out.shape[-1]
    xs = (torch.ones(1, n) if x is None else x.detach()).to(torch.float32).contiguous()
    _fill_native(native(), out, xs, draw_key())
    return out


def _uniform_threads(out: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
    seeds = torch.randint(0, 2**62, (CHUNKS,)).tolist()
    chunks = out.view(-1).chunk(CHUNKS)
    _run([lambda c=c, s=s: c.uniform_(generator=torch.Generator().manual_seed(s)) for c, s in zip(chunks, seeds)])
    return out if x is None else out.mul_(x)


def _uniform_torch(out: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
    out.uniform_()
    return out if x is None else out.mul_(x)


def bernoulli_(out: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Fill ``out`` (..., B, n) in place with spikes: 1.0 where u < ``p`` (B, n), else 0.0, u ~ U[0, 1) fresh per element.
    The u are those ``uniform_`` would draw from the same generator state, so this equals ``(uniform_(out) < p)``."""
    _check(out, p)
    return dispatch.call("masks.spikes", out, p)


def _spikes_native(out: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    _fill_native(native(), out, p.detach().to(torch.float32).contiguous(), draw_key(), spikes=True)
    return out


def _spikes_drawn(out: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    u = masked_uniform_(out)
    return torch.lt(u, p, out=out)  # a float out: 1.0 where true


def draw_key() -> int:
    """A key of the counter-based generator, from the global generator: seeded runs repeat."""
    return int(torch.randint(0, 2**63 - 1, ()).item())


def masked_uniform_rows_(out: torch.Tensor, x: torch.Tensor, key: int, first_row: int) -> torch.Tensor:
    """Fill ``out`` (..., B, n) with ``u * x`` where the u are rows ``first_row`` .. of the numbers of ``key``: exactly
    those rows of a tensor that the C generator filled with ``key`` from row 0 (so a chunk of steps can be drawn
    again, bit for bit). ``first_row`` is a multiple of B. ``out`` float32, or bfloat16: the float32 numbers rounded
    as ``.to(torch.bfloat16)`` rounds them. The C generator only (``native()``); RuntimeError without."""
    _check(out, x)
    fn = native()
    if not fn:
        raise RuntimeError("masked_uniform_rows_ needs the C generator (models/_masks.c), which is not built here")
    _fill_native(fn, out, x.detach().to(torch.float32).contiguous(), key, first_row=first_row)
    return out


# other generators draw other numbers: a fallback changes the results (RESULTS)
dispatch.register("masks.uniform", "masks", dispatch.RESULTS, dispatch.Backend(PROVIDER, _uniform_native, _native_refusal),
                  dispatch.Backend(dispatch.TORCH_THREADS, _uniform_threads, _small),
                  dispatch.Backend(dispatch.TORCH, _uniform_torch))  # fmt: skip
dispatch.register("masks.spikes", "masks", dispatch.RESULTS, dispatch.Backend(PROVIDER, _spikes_native, _native_refusal),
                  dispatch.Backend(dispatch.TORCH_THREADS, _spikes_drawn, _small),
                  dispatch.Backend(dispatch.TORCH, _spikes_drawn))  # fmt: skip
# the C generator's rows drawn again (models/masked_linear.py, models/snn_chunked.py): C only, its callers ask ``ready``
dispatch.register("masks.rows", "masks", dispatch.RESULTS, dispatch.Backend(PROVIDER, masked_uniform_rows_))
dispatch.field("mask_generator", generator_name)


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
