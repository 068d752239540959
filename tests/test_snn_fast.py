"""The fast ``snn`` against the step-by-step ``snn-reference``: same logits, same gradients."""

import pytest
import torch

import models
from models import masks as mask_rng

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def pair(spec_keys: str, dtype=torch.float32, scale: float = 1.0, device: str = "cpu"):
    """The two implementations with the same parameters (the fast one inherits the reference's layout)."""
    reference = models.build("snn-reference" + spec_keys).to(device, dtype)
    fast = models.build("snn" + spec_keys).to(device, dtype)
    fast.load_state_dict(reference.state_dict())
    if scale != 1.0:  # larger weights: many neurons fire, many resets
        with torch.no_grad():
            for m in (reference, fast):
                for p in m.parameters():
                    p.mul_(scale)
    return reference, fast


def logits_and_grads(model, x, masks, target):
    model.zero_grad(set_to_none=True)
    logits = model(x, masks=masks)
    if logits.requires_grad:
        torch.nn.functional.cross_entropy(logits, target).backward()
    grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}
    return logits.detach(), grads


def assert_rel_close(got, want, rel=1e-5, what=""):
    err = (got - want).abs().max().item()
    size = want.abs().max().item()
    assert err <= rel * max(size, 1e-12), f"{what}: max error {err:.3g} vs max size {size:.3g}"


@pytest.mark.parametrize("reset", ["subtract", "proportional"])
@pytest.mark.parametrize("time_steps, batch", [(1, 3), (2, 5), (3, 4), (7, 16), (128, 8)])
@pytest.mark.parametrize("scale", [1.0, 4.0])
@pytest.mark.parametrize("device", DEVICES)
def test_same_logits_and_gradients(reset, time_steps, batch, scale, device):
    torch.manual_seed(time_steps * 100 + batch)
    reference, fast = pair(f":reset={reset},time_steps={time_steps}", scale=scale, device=device)
    x = torch.rand(batch, 784, device=device) - 0.5
    masks = torch.rand(time_steps, batch, 784, device=device)
    target = torch.randint(0, 10, (batch,), device=device)
    want_logits, want_grads = logits_and_grads(reference, x, masks, target)
    got_logits, got_grads = logits_and_grads(fast, x, masks, target)
    assert_rel_close(got_logits, want_logits, what="logits")
    for name in want_grads:
        assert_rel_close(got_grads[name], want_grads[name], what=name)


def firing_share(model, x, masks):
    """Share of layer-1 neuron-steps that fire, measured on the reference's step function."""
    state, fired = (torch.zeros(x.shape[0], 100),) * 2, []
    for t in range(masks.shape[0]):
        _, state = model.layer1.step(masks[t] * x, *state)
        fired.append((state[1] > 0).float().mean())
    return torch.stack(fired).mean().item()


@pytest.mark.parametrize("reset", ["subtract", "proportional"])
def test_same_results_when_many_neurons_fire(reset):
    """A double-precision check at the full 128 steps, with weights scaled so that most neurons fire."""
    torch.manual_seed(7)
    reference, fast = pair(f":reset={reset}", dtype=torch.float64, scale=6.0)
    x = (torch.rand(32, 784) - 0.5).double()
    masks = torch.rand(128, 32, 784, dtype=torch.float64)
    assert firing_share(reference, x, masks) > 0.15  # five times the default init's 3.6%: many resets
    target = torch.randint(0, 10, (32,))
    want_logits, want_grads = logits_and_grads(reference, x, masks, target)
    got_logits, got_grads = logits_and_grads(fast, x, masks, target)
    assert_rel_close(got_logits, want_logits, rel=1e-10, what="logits")
    for name in want_grads:
        assert_rel_close(got_grads[name], want_grads[name], rel=1e-10, what=name)


def test_recurrence_backward_matches_autograd_of_the_equations():
    """gradcheck of the fused Function in double precision, away from the threshold's kink."""
    from models.snn import NeuronRecurrence

    torch.manual_seed(0)
    current = (torch.randn(6, 3, 4, dtype=torch.float64) * 2).requires_grad_()
    for proportional in (False, True):
        for keep in ("states", "outputs"):
            assert torch.autograd.gradcheck(NeuronRecurrence.apply, (current, 0.9, 1.0, 1.5, proportional, keep))


def test_masks_are_uniform(generator):
    from scipy import stats

    torch.manual_seed(3)
    u = mask_rng.uniform_(torch.empty(4, 1000, 784))
    assert 0 <= u.min() and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 1e-3 and abs(u.var().item() - 1 / 12) < 1e-3
    assert stats.kstest(u.view(-1)[::97].numpy(), "uniform").pvalue > 1e-3
    # neighbours are not correlated (a broken counter hash would repeat or pair values)
    flat = u.view(-1)
    assert abs(torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1].item()) < 5e-3
    assert len(torch.unique(flat[:100_000])) > 99_000


def test_masks_repeat_under_a_seed_whatever_the_thread_count(generator):
    torch.manual_seed(3)
    a = mask_rng.uniform_(torch.empty(4, 1000, 784))
    torch.manual_seed(4)
    assert not torch.equal(mask_rng.uniform_(torch.empty(4, 1000, 784)), a)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch.manual_seed(3)
        single = mask_rng.uniform_(torch.empty(4, 1000, 784))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(single, a)


def test_masked_draw_is_u_times_x(generator):
    x = torch.rand(1000, 784) - 0.5
    torch.manual_seed(5)
    u = mask_rng.uniform_(torch.empty(3, 1000, 784))
    torch.manual_seed(5)
    masked = mask_rng.masked_uniform_(torch.empty(3, 1000, 784), x)
    torch.testing.assert_close(masked, u * x, rtol=1e-6, atol=0)


def test_snn_trains_through_either_generator(generator):
    model = models.build("snn:time_steps=16")
    x = torch.rand(1000, 784) - 0.5
    logits = model(x)
    torch.nn.functional.cross_entropy(logits, torch.randint(0, 10, (1000,))).backward()
    assert torch.isfinite(logits).all() and model.layer1.fc.weight.grad.abs().sum() > 0
