"""``activity(x)`` gives ``forward(x)``'s logits bit for bit at the sizes evaluation runs at: at or above
models/fused.py's MIN_PARALLEL neuron-steps (the C kernels split over threads) and models/masks.py's MIN_PARALLEL
numbers (the C generator, and snn's chunked path, models/snn_chunked.py), where tests/test_models.py's five samples
never reach. Each way the masks can be drawn (the ``generator`` fixture) and the neurons run (C, torch loops); the
metrics path (bench.loop.evaluate with the counter) against the plain one; the counts against the reference's."""

import pytest
import torch

import models
from bench import loop
from bench.data import Split
from bench.metrics import Counter
from models import fused, masks, snn_chunked

B = 600
SPECS = ["snn:time_steps=12", "snn:time_steps=12,reset=proportional", "lif:time_steps=8", "lif:time_steps=8,encoding=masks",
         "lif:time_steps=8,encoding=direct,readout=spikes", "lif:time_steps=8,reset=zero,readout=spikes"]  # fmt: skip


def model_of(spec: str, scale: float = 3.0):
    """``spec`` with its weights scaled up: many neurons fire, many resets."""
    torch.manual_seed(0)
    model = models.build(spec)
    for p in model.parameters():
        p.data.mul_(scale)
    return model


def pixels(n: int = B) -> torch.Tensor:
    return torch.rand(n, 784, generator=torch.Generator().manual_seed(1)) - 0.5  # pixel / 255 - 0.5, as the data gives


def test_the_sizes_here_reach_the_parallel_paths():
    model, x = model_of(SPECS[0]), pixels()
    T, hidden = model.config.time_steps, model.config.hidden
    assert (T - 2) * B * 784 >= masks.MIN_PARALLEL and (T - 2) * B * hidden >= fused.MIN_PARALLEL
    assert 8 * B * 784 >= masks.MIN_PARALLEL and 8 * B * 100 >= fused.MIN_PARALLEL  # lif, T = 8
    if masks.native() and fused.native():
        assert snn_chunked.available(x, model.layer1.fc.weight, T)  # forward takes the chunked path, activity the layered


@pytest.mark.parametrize("neurons", ["c", "torch"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("spec", SPECS)
def test_activity_gives_the_forward_logits_bit_for_bit(generator, monkeypatch, spec, precision, neurons):
    if neurons == "torch":
        monkeypatch.setattr(fused, "_native", False)
    elif not fused.native():
        pytest.skip("no C compiler: the neuron kernels are not built")
    model, x = model_of(spec), pixels()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        torch.manual_seed(7)
        trained = model(x).detach()  # a training step's forward (a graph recorded)
        with torch.no_grad():
            torch.manual_seed(7)
            evaluated = model(x)  # bench.loop.evaluate without the metrics
            torch.manual_seed(7)
            act = model.activity(x)  # with them
    assert torch.equal(act.logits, evaluated), (act.logits - evaluated).abs().max()
    assert torch.equal(trained, evaluated)
    assert act.outputs["layer1"].float().mean() > 0.02, "no neuron fires: the comparison would prove little"


@pytest.mark.parametrize("spec", ["snn:time_steps=12", "lif:time_steps=8", "lif:time_steps=8,encoding=masks"])
def test_the_metrics_path_gives_the_same_loss_and_accuracy(generator, spec):
    model = model_of(spec, scale=1.0)
    x = pixels(2 * B)
    split = Split(x.view(-1, 1, 28, 28), torch.arange(2 * B) % 10)
    torch.manual_seed(5)
    plain = loop.evaluate(model, split, B)
    torch.manual_seed(5)
    counted = loop.evaluate(model, split, B, metrics=True, layers=("layer1", "layer2"))
    assert (counted.loss, counted.accuracy, counted.samples) == (plain.loss, plain.accuracy, plain.samples)
    assert counted.metrics["layer1_firing_rate"] > 0


REFERENCE_CASES = [("snn", ":time_steps=12"), ("snn", ":time_steps=12,reset=proportional"), ("lif", ":time_steps=8"),
                   ("lif", ":time_steps=8,encoding=direct,reset=zero")]  # fmt: skip


@pytest.mark.parametrize("name, keys", REFERENCE_CASES)
def test_the_counts_equal_the_reference_counts_on_the_same_draws(name, keys):
    fast = model_of(name + keys)
    reference = models.build(f"{name}-reference{keys}")
    reference.load_state_dict(fast.state_dict())
    x = pixels()
    draws = torch.rand(12, B, 784) if name == "snn" else reference.draw(x)
    a, b = Counter(), Counter()
    got, want = fast.activity(x, draws), reference.activity(x, draws)
    a.add(got)
    b.add(want)
    for layer in want.outputs:
        assert torch.equal(got.outputs[layer], want.outputs[layer]), layer
    assert a.values() == pytest.approx(b.values(), rel=1e-6, nan_ok=True)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-5, atol=1e-6)
