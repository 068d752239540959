"""The fast LIF SNN (``lif``): the same model as ``lif-reference``, evaluated layer by layer.

A layer's input current does not depend on its own state, so each layer's matmul runs over all T
steps in one GEMM (under ``direct`` encoding layer 1's current is the same at every step: one GEMM
of B rows, not T B; sequence input's frames are layer 1's input: one GEMM over x's B T rows as they lie
in memory); only the elementwise neuron recurrence is sequential. The recurrence is one autograd
Function whose backward is a reverse linear recurrence, saving only the membrane U.
With the same random draws the results are those of the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models import dispatch, fused, spike_products, triton_neurons
from models import masks as mask_rng
from models.activity import Activity
from models.lif_reference import LIFReference, check_draws, encode, frames, intensity, surrogate_grad
from models.registry import register


class LIFRecurrence(torch.autograd.Function):
    """Input currents ``I`` (T, B, N), or (B, N) held for ``steps`` steps, -> spikes S_t or membranes U_t (T, B, N).

    Forward, from U_0 = 0, as lif-reference (models/lif_reference.py):
        subtract:  U_t = beta U_{t-1} + I_t - threshold R_{t-1}      dU_t/dU_{t-1} = beta
        zero:      U_t = beta (1 - R_{t-1}) U_{t-1} + I_t             dU_t/dU_{t-1} = beta (1 - R_{t-1})
    with R_t = 1[U_t > threshold] (no gradient). Backward, from t = T down to 1:
        dL/dU_t = g_t + dU_{t+1}/dU_t dL/dU_{t+1},   g_t = dL/dS_t surrogate'(U_t - threshold)   (``out="spikes"``)
                                                     g_t = dL/dU_t from the caller                 (``out="membrane"``)
    and dL/dI_t = dL/dU_t (summed over t for a held current).

    On the CPU in float32 each direction is one call of a C kernel (models/fused.py, models/_neurons.c); on CUDA the
    forward is one Triton kernel (models/triton_neurons.py); elsewhere, or without a compiler, the torch code here
    (``simulate_torch`` and ``backward_torch``), the tests' reference. models/dispatch.py chooses (the kernels
    ``lif.forward`` and ``lif.backward``, registered below).
    """

    @staticmethod
    def forward(ctx, current, steps: int, beta: float, threshold: float, zero: bool, surrogate: str, sharpness: float,
                out: str):  # fmt: skip
        held = current.dim() == 2
        u, spikes = dispatch.call("lif.forward", current, steps, beta, threshold, zero, spikes=out == "spikes")
        ctx.save_for_backward(u)
        ctx.args = (held, beta, threshold, zero, surrogate, sharpness, out)
        if out == "membrane":
            return u
        return spikes if spikes is not None else torch.gt(u, threshold, out=torch.empty_like(u))  # spikes, 1.0 or 0.0

    @staticmethod
    def backward(ctx, grad_out):
        (u,) = ctx.saved_tensors
        return dispatch.call("lif.backward", u, grad_out, *ctx.args), None, None, None, None, None, None, None

    @staticmethod
    def backward_torch(u, grad_out, held: bool, beta: float, threshold: float, zero: bool, surrogate: str, sharpness: float,
                       out: str):  # fmt: skip
        """dL/dI from the membranes and dL/d(out), in torch (the C kernel's fallback and reference)."""
        g = surrogate_grad(u - threshold, surrogate, sharpness, inplace=True).mul_(grad_out) if out == "spikes" else grad_out
        grad = torch.empty_like(g)  # dL/dU_t
        if zero:
            grad[-1] = g[-1]
            carry = (u <= threshold).to(u.dtype).mul_(beta)  # dU_{t+1}/dU_t
            for t in range(len(g) - 2, -1, -1):
                torch.addcmul(g[t], carry[t], grad[t + 1], out=grad[t])
        else:  # a constant coefficient: dL/dU_t = sum over s >= t of beta^(s-t) g_s, one (T x T) @ (T x B N) GEMM
            T = len(g)
            k = torch.arange(T, device=g.device)
            powers = torch.tensor(beta, dtype=torch.float64, device=g.device) ** (k[None, :] - k[:, None]).clamp_min(0)
            decay = torch.where(k[None, :] >= k[:, None], powers, 0.0).to(g.dtype)  # decay[t, s] = beta^(s-t), s >= t
            torch.mm(decay, g.reshape(T, -1), out=grad.view(T, -1))
        return grad.sum(0) if held else grad


def simulate(current: torch.Tensor, steps: int, beta: float, threshold: float, zero: bool) -> torch.Tensor:
    """The membranes U_1..U_T (T, B, N) of ``LIFRecurrence``'s forward, in lif-reference's order of operations: by
    the C kernel (float32 on the CPU) or the Triton kernel (float32 on CUDA) where one applies, with bit-identical
    results; else ``simulate_torch`` (models/dispatch.py's kernel ``lif.forward``)."""
    return dispatch.call("lif.forward", current, steps, beta, threshold, zero)[0]


def simulate_torch(current: torch.Tensor, steps: int, beta: float, threshold: float, zero: bool) -> torch.Tensor:
    """``simulate`` one step at a time in torch: the fallback and the C kernel's reference."""
    held = current.dim() == 2
    u = current.new_empty(steps, *current.shape[-2:])
    fired = torch.zeros_like(u[0])  # R_{t-1}
    prev = torch.zeros_like(u[0])
    for t in range(steps):
        torch.mul(prev, beta, out=u[t])
        if zero:
            u[t].masked_fill_(fired.bool(), 0.0)  # beta (1 - R) U: a product with exactly 0 or 1
        u[t].add_(current if held else current[t])
        if not zero:
            u[t].sub_(fired, alpha=threshold)
        torch.gt(u[t], threshold, out=fired)
        prev = u[t]
    return u


def _forward_torch(current, steps: int, beta: float, threshold: float, zero: bool, spikes: bool = False):
    """``lif.forward`` in torch: ``(u, None)``, the spikes left to the caller (as the other backends' results read)."""
    return simulate_torch(current, steps, beta, threshold, zero), None


# the forward gives the same bits by every backend (SPEED); the gradients match to float32 rounding (ROUNDING). On
# CUDA the backward is torch's by design (a GEMM where the reset subtracts): no Triton kernel, so no fallback there
dispatch.register(
    "lif.forward", "neurons", dispatch.SPEED, *dispatch.backends("lif_forward", fused, triton_neurons, torch_run=_forward_torch)
)
dispatch.register(
    "lif.backward",
    "neurons",
    dispatch.ROUNDING,
    *dispatch.backends("lif_backward", fused, torch_run=LIFRecurrence.backward_torch),
)


@register("lif", kind="spiking", delay=0, intensities=True)
class LIF(LIFReference):
    """Same config, parameters, ``draws`` argument and results as ``lif-reference``; much less work per step."""

    def forward(self, x: torch.Tensor, draws: torch.Tensor | None = None) -> torch.Tensor:
        return self._layers(x, draws)[0]

    @torch.no_grad()
    def activity(self, x: torch.Tensor, draws: torch.Tensor | None = None) -> Activity:
        logits, inputs, spikes1, spikes2 = self._layers(x, draws, record=True)
        return self._activity(logits, inputs, spikes1, spikes2)

    def calibrate(self, x: torch.Tensor) -> None:
        """On the CPU: the density crossovers of the event-driven products measured now, not inside the first timed
        epoch (once per machine, shape and thread count; models/spike_products.py): layer 2's, fed by layer 1's spikes,
        and under ``rate`` layer 1's, for inputs like ``x`` (a batch of the training data: its share of inputs that can
        fire)."""
        c, w = self.config, self.fc1.weight
        if w.device.type != "cpu" or not spike_products.native():
            return
        if c.encoding == "rate" and not c.sequence:
            p = intensity(x.detach().flatten(1).to(w.device, torch.float32), "rate")
            spike_products.crossover(w.shape[1], w.shape[0], spike_products.active_share(p))
        spike_products.crossover(self.fc2.weight.shape[1], self.fc2.weight.shape[0], kind="spikes")  # layer 2's

    def _encoded(self, x: torch.Tensor, draws: torch.Tensor | None) -> torch.Tensor:
        """Layer 1's input from images x (B, n_in): (T, B, n_in), or (1, B, n_in) under ``direct``."""
        c = self.config
        T = c.time_steps
        if draws is not None:
            check_draws(c, x, draws)
            return encode(c, x, draws)
        if c.encoding == "direct":
            return intensity(x, "direct")[None]
        if c.encoding == "rate":  # spikes u_t < p in one pass: what encode() makes of the fast generator's u
            return mask_rng.bernoulli_(mask_rng.workspace(self, (T, *x.shape), x), intensity(x, "rate"))
        if not x.requires_grad:
            return mask_rng.masked_uniform_(mask_rng.workspace(self, (T, *x.shape), x), x)  # u_t * x in one pass
        return encode(c, x, mask_rng.uniform_(x.new_empty(T, *x.shape)))  # masks with a gradient to the input

    def _layers(self, x: torch.Tensor, draws: torch.Tensor | None, record: bool = False):
        """``(logits, layer 1's input, layer 1's spikes, layer 2's spikes or None)``; layer 2's only when ``record``."""
        c = self.config
        args = (c.time_steps, c.beta, c.threshold, c.reset == "zero", c.surrogate, c.sharpness)
        # .to(): under bf16 autocast the matmuls are bf16, the neuron state stays in the weights' dtype (fp32)
        w1, b1, w2, b2 = self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias
        if c.sequence:  # x (B, T, *frame): the frames are layer 1's input, (T, B, n_in), a view of x
            check_draws(c, x, draws)
            inputs = frames(c, x)
            # one GEMM over x's rows (b, t) as they lie in memory, then the currents in step order (T, B, hidden)
            current1 = F.linear(inputs.transpose(0, 1), w1, b1).to(w1.dtype).transpose(0, 1).contiguous()
        elif c.encoding == "rate" and draws is None and not record and not x.requires_grad:
            # the spikes drawn and layer 1's product computed event-driven or dense, as models/spike_products.py decides
            inputs = None
            current1 = spike_products.rate_linear(intensity(x.flatten(1), "rate"), c.time_steps, w1, b1, self).to(w1.dtype)
        else:
            inputs = self._encoded(x.flatten(1), draws)
            current1 = F.linear(inputs[0] if c.encoding == "direct" else inputs, w1, b1).to(w1.dtype)
        spikes1 = LIFRecurrence.apply(current1, *args, "spikes")  # (T, B, hidden)
        current2 = spike_products.spike_linear(spikes1, w2, b2).to(w2.dtype)  # all steps at once, event-driven or a GEMM
        if record:
            u2 = simulate(current2, *args[:3], c.reset == "zero")
            spikes2 = (u2 > c.threshold).to(u2.dtype)
            logits = u2.mean(0) if c.readout == "membrane" else spikes2.sum(0)
            return logits, inputs, spikes1, spikes2
        if c.readout == "membrane":
            return LIFRecurrence.apply(current2, *args, "membrane").mean(0), inputs, spikes1, None
        return LIFRecurrence.apply(current2, *args, "spikes").sum(0), inputs, spikes1, None
