"""The 2018 spiking network, written step by step exactly as SPEC.md reads (``snn-reference``).

The fast ``snn`` (models/snn.py) must give the same logits and gradients as this one.

Each spiking layer integrates ``h_t = W x_t + b + d * v_{t-1}``, emits a graded
output ``o_t = relu(h_t - threshold)`` and resets the neurons that fired. It
returns its *previous* state and output (a one-step delay). Logits are the mean
over all T steps of the second layer's delayed state.

``recurrent=true`` gives layer 1 recurrent weights, as the seed foresaw ("redundant for now, but useful if the SNN
gets recurrent connections"): the output o1_{t-1} that layer 1 returns at step t, delayed by one step, goes to layer 2
*and* back into layer 1's own input current at that step,

    h1_t = W1 x_t + b1 + W_rec o1_{t-1} + d * v1_{t-1}        (o1_0 = 0; W_rec: hidden x hidden, ``layer1_rec``)

W_rec has PyTorch's Linear default init (U(-1/sqrt(hidden), 1/sqrt(hidden))) and no bias (b1 already shifts the
current). It is made after both layers, so that a seed gives W1, b1, W2, b2 the same values with and without it. Only
earlier steps feed back: the delays, and so the registry's ``delay`` of 2, stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.activity import Activity, Synapse
from models.registry import check_positive, register

Reset = Literal["subtract", "proportional"]


class SpikingLayer(nn.Module):
    """A fully connected layer of leaky, graded-output spiking neurons.

    ``step`` is a pure function of the input and the previous state; the time
    loop and the state live in the caller, so nothing is stored between calls.
    """

    def __init__(self, n_in: int, n_out: int, decay: float, threshold: float, penalty: float, reset: Reset):
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)
        nn.init.xavier_uniform_(self.fc.weight)  # the bias keeps PyTorch's default init
        self.decay, self.threshold, self.penalty, self.reset = decay, threshold, penalty, reset

    def step(
        self, x: torch.Tensor, v: torch.Tensor, o: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """One time step. Returns ``((v_{t-1}, o_{t-1}), (v_t, o_t))``: the delayed output, the new state.

        h_t = W x_t + b + d * v_{t-1}
        o_t = relu(h_t - threshold)
        g_t = 1[o_t > 0]                          (a constant for autograd)
        v_t = h_t - (penalty + o_t) * g_t           reset="subtract"  (the seed text)
        v_t = h_t - (penalty / threshold) * h_t * g_t  reset="proportional"  (the 2018 code)
        """
        return self.integrate(self.fc(x), v, o)

    def integrate(
        self, current: torch.Tensor, v: torch.Tensor, o: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """``step`` after the synapses: the input current ``W x_t + b`` is given."""
        h = current + self.decay * v  # (B, n_out)
        o_new = F.relu(h - self.threshold)
        g = (o_new > 0).to(h.dtype)
        if self.reset == "subtract":
            v_new = h - (self.penalty + o_new) * g
        else:
            v_new = h - (self.penalty / self.threshold) * h * g
        return (v, o), (v_new, o_new)


@register("snn-reference", kind="spiking", delay=2)  # each layer returns its previous step
class SNNReference(nn.Module):
    @dataclass(frozen=True)
    class Config:
        hidden: int = 100  # hidden spiking neurons, as many as the FFN's hidden units
        time_steps: int = 128  # T: the 2018 notebook's simulation length
        decay: float = 0.9  # d: the inner state keeps 90% per step (exponential leak)
        threshold: float = 1.0  # theta: the output is relu(h - theta)
        penalty: float = 1.5  # p: refractory penalty subtracted when a neuron fires
        reset: Reset = "subtract"  # "subtract": seed text's rule; "proportional": 2018 code's rule
        recurrent: bool = False  # True: layer 1 also gets W_rec o1_{t-1}, its own delayed output; False: the 2018 network
        n_in: int = 784
        n_out: int = 10

        def __post_init__(self):
            check_positive(self, "hidden", "time_steps", "threshold", "n_in", "n_out")
            if not 0 <= self.decay <= 1:  # above 1 the state grows without input; below 0 it flips sign every step
                raise ValueError(f"decay must be in [0, 1], got {self.decay}")
            if not self.penalty >= 0:  # a negative penalty would raise a neuron that fired instead of resetting it
                raise ValueError(f"penalty must be >= 0, got {self.penalty}")
            if self.reset not in ("subtract", "proportional"):
                raise ValueError(f"reset must be subtract or proportional, got {self.reset!r}")

    def __init__(self, config: Config | None = None):
        super().__init__()
        self.config = c = config or self.Config()
        args = (c.decay, c.threshold, c.penalty, c.reset)
        self.layer1 = SpikingLayer(c.n_in, c.hidden, *args)
        self.layer2 = SpikingLayer(c.hidden, c.n_out, *args)
        # W_rec (hidden, hidden), Linear's default init, no bias; made last: the other weights as without it
        self.layer1_rec = nn.Linear(c.hidden, c.hidden, bias=False) if c.recurrent else None

    def step1(
        self, current: torch.Tensor, v: torch.Tensor, o: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Layer 1's step from its feed-forward current ``W1 x_t + b1`` (B, hidden) and its state (v1_{t-1}, o1_{t-1}):
        ``SpikingLayer.integrate``, with ``recurrent=true`` on ``W1 x_t + b1 + W_rec o1_{t-1}``."""
        if self.layer1_rec is not None:
            current = current + self.layer1_rec(o)
        return self.layer1.integrate(current, v, o)

    def draw_masks(self, x: torch.Tensor) -> torch.Tensor:
        """Random noisy masks u_t ~ U[0, 1), fresh per step, sample and pixel: (T, B, n_in)."""
        return torch.rand((self.config.time_steps, *x.shape), device=x.device, dtype=x.dtype)

    def forward(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        x = x.flatten(1)  # (B, n_in)
        if masks is None:
            masks = self.draw_masks(x)
        elif masks.shape != (self.config.time_steps, *x.shape):
            raise ValueError(f"masks must have shape {(self.config.time_steps, *x.shape)}, got {tuple(masks.shape)}")
        zeros1 = x.new_zeros(x.shape[0], self.config.hidden)
        zeros2 = x.new_zeros(x.shape[0], self.config.n_out)
        state1, state2 = (zeros1, zeros1), (zeros2, zeros2)
        kept = []
        for t in range(self.config.time_steps):
            (_, out1), state1 = self.step1(self.layer1.fc(masks[t] * x), *state1)  # layer 1's delayed output o1_{t-1}
            (v2, _), state2 = self.layer2.step(out1, *state2)  # layer 2's delayed state v2_{t-1}
            kept.append(v2)
        return torch.stack(kept).mean(0)  # (B, n_out)

    def trace(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every step of both layers, for pictures and gradient studies: (T, B, n) tensors, row t-1 = step t.

        ``input`` is u_t * x, ``layer1_current`` layer 1's input current W1 x_t + b1 (call ``retain_grad()``
        on it to read dL/dI after a backward pass; with ``recurrent=true`` W_rec o1_{t-1} is added to it step by step,
        so its gradient is still dL/dh1_t), ``layerK_v`` / ``layerK_o`` each layer's new state and
        output at step t (before the one-step delay); ``logits`` (B, n_out) equal ``forward``'s.
        """
        c = self.config
        x = x.flatten(1)  # (B, n_in)
        if masks is None:
            masks = self.draw_masks(x)
        inputs = masks * x  # (T, B, n_in)
        current1 = self.layer1.fc(inputs)  # (T, B, hidden)
        zeros1 = x.new_zeros(x.shape[0], c.hidden)
        zeros2 = x.new_zeros(x.shape[0], c.n_out)
        state1, state2 = (zeros1, zeros1), (zeros2, zeros2)
        seq: dict[str, list[torch.Tensor]] = {k: [] for k in ("layer1_v", "layer1_o", "layer2_v", "layer2_o")}
        for t in range(c.time_steps):
            (_, out1), state1 = self.step1(current1[t], *state1)
            (_, _), state2 = self.layer2.step(out1, *state2)
            for k, value in zip(seq, (*state1, *state2)):
                seq[k].append(value)
        out = {k: torch.stack(v) for k, v in seq.items()}
        kept = torch.cat([zeros2[None], out["layer2_v"][: c.time_steps - 1]])  # v2_0 = 0, v2_1 .. v2_{T-1}
        return {"input": inputs, "layer1_current": current1, **out, "logits": kept.mean(0)}

    @torch.no_grad()
    def activity(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> Activity:
        """The steps that reach the logits: layer 1 at steps 1..T-2, layer 2 at 1..T-1 (it gets o1_0 = 0 first)."""
        T = self.config.time_steps
        tr = self.trace(x, masks)
        steps1 = max(T - 2, 0)
        return self._activity(tr["logits"], tr["input"][:steps1], tr["layer1_o"][:steps1], tr["layer2_o"][: T - 1])

    def _activity(self, logits, inputs1: torch.Tensor, out1: torch.Tensor, out2: torch.Tensor) -> Activity:
        """The Activity of layer 1's inputs and outputs at steps 1..T-2 and layer 2's outputs at steps 1..T-1. With
        ``recurrent=true`` a second layer-1 synapse: W_rec on o1_0 = 0, o1_1 .. o1_{T-3} (graded outputs: MACs)."""
        inputs2 = torch.cat([out1.new_zeros(1, *out1.shape[1:]), out1])[: self.config.time_steps - 1]  # o1_0 = 0 first
        synapses = [Synapse("layer1", inputs1, self.layer1.fc.weight), Synapse("layer2", inputs2, self.layer2.fc.weight)]
        if self.layer1_rec is not None:  # at layer 1's step t it multiplies o1_{t-1}, as layer 2 does at step t
            synapses.insert(1, Synapse("layer1", inputs2[: len(out1)], self.layer1_rec.weight))
        return Activity(logits=logits, synapses=synapses, outputs={"layer1": out1, "layer2": out2})
