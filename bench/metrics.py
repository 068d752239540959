"""Activity and cost of the evaluation pass: firing rates, sparsity and NeuroBench synaptic operations.

``Counter`` adds up, batch after batch and on the device, what ``model.activity(x)`` reports
(models/activity.py); ``values()`` turns the sums into the per-epoch CSV columns below.
Definitions (NeuroBench, Yik et al. 2024, "activation sparsity" and "synaptic operations"):

- a layer's *firing rate* is the share of its neuron-steps (neuron x sample x time step) whose
  output is above zero (for the FFN, of its hidden ReLU outputs); *sparsity* the share that are
  exactly zero; *silent share* the share of neurons that never put out anything above zero on the
  whole test set; *mean when firing* the mean output over the neuron-steps that fired (the SNN's
  outputs are graded: how large a "spike" is).
- synaptic operations per sample: *dense* counts every input x every weight at every step, as
  hardware without sparsity support does; *effective* ones skip zero inputs and zero weights; they
  are *ACs* (accumulates) when the layer's inputs are spikes (every value in {-1, 0, 1}) and *MACs*
  otherwise. The SNN's inputs are the random masks times analog pixels and its outputs are graded, so
  its operations are MACs. Biases are not synaptic operations (NeuroBench does not count them).
"""

from __future__ import annotations

import math

import torch

from bench import schema
from bench.timing import Stopwatch, synchronizer
from models.activity import Activity

COLUMNS = schema.METRIC_COLUMNS  # of a model with the built-in layers; ``Counter(layers)`` gives a model's own


def is_spiking(inputs: torch.Tensor) -> bool:
    """True when every value is -1, 0 or 1: NeuroBench then counts accumulates (ACs), else MACs."""

    def spikes(t: torch.Tensor) -> bool:
        return torch.equal(t, torch.sign(t))  # sign() maps exactly -1, 0 and 1 to themselves (and NaN to NaN != NaN)

    # graded inputs give themselves away in the first or last step (the SNN's layer 2 gets zeros first):
    # no need to scan every value then
    return inputs.numel() == 0 or (spikes(inputs[:1]) and spikes(inputs[-1:]) and spikes(inputs))


def effective_ops(inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Operations that a non-zero input times a non-zero weight needs, over all steps and samples (0-d tensor)."""
    fan_out = torch.count_nonzero(weight, dim=0)  # (n_in,): what one non-zero input sets off
    if bool((fan_out == fan_out[0]).all()):  # every column alike (a dense layer): one fast count will do
        return torch.count_nonzero(inputs) * fan_out[0]
    return (torch.count_nonzero(inputs, dim=(0, 1)) * fan_out).sum()


class Counter:
    """Sums of the evaluation pass's activity, kept on the device (one small sync per layer and batch: spikes or not)."""

    def __init__(self, layers: tuple[str, ...] = schema.DEFAULT_LAYERS):
        self.names = tuple(layers)  # the model's weight layers (models.ModelInfo.layers): one set of columns each
        self.samples = 0
        self.layers: dict[str, dict[str, torch.Tensor]] = {}
        self.dense = 0  # a Python int: shapes alone decide it
        self.macs: torch.Tensor | int = 0
        self.acs: torch.Tensor | int = 0

    def add(self, activity: Activity) -> None:
        self.samples += activity.logits.shape[0]
        for name, out in activity.outputs.items():  # out: (steps, B, n)
            sums = self.layers.setdefault(name, {"active": 0, "zeros": 0, "total": 0, "active_sum": 0, "ever": None})
            active = out > 0
            sums["active"] = sums["active"] + torch.count_nonzero(active)
            sums["zeros"] = sums["zeros"] + (out.numel() - torch.count_nonzero(out))
            sums["total"] += out.numel()
            sums["active_sum"] = sums["active_sum"] + out.clamp_min(0).sum().double()  # the outputs above zero
            ever = out.flatten(0, 1).amax(0) > 0 if out.numel() else out.new_zeros(out.shape[-1], dtype=torch.bool)
            sums["ever"] = ever if sums["ever"] is None else sums["ever"] | ever  # (n,): fired at least once
        for synapse in activity.synapses:  # inputs: (steps, B, n_in), weight: (n_out, n_in)
            effective = effective_ops(synapse.inputs, synapse.weight)
            if is_spiking(synapse.inputs):
                self.acs = self.acs + effective
            else:
                self.macs = self.macs + effective
            self.dense += synapse.inputs.shape[0] * synapse.inputs.shape[1] * synapse.weight.numel()

    def values(self) -> dict[str, float]:
        """The metric columns (without ``metrics_seconds``); NaN where a layer has no nonlinearity or nothing was counted."""
        undeclared = [name for name in self.layers if name not in self.names]
        if undeclared:
            raise ValueError(f"the model's activity names {', '.join(undeclared)}, not among the layers {self.names} of its "
                             "registry entry: their columns would be lost")  # fmt: skip
        out = dict.fromkeys(schema.metric_columns(self.names)[1:], math.nan)
        zeros = total = 0
        for name in self.names:
            sums = self.layers.get(name)
            if sums is None or sums["total"] == 0:
                continue
            active, n_zeros, active_sum = (float(sums[k]) for k in ("active", "zeros", "active_sum"))
            out[f"{name}_firing_rate"] = active / sums["total"]
            out[f"{name}_sparsity"] = n_zeros / sums["total"]
            out[f"{name}_silent_share"] = 1.0 - int(sums["ever"].sum()) / sums["ever"].numel()
            out[f"{name}_mean_when_firing"] = active_sum / active if active else math.nan
            zeros, total = zeros + n_zeros, total + sums["total"]
        if total:
            out["activation_sparsity"] = zeros / total
        if self.samples:
            out["dense_ops"] = self.dense / self.samples
            out["effective_macs"] = float(self.macs) / self.samples
            out["effective_acs"] = float(self.acs) / self.samples
        return out


class TimedCounter(Counter):
    """A Counter that also measures, device synchronized, how long its counting takes (``seconds``)."""

    def __init__(self, device: torch.device | str, layers: tuple[str, ...] = schema.DEFAULT_LAYERS):
        super().__init__(layers)
        self.sync = synchronizer(device)
        self.seconds = 0.0

    def add(self, activity: Activity) -> None:
        with Stopwatch(self.sync) as sw:  # its first sync waits for the forward pass: not the metrics' cost
            super().add(activity)
        self.seconds += sw.seconds

    def values(self) -> dict[str, float]:
        with Stopwatch(self.sync) as sw:  # reading the device sums back is part of the cost
            out = super().values()
        self.seconds += sw.seconds
        return {"metrics_seconds": self.seconds, **out}
