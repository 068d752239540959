"""The neuron recurrences of ``snn`` and ``lif`` fused in C on the CPU: one call per direction.

The torch loops (``models.snn.simulate_torch`` and ``NeuronRecurrence``'s backward, ``models.lif.simulate_torch``
and ``LIFRecurrence``'s backward) launch 5-10 small elementwise kernels per time step, each an OpenMP region; at
T = 128 that is over a thousand per layer and direction, slow and at the mercy of a busy machine. ``_neurons.c``
runs each neuron's whole recurrence over t in one pass instead, the B * N neurons split into chunks on threads
(models/native.py: built on first use, cached per CPU model, on torch's OpenMP threads where it can,
``SNNBENCH_NATIVE=0`` turns it off).

The forward kernels give bit-identical results to the torch loops (the same operations in the same order, built
without -ffast-math and without FMA contraction); the backward kernels match them to float32 rounding.

Each public function here returns None when the kernel does not apply (not float32, not contiguous, not on the
CPU, a graph to record, no compiler), and its ``*_refusal`` says why: models/dispatch.py, which registers these
kernels as the first backend of ``snn.*`` and ``lif.*`` (models/snn.py, models/lif.py), then runs the next one. The
``_call_*`` functions below them check every shape, stride, dtype and device a raw pointer assumes and raise ValueError
otherwise.
"""

from __future__ import annotations

import ctypes
import math
import threading
from pathlib import Path

import torch

from models import dispatch
from models import native as _build

SOURCE = Path(__file__).with_name("_neurons.c")
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-shared", "-fPIC")  # no FMA contraction: torch's rounding
MIN_PARALLEL = 1 << 16  # neuron-steps below which one thread is quicker than handing out work
ALIGN = 64  # chunk boundaries in neurons: whole cache lines of float32, one line of bool per thread
SURROGATES = {"membrane": 0, "atan": 1, "sigmoid": 2, "fast_sigmoid": 3}

_lock = threading.Lock()
_native: object = None  # None: not tried yet; False: unavailable; else a _Kernels


class _Kernels:
    def __init__(self, lib: ctypes.CDLL):
        p, i64, f32, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
        self.snn_forward = lib.snn_forward  # parts: the threads to split over; snn's carry: a state
        self.snn_forward.argtypes = [p, p, p, p, i64, i64, i64, i64, f32, f32, f32, f32, i32, i32, p]
        self.snn_backward = lib.snn_backward
        self.snn_backward.argtypes = [p, i64, p, p, i64, i64, i64, i64, f32, f32, i32, i32, p]
        self.lif_forward = lib.lif_forward
        self.lif_forward.argtypes = [p, i64, p, p, i64, i64, i64, i64, f32, f32, i32, i32]
        self.lif_backward = lib.lif_backward
        self.lif_backward.argtypes = [p, p, i64, p, p, i64, i64, i64, i64, f32, f32, i32, i32, f32, f32, i32]
        for fn in (self.snn_forward, self.snn_backward, self.lif_forward, self.lif_backward):
            fn.restype = ctypes.c_int  # -1: the counts do not fit (nothing written)


def native():
    """The compiled kernels, or False where they cannot be built (or ``SNNBENCH_NATIVE=0``)."""
    global _native
    with _lock:
        if _native is None:
            _native = _build.load(SOURCE, "neurons", FLAGS, _Kernels)
        return _native


PROVIDER = dispatch.c_library("neurons", lambda: native())  # the backend of snn.* and lif.* on the CPU: dispatch


def name() -> str:
    """What runs the neuron recurrences on the CPU, for a log line or a table."""
    return "native (models/_neurons.c)" if native() else "torch, one step at a time"


def _refusal(*tensors: torch.Tensor | None) -> str | None:
    """Why the kernels cannot take these tensors as they are (then the caller's torch loop runs), or None."""
    why = dispatch.tensor_refusal(tensors, ("cpu",), (torch.float32,))
    return why or (None if native() else "the C kernels are not built")


def _gradient_refusal(grad: torch.Tensor) -> str | None:
    """Why the kernels cannot read an incoming gradient: not float32 on the CPU, or a graph to record (a backward with
    ``create_graph``: only torch's operations record one). Any strides do: ``_as_gradient`` makes them fit."""
    return dispatch.tensor_refusal((grad,), ("cpu",), (torch.float32,), contiguous=False)


def _as_gradient(grad: torch.Tensor) -> torch.Tensor:
    """An incoming gradient as the kernels read it: contiguous, or one row expanded over t as autograd passes the
    gradient of a sum over t."""
    if grad.is_contiguous() or (grad.stride(0) == 0 and grad[0].is_contiguous()):
        return grad
    return grad.contiguous()


def _pointer(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _check(what: str, name: str, t: torch.Tensor, shape: tuple[int, ...], dtype=torch.float32, over_t: bool = False):
    """ValueError unless ``t`` is ``shape``, ``dtype``, contiguous and on the CPU; ``over_t``: a (T, ...) tensor may
    also be one row expanded over its first dimension (stride 0). Returns the t-stride in elements."""
    if t.dtype != dtype or t.device.type != "cpu":
        raise ValueError(f"{what}: {name} must be {dtype} on the CPU, got {t.dtype} on {t.device}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{what}: {name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    rows = math.prod(shape[1:]) if len(shape) else 1
    if t.is_contiguous():
        return rows
    if over_t and t.stride(0) == 0 and t[0].is_contiguous():
        return 0
    raise ValueError(f"{what}: {name} must be contiguous, got strides {t.stride()} for shape {tuple(t.shape)}")


def _run(what: str, call, T: int, M: int) -> None:
    """``call(start, stop, parts)`` over the M neurons, split over threads when there is enough work."""
    codes = _build.parallel("neurons", call, M, ALIGN, big=T * M >= MIN_PARALLEL)
    if any(codes):
        raise ValueError(f"{what}: the C kernel refused T={T}, M={M}")


# ---- snn ----


def _call_snn_forward(fn, current, states, outputs, gates, decay, threshold, penalty, proportional, carry=None) -> None:
    """``current`` (T, B, N) -> ``states``, ``outputs`` (float32) and ``gates`` (bool), each (T, B, N) or None.
    ``carry`` (B, N) float32: the state to start from, replaced by the state after the last step (None: from 0)."""
    what = "native snn forward"
    if current.dim() != 3:
        raise ValueError(f"{what}: current must be (T, B, N), got shape {tuple(current.shape)}")
    _check(what, "current", current, current.shape)
    for name_, t, dtype in (("states", states, torch.float32), ("outputs", outputs, torch.float32), ("gates", gates, torch.bool)):
        if t is not None:
            _check(what, name_, t, current.shape, dtype)
    if carry is not None:
        _check(what, "carry", carry, current.shape[1:])
    T, M = current.shape[0], math.prod(current.shape[1:])
    args = [_pointer(t) for t in (current, states, outputs, gates)]
    ratio = penalty / threshold  # rounded to float32 by ctypes, as torch rounds the scalar
    p = _pointer(carry)
    _run(what, lambda a, b, k: fn(*args, T, M, a, b, decay, threshold, penalty, ratio, int(proportional), k, p), T, M)


def snn_steps(current, decay: float, threshold: float, penalty: float, proportional: bool, carry: torch.Tensor,
              states=None, outputs=None, gates=None) -> None:  # fmt: skip
    """Steps of ``models.snn.simulate`` by the C kernel into the buffers given (each (T, B, N) or None), from the
    state in ``carry`` (B, N), which receives the state after them: a sequence run a chunk of steps at a time.
    The C kernel only (``native()``); ValueError for tensors it cannot take."""
    _call_snn_forward(native().snn_forward, current, states, outputs, gates, decay, threshold, penalty, proportional, carry)


def snn_forward_refusal(current, decay: float, threshold: float, penalty: float, proportional: bool, keep: str,
                        gates=None) -> str | None:  # fmt: skip
    """Why ``snn_forward`` does not take these arguments, or None."""
    if current.dim() != 3:
        return "not a (T, B, N) sequence"
    if gates is not None and not gates.is_contiguous():
        return "gates not contiguous"
    return _refusal(current)


def snn_forward(current, decay: float, threshold: float, penalty: float, proportional: bool, keep: str, gates=None):
    """``models.snn.simulate`` by the C kernel: ``(states, outputs)``, or None where it does not apply."""
    if snn_forward_refusal(current, decay, threshold, penalty, proportional, keep, gates) is not None:
        return None
    states = torch.empty_like(current) if keep in ("states", "both") else None
    outputs = torch.empty_like(current) if keep in ("outputs", "both") else None
    _call_snn_forward(native().snn_forward, current, states, outputs, gates, decay, threshold, penalty, proportional)
    return states, outputs


def _call_snn_backward(fn, grad_kept, gates, grad_current, decay, slope, states: bool, carry=None) -> None:
    """``carry`` (B, N) float32: dL/dh of the step after these (None: 0), replaced by dL/dh of their first step."""
    what = "native snn backward"
    if gates.dim() != 3:
        raise ValueError(f"{what}: gates must be (T, B, N), got shape {tuple(gates.shape)}")
    _check(what, "gates", gates, gates.shape, torch.bool)
    tstride = _check(what, "grad", grad_kept, gates.shape, over_t=True)
    _check(what, "grad_current", grad_current, gates.shape)
    if carry is not None:
        _check(what, "carry", carry, gates.shape[1:])
    T, M = gates.shape[0], math.prod(gates.shape[1:])
    args = (grad_kept.data_ptr(), tstride, gates.data_ptr(), grad_current.data_ptr())
    p = _pointer(carry)
    _run(what, lambda a, b, k: fn(*args, T, M, a, b, decay, slope, int(states), k, p), T, M)


def snn_steps_backward(grad_kept, gates, grad_current, decay: float, slope: float, states: bool,
                       carry: torch.Tensor) -> None:  # fmt: skip
    """The backward of ``snn_steps`` for a chunk of steps, the last chunk first: dL/dI into ``grad_current``, with
    ``carry`` (B, N) dL/dh of the step after the chunk on the way in and of its first step on the way out."""
    _call_snn_backward(native().snn_backward, grad_kept, gates, grad_current, decay, slope, states, carry)


def snn_backward_refusal(grad_kept, gates, decay: float, slope: float, states: bool) -> str | None:
    """Why ``snn_backward`` does not take these arguments, or None."""
    if gates.device.type != "cpu" or gates.dtype != torch.bool or gates.dim() != 3:
        return "gates not a (T, B, N) bool tensor on the CPU"
    return _gradient_refusal(grad_kept) or (None if native() else "the C kernels are not built")


def snn_backward(grad_kept, gates, decay: float, slope: float, states: bool):
    """``NeuronRecurrence``'s backward by the C kernel: dL/dI (T, B, N), or None where it does not apply."""
    if snn_backward_refusal(grad_kept, gates, decay, slope, states) is not None:
        return None
    grad_kept = _as_gradient(grad_kept)
    grad_current = torch.empty(gates.shape, dtype=torch.float32)
    _call_snn_backward(native().snn_backward, grad_kept, gates.contiguous(), grad_current, decay, slope, states)
    return grad_current


# ---- lif ----


def _call_lif_forward(fn, current, u, spikes, beta, threshold, zero) -> None:
    """``current`` (T, B, N), or (B, N) held for every step, -> ``u`` and ``spikes`` (T, B, N), spikes maybe None."""
    what = "native lif forward"
    if u.dim() != 3:
        raise ValueError(f"{what}: u must be (T, B, N), got shape {tuple(u.shape)}")
    _check(what, "u", u, u.shape)
    held = current.dim() == 2
    tstride = _check(what, "current", current, u.shape[1:] if held else u.shape)
    if spikes is not None:
        _check(what, "spikes", spikes, u.shape)
    T, M = u.shape[0], math.prod(u.shape[1:])
    args = (current.data_ptr(), 0 if held else tstride, u.data_ptr(), _pointer(spikes))
    _run(what, lambda a, b, k: fn(*args, T, M, a, b, beta, threshold, int(zero), k), T, M)


def lif_forward_refusal(current, steps: int, beta: float, threshold: float, zero: bool, spikes: bool = False) -> str | None:
    """Why ``lif_forward`` does not take these arguments, or None."""
    if current.dim() not in (2, 3):
        return "not a (T, B, N) sequence or a (B, N) current held"
    if current.dim() == 3 and current.shape[0] != steps:
        return f"{current.shape[0]} steps of current for {steps} steps"
    return _refusal(current)


def lif_forward(current, steps: int, beta: float, threshold: float, zero: bool, spikes: bool = False):
    """``models.lif.simulate`` by the C kernel, and the spikes when asked: ``(u, spikes or None)``, or None where it
    does not apply. ``current`` is (T, B, N) with T = ``steps``, or (B, N) held."""
    if lif_forward_refusal(current, steps, beta, threshold, zero) is not None:
        return None
    u = current.new_empty(steps, *current.shape[-2:])
    s = torch.empty_like(u) if spikes else None
    _call_lif_forward(native().lif_forward, current, u, s, beta, threshold, zero)
    return u, s


def surrogate_constants(surrogate: str, sharpness: float) -> tuple[float, float]:
    """The kernel's c1, c2 (rounded to float32 as torch rounds its scalars): see lif_reference.surrogate_grad."""
    if surrogate == "atan":
        return math.pi / 2 * sharpness, sharpness / 2
    return sharpness, 0.0


def _call_lif_backward(fn, u, grad_out, grad, grad_sum, beta, threshold, zero, surrogate: str, sharpness) -> None:
    what = "native lif backward"
    if u.dim() != 3:
        raise ValueError(f"{what}: u must be (T, B, N), got shape {tuple(u.shape)}")
    if surrogate not in SURROGATES:
        raise ValueError(f"{what}: surrogate must be one of {', '.join(SURROGATES)}, got {surrogate!r}")
    if (grad is None) == (grad_sum is None):
        raise ValueError(f"{what}: give grad (T, B, N) or grad_sum (B, N), one of them")
    _check(what, "u", u, u.shape)
    tstride = _check(what, "grad_out", grad_out, u.shape, over_t=True)
    if grad is not None:
        _check(what, "grad", grad, u.shape)
    else:
        _check(what, "grad_sum", grad_sum, u.shape[1:])
    T, M = u.shape[0], math.prod(u.shape[1:])
    c1, c2 = surrogate_constants(surrogate, sharpness)
    args = (u.data_ptr(), grad_out.data_ptr(), tstride, _pointer(grad), _pointer(grad_sum))
    _run(what, lambda a, b, k: fn(*args, T, M, a, b, beta, threshold, int(zero), SURROGATES[surrogate], c1, c2, k), T, M)


def lif_backward_refusal(u, grad_out, *args) -> str | None:
    """Why ``lif_backward`` does not take these arguments, or None."""
    if u.dim() != 3:
        return "not a (T, B, N) sequence"
    return _refusal(u) or _gradient_refusal(grad_out)


def lif_backward(u, grad_out, held: bool, beta: float, threshold: float, zero: bool, surrogate: str, sharpness: float,
                 out: str):  # fmt: skip
    """``LIFRecurrence``'s backward by the C kernel: dL/dI, (T, B, N) or summed over t for a held current (B, N);
    None where it does not apply. ``out`` "membrane": grad_out is dL/dU, else dL/dS (through the surrogate)."""
    if lif_backward_refusal(u, grad_out) is not None:
        return None
    grad_out = _as_gradient(grad_out)
    grad = None if held else torch.empty_like(u)
    grad_sum = torch.empty(u.shape[1:], dtype=torch.float32) if held else None
    kind = "membrane" if out == "membrane" else surrogate
    _call_lif_backward(native().lif_backward, u, grad_out, grad, grad_sum, beta, threshold, zero, kind, sharpness)
    return grad_sum if held else grad
