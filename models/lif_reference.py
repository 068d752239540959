"""The leaky integrate-and-fire SNN people train today, written step by step (``lif-reference``).

784 -> hidden -> 10, LIF neurons in both layers, binary spikes trained through a surrogate gradient,
as snnTorch's ``Leaky`` defines them (its default ``reset_delay=True``): at each step t = 1..T

    U_t = beta U_{t-1} + I_t - threshold R_{t-1}      reset="subtract" (snnTorch's default)
    U_t = beta (1 - R_{t-1}) U_{t-1} + I_t            reset="zero"
    S_t = H(U_t - threshold)                          (1 when U_t > threshold)

from U_0 = 0, where I_t = W x_t + b is the layer's input current and R_t = S_t without a gradient
(snnTorch detaches the reset). Backward, H's derivative is replaced by the surrogate's:

    atan          alpha / 2 / (1 + (pi / 2 alpha x)^2)      alpha 2 (snnTorch's default; SpikingJelly's ATan)
    sigmoid       alpha s(alpha x) (1 - s(alpha x))          alpha 4 (SpikingJelly's default)
    fast_sigmoid  1 / (slope |x| + 1)^2                       slope 25 (snnTorch's tutorials)

Input encodings, from pixel intensities p = x + 0.5 in [0, 1] (the harness's images are pixel / 255 - 0.5):
``rate``: a Bernoulli spike with probability p, fresh at every step and pixel (``u_t < p`` for u ~ U[0, 1));
``direct``: p itself as a constant input current at every step; ``masks``: the 2018 design's u_t * x.
Readouts: ``membrane``, the mean over the T steps of layer 2's membrane U2_t; ``spikes``, layer 2's spike counts.

Sequence input (``sequence=True``, event data: N-MNIST, SHD, ...): x is (B, T, *frame), float event counts per time
bin, and no encoding applies: layer 1's input at step t is bin t's frame flattened, x_t = x[:, t] (B, n_in), so
I_t = W x_t + b. T = x.shape[1] must be ``time_steps``.

The fast ``lif`` (models/lif.py) gives the same logits and gradients, from the same draws ``u``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from models.activity import Activity, Synapse
from models.registry import check_positive, register

Reset = Literal["subtract", "zero"]
Surrogate = Literal["atan", "sigmoid", "fast_sigmoid"]
Encoding = Literal["rate", "direct", "masks"]
Readout = Literal["membrane", "spikes"]
DEFAULT_ALPHA = {"atan": 2.0, "sigmoid": 4.0}


def check_neurons(config) -> None:
    """ValueError for a LIF neuron key out of range: the keys every LIF model shares (``lif``'s, ``csnn``'s):
    time_steps, beta, threshold, reset, surrogate and its sharpness (alpha or slope), readout."""
    check_positive(config, "time_steps", "threshold", "slope")
    for key, choices in (("reset", Reset), ("surrogate", Surrogate), ("readout", Readout)):
        if getattr(config, key) not in choices.__args__:
            raise ValueError(f"{key} must be one of {', '.join(choices.__args__)}, got {getattr(config, key)!r}")
    if not 0 <= config.beta <= 1:
        raise ValueError(f"beta must be in [0, 1], got {config.beta}")
    if config.alpha < 0:
        raise ValueError(f"alpha must be positive (0: the surrogate's default), got {config.alpha}")
    if config.surrogate == "fast_sigmoid" and config.alpha:
        raise ValueError("fast_sigmoid's sharpness is slope, not alpha")
    if config.surrogate != "fast_sigmoid" and config.slope != 25.0:
        raise ValueError(f"slope is fast_sigmoid's; {config.surrogate}'s sharpness is alpha")


def surrogate_grad(x: torch.Tensor, surrogate: str, sharpness: float, inplace: bool = False) -> torch.Tensor:
    """dS/dU as the surrogate has it, at x = U - threshold; ``inplace``: overwrite ``x`` (the same operations, in the
    same order, so the same numbers)."""
    x = x if inplace else x.clone()
    if surrogate == "atan":  # alpha / 2 / (1 + (pi / 2 alpha x)^2)
        return x.mul_(math.pi / 2 * sharpness).square_().add_(1).reciprocal_().mul_(sharpness / 2)
    if surrogate == "sigmoid":  # alpha s (1 - s), s = sigmoid(alpha x): snnTorch's exp(-ax) / (exp(-ax) + 1)^2 is NaN
        s = x.mul_(sharpness).sigmoid_()  # below x = -88 / alpha, this is not
        return torch.rsub(s, 1).mul_(s).mul_(sharpness)
    return x.abs_().mul_(sharpness).add_(1).square_().reciprocal_()  # fast_sigmoid: 1 / (slope |x| + 1)^2


class Spike(torch.autograd.Function):
    """Heaviside forward (1 when x > 0), the surrogate's derivative backward."""

    @staticmethod
    def forward(ctx, x, surrogate: str, sharpness: float):
        ctx.save_for_backward(x)
        ctx.surrogate, ctx.sharpness = surrogate, sharpness
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * surrogate_grad(x, ctx.surrogate, ctx.sharpness), None, None


def draw(config, x: torch.Tensor) -> torch.Tensor | None:
    """The random numbers an encoding needs: u ~ U[0, 1) of shape (T, B, n_in); None for ``direct`` and sequence input."""
    if config.encoding == "direct" or config.sequence:
        return None
    return torch.rand((config.time_steps, *x.shape), device=x.device, dtype=x.dtype)


def check_draws(config, x: torch.Tensor, draws: torch.Tensor | None) -> None:
    if config.sequence:
        if draws is not None:
            raise ValueError("sequence input draws no random numbers (its frames are layer 1's input): pass draws=None")
    elif config.encoding == "direct":
        if draws is not None:
            raise ValueError("direct encoding draws no random numbers: pass draws=None")
    elif draws.shape != (config.time_steps, *x.shape):
        raise ValueError(f"draws must have shape {(config.time_steps, *x.shape)}, got {tuple(draws.shape)}")


def intensity(x: torch.Tensor, encoding: str) -> torch.Tensor:
    """Pixel intensities p = x + 0.5; for ``rate`` they are probabilities, so a value outside [0, 1] is an error."""
    p = x + 0.5
    if encoding == "rate":
        low, high = float(p.detach().min()), float(p.detach().max())
        if low < -1e-6 or high > 1 + 1e-6:
            raise ValueError(f"rate encoding needs pixel intensities in [0, 1], that is inputs in [-0.5, 0.5] (pixel / 255 "
                             f"- 0.5); got inputs from {low - 0.5:.3g} to {high - 0.5:.3g}")  # fmt: skip
        p = p.clamp_(0.0, 1.0)  # rounding only: p is within 1e-6 of [0, 1]
    return p


def frames(config, x: torch.Tensor) -> torch.Tensor:
    """Sequence input x (B, T, *frame) -> layer 1's input at every step, (T, B, n_in): x_t = x[:, t] flattened (a
    view of a contiguous x, steps first). An x flattened to (B, T n_in) (by a caller that flattens first, or frames of
    one element) is read as T frames of n_in. ValueError when the frames are not n_in elements or T is not
    ``time_steps``."""
    n, steps = config.n_in, config.time_steps
    if x.dim() > 2:
        size, T = x.shape[2:].numel(), x.shape[1]
    elif x.dim() == 2 and x.shape[1] % n == 0:
        size, T = n, x.shape[1] // n
    else:
        raise ValueError(f"sequence input must be (B, T, *frame) with frames of n_in = {n} elements, got shape {tuple(x.shape)}")
    if size != n:
        raise ValueError(f"sequence input's frames {tuple(x.shape[2:])} have {size} elements, but n_in = {n}")
    if T != steps:
        raise ValueError(f"sequence input has T = {T} time bins, but time_steps = {steps}: they must be equal")
    return x.reshape(x.shape[0], T, n).transpose(0, 1)


def encode(config, x: torch.Tensor, draws: torch.Tensor | None) -> torch.Tensor:
    """The input of every step, (T, B, n_in); for ``direct`` the intensities (1, B, n_in), the same at every step; for
    sequence input the frames (``frames``)."""
    if config.sequence:
        return frames(config, x)
    if config.encoding == "masks":
        return draws * x
    p = intensity(x, config.encoding)
    if config.encoding == "direct":
        return p[None]
    return (draws < p).to(x.dtype)


@register("lif-reference", kind="spiking", delay=0, intensities=True)  # U_t, S_t and the logits all see step t's input
class LIFReference(nn.Module):
    # bench/analysis.py's STDP-like window assumes the 2018 design, where the gradient flows back only through the
    # steps where a neuron fired and a reset cuts it; a surrogate gradient flows through every step: not measured
    gradient_window = False

    @dataclass(frozen=True)
    class Config:
        hidden: int = 100  # hidden LIF neurons
        time_steps: int = 25  # T: snnTorch's tutorials' num_steps
        beta: float = 0.95  # the membrane keeps beta of itself per step (snnTorch's tutorials' value)
        threshold: float = 1.0
        reset: Reset = "subtract"  # "subtract": U - threshold after a spike (snnTorch's default); "zero": U = 0
        surrogate: Surrogate = "atan"
        alpha: float = 0.0  # atan and sigmoid: sharpness; 0 means the surrogate's default (atan 2, sigmoid 4)
        slope: float = 25.0  # fast_sigmoid: sharpness
        encoding: Encoding = "rate"
        readout: Readout = "membrane"
        sequence: bool = False  # True: x is (B, T, *frame), bin t's frame the input at step t; set by the harness from event data
        n_in: int = 784
        n_out: int = 10

        def __post_init__(self):
            check_positive(self, "hidden", "n_in", "n_out")
            check_neurons(self)
            if self.encoding not in Encoding.__args__:
                raise ValueError(f"encoding must be one of {', '.join(Encoding.__args__)}, got {self.encoding!r}")
            if self.sequence and self.encoding != "rate":  # "rate", the default, stands for "not set"
                raise ValueError(f"sequence input is not encoded (its frames are layer 1's input): drop encoding={self.encoding}")

        @property
        def sharpness(self) -> float:
            if self.surrogate == "fast_sigmoid":
                return self.slope
            return self.alpha or DEFAULT_ALPHA[self.surrogate]

    def __init__(self, config: Config | None = None):
        super().__init__()
        self.config = c = config or self.Config()
        self.fc1 = nn.Linear(c.n_in, c.hidden)  # PyTorch's default init, as snnTorch's and SpikingJelly's tutorials
        self.fc2 = nn.Linear(c.hidden, c.n_out)

    def draw(self, x: torch.Tensor) -> torch.Tensor | None:
        return draw(self.config, x.flatten(1))

    def forward(self, x: torch.Tensor, draws: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(x, draws, per_step=True)["logits"]

    def step(self, current: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """U_t from the input current I_t and U_{t-1}, in snnTorch's order of operations (the same rounding)."""
        c = self.config
        fired = (u > c.threshold).to(u.dtype)  # R_{t-1}: no gradient
        if c.reset == "zero":
            return c.beta * ((1 - fired) * u) + current
        return c.beta * u + current - fired * c.threshold

    def trace(self, x: torch.Tensor, draws: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every step of both layers, (T, B, n): ``input`` (what layer 1 multiplies; (1, B, n_in) for direct; the frames
        of sequence input), ``layer1_current`` (retain_grad() it for dL/dI), ``layerK_v`` (U_t) and ``layerK_o`` (S_t);
        ``logits``."""
        return self._run(x, draws, per_step=False)

    def _run(self, x: torch.Tensor, draws: torch.Tensor | None, per_step: bool) -> dict[str, torch.Tensor]:
        c = self.config
        x = x if c.sequence else x.flatten(1)  # sequence input: (B, T, *frame), read by frames()
        if draws is None:
            draws = draw(c, x)
        check_draws(c, x, draws)
        inputs = encode(c, x, draws)
        current1 = None if per_step else self.fc1(inputs).expand(c.time_steps, -1, -1)
        u1 = x.new_zeros(x.shape[0], c.hidden)
        u2 = x.new_zeros(x.shape[0], c.n_out)
        seq: dict[str, list[torch.Tensor]] = {k: [] for k in ("layer1_v", "layer1_o", "layer2_v", "layer2_o")}
        for t in range(c.time_steps):
            i1 = self.fc1(inputs[min(t, len(inputs) - 1)]) if per_step else current1[t]
            u1 = self.step(i1, u1)
            s1 = Spike.apply(u1 - c.threshold, c.surrogate, c.sharpness)
            u2 = self.step(self.fc2(s1), u2)
            s2 = Spike.apply(u2 - c.threshold, c.surrogate, c.sharpness)
            for k, value in zip(seq, (u1, s1, u2, s2)):
                seq[k].append(value)
        out = {k: torch.stack(v) for k, v in seq.items()}
        logits = out["layer2_v"].mean(0) if c.readout == "membrane" else out["layer2_o"].sum(0)
        return {"input": inputs, "layer1_current": current1, **out, "logits": logits}

    @torch.no_grad()
    def activity(self, x: torch.Tensor, draws: torch.Tensor | None = None) -> Activity:
        tr = self.trace(x, draws)
        return self._activity(tr["logits"], tr["input"], tr["layer1_o"], tr["layer2_o"])

    def _activity(self, logits, inputs, spikes1, spikes2) -> Activity:
        """Layer 1 multiplies the encoded input (spikes under ``rate``: accumulates; the intensities once per sample
        under ``direct``: its current is the same at every step; sequence input's frames: accumulates where they are
        0/1, bench/metrics.py decides), layer 2 layer 1's spikes (accumulates)."""
        return Activity(
            logits=logits,
            synapses=[Synapse("layer1", inputs, self.fc1.weight), Synapse("layer2", spikes1, self.fc2.weight)],
            outputs={"layer1": spikes1, "layer2": spikes2},
        )
