"""The non-spiking baseline: 784 -> 100 -> 10 with a ReLU (SPEC.md, "The FFN")."""

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
        return self.net(x.flatten(1))  # (B, n_out)

    @torch.no_grad()
    def activity(self, x: torch.Tensor) -> Activity:
        """The logits and what each layer saw: a single step, the hidden ReLU is the one nonlinearity."""
        fc1, relu, fc2 = self.net
        x = x.flatten(1)
        hidden = relu(fc1(x))  # (B, hidden)
        return Activity(
            logits=fc2(hidden),
            synapses=[Synapse("layer1", x[None], fc1.weight), Synapse("layer2", hidden[None], fc2.weight)],
            outputs={"layer1": hidden[None]},
        )
