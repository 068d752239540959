"""The recurrent non-spiking baselines ``gru`` and ``lstm``: torch's ``nn.GRU`` / ``nn.LSTM``, then a linear readout.

One recurrent layer (batch first, hidden 128: the width of the recurrent spiking layer of ``rsnn``) runs over the input
sequence from h_0 = 0 (and c_0 = 0), and a ``Linear(hidden, n_out)`` reads the last hidden state h_T, as the LSTM
baseline of the LSNN paper (Bellec et al. 2018) reads its last step. The last state, not a mean over steps: a
recurrent network can carry what it needs to its end, and the mean would hand it a readout the spiking ones lack.

    GRU, per step (torch's equations):  r_t = sigma(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
                                        z_t = sigma(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
                                        n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
                                        h_t = (1 - z_t) * n_t + z_t * h_{t-1}
    LSTM: gates i, f, g, o from W_i* x_t + W_h* h_{t-1} (+ biases); c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)
    logits = W_out h_T + b_out                                                   (B, n_out)

Input (the harness sets ``sequence``, ``time_steps``, ``n_in`` and ``n_out`` from the data):

- sequence (``sequence=True``, event data: smnist 1 x 99 over 112 bins, shd 1 x 700 over 100): x is (B, T, *frame)
  float event counts, frame t the input at step t, x_t (B, n_in); T must be ``time_steps`` (the data's bins).
- static images (``sequence=False``): x (B, 1, 28, 28) in [-0.5, 0.5], or flat (B, 784), is read as a sequence of
  ``time_steps`` rows of n_in / time_steps pixels: by default MNIST's 28 rows of 28 pixels, top to bottom, as
  row-sequential MNIST reads them (``time_steps=784``: pixel by pixel). So the contract check and MNIST runs take
  these models too, rather than refusing static input: a row sequence is the usual way to hand an image to an RNN.

Parameters keep torch's default init (every weight and bias U(-1/sqrt(hidden), 1/sqrt(hidden)); the LSTM's forget bias
is not raised to 1). On the CPU torch runs the LSTM through oneDNN's RNN primitive (``aten::mkldnn_rnn_layer``, where
torch was built with it) and the GRU through its own cell loop, one GEMM per step on the hidden state; on CUDA both
through cuDNN.

Activity (bench/metrics.py): layer1 is the recurrent layer, two synapses: its input weights ``weight_ih`` (G H, n_in)
on x_t at T steps, and its recurrent weights ``weight_hh`` (G H, H) on h_{t-1} (h_0 = 0, h_1 .. h_{T-1}); G = 3 gates
for the GRU, 4 for the LSTM. Its "output" is h_t (T, B, H), in (-1, 1): the firing-rate columns are the share above
zero. layer2 is the readout on h_T, one step, no nonlinearity (its columns NaN, as ffn's layer2). Dense synaptic
operations per sample: T (G H n_in + G H H) + n_out H, all MACs but where x holds only 0/1 spikes; the gates'
elementwise products and the biases are no synaptic operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.activity import Activity, Synapse
from models.lif_reference import frames
from models.registry import check_positive, register


class RecurrentANN(nn.Module):
    """The shared body of ``gru`` and ``lstm``: ``cell`` is nn.GRU or nn.LSTM."""

    cell: type[nn.RNNBase] = nn.GRU

    @dataclass(frozen=True)
    class Config:
        hidden: int = 128  # as rsnn's recurrent layer: both sides of the comparison the same width
        time_steps: int = 28  # T: static images are read as 28 rows (MNIST's); sequence input: the data's bins (set from it)
        sequence: bool = False  # True: x is (B, T, *frame), bin t's frame the input at step t; set by the harness from event data
        n_in: int = 784  # static: a sample's pixels, cut into time_steps rows; sequence: one frame's elements
        n_out: int = 10  # classes

        def __post_init__(self):
            check_positive(self, "hidden", "time_steps", "n_in", "n_out")
            if not self.sequence and self.n_in % self.time_steps:
                raise ValueError(f"static input is read as time_steps rows of n_in / time_steps inputs: n_in={self.n_in} "
                                 f"is not a multiple of time_steps={self.time_steps}")  # fmt: skip

        @property
        def step_inputs(self) -> int:
            """The recurrent layer's inputs per step: a frame's n_in, or a row's n_in / time_steps."""
            return self.n_in if self.sequence else self.n_in // self.time_steps

    def __init__(self, config: Config | None = None):
        super().__init__()
        self.config = c = config or self.Config()
        self.layer1 = self.cell(c.step_inputs, c.hidden, num_layers=1, batch_first=True)
        self.layer2 = nn.Linear(c.hidden, c.n_out)

    def steps(self, x: torch.Tensor) -> torch.Tensor:
        """x -> the sequence (B, T, step_inputs), a view where x allows one; ValueError where x does not fit the config."""
        c = self.config
        if c.sequence:
            return frames(c, x).transpose(0, 1)  # lif's reading and checks of (B, T, *frame), back to batch first
        size = x.shape[1:].numel()
        if size != c.n_in:
            raise ValueError(f"a static sample of shape {tuple(x.shape[1:])} has {size} inputs, but n_in = {c.n_in}")
        return x.reshape(x.shape[0], c.time_steps, c.step_inputs)  # row t: pixels t n .. (t + 1) n - 1 of the flat image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.layer1(self.steps(x))  # (B, T, H): h_1 .. h_T, from a zero state at every call
        return self.layer2(hidden[:, -1])  # (B, n_out): the readout of h_T

    @torch.no_grad()
    def activity(self, x: torch.Tensor) -> Activity:
        """The logits (forward's) and what each weight multiplied: x_t and h_{t-1} by layer 1, h_T by the readout."""
        seq = self.steps(x)
        hidden, _ = self.layer1(seq)
        h = hidden.transpose(0, 1)  # (T, B, H): h_1 .. h_T
        before = torch.cat([h.new_zeros(1, *h.shape[1:]), h[:-1]])  # (T, B, H): h_0 = 0, h_1 .. h_{T-1}
        rnn = self.layer1
        return Activity(
            logits=self.layer2(hidden[:, -1]),
            synapses=[
                Synapse("layer1", seq.transpose(0, 1), rnn.weight_ih_l0),  # (T, B, n), (G H, n)
                Synapse("layer1", before, rnn.weight_hh_l0),  # (T, B, H), (G H, H)
                Synapse("layer2", h[-1:], self.layer2.weight),  # (1, B, H), (n_out, H)
            ],
            outputs={"layer1": h},
        )


@register("gru", kind="baseline", layers=("layer1", "layer2"))  # layer2, the readout, has no nonlinearity: NaN columns
class GRU(RecurrentANN):
    """torch's GRU (3 gates), hidden 128, a linear readout of the last hidden state."""

    cell = nn.GRU


@register("lstm", kind="baseline", layers=("layer1", "layer2"))
class LSTM(RecurrentANN):
    """torch's LSTM (4 gates), hidden 128, a linear readout of the last hidden state."""

    cell = nn.LSTM
