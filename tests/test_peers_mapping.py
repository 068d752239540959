"""What ``spikingjelly-lif`` computes, pinned where it explains its results (issue 23; docs/lif.md, "Why
spikingjelly-lif starts slower").

With its defaults (reset=subtract, readout=membrane) spikingjelly-lif trains as lif does (the same input current, the
same gradients to a few percent) but reads its output out lower: SpikingJelly records the membrane *after* the reset,
so each output spike takes ``threshold`` off that step's logit term, while the gradient (the reset detached) does not
see it. The neuron that fires most, the target once training gets going, is the one marked down. The input is *not*
divided by tau (``decay_input=False``): SpikingJelly's default would be.
"""

import importlib.util

import pytest
import torch
from test_lif import assert_close, batch, built

pytestmark = pytest.mark.skipif(importlib.util.find_spec("spikingjelly") is None, reason="spikingjelly not installed (peers)")


def test_spikingjelly_lif_charges_the_whole_current_not_current_over_tau():
    """From rest its membrane after one step is the input current I, after two beta I_1 + I_2 (tau = 1 / (1 - beta)),
    as lif's; LIFNode's own default (decay_input=True) would give I / tau: 20 times less at beta = 0.95."""
    from spikingjelly.activation_based import functional, neuron

    model = built("spikingjelly-lif", "beta=0.95")
    current = torch.rand(2, 3, 24) * 0.4  # below the threshold (1): no spike, no reset
    for node in (model.lif1, model.lif2):
        functional.reset_net(model)
        node.store_v_seq = True
        node(current[:1])
        assert_close(node.v_seq[0], current[0], "membrane after one step")
        functional.reset_net(model)
        node(current)
        assert_close(node.v_seq[1], 0.95 * current[0] + current[1], "membrane after two steps")
    default = neuron.LIFNode(tau=model.lif1.tau, step_mode="m", store_v_seq=True)  # decay_input=True
    default(current[:1])
    assert_close(default.v_seq[0], current[0] / 20, "LIFNode's default: the current over tau")


def test_spikingjelly_lif_default_readout_is_lifs_minus_threshold_per_output_spike_with_lifs_gradient():
    """reset=subtract, readout=membrane, one step from rest (where both resets agree): the logits are lif's minus
    threshold for each output neuron that fires, while their derivatives in every parameter are lif's exactly (the
    reset is detached): backpropagation does not see the spikes' cost, only the loss's value at the lower logits does."""
    torch.manual_seed(0)
    keys = "time_steps=1,threshold=0.5"
    lif = built("lif-reference", keys, scale=3.0)
    jelly = built("spikingjelly-lif", keys, like=lif)
    x, _ = batch(1)
    draws = lif.draw(x)
    spikes = lif.trace(x, draws)["layer2_o"].detach()[0]
    assert 0 < spikes.mean() < 1, "some output neurons must fire and some not, or the test proves nothing"
    upstream = torch.randn(len(x), 10)  # any dL/dlogits: the same vector-Jacobian product for both
    logits, grads = {}, {}
    for name, model in (("lif", lif), ("jelly", jelly)):
        model.zero_grad(set_to_none=True)
        out = model(x, draws)
        (out * upstream).sum().backward()
        logits[name], grads[name] = out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}
    assert_close(logits["jelly"], logits["lif"] - 0.5 * spikes, "logits")
    assert not torch.allclose(logits["jelly"], logits["lif"], atol=1e-3)
    for name in grads["lif"]:
        assert_close(grads["jelly"][name], grads["lif"][name], f"d/d{name}")
    assert grads["lif"]["fc1.weight"].abs().sum() > 0


def test_spikingjelly_lif_membrane_readout_drops_each_spiking_steps_membrane():
    """reset=zero, readout=membrane (the same neuron as lif's): over T steps the logits are lif's minus the mean over t
    of U_t S_t, the membranes of the steps where the output neuron fired (SpikingJelly records them after the reset,
    at 0)."""
    torch.manual_seed(0)
    keys = "reset=zero,time_steps=10,beta=0.9,threshold=0.5"
    lif = built("lif-reference", keys, scale=3.0)
    jelly = built("spikingjelly-lif", keys, like=lif)
    x, _ = batch(1)
    draws = lif.draw(x)
    with torch.no_grad():
        trace = lif.trace(x, draws)
        assert trace["layer2_o"].sum() > 0
        dropped = (trace["layer2_v"] * trace["layer2_o"]).mean(0)
        assert_close(jelly(x, draws), trace["logits"] - dropped, "logits")


@pytest.mark.parametrize("name", ["snntorch-lif", "spikingjelly-lif"])
def test_a_peer_starts_from_lifs_weights_and_random_stream_at_the_same_seed(name):
    """The same seed gives lif and each peer the same initial weights and leaves the generator where lif leaves it, so
    that a seed's comparison is of the neurons, not of two starting points (spikingjelly-lif used to draw its layers a
    second time: another start, and another stream of input spikes after it)."""
    import models

    torch.manual_seed(7)
    lif = models.build("lif")
    after_lif = torch.rand(4)
    torch.manual_seed(7)
    peer = models.build(name)
    after_peer = torch.rand(4)
    for layer in ("fc1", "fc2"):
        for p in ("weight", "bias"):
            assert torch.equal(getattr(getattr(peer, layer), p), getattr(getattr(lif, layer), p)), f"{layer}.{p}"
    assert torch.equal(after_peer, after_lif)
    assert sorted(n for n, _ in peer.named_parameters()) == sorted(n for n, _ in lif.named_parameters())
