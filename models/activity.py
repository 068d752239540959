"""What a forward pass did, for the activity and cost metrics (bench/metrics.py counts them).

Every registered model has ``activity(x) -> Activity``: the same logits as ``forward(x)``
(the same random draws too), plus what each weight matrix received and what each
nonlinearity put out, as (steps, B, n) tensors. A model without a time axis has one step. A convolution's
synapse (``conv`` set) has its inputs as (steps, B, n_in, H, W) and its weight as (n_out, n_in, kh, kw); its
nonlinearity's output is flattened to (steps, B, n_out H' W'), one neuron per feature map and position.
Only the steps whose results reach the logits are included: the SNN's two one-step delays
hide layer 1's last two steps and layer 2's last one, which the fast model never computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class Conv:
    """Where a 2-D convolution's kernel lands: output position (i, j) and tap (a, b) read input position
    (i stride_h + a - padding_h, j stride_w + b - padding_w); a tap that lands in the padding reads nothing."""

    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    @classmethod
    def of(cls, layer: nn.Conv2d) -> Conv:
        """The geometry of ``layer``; ValueError for what the counts do not cover (dilation, groups, padding by name)."""
        if isinstance(layer.padding, str) or layer.dilation != (1, 1) or layer.groups != 1:
            raise ValueError(f"only convolutions with numeric padding, no dilation and one group are counted, got {layer}")
        return cls(tuple(layer.stride), tuple(layer.padding))

    def output_size(self, size: tuple[int, int], kernel: tuple[int, int]) -> tuple[int, int]:
        """(H', W') of an (H, W) input under a (kh, kw) kernel."""
        (h, w), (kh, kw), (sh, sw), (ph, pw) = size, kernel, self.stride, self.padding
        return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


@dataclass
class Synapse:
    """One weight matrix or convolution and what it multiplied: NeuroBench's synaptic operations are counted from these."""

    name: str
    inputs: torch.Tensor  # (steps, B, n_in): the matrix's input at each step; a convolution's (steps, B, n_in, H, W)
    weight: torch.Tensor  # (n_out, n_in): a zero weight does no operation; a convolution's (n_out, n_in, kh, kw)
    conv: Conv | None = None  # a convolution's geometry; None: a dense layer


@dataclass
class Activity:
    logits: torch.Tensor  # (B, n_out), as forward returns them
    synapses: list[Synapse] = field(default_factory=list)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)  # layer -> nonlinearity's output (steps, B, n)
