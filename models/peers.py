"""The lif network built from the two best-known SNN libraries' neurons (``pip install -e '.[peers]'``).

``snntorch-lif``: two ``snntorch.Leaky`` layers stepped in a Python loop, the membranes from ``reset_mem()`` at
every batch, as snnTorch's tutorials write it. ``spikingjelly-lif``: SpikingJelly's multi-step ``LIFNode``
(``step_mode="m"``: each layer sees all T steps at once, on the fastest backend the library picks for the
device), ``functional.reset_net`` before every batch. Both have lif's config keys, parameters (``fc1``, ``fc2``),
encodings and ``draws`` argument, so that the same weights and input spikes can be compared (tests/test_lif.py).

snnTorch's ``Leaky`` is the neuron lif is defined by: the two agree for every config. SpikingJelly's
``LIFNode`` is mapped as closely as it goes: ``tau = 1 / (1 - beta)`` with ``decay_input=False`` (then its
charge ``V - V / tau + X`` is ``beta V + X``), ``v_reset=0`` (reset="zero") or ``None`` (reset="subtract"),
``detach_reset=True`` (snnTorch detaches the reset) and the same surrogate. Then it computes what lif does
where a mapping exists, and differs as ``DIFFERENCES`` says where none does.

``snntorch-csnn``: csnn's convolutional network (models/conv.py) with three ``snntorch.Leaky`` neurons, stepped in a
Python loop over t (snnTorch's tutorial 7), csnn's config and parameters (``conv1``, ``conv2``, ``fc``): equal to
``csnn`` to float32 rounding (tests/test_conv.py).

``snntorch-rlif``: rsnn's network (models/rsnn_reference.py) with ``snntorch.RLeaky`` (all-to-all linear recurrence)
as its recurrent layer and a ``snntorch.Leaky`` readout, stepped in a Python loop over t, rsnn's config and parameters
(``fc1``, ``rec``, ``fc2``). RLeaky's recurrent ``nn.Linear`` has a bias, added to the current at every step, the first
included: the same as fc1's bias, so the adapter gives RLeaky rsnn's bias-free ``rec`` as its recurrent layer (a
library-built one maps as fc1.bias + recurrent.bias, tests/test_rsnn.py). Equal to ``rsnn`` with reset=subtract
(adaptation 0: RLeaky has none); with reset=zero it differs as ``RLIF_DIFFERENCES`` says.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from importlib import metadata

import torch

from models.activity import Activity
from models.conv import LAYERS
from models.conv_reference import CSNNReference
from models.lif_reference import LIFReference, check_draws, draw, encode
from models.registry import NOTES, ModelInfo, add, unavailable
from models.rsnn_reference import RSNNReference

DIFFERENCES = (
    "SpikingJelly's LIFNode differs from lif (and snnTorch's Leaky) in two cases, where no mapping of its options "
    "makes them equal. reset=subtract: it subtracts the threshold before the next step's decay, so a spike costs "
    "beta * threshold of the next step's membrane, not threshold (U_t = beta (U_{t-1} - threshold S_{t-1}) + I_t). "
    "readout=membrane: its recorded membranes (v_seq) are after the reset, lif's before it, so each output spike "
    "takes threshold off that step's term of the logit, unseen by the gradient (the reset is detached): with the "
    "defaults it starts slower than lif (docs/lif.md, 'Why spikingjelly-lif starts slower'). It also fires at "
    "U = threshold (>=), lif at U > threshold (a tie only). "
    "fast_sigmoid: SpikingJelly has no such surrogate (refused). With reset=zero and readout=spikes it computes "
    "what lif does."
)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


class _Peer(LIFReference):
    """lif's config, parameters and encoding; the neurons come from a library. No ``trace``: the gradient window and
    the neuron pictures need the library's internals, so the analysis skips these models."""

    trace = None

    def forward(self, x: torch.Tensor, draws: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(x, draws)[0]

    @torch.no_grad()
    def activity(self, x: torch.Tensor, draws: torch.Tensor | None = None) -> Activity:
        return self._activity(*self._run(x, draws))

    def _inputs(self, x: torch.Tensor, draws: torch.Tensor | None) -> torch.Tensor:
        if draws is None:
            draws = draw(self.config, x)
        check_draws(self.config, x, draws)
        return encode(self.config, x, draws)

    def _run(self, x, draws):
        """(logits, layer 1's input, layer 1's spikes, layer 2's spikes), each (T, B, n) but the logits."""
        raise NotImplementedError


def snntorch_surrogate(config):
    """snnTorch's surrogate gradient of a LIF config's ``surrogate`` and sharpness."""
    from snntorch import surrogate

    c = config
    if c.surrogate == "atan":
        return surrogate.atan(alpha=c.sharpness)
    if c.surrogate == "sigmoid":
        return surrogate.sigmoid(slope=c.sharpness)
    return surrogate.fast_sigmoid(slope=c.sharpness)


def snntorch_leaky(config):
    """A ``snntorch.Leaky`` with a LIF config's neuron: beta, threshold, reset and surrogate."""
    import snntorch

    c = config
    return snntorch.Leaky(beta=c.beta, threshold=c.threshold, spike_grad=snntorch_surrogate(c), reset_mechanism=c.reset)


def snntorch_steps(net: torch.nn.Module, inputs: torch.Tensor, state: tuple) -> tuple:
    """The time loop of snnTorch's two-layer networks: fc1 -> lif1 -> fc2 -> lif2 at each of ``time_steps`` steps, the
    inputs' last step held where they have fewer. ``state``: lif1's, as it takes it after the current (Leaky's
    membrane; RLeaky's spikes and membrane) and returns it after its spikes. Returns (logits: the readout's mean
    membrane or spike count, ``inputs``, the hidden spikes (T, B, hidden), the readout's spikes (T, B, n_out))."""
    c = net.config
    mem2 = net.lif2.reset_mem()
    spk1_rec, spk2_rec, mem2_rec = [], [], []
    for t in range(c.time_steps):
        spk1, *rest = net.lif1(net.fc1(inputs[min(t, len(inputs) - 1)]), *state)
        state = (spk1, *rest) if len(state) == 2 else tuple(rest)
        spk2, mem2 = net.lif2(net.fc2(spk1), mem2)
        spk1_rec.append(spk1)
        spk2_rec.append(spk2)
        mem2_rec.append(mem2)
    spikes2 = torch.stack(spk2_rec)
    logits = torch.stack(mem2_rec).mean(0) if c.readout == "membrane" else spikes2.sum(0)
    return logits, inputs, torch.stack(spk1_rec), spikes2


class SnnTorchLIF(_Peer):
    def __init__(self, config: LIFReference.Config | None = None):
        super().__init__(config)
        self.lif1, self.lif2 = snntorch_leaky(self.config), snntorch_leaky(self.config)

    def _run(self, x, draws):
        inputs = self._inputs(x.flatten(1), draws)
        return snntorch_steps(self, inputs, (self.lif1.reset_mem(),))  # Leaky's state: its membrane


class SpikingJellyLIF(_Peer):
    @dataclass(frozen=True)
    class Config(LIFReference.Config):
        def __post_init__(self):
            super().__post_init__()
            if not 0 < self.beta < 1:
                raise ValueError(f"SpikingJelly's tau = 1 / (1 - beta) needs 0 < beta < 1, got {self.beta}")
            if self.surrogate == "fast_sigmoid":
                raise ValueError("SpikingJelly has no fast_sigmoid surrogate; choose atan or sigmoid")

    def __init__(self, config: Config | None = None):
        super().__init__(config or self.Config())
        from spikingjelly.activation_based import layer, neuron, surrogate

        c = self.config
        grad = (surrogate.ATan if c.surrogate == "atan" else surrogate.Sigmoid)(alpha=c.sharpness)
        node = dict(tau=1.0 / (1.0 - c.beta), decay_input=False, v_threshold=c.threshold,
                    v_reset=0.0 if c.reset == "zero" else None, surrogate_function=grad, detach_reset=True,
                    step_mode="m")  # fmt: skip
        with torch.random.fork_rng(devices=[]):  # lif's weights, drawn above; the generator left where lif leaves it
            fc1, fc2 = layer.Linear(c.n_in, c.hidden, step_mode="m"), layer.Linear(c.hidden, c.n_out, step_mode="m")
        fc1.load_state_dict(self.fc1.state_dict())
        fc2.load_state_dict(self.fc2.state_dict())
        self.fc1, self.fc2 = fc1, fc2
        self.lif1 = neuron.LIFNode(**node)
        self.lif2 = neuron.LIFNode(**node, store_v_seq=c.readout == "membrane")

    def _run(self, x, draws):
        from spikingjelly.activation_based import functional

        c = self.config
        x = x.flatten(1)
        inputs = self._inputs(x, draws)
        functional.reset_net(self)  # its neurons keep their state between calls
        current1 = self.fc1(inputs)
        if c.encoding == "direct":  # a static input: its layer once, then repeated over T (SpikingJelly's tutorials)
            current1 = current1.repeat(c.time_steps, 1, 1)
        spikes1 = self.lif1(current1)
        spikes2 = self.lif2(self.fc2(spikes1))
        logits = self.lif2.v_seq.mean(0) if c.readout == "membrane" else spikes2.sum(0)
        return logits, inputs, spikes1, spikes2


class SnnTorchCSNN(CSNNReference):
    """csnn's network (models/conv.py) with three ``snntorch.Leaky`` neurons, stepped in a Python loop over t, every
    layer on that step's input (snnTorch's tutorial 7); csnn-reference's loop, the neurons snnTorch's."""

    def __init__(self, config: CSNNReference.Config | None = None):
        super().__init__(config)
        self.lif1, self.lif2, self.lif3 = (snntorch_leaky(self.config) for _ in range(3))

    def fire(self, layer: int, current: torch.Tensor, mem: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        leaky = (self.lif1, self.lif2, self.lif3)[layer]
        return leaky(current, leaky.reset_mem() if mem is None else mem)  # its membrane from reset_mem() at each batch


RLIF_DIFFERENCES = (
    "snnTorch's RLeaky has no threshold adaptation (adaptation must be 0). With reset=zero it zeroes the whole new "
    "membrane after a spike, the step's input included: U_t = (1 - R_{t-1}) (beta U_{t-1} + I_t), where rsnn (and "
    "snnTorch's Leaky) has U_t = beta (1 - R_{t-1}) U_{t-1} + I_t; so the step after a spike loses its input current. "
    "With reset=subtract it computes what rsnn:adaptation=0 does."
)


class SnnTorchRLIF(RSNNReference):
    """rsnn's network with ``snntorch.RLeaky`` as the recurrent layer and ``snntorch.Leaky`` as the readout, stepped in a
    Python loop over t (snnTorch's tutorials' pattern), the states from ``reset_mem()`` at every batch."""

    trace = None  # as the other peers: the analysis skips them

    @dataclass(frozen=True)
    class Config(RSNNReference.Config):
        def __post_init__(self):
            super().__post_init__()
            if self.adaptation:
                raise ValueError("snnTorch's RLeaky has no threshold adaptation: adaptation must be 0")

    def __init__(self, config: Config | None = None):
        super().__init__(config or self.Config())
        import snntorch

        c = self.config
        with torch.random.fork_rng(devices=[]):  # rsnn's weights, drawn above; the generator left where rsnn leaves it
            self.lif1 = snntorch.RLeaky(beta=c.beta, threshold=c.threshold, spike_grad=snntorch_surrogate(c),
                                        reset_mechanism=c.reset, all_to_all=True, linear_features=c.hidden)  # fmt: skip
        self.lif1.recurrent = self.rec  # rsnn's W_rec, without the bias that would duplicate fc1's
        self.lif2 = snntorch_leaky(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[0]

    @torch.no_grad()
    def activity(self, x: torch.Tensor) -> Activity:
        return self._activity(*self._run(x))

    def _run(self, x: torch.Tensor):
        """(logits, fc1's input, the hidden spikes (T, B, hidden), the readout's spikes (T, B, n_out))."""
        inputs = self.inputs(x)
        return snntorch_steps(self, inputs, self.lif1.reset_mem())  # RLeaky's state: (spikes, membrane)


PEERS = {"snntorch-lif": (SnnTorchLIF, "snntorch"), "spikingjelly-lif": (SpikingJellyLIF, "spikingjelly"),
         "snntorch-csnn": (SnnTorchCSNN, "snntorch"), "snntorch-rlif": (SnnTorchRLIF, "snntorch")}  # fmt: skip

for _name, (_cls, _module) in PEERS.items():
    if importlib.util.find_spec(_module) is not None:
        _layers = LAYERS if issubclass(_cls, CSNNReference) else ("layer1", "layer2")  # csnn's three, lif's two
        add(_name, _cls, ModelInfo("spiking", _layers, intensities=True), f"built-in ({_module} {_version(_module)})")
    else:
        unavailable(_name, f"needs {_module}: pip install -e '.[peers]'")
del _name, _cls, _module
NOTES["spikingjelly-lif"] = "spikingjelly-lif: " + DIFFERENCES
NOTES["snntorch-rlif"] = "snntorch-rlif: " + RLIF_DIFFERENCES
