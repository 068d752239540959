"""The contract every registered model obeys (timm-style, parametrized over the registry)."""

import pytest
import torch

import models

# the built-ins: an installed plug-in (the example's conv-snn) is held to the contract check alone (tests/test_plugins.py)
BUILT_IN = [n for n in models.available() if models.ORIGIN.get(n) == "built-in"]


@pytest.fixture(params=BUILT_IN)
def model(request):
    torch.manual_seed(0)
    return models.build(request.param)


def test_contract(model):
    x = torch.rand(8, 1, 28, 28) - 0.5  # the preprocessed input range [-0.5, 0.5]
    logits = model(x)
    assert logits.shape == (8, 10)
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.arange(8) % 10).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} gets an all-zero gradient"


def test_flat_input_accepted(model):
    x = torch.rand(4, 784) - 0.5
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(1)
    b = model(x.view(4, 1, 28, 28))
    torch.testing.assert_close(a, b)


def test_no_hidden_state(model):
    """Two calls on the same input and the same random draws agree: nothing is kept between calls."""
    x = torch.rand(4, 784) - 0.5
    torch.manual_seed(2)
    first = model(x)
    model(torch.rand(4, 784) - 0.5)  # a call in between must not leak into the next one
    torch.manual_seed(2)
    assert torch.equal(model(x), first)
    assert not [k for k in vars(model) if k.startswith("prev")]


def test_snn_masks_argument_replaces_random_draws():
    model = models.build("snn:time_steps=5")
    x = torch.rand(3, 784) - 0.5
    masks = torch.rand(5, 3, 784)
    torch.manual_seed(0)
    a = model(x, masks=masks)
    torch.manual_seed(99)
    assert torch.equal(model(x, masks=masks), a)
    assert not torch.equal(model(x), a)  # random masks differ from the given ones
    with pytest.raises(ValueError, match="masks must have shape"):
        model(x, masks=masks[:4])


def test_activity_gives_the_forward_logits_and_layer_shapes(model):
    """``activity`` draws the same masks and returns the same logits as ``forward``; tensors are (steps, B, n)."""
    x = torch.rand(5, 784) - 0.5
    torch.manual_seed(3)
    logits = model(x)
    torch.manual_seed(3)
    act = model.activity(x)
    torch.testing.assert_close(act.logits, logits, rtol=1e-5, atol=1e-6)
    assert [s.name for s in act.synapses][0] == "layer1" and "layer1" in act.outputs
    (info,) = (models.INFO[n] for n, cls in models.MODELS.items() if cls is type(model))
    assert {s.name for s in act.synapses} | set(act.outputs) <= set(info.layers)  # the registry names every layer
    steps = getattr(model.config, "time_steps", 1 + info.delay) - info.delay  # the steps that reach the logits
    for syn in act.synapses:  # a convolution's inputs are (steps, B, n_in, H, W), its weight (n_out, n_in, kh, kw)
        assert syn.inputs.dim() == (3 if syn.conv is None else 5) and syn.weight.dim() == syn.inputs.dim() - 1
        assert syn.inputs.shape[1] == 5 and syn.inputs.shape[2] == syn.weight.shape[1]
    assert act.synapses[0].inputs.shape[0] in {max(steps, 1), 1}  # 1: an input held at every step, multiplied once
    for out in act.outputs.values():
        assert out.dim() == 3 and out.shape[1] == 5


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_registered_model_passes_the_contract_check_bench_run_makes(name):
    from bench import contract, data

    spec = models.parse_spec(name, defaults=data.model_defaults("mnist-mini"))
    contract.check(spec, data.load("mnist-mini"))  # raises ContractError naming what fails
