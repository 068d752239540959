"""``csnn-reference``: the convolutional LIF network of ``csnn`` (models/conv.py) written one time step at a time.

At each step t = 1..T, as snnTorch's tutorial 7 writes it (a Python loop over t, every layer on that step's input):

    I1_t = maxpool2(conv1(x_t))          U1_t = f(U1_{t-1}, I1_t)     S1_t = H(U1_t - threshold)
    I2_t = maxpool2(conv2(S1_t))         U2_t = f(U2_{t-1}, I2_t)     S2_t = H(U2_t - threshold)
    I3_t = fc(flatten(S2_t))             U3_t = f(U3_{t-1}, I3_t)     S3_t = H(U3_t - threshold)

from U_0 = 0, with lif-reference's neuron f (``LIFReference.step``: snnTorch's ``Leaky``, the same rounding) and its
surrogate gradient (``Spike``); x_t is the held intensities of a static image (conv1 run again at every step) or bin
t's frame. Logits: the mean of U3_t over t (``readout="membrane"``) or the sum of S3_t (``"spikes"``). Same config,
parameters and results as ``csnn``; tests/test_conv.py holds the two to 1e-5 in logits and every gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.conv import CSNN, LAYERS
from models.lif_reference import LIFReference, Spike
from models.registry import register


@register("csnn-reference", kind="spiking", layers=LAYERS, delay=0, intensities=True)
class CSNNReference(CSNN):
    step = LIFReference.step  # U_t from I_t and U_{t-1}, in snnTorch's order of operations
    channels_last = False  # the plain layout: feature maps (B, c, h, w), their neurons in (c, h, w) order

    def fire(self, layer: int, current: torch.Tensor, u: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(S_t, U_t) of layer ``layer`` (0, 1, 2) from its current I_t and U_{t-1} (None: U_0 = 0)."""
        c = self.config
        u = self.step(current, torch.zeros_like(current) if u is None else u)
        return Spike.apply(u - c.threshold, c.surrogate, c.sharpness), u

    def _layers(self, x: torch.Tensor, record: bool = False):
        """csnn's results, one step at a time: (logits, conv1's input, the three layers' spikes (T, B, n))."""
        c = self.config
        inputs = self.inputs(x)  # (T, B, C, H, W), or (1, B, C, H, W) held
        state: list[torch.Tensor | None] = [None, None, None]
        seq: list[list[torch.Tensor]] = [[], [], []]
        membranes = []
        for t in range(c.time_steps):
            spikes = inputs[min(t, len(inputs) - 1)]
            for layer, weights in enumerate((self.conv1, self.conv2, self.fc)):
                current = weights(spikes.flatten(1)) if layer == 2 else F.max_pool2d(weights(spikes), 2)
                spikes, state[layer] = self.fire(layer, current, state[layer])
                seq[layer].append(spikes.flatten(1))
            membranes.append(state[2])
        spikes1, spikes2, spikes3 = (torch.stack(s) for s in seq)
        logits = torch.stack(membranes).mean(0) if c.readout == "membrane" else spikes3.sum(0)
        return logits, inputs, spikes1, spikes2, spikes3
