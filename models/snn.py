"""The fast SNN: the same model as ``snn-reference``, evaluated layer by layer.

Layer 1's input does not depend on its state, so its matmul runs over all time
steps at once (one big GEMM instead of T small ones); only the elementwise neuron
recurrence is sequential. The recurrence is one autograd Function whose backward
is the reverse linear recurrence of SPEC.md's cost section, saving only the
1-byte firing gates instead of every intermediate tensor.

Because of the two one-step delays, the logits never see layer 1's last two
steps or layer 2's last step, so those are not computed (the reference computes
and discards them); with the same masks the results are the same.

``recurrent=true`` (layer 1 also gets W_rec o1_{t-1}, models/snn_reference.py) takes neither the chunked CPU step nor
the neuron kernels, which know no recurrence: layer 1's feed-forward currents are still one GEMM over all steps (the
masks drawn as without recurrence, so a seed gives the same masks), then models/snn_recurrent.py runs layer 1's neurons
one step at a time in torch, only the product W_rec o1_{t-1} per step, its backward written out as here; layer 2 is
the path above.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models import dispatch, fused, masked_linear, snn_chunked, snn_recurrent, triton_neurons
from models import masks as mask_rng
from models.activity import Activity
from models.registry import register
from models.snn_reference import SNNReference


class NeuronRecurrence(torch.autograd.Function):
    """Input currents ``I`` (T, B, N) -> the new states ``v_1..v_T`` or the outputs ``o_1..o_T`` (T, B, N).

    Forward, from v_0 = 0 (SPEC.md):  h_t = I_t + d v_{t-1};  o_t = relu(h_t - theta);  g_t = 1[o_t > 0];
        subtract:      v_t = h_t - (p + o_t) g_t             dv_t/dh_t = 1 - g_t
        proportional:  v_t = h_t - (p / theta) h_t g_t       dv_t/dh_t = 1 - (p / theta) g_t
    Backward, with do_t/dh_t = g_t, from t = T down to 1:
        dL/dh_t = g_t dL/do_t + dv_t/dh_t (dL/dv_t + d dL/dh_{t+1})
    and dL/dI_t = dL/dh_t. Only the gates g_t are saved, as bool. ``keep`` says which
    sequence the caller uses ("states" or "outputs"): the other one is never written.

    On the CPU in float32 each direction is one call of a C kernel (models/fused.py, models/_neurons.c), on CUDA one
    Triton kernel (models/triton_neurons.py); elsewhere, or without a compiler or Triton, the torch loops here
    (``simulate_torch`` and ``backward_torch``), the tests' reference. models/dispatch.py chooses (the kernels
    ``snn.forward`` and ``snn.backward``, registered below).
    """

    @staticmethod
    def forward(ctx, current, decay: float, threshold: float, penalty: float, proportional: bool, keep: str):
        gates = torch.empty(current.shape, dtype=torch.bool, device=current.device)
        states, outputs = simulate(current, decay, threshold, penalty, proportional, keep, gates)
        ctx.save_for_backward(gates)
        ctx.decay, ctx.keep = decay, keep
        ctx.slope_when_fired = (1.0 - penalty / threshold) if proportional else 0.0
        return states if keep == "states" else outputs

    @staticmethod
    def backward(ctx, grad_kept):
        (gates,) = ctx.saved_tensors
        d, slope, states = ctx.decay, ctx.slope_when_fired, ctx.keep == "states"
        return dispatch.call("snn.backward", grad_kept, gates, d, slope, states), None, None, None, None, None

    @staticmethod
    def backward_torch(grad_kept, gates, d: float, slope: float, states: bool):
        """dL/dI_t from dL/d(kept)_t and the gates, one step at a time (the C kernel's fallback and reference)."""
        grad_current = torch.empty_like(grad_kept)
        a = grad_kept.new_zeros(gates.shape[1:])  # dL/dh_{t+1}
        dv, fired = torch.empty_like(a), torch.zeros_like(a)
        for t in range(gates.shape[0] - 1, -1, -1):
            torch.mul(a, d, out=dv)  # everything that flows into v_t: d dL/dh_{t+1} ...
            if states:
                dv.add_(grad_kept[t])  # ... plus what the caller's use of v_t sends back
                if slope:
                    torch.mul(dv, slope, out=fired)  # a neuron that fired: dL/dh = slope dL/dv (fired stays 0 else)
            elif slope:
                torch.add(grad_kept[t], dv, alpha=slope, out=fired)  # dL/do + slope dL/dv
            else:
                fired = grad_kept[t]  # dL/do alone: the reset cut the path through v
            a = torch.where(gates[t], fired, dv, out=grad_current[t])
        return grad_current


@register("snn", kind="spiking", delay=2)  # two one-step delays, as snn-reference
class SNN(SNNReference):
    """Same config, parameters, ``masks`` argument and results as ``snn-reference``; much less work per step."""

    def forward(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        flat, c = x.flatten(1), self.config
        if masks is None and not c.recurrent and snn_chunked.available(flat, self.layer1.fc.weight, c.time_steps):
            return snn_chunked.logits(self, flat)  # on the CPU: both layers a chunk of steps at a time
        return self._layers(x, masks)[0]

    @torch.no_grad()
    def activity(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> Activity:
        """As ``snn-reference``'s (same steps, same numbers), at the speed of the forward pass."""
        return self._activity(*self._layers(x, masks, record=True))

    def _layers(self, x: torch.Tensor, masks: torch.Tensor | None, record: bool = False):
        """``(logits, u_t * x (T-2, B, n_in), o1 (T-2, B, hidden), o2 (T-1, B, n_out) or None)``; o2 only
        when ``record`` (then without autograd: only ``activity`` asks for it)."""
        c = self.config
        x = x.flatten(1)  # (B, n_in)
        B, T = x.shape[0], c.time_steps
        steps1 = max(T - 2, 0)  # layer 2 sees o1_0 = 0, o1_1 .. o1_{T-2}: layer 1 runs T-2 steps
        w1, b1, w2, b2 = self.layer1.fc.weight, self.layer1.fc.bias, self.layer2.fc.weight, self.layer2.fc.bias
        # Training and plain inference: the masks drawn a chunk at a time and again in backward, never all kept; the
        # same numbers as masked_uniform_ gives (it takes the C generator from MIN_PARALLEL numbers on)
        regenerate = masks is None and not record and masked_linear.available(x, w1, steps1)
        if regenerate:
            inputs = None
        elif masks is None and x.requires_grad:  # for gradients with respect to the input
            inputs = mask_rng.uniform_(x.new_empty(steps1, B, c.n_in)) * x
        elif masks is None:
            inputs = mask_rng.masked_uniform_(mask_rng.workspace(self, (steps1, B, c.n_in), x), x)  # (T-2, B, n_in): u_t * x
        elif masks.shape != (T, *x.shape):
            raise ValueError(f"masks must have shape {(T, *x.shape)}, got {tuple(masks.shape)}")
        else:
            inputs = masks[:steps1] * x
        args = (c.decay, c.threshold, c.penalty, c.reset == "proportional")
        if steps1:
            if regenerate:
                current1 = masked_linear.masked_linear(x, w1, b1, steps1)  # (T-2, B, hidden), float32
            else:
                # (T-2, B, hidden) in one GEMM; back to the weights' dtype: under bf16 autocast the state stays fp32
                current1 = F.linear(inputs, w1, b1).to(w1.dtype)
            if c.recurrent:  # + W_rec o1_{t-1} at every step: torch, one step at a time (models/snn_recurrent.py)
                out1 = snn_recurrent.layer1(current1, self.layer1_rec.weight, *args)
            elif record:
                out1 = simulate(current1, *args, "outputs")[1]
            else:
                out1 = NeuronRecurrence.apply(current1, *args, "outputs")
        else:
            out1 = x.new_zeros(0, B, c.hidden)
        if T == 1:  # the one kept state is v2_0 = 0
            return x.new_zeros(B, c.n_out), inputs, out1, x.new_zeros(0, B, c.n_out)
        first2 = b2.expand(1, B, c.n_out)  # layer 2's current at step 1: W2 o1_0 + b2 = b2
        current2 = torch.cat([first2, F.linear(out1, w2, b2).to(w2.dtype)]) if steps1 else first2  # (T-1, B, n_out)
        # the kept states are v2_0 = 0, v2_1 .. v2_{T-1}: layer 2 runs T-1 steps
        if record:
            states2, outputs2 = simulate(current2, *args, "both")
        else:
            states2, outputs2 = NeuronRecurrence.apply(current2, *args, "states"), None
        return states2.sum(0) / T, inputs, out1, outputs2  # the mean over all T kept states, v2_0 = 0 included


def simulate(current, decay: float, threshold: float, penalty: float, proportional: bool, keep: str, gates=None):
    """The forward recurrence of ``NeuronRecurrence`` (see there): ``(states, outputs)``, each (T, B, N), or
    None where ``keep`` ("states", "outputs" or "both") does not ask for it. ``gates`` (bool) receives g_t.
    The C kernel (float32 on the CPU) or the Triton kernel (float32 on CUDA) where one applies, with bit-identical
    results; else ``simulate_torch`` (models/dispatch.py's kernel ``snn.forward``)."""
    return dispatch.call("snn.forward", current, decay, threshold, penalty, proportional, keep, gates)


def simulate_torch(current, decay: float, threshold: float, penalty: float, proportional: bool, keep: str, gates=None):
    """``simulate`` one step at a time in torch: the fallback and the C kernel's reference."""
    states = torch.empty_like(current) if keep in ("states", "both") else None
    outputs = torch.empty_like(current) if keep in ("outputs", "both") else None
    gate = torch.empty(current.shape[1:], dtype=torch.bool, device=current.device)  # g_t when ``gates`` is None
    h, reset, v, o = (torch.zeros_like(current[0]) for _ in range(4))
    # In place and in the reference's order of operations, so the rounding is the same:
    # where(g, h - r, h) equals h - r * g exactly for g in {0, 1}.
    for t in range(current.shape[0]):
        torch.mul(v, decay, out=h).add_(current[t])  # h = I_t + d v_{t-1}
        o = torch.sub(h, threshold, out=o if outputs is None else outputs[t]).clamp_min_(0.0)  # relu(h - theta)
        g = torch.gt(o, 0.0, out=gate if gates is None else gates[t])
        if proportional:
            torch.mul(h, penalty / threshold, out=reset)  # (p / theta) h
        else:
            torch.add(o, penalty, out=reset)  # p + o
        torch.sub(h, reset, out=reset)
        v = torch.where(g, reset, h, out=v if states is None else states[t])
    return states, outputs


# the forward gives the same bits by every backend (SPEED); the gradients match to float32 rounding (ROUNDING)
dispatch.register(
    "snn.forward", "neurons", dispatch.SPEED, *dispatch.backends("snn_forward", fused, triton_neurons, torch_run=simulate_torch)
)
dispatch.register(
    "snn.backward",
    "neurons",
    dispatch.ROUNDING,
    *dispatch.backends("snn_backward", fused, triton_neurons, torch_run=NeuronRecurrence.backward_torch),
)
