"""The recurrent spiking network (``rsnn-reference``): one recurrent LIF layer with an optional adaptive threshold,
written one time step at a time, as one writes it from the equations.

n_in -> hidden (recurrent LIF, all to all) -> n_out (LIF readout). At each step t = 1..T, from U_0 = a_0 = 0, S_0 = 0:

    I_t     = W_in x_t + b_in + W_rec S_{t-1}                   the recurrent layer's current (B, hidden)
    a_t     = rho a_{t-1} + S_{t-1}                             its spikes, leaky-summed: rho = exp(-1 / tau_adapt)
    theta_t = threshold + adaptation a_t                        its threshold: each spike raises it by ``adaptation``
    U_t     = beta U_{t-1} + I_t - theta_{t-1} R_{t-1}          reset="subtract" (the threshold the neuron crossed)
    U_t     = beta (1 - R_{t-1}) U_{t-1} + I_t                  reset="zero"
    S_t     = H(U_t - theta_t)                                  a spike when U_t > theta_t

and the readout, lif's neuron (models/lif_reference.py) at the fixed threshold: U2_t = beta U2_{t-1} + W_out S_t + b_out
- threshold R2_{t-1} (or the zero reset), S2_t = H(U2_t - threshold). Logits: the mean over t of U2_t
(``readout="membrane"``) or the sum of S2_t (``"spikes"``). R_t is S_t without a gradient: the reset term is detached
whole (the threshold it subtracts too), as lif and snnTorch detach the reset. Everything else carries the gradient:
H's derivative is the surrogate's at U_t - theta_t (``surrogate``, ``alpha``, ``slope``: lif's), so it reaches W_rec
through S_{t-1} and the threshold through a_t. With ``adaptation=0`` theta_t = threshold: a recurrent LIF network.

The adaptation is the ALIF neuron of the LSNN (Bellec et al. 2018), whose threshold is b0 + beta_L b_t with
b_t = rho b_{t-1} + (1 - rho) z_{t-1}: here a_t = b_t / (1 - rho), so ``adaptation`` = beta_L (1 - rho) and
``threshold`` = b0; ``adaptation`` is the threshold's rise per spike, which decays by rho a step.

Input. Sequence (``sequence=True``, event data: smnist, shd): x (B, T, *frame) float event counts, bin t's frame
flattened is x_t (T must be ``time_steps``). Static images: x (B, ...) pixels in [-0.5, 0.5], x_t = x + 0.5 at every
step (lif's ``direct`` encoding: the intensities held as an input current).

Shapes: W_in (hidden, n_in) = ``fc1``, W_rec (hidden, hidden) = ``rec`` (no bias: b_in is the layer's one), W_out
(n_out, hidden) = ``fc2``. The fast ``rsnn`` (models/rsnn.py) gives the same logits and gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from models.activity import Activity, Synapse
from models.lif_reference import DEFAULT_ALPHA, LIFReference, Readout, Reset, Spike, Surrogate, check_neurons, frames, intensity
from models.registry import check_positive, register


# step t's input reaches step t's logits
@register("rsnn-reference", kind="spiking", layers=("layer1", "layer2"), delay=0, intensities=True)
class RSNNReference(nn.Module):
    gradient_window = False  # a surrogate gradient flows through every step (as lif: bench/analysis.py)

    @dataclass(frozen=True)
    class Config:
        hidden: int = 128  # recurrent LIF neurons: issue 26's size, the same as gru's and lstm's
        time_steps: int = 25  # T: a static image is held for T steps (lif's default); event data sets its bins
        beta: float = 0.95  # the membrane keeps beta of itself per step (lif's, snnTorch's tutorials' value)
        threshold: float = 1.0  # theta's resting value (the readout's fixed threshold)
        reset: Reset = "subtract"  # "subtract": U - theta_{t-1} after a spike (snnTorch's default); "zero": U = 0
        surrogate: Surrogate = "atan"
        alpha: float = 0.0  # atan and sigmoid: sharpness; 0 means the surrogate's default (atan 2, sigmoid 4)
        slope: float = 25.0  # fast_sigmoid: sharpness
        adaptation: float = 0.0  # theta's rise per spike; 0: plain recurrent LIF (the LSNN's ALIF neurons: above 0)
        # steps over which a spike's rise of theta decays (rho = exp(-1 / tau_adapt)): the LSNN sets it near the input's
        # length (700 ms of sequential MNIST's 784), smnist here is 112 bins
        tau_adapt: float = 100.0
        readout: Readout = "membrane"  # the harness's loss is cross-entropy on the logits: lif's default readout
        sequence: bool = False  # True: x is (B, T, *frame), bin t's frame the input at step t; set by the harness from event data
        n_in: int = 784
        n_out: int = 10

        def __post_init__(self):
            check_positive(self, "hidden", "n_in", "n_out", "tau_adapt")
            check_neurons(self)
            if not self.adaptation >= 0:
                raise ValueError(f"adaptation must be >= 0 (0: no adaptation), got {self.adaptation}")

        @property
        def sharpness(self) -> float:
            if self.surrogate == "fast_sigmoid":
                return self.slope
            return self.alpha or DEFAULT_ALPHA[self.surrogate]

        @property
        def rho(self) -> float:
            """a_t's decay per step, exp(-1 / tau_adapt)."""
            return math.exp(-1.0 / self.tau_adapt)

    step = LIFReference.step  # the readout's U_t from I_t and U_{t-1}, lif-reference's (snnTorch's order of operations)

    def __init__(self, config: Config | None = None):
        super().__init__()
        self.config = c = config or self.Config()
        self.fc1 = nn.Linear(c.n_in, c.hidden)  # PyTorch's default init, as snnTorch's tutorials (and RLeaky's recurrent)
        self.rec = nn.Linear(c.hidden, c.hidden, bias=False)
        self.fc2 = nn.Linear(c.hidden, c.n_out)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The input of every step: sequence input's frames (T, B, n_in), a view of x; a static image's intensities
        (1, B, n_in), held for all T steps."""
        c = self.config
        return frames(c, x) if c.sequence else intensity(x.flatten(1), "direct")[None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trace(x)["logits"]

    def hidden_step(self, current: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """S_t from I_t without its recurrent part (W_in x_t + b_in) and the state of step t-1 (``u``, ``s``, ``a``,
        ``theta``), which it updates to step t."""
        c = self.config
        s_prev, fired = state["s"], state["s"].detach()  # S_{t-1}; R_{t-1}: no gradient
        state["a"] = a = c.rho * state["a"] + s_prev
        theta = c.threshold + c.adaptation * a
        current = current + self.rec(s_prev)
        if c.reset == "zero":
            u = c.beta * ((1 - fired) * state["u"]) + current
        else:
            u = c.beta * state["u"] + current - state["theta"].detach() * fired
        s = Spike.apply(u - theta, c.surrogate, c.sharpness)
        state.update(u=u, s=s, theta=theta)
        return s

    def trace(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every step of both layers, (T, B, n): ``input`` (what fc1 multiplies: (1, B, n_in) for a held image),
        ``layer1_current`` (W_in x_t + b_in, (T, B, hidden)), ``layerK_v`` (U_t), ``layerK_o`` (S_t), ``layer1_theta``
        (theta_t); ``logits``."""
        c = self.config
        inputs = self.inputs(x)
        zeros = inputs.new_zeros(inputs.shape[1], c.hidden)
        state = {"u": zeros, "s": zeros, "a": zeros, "theta": zeros + c.threshold}
        u2 = inputs.new_zeros(inputs.shape[1], c.n_out)
        seq: dict[str, list[torch.Tensor]] = {k: [] for k in ("layer1_current", "layer1_v", "layer1_o", "layer1_theta",
                                                              "layer2_v", "layer2_o")}  # fmt: skip
        for t in range(c.time_steps):
            current = self.fc1(inputs[min(t, len(inputs) - 1)])
            s1 = self.hidden_step(current, state)
            u2 = self.step(self.fc2(s1), u2)
            s2 = Spike.apply(u2 - c.threshold, c.surrogate, c.sharpness)
            for k, value in zip(seq, (current, state["u"], s1, state["theta"], u2, s2)):
                seq[k].append(value)
        out = {k: torch.stack(v) for k, v in seq.items()}
        logits = out["layer2_v"].mean(0) if c.readout == "membrane" else out["layer2_o"].sum(0)
        return {"input": inputs, **out, "logits": logits}

    @torch.no_grad()
    def activity(self, x: torch.Tensor) -> Activity:
        tr = self.trace(x)
        return self._activity(tr["logits"], tr["input"], tr["layer1_o"], tr["layer2_o"])

    def _activity(self, logits, inputs, spikes1, spikes2) -> Activity:
        """layer1's two weight matrices: W_in on the input (event frames at every step, accumulates where they are 0/1;
        a held image once, multiply-accumulates) and W_rec on the spikes fed back, S_{t-1} at each step t (S_0 = 0:
        dense hardware does step 1's product too, so it is counted dense), accumulates; layer2 W_out on S_t."""
        fed_back = torch.cat([torch.zeros_like(spikes1[:1]), spikes1[:-1]])
        return Activity(
            logits=logits,
            synapses=[
                Synapse("layer1", inputs, self.fc1.weight),
                Synapse("layer1", fed_back, self.rec.weight),
                Synapse("layer2", spikes1, self.fc2.weight),
            ],
            outputs={"layer1": spikes1, "layer2": spikes2},
        )
