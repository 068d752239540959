"""The fast recurrent spiking network (``rsnn``): the same model as ``rsnn-reference`` (models/rsnn_reference.py, where
the equations are), evaluated layer by layer.

The input's part of the recurrent layer's current does not depend on its state: W_in x_t + b_in for all T steps is one
GEMM, (T B, n_in) x (n_in, hidden) (a held image's once, (B, n_in)). The recurrence is one autograd Function,
``RecurrentLIF``: its forward runs the T steps into preallocated buffers without recording a graph, each step's
recurrent product W_rec S_{t-1} one addmm onto that step's current; its backward is BPTT written out (below), saving
U, S and, with adaptation, a. The readout's current W_out S_t + b_out is one GEMM over all steps and its neurons lif's
``LIFRecurrence`` (the C kernels on the CPU). With the same weights the results are the reference's, to float32
rounding (tests/test_rsnn.py).

BPTT of the recurrent layer, from t = T down to 1, with sg_t = surrogate'(U_t - theta_t), G_t = dL/dS_t from the
readout, and dL/dU_{T+1} = dL/da_{T+1} = 0:

    dS_t  = G_t + dL/dU_{t+1} W_rec + dL/da_{t+1}             S_t feeds I_{t+1} and a_{t+1} (its reset: no gradient)
    dU_t  = sg_t dS_t + c_t dL/dU_{t+1}                       c_t = beta (subtract), beta (1 - R_t) (zero)
    da_t  = rho dL/da_{t+1} - adaptation sg_t dS_t            a_t sets theta_t, and a_{t+1}
    dL/dI_t = dU_t,   dL/dW_rec = sum over t >= 2 of dU_t^T S_{t-1}: one GEMM over all steps, after the loop

The (T, B, hidden) buffers of a training step (U, S, a; in backward the gradient and the surrogate) are kept on the
module from call to call (``kept``): allocated fresh, their page faults cost a fifth of the step on a 2-core VM.
Autograd's version counter guards them: a second forward before the first one's backward makes that backward raise.
``activity`` uses buffers of its own. Under bf16 autocast the input and readout GEMMs run in bfloat16, as autocast
runs them; the recurrent product runs in float32 with the neuron state (exact spikes times float32 weights).

Its kernels are registered with models/dispatch.py as ``rsnn.forward`` and ``rsnn.backward`` (family ``recurrent``): the
torch code here is the only backend so far, the one a C or Triton kernel would fall back to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models import dispatch, spike_products
from models.activity import Activity
from models.lif import LIFRecurrence, simulate
from models.lif_reference import surrogate_grad
from models.registry import register
from models.rsnn_reference import RSNNReference


def kept(owner: object | None, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A (T, B, N) buffer kept on ``owner`` across calls (None: a fresh one). A fresh 15 MB tensor costs its page faults
    at every step: 9,300 of them a training step at T 112, B 256, N 128, a fifth of the step on a 2-core VM. On reuse its
    version counter goes up, so that a graph that saved it before raises in backward rather than reading what a later
    call wrote (as models/snn_chunked.py's buffers)."""
    if owner is None:
        return like.new_empty(shape)
    buffers = owner.__dict__.setdefault("_rsnn_buffers", {})
    buf = buffers.get(name)
    if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
        buf = buffers[name] = like.new_empty(shape)
    else:
        torch.autograd.graph.increment_version(buf)
    return buf


class RecurrentLIF(torch.autograd.Function):
    """Currents ``I`` (T, B, N) without the recurrent part, or (B, N) held for ``steps`` steps, and W_rec (N, N) ->
    spikes S_t (T, B, N) of the recurrent layer of models/rsnn_reference.py; backward: dL/dI and dL/dW_rec. ``owner``
    keeps the (T, B, N) buffers across calls (``kept``); None: fresh ones."""

    @staticmethod
    def forward(ctx, current, weight, owner, steps: int, beta: float, threshold: float, zero: bool, adaptation: float,
                rho: float, surrogate: str, sharpness: float):  # fmt: skip
        shape = (steps, *current.shape[-2:])
        out = tuple(kept(owner, name, shape, weight) for name in ("u", "s", "a")[: 3 if adaptation else 2])
        with torch.autocast(current.device.type, enabled=False):  # the state in the weights' dtype
            u, s, a = dispatch.call("rsnn.forward", current, weight, steps, beta, threshold, zero, adaptation, rho, out=out)
        ctx.save_for_backward(u, s, a, weight)
        ctx.owner = owner
        ctx.args = (current.dim() == 2, beta, threshold, zero, adaptation, rho, surrogate, sharpness)
        return s.detach()  # the buffer's storage and version counter, not the buffer: its later uses get no grad_fn

    @staticmethod
    def backward(ctx, grad_spikes):
        u, s, a, weight = ctx.saved_tensors
        work = tuple(kept(ctx.owner, name, tuple(u.shape), u) for name in ("grad", "surrogate"))
        with torch.autocast(grad_spikes.device.type, enabled=False):
            grad_current, grad_weight = dispatch.call("rsnn.backward", u, s, a, weight, grad_spikes, *ctx.args, work=work)
        return grad_current, grad_weight, *(None,) * 9


def forward_torch(current: torch.Tensor, weight: torch.Tensor, steps: int, beta: float, threshold: float, zero: bool,
                  adaptation: float, rho: float, out: tuple[torch.Tensor, ...] | None = None):  # fmt: skip
    """``RecurrentLIF``'s forward in torch: (U, S, a) (T, B, N), a None without adaptation, written into ``out`` (U, S
    and a's buffers) where given. U starts as the currents (one copy), then per step one addmm onto it and 3 elementwise
    operations (6 with adaptation) on (B, N) rows; no graph."""
    held = current.dim() == 2
    B, N = current.shape[-2:]
    u, s, a = (*out, None, None)[:3] if out else (current.new_empty(steps, B, N), current.new_empty(steps, B, N), None)
    if adaptation and a is None:
        a = torch.empty_like(u)
    u.copy_(current.expand(steps, B, N) if held else current)  # I_t
    theta = u.new_full((2, B, N), threshold) if adaptation else None  # theta_t and theta_{t-1}, alternating
    wt = weight.t()
    for t in range(steps):
        now = u[t]
        if t:  # U_0 = S_0 = 0: U_1 = I_1
            prev, fired = u[t - 1], s[t - 1]
            now.addmm_(fired, wt)  # I_t + W_rec S_{t-1}
            if zero:  # + beta (1 - R_{t-1}) U_{t-1}, the product exact
                now.addcmul_(torch.rsub(fired, 1), prev, value=beta)
            else:  # + beta U_{t-1} - theta_{t-1} R_{t-1}
                now.add_(prev, alpha=beta)
                if adaptation:
                    now.addcmul_(theta[(t - 1) % 2], fired, value=-1.0)
                else:
                    now.sub_(fired, alpha=threshold)
        if adaptation:  # a_t = rho a_{t-1} + S_{t-1} (a_1 = 0);  theta_t = threshold + adaptation a_t
            if t:
                torch.add(s[t - 1], a[t - 1], alpha=rho, out=a[t])
            else:
                a[0].zero_()
            torch.mul(a[t], adaptation, out=theta[t % 2]).add_(threshold)
        torch.gt(now, theta[t % 2] if adaptation else threshold, out=s[t])  # S_t, 1.0 or 0.0
    return u, s, a


def backward_torch(u, s, a, weight, grad_spikes, held: bool, beta: float, threshold: float, zero: bool, adaptation: float,
                   rho: float, surrogate: str, sharpness: float, work: tuple[torch.Tensor, ...] | None = None):  # fmt: skip
    """``RecurrentLIF``'s backward in torch (the module's doc): (dL/dI, dL/dW_rec), using ``work`` (two buffers the shape
    of U) where given. The surrogate of all steps at once (a few passes over (T, B, N)), then per step one addmm onto
    that step's incoming gradient and 2 elementwise operations on (B, N) rows (3 for zero, 3 more with adaptation)."""
    T, N = len(u), u.shape[-1]
    grad, x = work if work else (torch.empty_like(u), torch.empty_like(u))
    if adaptation:  # U_t - theta_t
        torch.sub(u, a, alpha=adaptation, out=x).sub_(threshold)
    else:
        torch.sub(u, threshold, out=x)
    sg = surrogate_grad(x, surrogate, sharpness, inplace=True)
    grad.copy_(grad_spikes)  # G_t, then dL/dS_t, then dL/dU_t = dL/dI_t
    da = torch.zeros_like(u[0]) if adaptation else None
    for t in range(T - 1, -1, -1):
        now = grad[t]
        if t < T - 1:
            now.addmm_(grad[t + 1], weight)  # + dL/dU_{t+1} W_rec
            if adaptation:
                now.add_(da)
        now.mul_(sg[t])
        if adaptation:
            da.mul_(rho).sub_(now, alpha=adaptation)
        if t < T - 1:
            if zero:  # dU_{t+1}/dU_t = beta (1 - R_t)
                now.addcmul_(torch.rsub(s[t], 1), grad[t + 1], value=beta)
            else:
                now.add_(grad[t + 1], alpha=beta)
    # all steps' dU_t^T S_{t-1} at once: one GEMM, or event-driven on the spikes (models/spike_products.py)
    grad_weight = spike_products.spike_weight_grad(s[:-1].reshape(-1, N), grad[1:].reshape(-1, N))
    return (grad.sum(0) if held else grad), grad_weight


# forward: the same bits by any later backend (SPEED); backward: float32 rounding (ROUNDING). Only torch's so far: a
# family of its own, so that the recurrences of the other models keep their provenance ("neurons") as it was
dispatch.register("rsnn.forward", "recurrent", dispatch.SPEED, dispatch.Backend(dispatch.TORCH, forward_torch),
                  describe="the recurrent spiking layers")  # fmt: skip
dispatch.register("rsnn.backward", "recurrent", dispatch.ROUNDING, dispatch.Backend(dispatch.TORCH, backward_torch))


@register("rsnn", kind="spiking", layers=("layer1", "layer2"), delay=0, intensities=True)
class RSNN(RSNNReference):
    """Same config, parameters and results as ``rsnn-reference``; the input GEMM once, the recurrence in one Function."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._layers(x)[0]

    @torch.no_grad()
    def activity(self, x: torch.Tensor) -> Activity:
        return self._activity(*self._layers(x, record=True))

    def calibrate(self, x: torch.Tensor) -> None:
        """On the CPU: the density crossovers of the event-driven products on the hidden spikes (the recurrent
        weights' gradient, the readout) measured now, not inside the first timed epoch (models/spike_products.py)."""
        if self.rec.weight.device.type == "cpu" and spike_products.native():
            for layer in (self.rec, self.fc2):
                spike_products.crossover(layer.weight.shape[1], layer.weight.shape[0], kind="spikes")

    def _layers(self, x: torch.Tensor, record: bool = False):
        """(logits, fc1's input (T, B, n_in) or (1, B, n_in) held, the hidden spikes (T, B, hidden), the readout's
        spikes (T, B, n_out) or None); the readout's spikes only when ``record``."""
        c = self.config
        w1, b1 = self.fc1.weight, self.fc1.bias
        inputs = self.inputs(x)
        if c.sequence:  # one GEMM over all steps' rows in step order (x copied so, 99/128 of the currents' size)
            T, B = inputs.shape[:2]
            current1 = F.linear(inputs.reshape(T * B, -1), w1, b1).to(w1.dtype).view(T, B, -1)
        else:  # a held image: its current once, (B, hidden)
            current1 = F.linear(inputs[0], w1, b1).to(w1.dtype)
        owner = None if record else self  # activity's spikes are its own; a training step's buffers are kept
        spikes1 = RecurrentLIF.apply(current1, self.rec.weight, owner, c.time_steps, c.beta, c.threshold, c.reset == "zero",
                                     c.adaptation, c.rho, c.surrogate, c.sharpness)  # fmt: skip
        current2 = spike_products.spike_linear(spikes1, self.fc2.weight, self.fc2.bias).to(w1.dtype)  # all steps at once
        args = (c.time_steps, c.beta, c.threshold, c.reset == "zero")
        if record:
            u2 = simulate(current2, *args)
            spikes2 = (u2 > c.threshold).to(u2.dtype)
            return (u2.mean(0) if c.readout == "membrane" else spikes2.sum(0)), inputs, spikes1, spikes2
        out = LIFRecurrence.apply(current2, *args, c.surrogate, c.sharpness, c.readout)
        return (out.mean(0) if c.readout == "membrane" else out.sum(0)), inputs, spikes1, None
