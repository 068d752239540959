"""The convolutional pair (models/conv.py): ``csnn`` against the step-by-step ``csnn-reference`` (and snnTorch's
``snntorch-csnn`` where installed), static and sequence input, the config's checks, the operations a convolution
counts (bench/metrics.py, by hand), and bench.speed's csnn workload at a tiny size."""

import csv
import importlib.util

import pytest
import torch
import torch.nn.functional as F
from gradients import assert_close, run

import models
from bench import speed
from bench.metrics import Counter, ops
from models.activity import Conv, Synapse
from models.conv import LAYERS

SEQUENCE = "sequence=true,in_channels=2,in_height=18,in_width=16"  # maps 2x18x16 -> 12x7x6 -> 32x1x1
INPUTS = {"static": "", "sequence": SEQUENCE}
SNNTORCH = importlib.util.find_spec("snntorch") is not None


def batch(kind: str, steps: int, n: int = 4, seed: int = 0):
    """Static images in [-0.5, 0.5], or event counts (B, T, 2, 18, 16) (0, 1 or 2 events, 30% of the bins), and labels."""
    g = torch.Generator().manual_seed(seed)
    if kind == "static":
        x = torch.rand(n, 1, 28, 28, generator=g) - 0.5
    else:
        shape = (n, steps, 2, 18, 16)
        x = (torch.rand(shape, generator=g) < 0.3) * torch.randint(1, 3, shape, generator=g).float()
    return x, torch.randint(0, 10, (n,), generator=g)


def built(name: str, keys: str, like: torch.nn.Module | None = None, scale: float = 1.0):
    model = models.build(f"{name}:{keys}")
    with torch.no_grad():
        if like is not None:
            for module in ("conv1", "conv2", "fc"):
                getattr(model, module).load_state_dict(getattr(like, module).state_dict())
        else:
            for p in model.parameters():
                p.mul_(scale)
    return model


@pytest.mark.parametrize("kind", INPUTS)
@pytest.mark.parametrize("name", ["cnn", "csnn", "csnn-reference", "snntorch-csnn"])
def test_contract_shape_finite_and_every_parameter_gets_a_gradient(name, kind):
    if name not in models.available():
        pytest.skip(f"{name} needs its library")
    keys = INPUTS[kind] + ("" if name == "cnn" else ",time_steps=5" if kind == "sequence" else ",time_steps=5")
    torch.manual_seed(0)
    model = models.build(f"{name}:{keys.strip(',')}")
    x, y = batch(kind, 5, n=6)
    logits, grads, _ = run(model, x, y)
    assert logits.shape == (6, 10) and torch.isfinite(logits).all()
    for n, g in grads.items():
        assert torch.isfinite(g).all() and g.abs().sum() > 0, f"{n} gets no gradient"
    assert models.INFO[name].layers == LAYERS


CASES = [(kind, reset, readout) for kind in INPUTS for reset in ("subtract", "zero") for readout in ("membrane", "spikes")]


@pytest.mark.parametrize("kind, reset, readout", CASES)
def test_csnn_equals_csnn_reference_logits_and_every_gradient(kind, reset, readout):
    keys = f"{INPUTS[kind]},time_steps=6,reset={reset},readout={readout},beta=0.9,threshold=0.5".strip(",")
    torch.manual_seed(1)
    reference = built("csnn-reference", keys, scale=2.0)  # larger weights: many spikes and resets
    fast = built("csnn", keys, like=reference)
    x, y = batch(kind, 6)
    want, got = run(reference, x, y), run(fast, x, y)
    assert_close(got[0], want[0], "logits")
    for name in want[1]:
        assert_close(got[1][name], want[1][name], f"d/d{name}")
    assert_close(got[2], want[2], "d/dx")
    act = reference.activity(x)  # not trivially equal: every layer fires, and not at every step
    for layer in LAYERS:
        rate = act.outputs[layer].mean().item()
        assert 0.01 < rate < 0.9, f"{layer} fires at {rate:.3f}"
    assert want[1]["conv1.weight"].abs().sum() > 0


@pytest.mark.skipif(not SNNTORCH, reason="snntorch is not installed")
@pytest.mark.parametrize("kind", INPUTS)
def test_snntorch_csnn_equals_csnn(kind):
    keys = f"{INPUTS[kind]},time_steps=5,reset=zero,beta=0.9,threshold=0.5".strip(",")
    torch.manual_seed(2)
    fast = built("csnn", keys, scale=2.0)
    peer = built("snntorch-csnn", keys, like=fast)
    x, y = batch(kind, 5)
    want, got = run(fast, x, y), run(peer, x, y)
    assert_close(got[0], want[0], "logits")
    for name in want[1]:
        assert_close(got[1][name], want[1][name], f"d/d{name}")


def test_static_image_is_held_and_its_first_convolution_runs_once():
    """Static input: conv1 sees the intensities x + 0.5 once per sample; flat input is the same images."""
    model = models.build("csnn:time_steps=4")
    seen = []
    model.conv1.register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    x, _ = batch("static", 4)
    a = model(x)
    assert seen == [(4, 1, 28, 28)]  # B images, not T B
    assert torch.equal(model(x.flatten(1)), a)
    act = model.activity(x)
    assert act.synapses[0].inputs.shape == (1, 4, 1, 28, 28) and torch.equal(act.synapses[0].inputs[0], x + 0.5)
    assert [tuple(s.inputs.shape) for s in act.synapses[1:]] == [(4, 4, 12, 12, 12), (4, 4, 32 * 4 * 4)]
    assert {k: tuple(v.shape) for k, v in act.outputs.items()} == {"layer1": (4, 4, 1728), "layer2": (4, 4, 512),
                                                                  "layer3": (4, 4, 10)}  # fmt: skip


def test_sequence_input_step_by_step_and_the_cnn_sums_the_frames():
    x, _ = batch("sequence", 3)
    csnn = models.build(f"csnn:{SEQUENCE},time_steps=3")
    act = csnn.activity(x)
    assert torch.equal(act.synapses[0].inputs, x.transpose(0, 1))  # bin t's frame is step t's input
    assert torch.equal(csnn(x.flatten(2)), csnn(x)) and torch.equal(csnn(x.flatten(1)), csnn(x))
    with pytest.raises(ValueError, match="T = 3 time bins .* time_steps = 4"):
        models.build(f"csnn:{SEQUENCE},time_steps=4")(x)
    with pytest.raises(ValueError, match="frames of 2x18x16"):
        csnn(torch.zeros(4, 3, 1, 18, 16))
    cnn = models.build(f"cnn:{SEQUENCE}")
    summed = models.build("cnn:in_channels=2,in_height=18,in_width=16")
    summed.load_state_dict(cnn.state_dict())
    assert torch.equal(cnn(x), summed(x.mean(1) - 0.5))  # the mean frame; the static cnn sees x + 0.5
    with pytest.raises(ValueError, match="event frames need sequence=true"):
        summed(x)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("csnn:in_height=15", "in_height=15 is too small .* is 16"),
        ("cnn:in_width=12,kernel=4", "in_width=12 is too small for two conv4 .* is 13"),
        ("csnn:c1=0", "c1 must be positive"),
        ("cnn:in_channels=-1", "in_channels must be positive"),
        ("csnn:beta=1.5", "beta must be in"),
        ("csnn:time_steps=0", "time_steps must be positive"),
        ("csnn:surrogate=atan,slope=3", "slope is fast_sigmoid's"),
    ],
)
def test_config_checks(spec, message):
    with pytest.raises(models.SpecError, match=message):
        models.parse_spec(spec)


def test_smallest_images_build_and_run():
    for spec, x in (("csnn:in_height=16,in_width=16,time_steps=2", torch.zeros(2, 256)),
                    ("cnn:in_height=34,in_width=34", torch.zeros(2, 1, 34, 34))):  # fmt: skip
        assert models.build(spec)(x).shape == (2, 10)
    assert models.parse_spec("csnn:in_height=34,in_width=34").config.maps == ((12, 15, 15), (32, 5, 5))


def tiny_conv(stride=(1, 1), padding=(0, 0)):
    """A 3 x 3 input with three non-zero pixels, two 2 x 2 kernels, one with two zero weights."""
    x = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [3.0, 0.0, 0.0]])[None, None, None]  # (steps, B, 1, 3, 3)
    w = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[1.0, 0.0], [0.0, 1.0]]]])  # (2, 1, 2, 2)
    return Synapse("layer1", x, w, Conv(stride, padding))


def test_conv_ops_by_hand():
    """Stride 1, no padding: 2 x 2 output positions x 4 taps x 2 output channels = 32 dense. Pixel (0, 0) is read only
    by output (0, 0)'s tap (0, 0), (0, 2) by output (0, 1)'s tap (0, 1), (2, 0) by output (1, 0)'s tap (1, 0): channel 0's
    weights there are 1, 1, 1 and channel 1's 1, 0, 0, so 3 + 1 = 4 effective."""
    effective, dense = ops(tiny_conv())
    assert (int(effective), dense) == (4, 32)
    # padding 1: 4 x 4 outputs; per axis the (output, tap) pairs inside the input are 1 + 2 + 2 + 1 = 6, so 6 x 6 x 2 = 72
    # dense; every pixel is read by every tap: 3 pixels x (4 + 2) non-zero weights = 18 effective
    effective, dense = ops(tiny_conv(padding=(1, 1)))
    assert (int(effective), dense) == (18, 72)
    # stride 2: one output position reading rows and columns 0-1, where only pixel (0, 0) is non-zero: 1 + 1
    effective, dense = ops(tiny_conv(stride=(2, 2)))
    assert (int(effective), dense) == (2, 8)


def test_conv_counts_are_neurobenchs_and_spikes_are_accumulates():
    """Effective ops = the sum of conv2d(1[x != 0], 1[w != 0]), dense of conv2d(1, 1), as NeuroBench counts them; 0/1
    inputs are ACs, graded ones MACs, per sample; steps and samples multiply."""
    g = torch.Generator().manual_seed(0)
    for stride, padding in (((1, 1), (0, 0)), ((2, 1), (1, 2)), ((3, 2), (2, 0))):
        x = (torch.rand(3, 4, 2, 11, 9, generator=g) < 0.3).float()
        w = torch.randn(5, 2, 3, 4, generator=g) * (torch.rand(5, 2, 3, 4, generator=g) < 0.7)
        synapse = Synapse("layer1", x, w, Conv(stride, padding))
        effective, dense = ops(synapse)
        nonzero = F.conv2d((x != 0).double().flatten(0, 1), (w != 0).double(), stride=stride, padding=padding)
        ones = torch.ones(12, 2, 11, 9, dtype=torch.double)
        every = F.conv2d(ones, torch.ones_like(w).double(), stride=stride, padding=padding)
        assert int(effective) == int(nonzero.sum()) and dense == int(every.sum())
        counter = Counter(("layer1",))
        counter.add(models.activity.Activity(torch.zeros(4, 1), [synapse]))
        v = counter.values()
        assert v["effective_acs"] == int(effective) / 4 and v["effective_macs"] == 0 and v["dense_ops"] == dense / 4
    graded = Counter(("layer1",))
    graded.add(models.activity.Activity(torch.zeros(1, 1), [tiny_conv()]))
    assert graded.values()["effective_macs"] == 4 and graded.values()["effective_acs"] == 0


def test_csnn_counts_by_hand_and_as_the_reference():
    """Per sample, static 28 x 28, T = 3: conv1 once (12 x 1 x 24^2 x 25 = 172,800 MACs dense), conv2 at each step
    (32 x 12 x 8^2 x 25 = 614,400), fc at each step (10 x 512)."""
    torch.manual_seed(3)
    fast = built("csnn", "time_steps=3,threshold=0.5", scale=2.0)
    reference = built("csnn-reference", "time_steps=3,threshold=0.5", like=fast)
    x, _ = batch("static", 3, n=5)
    a, b = Counter(LAYERS), Counter(LAYERS)
    a.add(fast.activity(x))
    b.add(reference.activity(x))
    va, vb = a.values(), b.values()
    assert va == pytest.approx(vb, rel=1e-6, nan_ok=True) and va["layer2_firing_rate"] > 0.01
    assert va["dense_ops"] == 172_800 + 3 * 614_400 + 3 * 5_120
    assert va["effective_macs"] == 172_800  # the intensities of uniform noise: none is zero
    cnn = Counter(LAYERS)
    cnn.add(models.build("cnn").activity(x))
    assert cnn.values()["dense_ops"] == 172_800 + 614_400 + 5_120


def test_activity_gives_the_forward_logits_bit_for_bit_on_the_parallel_path():
    """At sizes where the C kernels split the neurons over threads (models/fused.py's MIN_PARALLEL)."""
    torch.manual_seed(4)
    model = built("csnn", f"{SEQUENCE},time_steps=4,readout=spikes", scale=2.0)
    x, _ = batch("sequence", 4, n=48)
    assert 4 * 48 * 12 * 7 * 6 >= models.fused.MIN_PARALLEL  # layer 1: T B c1 h1 w1 neuron-steps
    with torch.no_grad():
        assert torch.equal(model.activity(x).logits, model(x))


def test_speed_csnn_workload_at_a_tiny_size(tmp_path, capsys):
    out = tmp_path / "speed.csv"
    argv = ["--workload", "csnn", "--batch-size", "4", "--time-steps", "2", "--repeats", "1", "--no-memory"]
    assert speed.main([*argv, "--csv", str(out)]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["implementation"] for r in rows] == speed.names("csnn")
    assert speed.names("csnn")[:3] == ["cnn", "csnn", "csnn-reference"] and speed.names("csnn")[-1] == "floor (csnn)"
    assert {(r["workload"], r["batch_size"], r["time_steps"]) for r in rows} == {("csnn", "4", "2")}
    assert "snntorch-csnn" in speed.names("csnn") or not SNNTORCH
    x, y = speed.event_frames(4, 2, "cpu")
    assert x.shape == (4, 2, 2, 34, 34) and set(x.unique().tolist()) <= {0.0, 1.0} and 0.02 < x.mean() < 0.15
    assert speed.main(["--workload", "csnn", "--time-steps", "0"]) == 2


def test_the_floor_is_csnn_without_its_neurons():
    """Its logits are the mean over the steps of fc(pool(conv2(pool(conv1(frame_t))))), in plain (c, h, w) layout."""
    floor = speed.ConvFloor(models.parse_spec(speed.spec("csnn", 3)).config)
    x, _ = speed.event_frames(2, 3, "cpu")
    with torch.no_grad():
        maps = F.max_pool2d(floor.conv2(F.max_pool2d(floor.conv1(x.flatten(0, 1)), 2)), 2)  # (B T, c2, h2, w2)
        want = floor.fc(maps.flatten(1)).view(2, 3, -1).mean(1)
        assert_close(floor(x), want, "logits")
