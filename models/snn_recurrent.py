"""``snn:recurrent=true``'s layer 1: the 2018 neuron with recurrent weights on its own delayed output, as one autograd
Function (models/snn.py calls it; ``snn-reference`` is the same model step by step).

Layer 1's feed-forward currents I_t = W1 x_t + b1 come in for all S steps at once (one GEMM, as without recurrence);
only the recurrent product is per step. Forward, from v_0 = o_0 = 0:

    h_t = I_t + W_rec o_{t-1} + d v_{t-1};   o_t = relu(h_t - theta);   g_t = 1[o_t > 0]
    subtract:      v_t = h_t - (p + o_t) g_t                 proportional:  v_t = h_t - (p / theta) h_t g_t

Backward, a_t = dL/dh_t from t = S down to 1 (a_{S+1} = 0), G_t = dL/do_t from the caller (layer 2):

    dL/do_t = G_t + a_{t+1} W_rec                           (o_t reaches h_{t+1} through W_rec)
    a_t     = g_t (dL/do_t + s d a_{t+1}) + (1 - g_t) d a_{t+1}   s = 0 (subtract), 1 - p / theta (proportional)
    dL/dI_t = a_t;   dL/dW_rec = sum_t a_t^T o_{t-1}        (one GEMM over all steps)

the recurrence of models/snn.py's ``NeuronRecurrence`` with W_rec's term added to dL/do_t. Saved: the outputs o_t (for
W_rec's gradient; layer 2 reads them too) and the 1-byte gates. The C and Triton neuron kernels know no recurrence, so
both directions are torch operations one step at a time, in place and without a graph. A training step of
``snn:recurrent=true`` (B 256, T 128, 2 shared CPU cores) takes 0.086 s this way, 0.20 s with autograd through the
same loop, 0.23 s as ``snn-reference:recurrent=true`` (and ``snn`` without recurrence 0.063 s); the same numbers as the
reference to float32 rounding. Autocast is off inside: the hidden x hidden product and the neuron state stay in the
currents' dtype (float32 under bf16).
"""

from __future__ import annotations

import torch


class RecurrentNeurons(torch.autograd.Function):
    """``(I (S, B, H), W_rec (H, H), decay, threshold, penalty, proportional) -> o_1 .. o_S (S, B, H)``."""

    @staticmethod
    def forward(ctx, current, w_rec, decay: float, threshold: float, penalty: float, proportional: bool):
        with torch.autocast(current.device.type, enabled=False):
            w = w_rec.to(current.dtype)
            outputs = torch.empty_like(current)
            gates = torch.empty(current.shape, dtype=torch.bool, device=current.device)
            h, rec, reset, v = (torch.zeros_like(current[0]) for _ in range(4))
            before = torch.zeros_like(current[0])  # o_{t-1}
            for t in range(current.shape[0]):
                torch.addmm(current[t], before, w.t(), out=rec)  # I_t + W_rec o_{t-1}
                torch.mul(v, decay, out=h).add_(rec)  # h = I_t + W_rec o_{t-1} + d v_{t-1}
                o = torch.sub(h, threshold, out=outputs[t]).clamp_min_(0.0)  # relu(h - theta)
                g = torch.gt(o, 0.0, out=gates[t])
                if proportional:
                    torch.mul(h, penalty / threshold, out=reset)  # (p / theta) h
                else:
                    torch.add(o, penalty, out=reset)  # p + o
                torch.sub(h, reset, out=reset)
                v = torch.where(g, reset, h, out=v)
                before = o
        ctx.save_for_backward(outputs, gates, w_rec)
        ctx.decay = decay
        ctx.slope = (1.0 - penalty / threshold) if proportional else 0.0
        return outputs

    @staticmethod
    def backward(ctx, grad_outputs):
        outputs, gates, w_rec = ctx.saved_tensors
        d, slope = ctx.decay, ctx.slope
        with torch.autocast(grad_outputs.device.type, enabled=False):
            w = w_rec.to(grad_outputs.dtype)
            grad_current = torch.empty_like(grad_outputs)
            a = torch.zeros_like(grad_outputs[0])  # dL/dh_{t+1}
            do, dv = torch.empty_like(a), torch.empty_like(a)
            for t in range(grad_outputs.shape[0] - 1, -1, -1):
                torch.addmm(grad_outputs[t], a, w, out=do)  # dL/do_t = G_t + a_{t+1} W_rec
                torch.mul(a, d, out=dv)  # dL/dv_t = d a_{t+1}
                if slope:
                    do.add_(dv, alpha=slope)  # a neuron that fired: dL/do_t + s dL/dv_t
                a = torch.where(gates[t], do, dv, out=grad_current[t])
            H = w.shape[0]
            grad_w = grad_current[1:].reshape(-1, H).t() @ outputs[:-1].reshape(-1, H)  # sum_t a_t^T o_{t-1}
        return grad_current, grad_w.to(w_rec.dtype), None, None, None, None


def layer1(current: torch.Tensor, w_rec: torch.Tensor, decay: float, threshold: float, penalty: float,
           proportional: bool) -> torch.Tensor:  # fmt: skip
    """Layer 1's outputs o_1 .. o_S (S, B, H) from its feed-forward currents (S, B, H) and W_rec (H, H)."""
    return RecurrentNeurons.apply(current, w_rec, decay, threshold, penalty, proportional)
