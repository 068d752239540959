"""The non-spiking baseline: 784 -> 100 -> 10 with a ReLU (SPEC.md, "The FFN").

Sequence input (``sequence=True``, event data): x is (B, T, *frame), event counts per time bin; the network sees the
frames accumulated over the T bins, as ANN baselines on event data commonly do: their mean, (1/T) sum_t x[:, t]
flattened (B, n_in). The mean, not the sum, so that the input's scale does not grow with the bins: summed counts of
smnist (about 50 per channel) blew the 2018 schedule up in the first steps (train loss 380, 99% of the hidden units
dead for good), where a pixel in [-0.5, 0.5] does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.activity import Activity, Synapse
from models.registry import check_positive, register


@register("ffn", kind="baseline")  # its layer2 has no nonlinearity: layer2_* activity is NaN
class FFN(nn.Module):
    @dataclass(frozen=True)
    class Config:
        hidden: int = 100  # same neuron count as the SNN's hidden layer
        sequence: bool = False  # True: x is (B, T, *frame), the frames' mean over time (the ANN baseline practice uses)
        n_in: int = 784  # 28 x 28 MNIST pixels
        n_out: int = 10  # classes

        def __post_init__(self):
            check_positive(self, "hidden", "n_in", "n_out")

    def __init__(self, config: Config | None = None):
        super().__init__()
        self.config = config or self.Config()
        c = self.config
        self.net = nn.Sequential(nn.Linear(c.n_in, c.hidden), nn.ReLU(), nn.Linear(c.hidden, c.n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._flat(x))  # (B, n_out)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input (B, n_in): x flattened; sequence input (B, T, *frame) averaged over T first (an x
        flattened to (B, T n_in), or frames of one element, read as T frames of n_in)."""
        if self.config.sequence:
            x = x.mean(1) if x.dim() > 2 else x.reshape(len(x), -1, self.config.n_in).mean(1)
        return x.flatten(1)

    @torch.no_grad()
    def activity(self, x: torch.Tensor) -> Activity:
        """The logits and what each layer saw: a single step, the hidden ReLU is the one nonlinearity (sequence input: the
        mean frame is layer 1's input)."""
        fc1, relu, fc2 = self.net
        x = self._flat(x)
        hidden = relu(fc1(x))  # (B, hidden)
        return Activity(
            logits=fc2(hidden),
            synapses=[Synapse("layer1", x[None], fc1.weight), Synapse("layer2", hidden[None], fc2.weight)],
            outputs={"layer1": hidden[None]},
        )
