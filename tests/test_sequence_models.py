"""Models on sequence (event) data: x (B, T, *frame), event counts per time bin, with ``sequence=True``.

``lif`` against the step-by-step ``lif-reference`` on frames, a hand-computed net, the input checks, the operations
counted, ``ffn``'s frames averaged over time, and every model whose Config has ``sequence`` on such data."""

import dataclasses
import itertools

import pytest
import torch
import torch.nn.functional as F
from gradients import assert_close, run
from test_lif import hand_set  # the same 4 -> 3 -> 2 weights as lif's hand-computed tests

import models
from bench.metrics import Counter, is_spiking

FRAME = (2, 3, 4)  # a small N-MNIST-like frame: 2 polarities x 3 x 4 pixels, n_in = 24
N_IN = 24


def events(T: int, n: int = 6, frame: tuple[int, ...] = FRAME, seed: int = 0, binary: bool = False) -> torch.Tensor:
    """(n, T, *frame) float32 event counts: mostly 0, some 1, a few 2 and 3 (only 0/1 when ``binary``)."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.poisson(torch.full((n, T, *frame), 0.4), generator=g).clamp_(max=3)
    return counts.clamp_(max=1) if binary else counts


def built(name: str, keys: str, like: torch.nn.Module | None = None, scale: float = 1.0) -> torch.nn.Module:
    model = models.build(f"{name}:sequence=true,n_in={N_IN},hidden=24,{keys}")
    with torch.no_grad():
        for module in ("fc1", "fc2"):
            for kind in ("weight", "bias"):
                p = getattr(getattr(model, module), kind)
                p.copy_(getattr(getattr(like, module), kind) if like is not None else p * scale)
    return model


@pytest.mark.parametrize("time_steps", [1, 2, 5, 25])
@pytest.mark.parametrize("reset,surrogate", list(itertools.product(["subtract", "zero"], ["atan", "fast_sigmoid"])))
def test_lif_equals_lif_reference_on_sequence_input(reset, surrogate, time_steps):
    """The same logits and gradients (the parameters' and the frames') to the tolerance test_lif.py holds the encodings
    to, both readouts."""
    keys = f"reset={reset},surrogate={surrogate},time_steps={time_steps},beta=0.9,threshold=0.5"
    x, y = events(time_steps, seed=time_steps), torch.randint(0, 10, (6,))
    for readout in ("membrane", "spikes"):
        reference = built("lif-reference", f"{keys},readout={readout}", scale=3.0)  # larger weights: many spikes
        fast = built("lif", f"{keys},readout={readout}", like=reference)
        want, got = run(reference, x, y), run(fast, x, y)
        assert_close(got[0], want[0], "logits")
        for name in want[1]:
            assert_close(got[1][name], want[1][name], f"d/d{name}")
        assert_close(got[2], want[2], "d/dx")
        assert want[1]["fc1.weight"].abs().sum() > 0, "no gradient reached layer 1: the test would prove nothing"
        spikes = reference.activity(x).outputs["layer1"]
        assert 0.02 < spikes.mean().item() < 0.98, "layer 1 fires never or always: the test would prove little"


def tiny(name: str, reset: str = "subtract", readout: str = "membrane") -> torch.nn.Module:
    """4 -> 3 -> 2 with hand-set weights, T = 2, beta 0.5, threshold 1: see the sums in the test."""
    return hand_set(
        models.build(f"{name}:sequence=true,n_in=4,hidden=3,n_out=2,time_steps=2,beta=0.5,reset={reset},readout={readout}")
    )


@pytest.mark.parametrize("name", ["lif", "lif-reference"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_a_hand_computed_two_step_sequence(name, reset):
    """Frames (1, 0, 1, 0) then (0, 2, 0, 1). Layer 1: I_1 = (2, 0.2, -2), U_1 = I_1, neuron 0 fires; I_2 = (3, 3, 3),
    U_2 = 0.5 U_1 + I_2 - 1 R_1 = (3, 3.1, 2) (reset=zero: 0.5 (1 - R_1) U_1 + I_2, the same here): all fire.
    Layer 2: I_1 = (1, 0), U_1 = (1, 0), no spike (1 is not > 1); I_2 = (3, 2), U_2 = (3.5, 2): both fire.
    Membrane readout (U_1 + U_2) / 2 = (2.25, 1); spike counts (1, 1).
    Operations: layer 1's inputs 0 and 2 reach 3 + 2 non-zero weights at step 1, inputs 1 and 3 reach 3 + 3 at step 2:
    11, MACs (an input of 2 is not a spike); layer 2: 1 at step 1, 1 + 2 + 2 at step 2: 6 ACs. Dense: 2 (12 + 6)."""
    x = torch.tensor([[[1.0, 0, 1, 0], [0, 2, 0, 1]]])  # (B, T, n_in) = (1, 2, 4)
    model = tiny(name, reset)
    assert model(x).tolist() == [[2.25, 1.0]]
    act = model.activity(x)
    assert act.logits.tolist() == [[2.25, 1.0]]
    assert torch.equal(act.synapses[0].inputs, x.transpose(0, 1))  # layer 1's input at step t is frame t
    assert act.outputs["layer1"][:, 0].tolist() == [[1, 0, 0], [1, 1, 1]]
    assert act.outputs["layer2"][:, 0].tolist() == [[0, 0], [1, 1]]
    assert tiny(name, reset, "spikes")(x).tolist() == [[1.0, 1.0]]
    counter = Counter()
    counter.add(act)
    values = counter.values()
    assert values["effective_macs"] == 11 and values["effective_acs"] == 6 and values["dense_ops"] == 36
    swapped = model.activity(x.flip(1)).outputs["layer1"]  # the frames in the other order: all fire at step 1,
    assert swapped[:, 0].tolist() == [[1, 1, 1], [1, 0, 0]]  # then U_2 = (2.5, 0.7, -1.5) (reset=zero: (2, 0.2, -2))


@pytest.mark.parametrize("name", ["lif", "lif-reference"])
def test_frames_of_zeros_and_ones_are_spikes_counted_as_accumulates(name):
    """0/1 event frames reach layer 1 as they are: its inputs are spikes, so its operations are ACs, and they are the
    frames step by step. Counts above 1 make them MACs."""
    model = models.build(f"{name}:sequence=true,n_in={N_IN},time_steps=7")
    x = events(7, binary=True)
    act = model.activity(x)
    inputs = act.synapses[0].inputs
    assert inputs.shape == (7, 6, N_IN) and torch.equal(inputs, x.flatten(2).transpose(0, 1))
    assert is_spiking(inputs)
    counter = Counter()
    counter.add(act)
    assert counter.values()["effective_macs"] == 0  # both layers' inputs are spikes
    assert not is_spiking(model.activity(events(7)).synapses[0].inputs)  # counts of 2 and 3


@pytest.mark.parametrize("name", ["lif", "lif-reference"])
def test_sequence_input_is_checked(name):
    model = models.build(f"{name}:sequence=true,n_in={N_IN},time_steps=5")
    with pytest.raises(ValueError, match=r"T = 4 time bins, but time_steps = 5"):
        model(events(4))
    with pytest.raises(ValueError, match=r"frames \(2, 3, 5\) have 30 elements, but n_in = 24"):
        model(events(5, frame=(2, 3, 5)))
    with pytest.raises(ValueError, match="sequence input draws no random numbers"):
        model(events(5), torch.rand(5, 6, N_IN))
    assert model.draw(events(5)) is None
    torch.testing.assert_close(model(events(5).flatten(1)), model(events(5)))  # flattened (B, T n_in): T frames of n_in
    with pytest.raises(models.SpecError, match="sequence input is not encoded"):
        models.parse_spec(f"{name}:sequence=true,encoding=direct")


def test_ffn_takes_the_frames_mean_over_time():
    torch.manual_seed(0)
    seq = models.build(f"ffn:sequence=true,n_in={N_IN}")
    static = models.build(f"ffn:n_in={N_IN}")
    static.load_state_dict(seq.state_dict())
    x = events(9)
    summed = x.mean(1)  # (B, *frame): the sum over T bins, over T (its scale does not grow with the bins)
    assert torch.equal(seq(x), static(summed))
    assert torch.equal(seq(x.flatten(1)), seq(x))  # flattened (B, T n_in): T frames of n_in
    act = seq.activity(x)
    assert torch.equal(act.logits, seq(x))
    assert torch.equal(act.synapses[0].inputs, summed.flatten(1)[None])


def test_a_one_element_frame_is_a_time_series():
    """x (B, T) with n_in = 1: T frames of one element each."""
    x = events(5, frame=())
    assert x.shape == (6, 5)
    lif = models.build("lif:sequence=true,n_in=1,time_steps=5")
    assert torch.equal(lif.activity(x).synapses[0].inputs, x.T[..., None])
    ffn = models.build("ffn:sequence=true,n_in=1")
    assert torch.equal(ffn.activity(x).synapses[0].inputs, x.mean(1)[None, :, None])


def test_the_sequence_key_is_false_by_default_and_hidden_from_the_label():
    for name in ("lif", "lif-reference", "ffn"):
        spec = models.parse_spec(name)
        assert spec.config.sequence is False and spec.label == name
        assert models.parse_spec(f"{name}:sequence=true").label == f"{name}:sequence=True"
    from bench import data

    assert models.parse_spec("lif", defaults=data.model_defaults("mnist-mini")).label == "lif"


def has_sequence_key(name: str) -> bool:
    return "sequence" in {f.name for f in dataclasses.fields(models.model_class(name).Config)}


def is_convolutional(name: str) -> bool:  # csnn, cnn: images or camera frames of 16 x 16 and more (tests/test_conv.py)
    return "in_height" in {f.name for f in dataclasses.fields(models.model_class(name).Config)}


SEQUENCE_MODELS = [n for n in models.available() if has_sequence_key(n) and not is_convolutional(n)]


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_every_model_with_a_sequence_key_trains_on_sequence_data(name):
    """As the harness sets it up: sequence, time_steps (where the Config has it), n_in of one frame, n_out classes."""
    defaults = {"sequence": True, "time_steps": 6, "n_in": N_IN, "n_out": 4}
    torch.manual_seed(0)
    model = models.parse_spec(name, defaults=defaults).build()
    x = events(6, n=5)
    logits = model(x)
    assert logits.shape == (5, 4) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.arange(5) % 4).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    act = model.activity(x)
    torch.testing.assert_close(act.logits, logits.detach(), rtol=1e-5, atol=1e-6)
    steps = getattr(model.config, "time_steps", 1)
    assert act.synapses[0].inputs.shape == (steps, 5, N_IN)
