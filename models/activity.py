"""What a forward pass did, for the activity and cost metrics (bench/metrics.py counts them).

Every registered model has ``activity(x) -> Activity``: the same logits as ``forward(x)``
(the same random draws too), plus what each weight matrix received and what each
nonlinearity put out, as (steps, B, n) tensors. A model without a time axis has one step.
Only the steps whose results reach the logits are included: the SNN's two one-step delays
hide layer 1's last two steps and layer 2's last one, which the fast model never computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Synapse:
    """One weight matrix and what it multiplied: NeuroBench's synaptic operations are counted from these."""

    name: str
    inputs: torch.Tensor  # (steps, B, n_in): the matrix's input at each step
    weight: torch.Tensor  # (n_out, n_in): a zero weight does no operation


@dataclass
class Activity:
    logits: torch.Tensor  # (B, n_out), as forward returns them
    synapses: list[Synapse] = field(default_factory=list)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)  # layer -> nonlinearity's output (steps, B, n)
