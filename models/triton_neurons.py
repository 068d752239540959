"""The neuron recurrences of ``snn`` and ``lif`` on a GPU: a Triton kernel each instead of a kernel per operation and
step (``snn`` both directions; ``lif`` forward, its backward already a GEMM where the reset subtracts).

On CUDA the torch loops (``models.snn.simulate_torch``, ``NeuronRecurrence.backward_torch``) launch 5-7 elementwise
kernels per time step: at T = 128, two layers, forward and backward, some three thousand launches per training step
for 100 hidden neurons, and the GPU waits on the launches. Here each neuron's whole recurrence over t runs in one
program of one kernel, as ``_neurons.c`` does on the CPU: one launch per layer and direction.

The forward kernel does the torch loop's operations in its order with FMA contraction off (``enable_fp_fusion``), so
it gives the same bits; the backward kernel matches the torch loop to float32 rounding.

Each public function returns None where its kernel does not apply (no Triton, not float32 on a CUDA device, a graph
to record), and its ``*_refusal`` says why: models/dispatch.py, where models/snn.py and models/lif.py register these
kernels after the C ones, then runs the torch loop. ``TRITON_INTERPRET=1`` (set before the first import of Triton)
runs the kernels in Triton's interpreter on CPU tensors: how the tests check them on a machine without a GPU.
"""

from __future__ import annotations

import math
import os

import torch

from models import dispatch

try:
    import triton
    import triton.language as tl
except ImportError:  # Triton ships with torch's CUDA wheels on Linux; without it the torch loops run
    triton = None

BLOCK = 128  # neurons per program: one warp-sized group of loads per step, enough programs to fill a GPU at B 1000
DISABLE = "SNNBENCH_TRITON"  # =0: never use these kernels (the torch loops run)


def interpreted() -> bool:
    """Whether Triton runs its interpreter (``TRITON_INTERPRET=1``): then the kernels take CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def unready() -> str | None:
    """Why the kernels cannot run in this process (None: they can, on a CUDA device or under the interpreter)."""
    if triton is None:
        return "triton not installed"
    if os.environ.get(DISABLE, "1") == "0":
        return f"{DISABLE}=0"
    return None


def _devices() -> tuple[str, ...]:
    return ("cuda", "cpu") if interpreted() else ("cuda",)


PROVIDER = dispatch.Provider("triton", lambda device: device in _devices(), unready)  # snn.*, lif.forward on CUDA


def available() -> bool:
    """Whether the kernels can run here at all: Triton imports, not turned off, and a GPU (or the interpreter)."""
    return unready() is None and (interpreted() or torch.cuda.is_available())


def refusal(*tensors: torch.Tensor | None) -> str | None:
    """Why the kernels do not take these tensors (None: they do): they take float32 (or bool), on CUDA (on the CPU too
    under the interpreter), and no graph to record (only torch's operations record one)."""
    if not available():
        return unready() or "no CUDA device"
    return dispatch.tensor_refusal(tensors, _devices(), (torch.float32, torch.bool), contiguous=False)


def applies(*tensors: torch.Tensor | None) -> bool:
    """Whether the kernels take these tensors (``refusal`` says why not)."""
    return refusal(*tensors) is None


if triton is not None:

    @triton.jit
    def _snn_forward(current, states, outputs, gates, T, M, decay, threshold, penalty, ratio,
                     PROPORTIONAL: tl.constexpr, KEEP_STATES: tl.constexpr, KEEP_OUTPUTS: tl.constexpr,
                     KEEP_GATES: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
        """SPEC.md's recurrence for BLOCK neurons over all T steps; see models.snn.NeuronRecurrence."""
        j = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        live = j < M
        v = tl.zeros([BLOCK], dtype=tl.float32)
        for t in range(T):
            at = tl.cast(t, tl.int64) * M + j  # in 64 bits: T * M may pass 2**31
            h = v * decay  # torch.mul(v, decay, out=h)
            h = h + tl.load(current + at, mask=live, other=0.0)  # .add_(I_t)
            o = h - threshold
            o = tl.where(o < 0.0, 0.0, o)  # clamp_min_(0): NaN stays NaN
            if PROPORTIONAL:
                r = h * ratio  # (p / theta) h
            else:
                r = o + penalty  # p + o
            v = tl.where(o > 0.0, h - r, h)  # where(g, h - r, h)
            if KEEP_STATES:
                tl.store(states + at, v, mask=live)
            if KEEP_OUTPUTS:
                tl.store(outputs + at, o, mask=live)
            if KEEP_GATES:
                tl.store(gates + at, (o > 0.0).to(tl.int8), mask=live)

    @triton.jit
    def _snn_backward(grad, grad_tstride, gates, grad_current, T, M, decay, slope,
                      STATES: tl.constexpr, HAS_SLOPE: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
        """From a = dL/dh_{T+1} = 0 down to t = 1: dv = d a (+ dL/dv_t when the states were kept);
        a = g_t ? (what flows through o_t and, unless the reset cut it, v_t) : dv; dL/dI_t = a."""
        j = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        live = j < M
        a = tl.zeros([BLOCK], dtype=tl.float32)
        for k in range(T):
            t = tl.cast(T - 1 - k, tl.int64)
            at = t * M + j
            gk = tl.load(grad + t * grad_tstride + j, mask=live, other=0.0)
            g = tl.load(gates + at, mask=live, other=0) != 0
            dv = a * decay
            if STATES:
                dv = dv + gk
                if HAS_SLOPE:
                    fired = dv * slope
                else:
                    fired = tl.zeros([BLOCK], dtype=tl.float32)
            else:
                if HAS_SLOPE:
                    fired = gk + dv * slope
                else:
                    fired = gk
            a = tl.where(g, fired, dv)
            tl.store(grad_current + at, a, mask=live)

    @triton.jit
    def _lif_forward(current, current_tstride, u, spikes, T, M, beta, threshold,
                     ZERO: tl.constexpr, KEEP_SPIKES: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
        """lif's recurrence for BLOCK neurons over all T steps; see models.lif.LIFRecurrence. R_{t-1} is
        ``prev > threshold``, and ``x - threshold`` where it fired is ``sub_(R, alpha=threshold)`` with R in {0, 1}."""
        j = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        live = j < M
        prev = tl.zeros([BLOCK], dtype=tl.float32)
        for t in range(T):
            t64 = tl.cast(t, tl.int64)
            fired = prev > threshold  # R_{t-1}
            x = prev * beta  # torch.mul(prev, beta)
            if ZERO:
                x = tl.where(fired, 0.0, x)  # masked_fill_(R, 0)
                x = x + tl.load(current + t64 * current_tstride + j, mask=live, other=0.0)
            else:
                x = x + tl.load(current + t64 * current_tstride + j, mask=live, other=0.0)
                x = tl.where(fired, x - threshold, x)
            prev = x
            tl.store(u + t64 * M + j, x, mask=live)
            if KEEP_SPIKES:
                tl.store(spikes + t64 * M + j, tl.where(x > threshold, 1.0, 0.0), mask=live)


def _grid(M: int) -> tuple[int]:
    return (triton.cdiv(M, BLOCK),)


def _bytes_view(gates: torch.Tensor) -> torch.Tensor:
    """A bool tensor as int8 (the same bytes): the kernels store and load gates as bytes."""
    return gates.view(torch.int8)


def snn_forward_refusal(current, decay: float, threshold: float, penalty: float, proportional: bool, keep: str,
                        gates=None) -> str | None:  # fmt: skip
    """Why ``snn_forward`` does not take these arguments, or None."""
    if current.dim() != 3:
        return "not a (T, B, N) sequence"
    if why := refusal(current, gates):
        return why
    if current.dtype != torch.float32:
        return str(current.dtype).removeprefix("torch.")
    if gates is not None and (gates.dtype != torch.bool or gates.shape != current.shape or not gates.is_contiguous()):
        return "gates not a contiguous bool tensor of the current's shape"
    return None


def snn_forward(current, decay: float, threshold: float, penalty: float, proportional: bool, keep: str, gates=None):
    """``models.snn.simulate`` by the Triton kernel: ``(states, outputs)``, each (T, B, N) or None as ``keep`` says;
    ``gates`` (bool, (T, B, N)) receives g_t. None where the kernel does not apply."""
    if snn_forward_refusal(current, decay, threshold, penalty, proportional, keep, gates) is not None:
        return None
    current = current.contiguous()
    T, M = current.shape[0], math.prod(current.shape[1:])
    states = torch.empty_like(current) if keep in ("states", "both") else None
    outputs = torch.empty_like(current) if keep in ("outputs", "both") else None
    if T and M:
        dummy = current  # never written: a pointer for the outputs not kept (their stores are compiled out)
        _snn_forward[_grid(M)](
            current, dummy if states is None else states, dummy if outputs is None else outputs,
            dummy if gates is None else _bytes_view(gates), T, M, decay, threshold, penalty, penalty / threshold,
            PROPORTIONAL=bool(proportional), KEEP_STATES=states is not None, KEEP_OUTPUTS=outputs is not None,
            KEEP_GATES=gates is not None, BLOCK=BLOCK, **_no_fma(),
        )  # fmt: skip
    return states, outputs


def snn_backward_refusal(grad_kept, gates, decay: float, slope: float, states: bool) -> str | None:
    """Why ``snn_backward`` does not take these arguments, or None."""
    if gates.dim() != 3 or gates.dtype != torch.bool:
        return "gates not a (T, B, N) bool tensor"
    if grad_kept.dtype != torch.float32:
        return str(grad_kept.dtype).removeprefix("torch.")
    return refusal(grad_kept, gates) or (None if grad_kept.shape == gates.shape else "a gradient not of the gates' shape")


def snn_backward(grad_kept, gates, decay: float, slope: float, states: bool):
    """``NeuronRecurrence``'s backward by the Triton kernel: dL/dI (T, B, N), or None where it does not apply.
    ``grad_kept`` may be one row expanded over t (autograd's gradient of a sum over t)."""
    if snn_backward_refusal(grad_kept, gates, decay, slope, states) is not None:
        return None
    if grad_kept.stride(0) == 0 and grad_kept[0].is_contiguous():
        tstride = 0  # one row for every t
    else:
        grad_kept = grad_kept.contiguous()
        tstride = math.prod(gates.shape[1:])
    gates = gates.contiguous()
    T, M = gates.shape[0], math.prod(gates.shape[1:])
    grad_current = torch.empty(gates.shape, dtype=torch.float32, device=gates.device)
    if T and M:
        _snn_backward[_grid(M)](
            grad_kept, tstride, _bytes_view(gates), grad_current, T, M, decay, slope,
            STATES=bool(states), HAS_SLOPE=slope != 0.0, BLOCK=BLOCK, **_no_fma(),
        )  # fmt: skip
    return grad_current


def _no_fma() -> dict:
    """Launch options: no FMA contraction (the torch loops' rounding), where the backend takes the option."""
    return {} if interpreted() else {"enable_fp_fusion": False}


def lif_forward_refusal(current, steps: int, beta: float, threshold: float, zero: bool, spikes: bool = False) -> str | None:
    """Why ``lif_forward`` does not take these arguments, or None."""
    if current.dim() not in (2, 3) or (current.dim() == 3 and current.shape[0] != steps):
        return f"a current of shape {tuple(current.shape)} for {steps} steps"
    if current.dtype != torch.float32:
        return str(current.dtype).removeprefix("torch.")
    return refusal(current)


def lif_forward(current, steps: int, beta: float, threshold: float, zero: bool, spikes: bool = False):
    """``models.lif.simulate`` by the Triton kernel, and the spikes when asked: ``(u, spikes or None)``, or None where
    it does not apply. ``current`` is (T, B, N) with T = ``steps``, or (B, N) held for every step."""
    if lif_forward_refusal(current, steps, beta, threshold, zero) is not None:
        return None
    current = current.contiguous()
    held = current.dim() == 2
    u = current.new_empty(steps, *current.shape[-2:])
    s = torch.empty_like(u) if spikes else None
    M = math.prod(u.shape[1:])
    if steps and M:
        _lif_forward[_grid(M)](
            current, 0 if held else M, u, u if s is None else s, steps, M, beta, threshold,
            ZERO=bool(zero), KEEP_SPIKES=s is not None, BLOCK=BLOCK, **_no_fma(),
        )  # fmt: skip
    return u, s
