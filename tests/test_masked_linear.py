"""snn's layer 1 without its stored masked input: the masks drawn again in backward, bit for bit."""

import pytest
import torch
import torch.nn.functional as F

import models
from models import masked_linear
from models import masks as mask_rng

pytestmark = pytest.mark.skipif(not mask_rng.native(), reason="no C compiler: the counter-based generator is not built")


def full_masks(x, steps, key):
    """u_t * x for every step at once, from one call of the generator with ``key``."""
    out = torch.empty(steps, *x.shape)
    mask_rng.masked_uniform_rows_(out, x, key, 0)
    return out


def test_a_chunk_drawn_again_is_bit_identical_to_those_rows_of_the_whole():
    x = torch.rand(50, 784) - 0.5
    whole = full_masks(x, 12, key=1234)
    for t0, t1 in [(0, 3), (3, 7), (7, 12), (11, 12)]:
        chunk = torch.empty(t1 - t0, 50, 784)
        mask_rng.masked_uniform_rows_(chunk, x, 1234, t0 * 50)
        assert torch.equal(chunk, whole[t0:t1])
    torch.manual_seed(5)
    big = torch.empty(30, 50, 784)  # above masks.MIN_PARALLEL: masked_uniform_ takes the C generator
    drawn = mask_rng.masked_uniform_(big, x)  # the key it drew, drawn again
    torch.manual_seed(5)
    assert torch.equal(drawn, full_masks(x, 30, mask_rng.draw_key()))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_masked_linear_equals_the_linear_layer_on_the_stored_masks(monkeypatch, precision):
    monkeypatch.setattr(masked_linear, "CHUNK_ELEMENTS", 3 * 20 * 784)  # 3 steps a chunk: the last one short
    x = torch.rand(20, 784) - 0.5
    weight = torch.randn(30, 784, requires_grad=True)
    bias = torch.randn(30, requires_grad=True)
    grad = torch.randn(10, 20, 30)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        got = masked_linear.MaskedLinear.apply(x, weight, bias, 10, 99)
        want = F.linear(full_masks(x, 10, 99), weight, bias).float()
    got.backward(grad)
    gw, gb = weight.grad.clone(), bias.grad.clone()
    weight.grad = bias.grad = None
    want.backward(grad)
    tol = 1e-5 if precision == "fp32" else 1e-2  # bf16: the chunks' weight gradients are summed in fp32, not in bf16
    for a, b in ((got, want), (gw, weight.grad), (gb, bias.grad)):
        assert (a - b).abs().max() <= tol * b.abs().max()


def test_snn_on_the_regenerating_path_equals_snn_reference_on_the_same_masks():
    torch.manual_seed(0)
    reference = models.build("snn-reference:time_steps=9")
    fast = models.build("snn:time_steps=9")
    fast.load_state_dict(reference.state_dict())
    x, y = torch.rand(200, 784) - 0.5, torch.arange(200) % 10  # 7 x 200 x 784 numbers: above masks.MIN_PARALLEL
    torch.manual_seed(3)
    logits = fast(x)  # draws its key from the global generator
    F.cross_entropy(logits, y).backward()
    torch.manual_seed(3)
    u = full_masks(torch.ones_like(x), 9, mask_rng.draw_key())  # the same key: u alone
    want = reference(x, masks=u)
    F.cross_entropy(want, y).backward()
    assert (logits - want).abs().max() <= 1e-5 * want.abs().max()
    for a, b in zip(fast.parameters(), reference.parameters()):
        assert (a.grad - b.grad).abs().max() <= 1e-5 * max(b.grad.abs().max(), 1e-12)


@pytest.mark.slow
def test_the_snn_step_no_longer_holds_its_masked_input():
    """B 1000: 64 more steps are 191 MiB more masked input. The step's peak now grows by the currents, outputs, gates and
    their gradients alone (about 60 MiB: (64, 1000, 100) float32 tensors of 24 MiB, a few at a time)."""
    from bench import speed

    growth = speed.peak_step_mib("snn", "cpu", 1000, 128) - speed.peak_step_mib("snn", "cpu", 1000, 64)
    assert growth < 0.5 * 64 * 1000 * 784 * 4 / 2**20, growth
