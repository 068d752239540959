"""The convolutional pair: ``csnn``, a convolutional LIF network, and ``cnn``, the same network with ReLUs.

The architecture practice uses for N-MNIST (snnTorch's tutorial 7), on static images or event frames:

    conv1 (in_channels -> c1, k x k) -> max-pool 2 -> LIF -> conv2 (c1 -> c2, k x k) -> max-pool 2 -> LIF
    -> flatten -> fc (c2 h2 w2 -> n_out) -> LIF (the output layer)

stride 1, no padding: h1 = (in_height - k + 1) // 2, h2 = (h1 - k + 1) // 2 (28 -> 12 -> 4, 34 -> 15 -> 5 at k = 5),
the same for the width. ``cnn`` has a ReLU in place of each hidden LIF layer, none after fc (its output is the logits),
and no time axis.

Input. Static (``sequence=False``): x (B, in_channels, in_height, in_width), or flattened, pixels in [-0.5, 0.5];
both networks see the intensities p = x + 0.5 in [0, 1] (lif's ``direct`` encoding), and csnn holds p as a constant
input current at each of its time_steps steps: its conv1 runs once per sample, not T times. Sequence
(``sequence=True``, event data): x (B, T, C, H, W), float event counts per time bin (or flattened to (B, T, C H W) or
(B, T C H W)); csnn's input at step t is bin t's frame (T = x.shape[1] must equal time_steps), cnn's the frames' mean
over the bins (as ffn's: the sum's scale would grow with the bins).

The neurons are lif's (models/lif_reference.py): U_t = beta U_{t-1} + I_t - threshold R_{t-1} (reset="subtract") or
U_t = beta (1 - R_{t-1}) U_{t-1} + I_t ("zero"), S_t = H(U_t - threshold) with a surrogate gradient, one neuron per
feature map and position, its current I_t the pooled map of step t. csnn runs each convolution over all T steps as one
convolution of (T B, C, H, W) (SpikingJelly's multi-step mode); only the elementwise recurrence loops over t, lif's
``LIFRecurrence`` (the C kernels on the CPU: models/dispatch.py). Logits: the mean over T of the output layer's
membrane (``readout="membrane"``) or its spike counts (``"spikes"``). ``csnn-reference`` (models/conv_reference.py)
is the same network one step at a time.

Activity (bench/metrics.py): layer1 is conv1 and its neurons, layer2 conv2 and its, layer3 fc and the output layer's
(``cnn``: no nonlinearity after fc, its layer3 activity columns are NaN). They are named layerN because the CSV's
metric columns are layerN_* (bench/schema.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.activity import Activity, Conv, Synapse
from models.lif import LIFRecurrence, simulate
from models.lif_reference import DEFAULT_ALPHA, Readout, Reset, Surrogate, check_neurons, intensity
from models.registry import check_positive, register

LAYERS = ("layer1", "layer2", "layer3")  # conv1, conv2, fc


@dataclass(frozen=True)
class Shape:
    """``cnn``'s config, and the part of ``csnn``'s that sizes the network."""

    c1: int = 12  # conv1's feature maps (snnTorch's tutorial 7 on N-MNIST)
    c2: int = 32  # conv2's
    kernel: int = 5  # k x k kernels, stride 1, no padding (tutorial 7's)
    in_channels: int = 1  # the sizes of one sample's frame: the harness sets them from the data (N-MNIST: 2 x 34 x 34)
    in_height: int = 28
    in_width: int = 28
    n_out: int = 10  # classes
    sequence: bool = False  # True: x is (B, T, C, H, W), event counts per time bin; set by the harness from event data

    def __post_init__(self):
        check_positive(self, "c1", "c2", "kernel", "in_channels", "in_height", "in_width", "n_out")
        smallest = 3 * self.kernel + 1  # conv k leaves n - k + 1, the pool half of it: n >= 3 k + 1 leaves one
        for key in ("in_height", "in_width"):
            if getattr(self, key) < smallest:
                raise ValueError(f"{key}={getattr(self, key)} is too small for two conv{self.kernel} + max-pool 2 stages: "
                                 f"the smallest size they leave a feature map of is {smallest}")  # fmt: skip

    @property
    def frame(self) -> tuple[int, int, int]:
        return self.in_channels, self.in_height, self.in_width

    @property
    def maps(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """(c1, h1, w1) and (c2, h2, w2): the pooled feature maps of the two stages."""
        k = self.kernel
        h1, w1 = (self.in_height - k + 1) // 2, (self.in_width - k + 1) // 2
        return (self.c1, h1, w1), (self.c2, (h1 - k + 1) // 2, (w1 - k + 1) // 2)


class ConvNet(nn.Module):
    """The layers both networks have, and their input."""

    Config = Shape
    channels_last = False  # how a layer's neurons lie in its (steps, B, n) outputs: (c, h, w) order, or (h, w, c)

    def __init__(self, config: Shape | None = None):
        super().__init__()
        self.config = c = config or self.Config()
        self.conv1 = nn.Conv2d(c.in_channels, c.c1, c.kernel)  # PyTorch's default init, as snnTorch's tutorials
        self.conv2 = nn.Conv2d(c.c1, c.c2, c.kernel)
        (c2, h2, w2) = c.maps[1]
        self.fc = nn.Linear(c2 * h2 * w2, c.n_out)

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """Sequence input -> (B, T, C, H, W) (a view where x allows); ValueError when its frames do not fit the config."""
        frame, n = self.config.frame, self.config.in_channels * self.config.in_height * self.config.in_width
        if x.dim() > 2:
            steps, size = x.shape[1], x.shape[2:].numel()
        elif x.dim() == 2 and x.shape[1] % n == 0:
            steps, size = x.shape[1] // n, n
        else:
            steps, size = 0, -1
        if size != n:
            raise ValueError(f"sequence input must be (B, T, C, H, W) with frames of {'x'.join(map(str, frame))} = {n} "
                             f"elements, got shape {tuple(x.shape)}")  # fmt: skip
        return x.reshape(len(x), steps, *frame)

    def image(self, x: torch.Tensor) -> torch.Tensor:
        """Static input -> the intensities p = x + 0.5, (B, C, H, W); ValueError when x is not such images."""
        frame = self.config.frame
        if x.dim() < 2 or x.shape[1:].numel() != frame[0] * frame[1] * frame[2]:
            raise ValueError(f"input must be images of {'x'.join(map(str, frame))} (or flattened), got shape "
                             f"{tuple(x.shape)}; event frames need sequence=true")  # fmt: skip
        return intensity(x.reshape(len(x), *frame), "direct")

    def maps(self, flat: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
        """A layer's outputs (steps, B, n) as its feature maps (steps, B, c, h, w): a view, either layout."""
        (c, h, w), lead = shape, flat.shape[:2]
        return flat.view(*lead, h, w, c).permute(0, 1, 4, 2, 3) if self.channels_last else flat.view(*lead, c, h, w)

    def fc_weight(self) -> torch.Tensor:
        """fc's weight with its columns in the order of the second stage's neurons."""
        if not self.channels_last:
            return self.fc.weight
        c, h, w = self.config.maps[1]
        return self.fc.weight.view(-1, c, h, w).permute(0, 2, 3, 1).reshape(len(self.fc.weight), -1)

    def synapses(self, inputs: torch.Tensor, outputs1: torch.Tensor, outputs2: torch.Tensor) -> list[Synapse]:
        """What each layer multiplied: conv1 ``inputs`` (steps, B, C, H, W), conv2 the first stage's outputs and fc the
        second's, each (steps, B, n) as the neurons hold them."""
        return [
            Synapse("layer1", inputs, self.conv1.weight, Conv.of(self.conv1)),
            Synapse("layer2", self.maps(outputs1, self.config.maps[0]), self.conv2.weight, Conv.of(self.conv2)),
            Synapse("layer3", outputs2, self.fc_weight().detach()),
        ]


@register("cnn", kind="baseline", layers=LAYERS)  # no nonlinearity after fc: layer3_* activity is NaN
class CNN(ConvNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._layers(x)[0]

    @torch.no_grad()
    def activity(self, x: torch.Tensor) -> Activity:
        """One step: the ReLUs' outputs are layer 1's and layer 2's; conv1 multiplies the intensities or the mean frame."""
        logits, inputs, hidden1, hidden2 = self._layers(x)
        h1, h2 = hidden1.flatten(1)[None], hidden2.flatten(1)[None]
        return Activity(logits, self.synapses(inputs[None], h1, h2), {"layer1": h1, "layer2": h2})

    def _layers(self, x: torch.Tensor):
        """(logits, conv1's input (B, C, H, W), the two stages' outputs (B, c, h, w))."""
        inputs = self.frames(x).mean(1) if self.config.sequence else self.image(x)
        hidden1 = F.relu(F.max_pool2d(self.conv1(inputs), 2))
        hidden2 = F.relu(F.max_pool2d(self.conv2(hidden1), 2))
        return self.fc(hidden2.flatten(1)), inputs, hidden1, hidden2


@register("csnn", kind="spiking", layers=LAYERS, delay=0, intensities=True)  # every step's input reaches its own step's logits
class CSNN(ConvNet):
    gradient_window = False  # a surrogate gradient flows through every step (as lif: bench/analysis.py)
    channels_last = True  # its neurons lie (h, w, c): see _layers

    @dataclass(frozen=True)
    class Config(Shape):
        time_steps: int = 25  # T: a static image is held for T steps; sequence input has T bins (they must agree)
        # as lif (snnTorch's tutorials); tutorial 7's 0.5 leaves conv2's neurons silent at PyTorch's default init on
        # MNIST (no spike reaches fc: its weights get no gradient), 0.95 has 4% / 8% / 1% of them firing
        beta: float = 0.95
        threshold: float = 1.0
        reset: Reset = "subtract"  # as lif: "subtract" (snnTorch's default) or "zero"
        surrogate: Surrogate = "atan"  # tutorial 7's
        alpha: float = 0.0  # atan and sigmoid: sharpness; 0 means the surrogate's default (atan 2, sigmoid 4)
        slope: float = 25.0  # fast_sigmoid: sharpness
        readout: Readout = "membrane"  # the harness's loss is cross-entropy on the logits: lif's default readout

        def __post_init__(self):
            super().__post_init__()
            check_neurons(self)

        @property
        def sharpness(self) -> float:
            if self.surrogate == "fast_sigmoid":
                return self.slope
            return self.alpha or DEFAULT_ALPHA[self.surrogate]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._layers(x)[0]

    @torch.no_grad()
    def activity(self, x: torch.Tensor) -> Activity:
        """conv1 multiplies the input of each step that has its own (a static image once: its current is held; event
        frames at every step: accumulates where they are 0/1, bench/metrics.py decides), conv2 and fc spikes."""
        logits, inputs, spikes1, spikes2, spikes3 = self._layers(x, record=True)
        outputs = {"layer1": spikes1, "layer2": spikes2, "layer3": spikes3}
        return Activity(logits, self.synapses(inputs, spikes1, spikes2), outputs)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """conv1's input at each step, (T, B, C, H, W) steps first (a view of x), or (1, B, C, H, W) held for all T."""
        if not self.config.sequence:
            return self.image(x)[None]
        frames = self.frames(x)
        if frames.shape[1] != self.config.time_steps:
            raise ValueError(f"sequence input has T = {frames.shape[1]} time bins (x.shape[1]), but time_steps = "
                             f"{self.config.time_steps}: they must be equal")  # fmt: skip
        return frames.transpose(0, 1)

    def neurons(self, current: torch.Tensor, out: str) -> torch.Tensor:
        """A LIF layer over all T steps: its currents (T, B, n), or (B, n) held, -> its spikes or membranes (T, B, n)."""
        c = self.config
        return LIFRecurrence.apply(current, c.time_steps, c.beta, c.threshold, c.reset == "zero", c.surrogate, c.sharpness,
                                   out)  # fmt: skip

    def _layers(self, x: torch.Tensor, record: bool = False):
        """(logits, conv1's input (steps, B, C, H, W), the spikes of the three layers (T, B, n), the last one only when
        ``record``).

        The feature maps are channels-last (N, h, w, c) in memory: on the CPU max-pooling is 3 times faster so and the
        convolutions about 2 times (oneDNN, T B = 3200 frames of 2 x 34 x 34), and a stage's pooled maps viewed
        (T, B, h w c) are its neurons' currents, its spikes viewed back as maps the next convolution's input, no copy."""
        c = self.config
        T, (m1, _), dtype = c.time_steps, c.maps, self.conv1.weight.dtype
        inputs = self.inputs(x)
        steps, batch = inputs.shape[:2]
        # every step's frames in one convolution, in step order (one copy of x into channels-last); a held image once.
        # .to(): under bf16 autocast the convolutions are bf16, the neuron state stays in the weights' dtype (fp32)
        frames = inputs.permute(0, 1, 3, 4, 2).reshape(steps * batch, *c.frame[1:], c.frame[0]).permute(0, 3, 1, 2)
        current1 = self.pooled(self.conv1(frames)).to(dtype).view(steps, batch, -1)
        spikes1 = self.neurons(current1 if c.sequence else current1[0], "spikes")  # (T, B, h1 w1 c1)
        current2 = self.pooled(self.conv2(self.maps(spikes1, m1).flatten(0, 1))).to(dtype).view(T, batch, -1)
        spikes2 = self.neurons(current2, "spikes")  # (T, B, h2 w2 c2)
        current3 = F.linear(spikes2, self.fc_weight(), self.fc.bias).to(dtype)  # all steps in one GEMM
        if record:
            u3 = simulate(current3, T, c.beta, c.threshold, c.reset == "zero")
            spikes3 = (u3 > c.threshold).to(u3.dtype)
            logits = u3.mean(0) if c.readout == "membrane" else spikes3.sum(0)
            return logits, inputs, spikes1, spikes2, spikes3
        if c.readout == "membrane":
            return self.neurons(current3, "membrane").mean(0), inputs, spikes1, spikes2, None
        return self.neurons(current3, "spikes").sum(0), inputs, spikes1, spikes2, None

    @staticmethod
    def pooled(maps: torch.Tensor) -> torch.Tensor:
        """Max-pooled feature maps (N, c, h, w) -> (N, h/2 w/2 c): their neurons, channels last (a view where the
        convolution gave channels-last maps: every one but an image of one channel)."""
        return F.max_pool2d(maps, 2).permute(0, 2, 3, 1).reshape(len(maps), -1)
