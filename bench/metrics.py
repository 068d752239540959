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
- *NeuroBench's convention* (``neurobench_ops``): effective operations with an input that a model gives once for all
  its steps (``lif``'s ``direct`` encoding: the static pixels, a synapse whose inputs have one step where the model
  has T) counted at every one of the T steps, as NeuroBench's SynapticOperations does; snnbench's ``effective_*``
  count it once, what the model computes.
- *memory accesses* per sample, in 32-bit words (the memory-aware energy estimate of report/activity.py; docs/metrics.md):
  reads = for each synapse, one weight per effective operation (no reuse: Lemaire et al. 2022) plus its non-zero
  inputs; plus, in a model with neuron state (``stateful``: spiking), the membrane potential of every neuron at every
  step. Writes = every non-zero output (a spike or an activation) plus, with state, every membrane potential.
- a convolution's operations are counted as NeuroBench counts them (its convolution of the 0/1 indicators of
  the inputs and of the weights, summed): at each output position and output channel, one per kernel tap
  that lands on an input (not on the padding), times the input channels; dense ones count every input and
  weight, effective ones only a non-zero input times a non-zero weight.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bench import schema
from bench.timing import Stopwatch, synchronizer
from models.activity import Activity, Conv, Synapse

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


def conv_fan_out(weight: torch.Tensor, conv: Conv, size: tuple[int, int]) -> torch.Tensor:
    """(n_in, H, W) int64 on the weight's device: the operations one non-zero input at each position of an (H, W) input
    sets off, the sum over the taps (a, b) that land it on an output position of the non-zero weights w[:, c, a, b].
    One transposed convolution of an all-ones output map with those counts, on the CPU in float64 (whole numbers, exact;
    not every device has float64)."""
    kernel = torch.count_nonzero(weight, dim=0).cpu().to(torch.float64)  # (n_in, kh, kw): each tap's non-zero weights
    k, out = tuple(weight.shape[2:]), conv.output_size(size, tuple(weight.shape[2:]))
    # the input rows and columns past the last window's start: conv_transpose2d's output_padding (each < stride)
    spare = tuple(n + 2 * p - kk - (o - 1) * s for n, kk, o, s, p in zip(size, k, out, conv.stride, conv.padding))
    ones = torch.ones(1, 1, *out, dtype=torch.float64)
    hits = F.conv_transpose2d(ones, kernel[None], stride=conv.stride, padding=conv.padding, output_padding=spare)[0]
    return hits.round().to(torch.int64).to(weight.device)


def conv_dense_ops(size: tuple[int, int], shape: tuple[int, ...], conv: Conv) -> int:
    """The operations of one sample's step through a convolution of weight ``shape`` (n_out, n_in, kh, kw) on an
    (H, W) input, every input and weight counted: n_out n_in times the (output position, tap) pairs that land on the
    input, which factor into the rows' and the columns'."""
    n_out, n_in, *k = shape
    reach = 1
    for n, kk, s, p in zip(size, k, conv.stride, conv.padding):
        reach *= sum(1 for i in range((n + 2 * p - kk) // s + 1) for a in range(kk) if 0 <= i * s + a - p < n)
    return n_out * n_in * reach


def ops(synapse: Synapse) -> tuple[torch.Tensor, int]:
    """(effective operations, a 0-d tensor; dense operations, an int) of one synapse over all its steps and samples."""
    inputs, weight, conv = synapse.inputs, synapse.weight, synapse.conv
    steps, batch = inputs.shape[:2]
    if conv is None:
        return effective_ops(inputs, weight), steps * batch * weight.numel()
    size = tuple(inputs.shape[3:])
    effective = (torch.count_nonzero(inputs, dim=(0, 1)) * conv_fan_out(weight, conv, size)).sum()  # int64: exact
    return effective, steps * batch * conv_dense_ops(size, tuple(weight.shape), conv)


class Counter:
    """Sums of the evaluation pass's activity, kept on the device (one small sync per layer and batch: spikes or not)."""

    def __init__(self, layers: tuple[str, ...] = schema.DEFAULT_LAYERS, stateful: bool = False):
        self.names = tuple(layers)  # the model's weight layers (models.ModelInfo.layers): one set of columns each
        self.stateful = stateful  # its neurons keep a membrane potential, read and written at every step (spiking)
        self.neurobench: torch.Tensor | int = 0
        self.reads: torch.Tensor | int = 0
        self.writes: torch.Tensor | int = 0
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
            self.writes = self.writes + torch.count_nonzero(out) + (out.numel() if self.stateful else 0)
            self.reads = self.reads + (out.numel() if self.stateful else 0)  # the membrane potentials
        steps = max((int(s.inputs.shape[0]) for s in activity.synapses), default=1)
        for synapse in activity.synapses:  # inputs: (steps, B, n_in), weight: (n_out, n_in); or a convolution's
            effective, dense = ops(synapse)
            if is_spiking(synapse.inputs):
                self.acs = self.acs + effective
            else:
                self.macs = self.macs + effective
            self.dense += dense
            self.neurobench = self.neurobench + effective * (steps if synapse.inputs.shape[0] == 1 else 1)
            self.reads = self.reads + effective + torch.count_nonzero(synapse.inputs)  # weights, and the inputs

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
            out["neurobench_ops"] = float(self.neurobench) / self.samples
            out["memory_reads"] = float(self.reads) / self.samples
            out["memory_writes"] = float(self.writes) / self.samples
        return out


class TimedCounter(Counter):
    """A Counter that also measures, device synchronized, how long its counting takes (``seconds``)."""

    def __init__(self, device: torch.device | str, layers: tuple[str, ...] = schema.DEFAULT_LAYERS, stateful: bool = False):
        super().__init__(layers, stateful)
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
