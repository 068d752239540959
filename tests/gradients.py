"""What the equality tests of a fast model and its step-by-step reference compare (tests/test_conv.py,
tests/test_sequence_models.py)."""

import torch.nn.functional as F


def run(model, x, y):
    """Logits, every parameter's gradient and the input's, from one forward and backward pass."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    logits = model(x)
    F.cross_entropy(logits, y).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, x.grad


def assert_close(got, want, what, tol=1e-5):
    """``got`` within ``tol`` of ``want``, relative to ``want``'s largest magnitude (or 1)."""
    err = (got - want).abs().max().item()
    assert err <= tol * max(want.abs().max().item(), 1.0), f"{what}: max error {err:.3g}"
