"""The LIF SNNs: ``lif`` against the step-by-step ``lif-reference``, the rate encoding, the operations counted, and
the library adapters ``snntorch-lif`` and ``spikingjelly-lif`` against ``lif`` (run where the ``peers`` extra is in)."""

import importlib.util
import itertools

import pytest
import torch
import torch.nn.functional as F

import models
from bench.metrics import Counter

SURROGATES = ["atan", "sigmoid", "fast_sigmoid"]
CASES = list(itertools.product(["subtract", "zero"], SURROGATES, ["rate", "direct", "masks"]))


def built(name: str, keys: str, like: torch.nn.Module | None = None, scale: float = 1.0):
    model = models.build(f"{name}:hidden=24,{keys}")
    if like is not None:
        with torch.no_grad():
            for module in ("fc1", "fc2"):
                getattr(model, module).weight.copy_(getattr(like, module).weight)
                getattr(model, module).bias.copy_(getattr(like, module).bias)
    elif scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(scale)
    return model


def run(model, x, draws, y):
    """Logits, every parameter's gradient and the input's, from one forward and backward pass."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    logits = model(x, draws)
    F.cross_entropy(logits, y).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return logits.detach(), grads, x.grad


def assert_close(got, want, what, tol=1e-5):
    err = (got - want).abs().max().item()
    assert err <= tol * max(want.abs().max().item(), 1.0), f"{what}: max error {err:.3g}"


def batch(seed=0, n=6):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g) - 0.5, torch.randint(0, 10, (n,), generator=g)


def compare(reference, other, x, y, tol=1e-5):
    draws = reference.draw(x)
    want, got = run(reference, x, draws, y), run(other, x, draws, y)
    assert_close(got[0], want[0], "logits", tol)
    for name in want[1]:
        assert_close(got[1][name], want[1][name], f"d/d{name}", tol)
    if want[2] is None:  # rate spikes carry no gradient to the pixels
        assert got[2] is None
    else:
        assert_close(got[2], want[2], "d/dx", tol)
    return want


@pytest.mark.parametrize("time_steps", [1, 2, 5, 25])
@pytest.mark.parametrize("reset,surrogate,encoding", CASES)
def test_lif_equals_lif_reference_logits_and_every_gradient(reset, surrogate, encoding, time_steps):
    torch.manual_seed(time_steps)
    keys = f"reset={reset},surrogate={surrogate},encoding={encoding},time_steps={time_steps},beta=0.9,threshold=0.5"
    for readout in ("membrane", "spikes"):
        reference = built("lif-reference", f"{keys},readout={readout}", scale=3.0)  # larger weights: many spikes
        fast = built("lif", f"{keys},readout={readout}", like=reference)
        x, y = batch(time_steps)
        logits, grads, _ = compare(reference, fast, x, y)
        assert grads["fc1.weight"].abs().sum() > 0, "no gradient reached layer 1: the test would prove nothing"


def test_the_equality_test_sees_neurons_fire_and_reset():
    """The cases above are not trivially equal: both layers fire, and not at every step."""
    reference = built("lif-reference", "beta=0.9,threshold=0.5", scale=3.0)
    torch.manual_seed(0)
    act = reference.activity(batch()[0])
    for layer in ("layer1", "layer2"):
        rate = act.outputs[layer].mean().item()
        assert 0.02 < rate < 0.98, f"{layer} fires at rate {rate}"


def test_rate_encoding_is_bernoulli_with_the_pixel_intensity_fresh_at_each_step_and_seeded():
    p = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0]).repeat(784 // 5 + 1)[:784]
    x = (p - 0.5).expand(200, 784).reshape(200, 1, 28, 28)
    model = models.build("lif:time_steps=20")
    torch.manual_seed(1)
    spikes = model.activity(x).synapses[0].inputs.clone()  # (T, B, 784): what layer 1 received (a reused buffer)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    mean = spikes.mean(dim=(0, 1))  # 4,000 draws per pixel
    assert torch.allclose(mean, p, atol=0.03), (mean - p).abs().max()
    assert mean[p == 0].max() == 0 and mean[p == 1].min() == 1
    half = spikes[:, :, p == 0.5]
    assert (half[0] != half[1]).float().mean() > 0.4, "the same spikes at two steps: not fresh per step"
    torch.manual_seed(1)
    assert torch.equal(model.activity(x).synapses[0].inputs, spikes)
    torch.manual_seed(2)
    assert not torch.equal(model.activity(x).synapses[0].inputs, spikes)
    ref = models.build("lif-reference:time_steps=20")
    torch.manual_seed(1)
    assert torch.allclose(ref.activity(x).synapses[0].inputs.mean(dim=(0, 1)), p, atol=0.03)


def test_rate_encoding_refuses_inputs_that_are_not_intensities():
    with pytest.raises(ValueError, match=r"rate encoding needs pixel intensities in \[0, 1\]"):
        models.build("lif")(torch.full((2, 784), 3.0))


def tiny(encoding: str):
    """784 -> 3 -> 2 with hand-set weights (n_in=4): see the sums in the test."""
    return hand_set(models.build(f"lif:n_in=4,hidden=3,n_out=2,time_steps=2,beta=0.5,encoding={encoding}"))


def hand_set(model):
    """A 4 -> 3 -> 2 LIF network's weights set by hand, no biases (tests/test_sequence_models.py too)."""
    with torch.no_grad():
        model.fc1.weight.copy_(torch.tensor([[2.0, 1, 0, 1], [0.1, 1, 0.1, 1], [-1, 1, -1, 1]]))
        model.fc2.weight.copy_(torch.tensor([[1.0, 1, 1], [0, 1, 1]]))
        model.fc1.bias.zero_()
        model.fc2.bias.zero_()
    return model


def test_accumulates_are_counted_for_spikes_on_a_hand_computed_net():
    """Intensities (1, 0, 1, 0): rate spikes are certain. Layer 1's currents are (2, 0.2, -2): only neuron 0 fires,
    at both steps (U = 2, then 0.5 * 2 + 2 - 1 = 2). Layer 1: inputs 0 and 2 fan out to 3 and 2 non-zero weights,
    5 ACs a step, 10 in all; layer 2: neuron 0's spike reaches 1 non-zero weight, 2 ACs. Dense: 2 x (12 + 6)."""
    x = torch.tensor([[0.5, -0.5, 0.5, -0.5]])
    counter = Counter()
    act = tiny("rate").activity(x)
    assert act.outputs["layer1"][:, 0, :].tolist() == [[1, 0, 0], [1, 0, 0]]
    counter.add(act)
    values = counter.values()
    assert values["effective_acs"] == 12 and values["effective_macs"] == 0 and values["dense_ops"] == 36


def test_direct_encoding_multiplies_the_analog_pixels_once_per_sample():
    """The same net under direct encoding, intensities (0.8, 0, 0.6, 0): layer 1 computes its current once (5 MACs: the
    pixels are analog), layer 1's neuron 0 fires at both steps again (U = 1.6, then 0.8 + 1.6 - 1), 2 ACs in layer 2."""
    counter = Counter()
    counter.add(tiny("direct").activity(torch.tensor([[0.3, -0.5, 0.1, -0.5]])))
    values = counter.values()
    assert values["effective_macs"] == 5 and values["effective_acs"] == 2 and values["dense_ops"] == 12 + 12


def test_the_surrogate_keys_are_checked():
    with pytest.raises(models.SpecError, match="fast_sigmoid's sharpness is slope"):
        models.parse_spec("lif:surrogate=fast_sigmoid,alpha=3")
    with pytest.raises(models.SpecError, match="atan's sharpness is alpha"):
        models.parse_spec("lif:slope=10")
    assert models.parse_spec("lif:surrogate=sigmoid").config.sharpness == 4.0
    assert models.parse_spec("lif").config.sharpness == 2.0


def test_lif_has_neuron_traces_but_no_gradient_window():
    """The pictures of neuron activity work for lif; the STDP-like window's definition does not apply (see lif_reference)."""
    from bench import analysis
    from bench.data import load

    model = models.build("lif:time_steps=8")
    assert analysis.supports(model) and not analysis.has_window(model)
    arrays = analysis.neuron_activity(model, load("mnist-mini").test, (1, 28, 28))
    assert arrays["layer1_o"].shape == (8, 100) and set(arrays["layer1_o"].ravel()) <= {0.0, 1.0}


needs_snntorch = pytest.mark.skipif(importlib.util.find_spec("snntorch") is None, reason="snntorch not installed (peers)")
needs_spikingjelly = pytest.mark.skipif(
    importlib.util.find_spec("spikingjelly") is None, reason="spikingjelly not installed (peers)"
)


@needs_snntorch
@pytest.mark.parametrize("readout", ["membrane", "spikes"])
@pytest.mark.parametrize("reset,surrogate,encoding", CASES)
def test_snntorch_lif_equals_lif(reset, surrogate, encoding, readout):
    torch.manual_seed(0)
    keys = f"reset={reset},surrogate={surrogate},encoding={encoding},readout={readout},time_steps=10,beta=0.9,threshold=0.5"
    lif = built("lif", keys, scale=3.0)
    compare(lif, built("snntorch-lif", keys, like=lif), *batch(1))


@needs_spikingjelly
@pytest.mark.parametrize("encoding", ["rate", "direct", "masks"])
@pytest.mark.parametrize("surrogate", ["atan", "sigmoid"])
def test_spikingjelly_lif_equals_lif_where_a_mapping_exists(surrogate, encoding):
    """reset=zero, readout=spikes: SpikingJelly's LIFNode with tau = 1 / (1 - beta), decay_input=False, v_reset=0
    and detach_reset=True computes what lif does."""
    torch.manual_seed(0)
    keys = f"reset=zero,surrogate={surrogate},encoding={encoding},readout=spikes,time_steps=10,beta=0.9,threshold=0.5"
    lif = built("lif", keys, scale=3.0)
    compare(lif, built("spikingjelly-lif", keys, like=lif), *batch(1))


@needs_spikingjelly
@pytest.mark.parametrize("keys", ["reset=subtract,readout=spikes", "reset=zero,readout=membrane"])
def test_spikingjelly_lif_differs_where_the_readme_says_it_does(keys):
    torch.manual_seed(0)
    keys += ",time_steps=10,beta=0.9,threshold=0.5"
    lif = built("lif", keys, scale=3.0)
    jelly = built("spikingjelly-lif", keys, like=lif)
    x, y = batch(1)
    draws = lif.draw(x)
    assert not torch.allclose(lif(x, draws), jelly(x, draws), atol=1e-3)


@needs_spikingjelly
def test_spikingjelly_lif_refuses_what_it_cannot_compute():
    with pytest.raises(models.SpecError, match="no fast_sigmoid"):
        models.parse_spec("spikingjelly-lif:surrogate=fast_sigmoid")
    with pytest.raises(models.SpecError, match="0 < beta < 1"):
        models.parse_spec("spikingjelly-lif:beta=1.0")


def test_a_peer_without_its_library_is_listed_and_refused_in_one_line(monkeypatch):
    monkeypatch.setitem(models.UNAVAILABLE, "snntorch-lif", "needs snntorch: pip install -e '.[peers]'")
    with pytest.raises(models.SpecError, match=r"snntorch-lif is not available here: it needs snntorch"):
        models.parse_spec("snntorch-lif")
    from bench.preflight import listing

    assert "needs snntorch" in listing()


@pytest.mark.parametrize("native", [True, False], ids=["native", "torch"])
def test_the_fast_bernoulli_spikes_are_the_uniform_draws_below_p(monkeypatch, native):
    """lif's rate spikes come from one pass of the counter-based generator: exactly ``uniform_(out) < p``."""
    from models import masks as mask_rng

    if not native:
        monkeypatch.setattr(mask_rng, "_native", False)
    elif not mask_rng.native():
        pytest.skip("no C compiler: the native generator is not built here")
    p = torch.rand(500, 784)
    torch.manual_seed(0)
    spikes = mask_rng.bernoulli_(torch.empty(4, 500, 784), p)
    torch.manual_seed(0)
    assert torch.equal(spikes, (mask_rng.uniform_(torch.empty(4, 500, 784)) < p).float())
