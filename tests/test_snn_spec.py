"""The SNN against SPEC.md's equations, on cases small enough to compute by hand."""

import pytest
import torch

import models
from models.snn_reference import SpikingLayer


def scalar_layer(reset, weight=1.0, bias=0.0):
    layer = SpikingLayer(1, 1, decay=0.9, threshold=1.0, penalty=1.5, reset=reset)
    with torch.no_grad():
        layer.fc.weight.fill_(weight)
        layer.fc.bias.fill_(bias)
    return layer


def run_layer(layer, inputs):
    """Feed a scalar sequence; return the (delayed) outputs and the new states per step."""
    state = (torch.zeros(1, 1), torch.zeros(1, 1))
    delayed, states = [], []
    for x in inputs:
        out, state = layer.step(torch.tensor([[x]]), *state)
        delayed += [out[0].item(), out[1].item()]
        states += [state[0].item(), state[1].item()]
    return delayed, states  # flat lists: v, o, v, o, ...


def test_subtract_reset_by_hand():
    # x = 0.6 each step, W = 1, b = 0, d = 0.9, theta = 1, p = 1.5:
    # t1: h = 0.6                 o = 0        v = 0.6
    # t2: h = 0.6 + 0.54 = 1.14   o = 0.14     v = 1.14 - (1.5 + 0.14) = -0.5
    # t3: h = 0.6 - 0.45 = 0.15   o = 0        v = 0.15
    # t4: h = 0.6 + 0.135 = 0.735 o = 0        v = 0.735
    # t5: h = 0.6 + 0.6615        o = 0.2615   v = -0.5  (a neuron that fired is set to theta - p)
    delayed, states = run_layer(scalar_layer("subtract"), [0.6] * 5)
    expected_states = [0.6, 0.0, -0.5, 0.14, 0.15, 0.0, 0.735, 0.0, -0.5, 0.2615]
    assert states == pytest.approx(expected_states, abs=1e-6)
    # the layer returns the previous step's state and output: a one-step delay
    assert delayed == pytest.approx([0.0, 0.0] + expected_states[:-2], abs=1e-6)


def test_proportional_reset_by_hand():
    # same input; when fired, v = h - (p / theta) * h = -0.5 h
    # t2: h = 1.14 -> v = -0.57;  t3: h = 0.6 - 0.513 = 0.087;  t4: h = 0.6 + 0.0783 = 0.6783
    # t5: h = 0.6 + 0.61047 = 1.21047 -> o = 0.21047, v = -0.605235
    _, states = run_layer(scalar_layer("proportional"), [0.6] * 5)
    expected = [0.6, 0.0, -0.57, 0.14, 0.087, 0.0, 0.6783, 0.0, -0.605235, 0.21047]
    assert states == pytest.approx(expected, abs=1e-6)


def test_below_threshold_is_plain_leaky_integration():
    _, states = run_layer(scalar_layer("subtract"), [0.05] * 4)
    v = 0.0
    for got_v, got_o in zip(states[::2], states[1::2]):
        v = 0.05 + 0.9 * v
        assert got_v == pytest.approx(v) and got_o == 0.0


def test_gate_is_constant_for_autograd():
    """dv/dh is 0 for a neuron that fired under 'subtract' and 1 - p/theta under 'proportional'."""
    for reset, slope in (("subtract", 0.0), ("proportional", -0.5)):
        layer = scalar_layer(reset)
        x = torch.tensor([[2.0]], requires_grad=True)  # h = 2 > theta: fires at once
        _, (v, o) = layer.step(x, torch.zeros(1, 1), torch.zeros(1, 1))
        dv, do = (torch.autograd.grad(out.sum(), x, retain_graph=True)[0].item() for out in (v, o))
        assert dv == pytest.approx(slope)
        assert do == pytest.approx(1.0)


def reference_snn(x, masks, w1, b1, w2, b2, reset, d=0.9, theta=1.0, p=1.5, wr=0.0):
    """An independent scalar rewrite of SPEC.md for a 1-1-1 network, plain Python floats; ``wr``: a recurrent weight
    on layer 1's own delayed output (``snn:recurrent=true``): h1_t = w1 u_t x + b1 + wr o1_{t-1} + d v1."""

    def step(h, v):
        h = h + d * v
        o = max(h - theta, 0.0)
        g = 1.0 if o > 0 else 0.0
        return (h - (p + o) * g if reset == "subtract" else h - (p / theta) * h * g), o

    v1 = o1 = v2 = 0.0
    kept = []
    for u in masks:
        out1 = o1  # layer 1's delayed output: to layer 2 (and, with wr, back to layer 1 itself)
        v1, o1 = step(w1 * u * x + b1 + wr * out1, v1)
        kept.append(v2)  # layer 2's delayed state
        v2, _ = step(w2 * out1 + b2, v2)
    return sum(kept) / len(kept)


@pytest.mark.parametrize("reset", ["subtract", "proportional"])
@pytest.mark.parametrize("time_steps", [1, 2, 3, 9])
def test_network_delays_and_time_mean(reset, time_steps):
    model = models.build(f"snn:n_in=1,hidden=1,n_out=1,time_steps={time_steps},reset={reset}")
    w1, b1, w2, b2 = 3.0, 0.2, 1.7, 0.3
    with torch.no_grad():
        model.layer1.fc.weight.fill_(w1)
        model.layer1.fc.bias.fill_(b1)
        model.layer2.fc.weight.fill_(w2)
        model.layer2.fc.bias.fill_(b2)
    masks = torch.linspace(0.1, 0.9, time_steps).view(time_steps, 1, 1)
    got = model(torch.tensor([[0.5]]), masks=masks).item()
    want = reference_snn(0.5, masks.flatten().tolist(), w1, b1, w2, b2, reset)
    assert got == pytest.approx(want, abs=1e-6)


def test_first_two_kept_states_do_not_see_the_input():
    """With two one-step delays, logits over T=2 depend on layer 2's bias only: (0 + b2) / 2."""
    model = models.build("snn:time_steps=2")
    x = torch.rand(5, 784) - 0.5
    expected = (model.layer2.fc.bias / 2).expand(5, 10)
    torch.testing.assert_close(model(x), expected)


def test_default_config_is_the_2018_network():
    model = models.build("snn")
    c = model.config
    assert (c.hidden, c.time_steps, c.decay, c.threshold, c.penalty, c.reset) == (100, 128, 0.9, 1.0, 1.5, "subtract")
    assert model.layer1.fc.weight.shape == (100, 784) and model.layer2.fc.weight.shape == (10, 100)
    bound = (6 / (784 + 100)) ** 0.5  # Xavier-uniform
    assert model.layer1.fc.weight.abs().max() <= bound
