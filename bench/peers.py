"""The same workload in the two best-known SNN libraries, for ``bench.speed`` (``pip install -e '.[peers]'``).

784 -> 100 -> 10, two leaky layers with decay 0.9 and threshold 1.0, T steps of the same
random-mask input (drawn by the same generator as ``snn``) and a time-averaged readout of
layer 2's membrane. Their neurons differ slightly from ours (binary spikes with a surrogate
gradient instead of a graded output; reset by subtracting the threshold); the work per step
does not. Each is written the way the library's own tutorials write it.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from models import masks as mask_rng

PEERS = ("snntorch", "spikingjelly")


def installed() -> list[str]:
    return [name for name in PEERS if importlib.util.find_spec(name) is not None]


def _masked_input(x: torch.Tensor, time_steps: int) -> torch.Tensor:
    x = x.flatten(1)
    return mask_rng.masked_uniform_(torch.empty((time_steps, *x.shape), device=x.device, dtype=x.dtype), x)  # (T, B, 784)


class SnnTorchNet(nn.Module):
    """snnTorch: ``snntorch.Leaky`` layers stepped in a Python loop (its tutorials' pattern)."""

    def __init__(self, hidden: int = 100, time_steps: int = 128):
        super().__init__()
        import snntorch

        self.time_steps = time_steps
        self.fc1, self.fc2 = nn.Linear(784, hidden), nn.Linear(hidden, 10)
        self.lif1 = snntorch.Leaky(beta=0.9, threshold=1.0)
        self.lif2 = snntorch.Leaky(beta=0.9, threshold=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = _masked_input(x, self.time_steps)
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        total = 0.0
        for t in range(self.time_steps):
            spk1, mem1 = self.lif1(self.fc1(inputs[t]), mem1)
            _, mem2 = self.lif2(self.fc2(spk1), mem2)
            total = total + mem2
        return total / self.time_steps


class SpikingJellyNet(nn.Module):
    """SpikingJelly: multi-step mode (``step_mode='m'``): Linear layers see (T*B, ...) at once."""

    def __init__(self, hidden: int = 100, time_steps: int = 128):
        super().__init__()
        from spikingjelly.activation_based import layer, neuron

        self.time_steps = time_steps
        lif = dict(tau=10.0, decay_input=False, v_threshold=1.0, v_reset=None, step_mode="m")  # decay 1 - 1/tau = 0.9
        self.fc1 = layer.Linear(784, hidden, step_mode="m")
        self.lif1 = neuron.LIFNode(**lif)
        self.fc2 = layer.Linear(hidden, 10, step_mode="m")
        self.lif2 = neuron.LIFNode(**lif, store_v_seq=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from spikingjelly.activation_based import functional

        functional.reset_net(self)  # SpikingJelly neurons keep state between calls
        self.lif2(self.fc2(self.lif1(self.fc1(_masked_input(x, self.time_steps)))))
        return self.lif2.v_seq.mean(0)


def build(name: str, time_steps: int) -> nn.Module:
    return {"snntorch": SnnTorchNet, "spikingjelly": SpikingJellyNet}[name](time_steps=time_steps)
