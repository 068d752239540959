"""snn's training step a chunk of steps at a time (models/snn_chunked.py), its kernels' carry, and the kernels on
torch's own OpenMP threads (models/native.py)."""

import pytest
import torch
import torch.nn.functional as F

import models
from models import fused, masked_linear, native, snn_chunked
from models import masks as mask_rng

pytestmark = pytest.mark.skipif(not (mask_rng.native() and fused.native()), reason="no C compiler: no native kernels")


def pair(spec: str, scale: float = 1.0):
    """An snn and the same weights (times ``scale``: larger ones fire more) in a second instance."""
    torch.manual_seed(0)
    a = models.build(spec)
    with torch.no_grad():
        for p in a.parameters():
            p.mul_(scale)
    b = models.build(spec)
    b.load_state_dict(a.state_dict())
    return a, b


def step(model, x, y, seed, chunked: bool, precision: str = "fp32"):
    """Logits and parameter gradients of one step, by the chunked path or the layered one, masks from ``seed``."""
    torch.manual_seed(seed)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits = model(x) if chunked else model._layers(x, None)[0]
    grads = torch.autograd.grad(F.cross_entropy(logits, y), list(model.parameters()))
    return logits.detach(), grads


@pytest.mark.parametrize("reset", ["subtract", "proportional"])
@pytest.mark.parametrize("T, B, steps_per_chunk", [(3, 1400, 1), (4, 700, 1), (12, 140, 3), (12, 140, 1), (12, 140, 50)])
@pytest.mark.parametrize("scale", [1.0, 6.0], ids=["usual", "firing-heavy"])
def test_the_chunked_step_equals_the_layered_one(monkeypatch, reset, T, B, steps_per_chunk, scale):
    monkeypatch.setattr(masked_linear, "CHUNK_ELEMENTS", steps_per_chunk * B * 784)  # chunks of 3 steps: the last short
    a, b = pair(f"snn:time_steps={T},reset={reset},hidden=40", scale)
    x, y = torch.rand(B, 784) - 0.5, torch.arange(B) % 10
    assert snn_chunked.available(x, a.layer1.fc.weight, T)
    got, got_grads = step(a, x, y, 7, chunked=True)
    want, want_grads = step(b, x, y, 7, chunked=False)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    for g, w in zip(got_grads, want_grads):  # sums over chunks: float32 summation order
        assert (g - w).abs().max() <= 1e-5 * max(w.abs().max().item(), 1e-12)
    if scale > 1:  # the heavy case does fire a lot
        assert a._chunked_buffers["gates1"].float().mean() > 0.1


def test_the_chunked_step_in_bf16_is_the_layered_step_in_bf16(monkeypatch):
    monkeypatch.setattr(masked_linear, "CHUNK_ELEMENTS", 4 * 120 * 784)
    a, b = pair("snn:time_steps=14,hidden=40")
    x, y = torch.rand(120, 784) - 0.5, torch.arange(120) % 10
    got, got_grads = step(a, x, y, 3, chunked=True, precision="bf16")
    want, want_grads = step(b, x, y, 3, chunked=False, precision="bf16")
    assert got.dtype == torch.float32 and all(g.dtype == torch.float32 for g in got_grads)
    assert (got - want).abs().max() <= 1e-2 * want.abs().max()
    for g, w in zip(got_grads, want_grads):
        assert (g - w).abs().max() <= 2e-2 * max(w.abs().max().item(), 1e-12)


def test_small_inputs_and_given_masks_keep_the_layered_path():
    m = models.build("snn:time_steps=5,hidden=20")
    small = torch.rand(10, 784)  # 3 x 10 x 784 numbers: torch's generator draws them, as snn-reference's would
    assert not snn_chunked.available(small, m.layer1.fc.weight, 5)
    assert not snn_chunked.available(torch.rand(2000, 784), m.layer1.fc.weight, 2)  # T < 3
    x = torch.rand(500, 784).requires_grad_()  # a gradient for x: the stored path
    assert not snn_chunked.available(x, m.layer1.fc.weight, 5)


def test_a_backward_through_an_overwritten_forward_raises_rather_than_using_it():
    m = models.build("snn:time_steps=12,hidden=20")
    x = torch.rand(140, 784) - 0.5
    first = m(x).sum()
    second = m(x).sum()  # the same kept buffers, written again
    second.backward()  # the newest graph is fine
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        first.backward()


def test_training_steps_in_a_row_reuse_the_buffers():
    m = models.build("snn:time_steps=12,hidden=20")
    x, y = torch.rand(140, 784) - 0.5, torch.arange(140) % 10
    F.cross_entropy(m(x), y).backward()
    kept = m._chunked_buffers["out1"].data_ptr()
    F.cross_entropy(m(x), y).backward()
    assert m._chunked_buffers["out1"].data_ptr() == kept
    m(torch.rand(150, 784))  # another batch size: new buffers of its shape
    assert m._chunked_buffers["out1"].shape == (10, 150, 20)


# ---- the kernels' carry ----


@pytest.mark.parametrize("proportional", [False, True])
@pytest.mark.parametrize("keep_states", [False, True])
def test_steps_in_chunks_with_a_carry_equal_one_call(proportional, keep_states):
    torch.manual_seed(1)
    current = torch.randn(11, 7, 130) * 1.5  # firing often
    args = (0.9, 1.0, 0.5 if not proportional else 0.3, proportional)
    states, outputs = torch.empty_like(current), torch.empty_like(current)
    gates = torch.empty(current.shape, dtype=torch.bool)
    fused.snn_steps(current, *args, torch.zeros(7, 130), states=states, outputs=outputs, gates=gates)
    carry = torch.zeros(7, 130)
    s2, o2, g2 = torch.empty_like(current), torch.empty_like(current), torch.empty_like(gates)
    for t0, t1 in [(0, 4), (4, 5), (5, 11)]:
        fused.snn_steps(current[t0:t1], *args, carry, states=s2[t0:t1], outputs=o2[t0:t1], gates=g2[t0:t1])
    assert torch.equal(states, s2) and torch.equal(outputs, o2) and torch.equal(gates, g2)
    assert torch.equal(carry, states[-1])
    grad = torch.randn_like(current)
    slope = 1 - 0.3 if proportional else 0.0
    whole = torch.empty_like(current)
    fused.snn_steps_backward(grad, gates, whole, 0.9, slope, keep_states, torch.zeros(7, 130))
    carry, parts = torch.zeros(7, 130), torch.empty_like(current)
    for t0, t1 in [(5, 11), (4, 5), (0, 4)]:  # the last chunk first
        fused.snn_steps_backward(grad[t0:t1], gates[t0:t1], parts[t0:t1], 0.9, slope, keep_states, carry)
    assert torch.equal(whole, parts) and torch.equal(carry, whole[0])


def test_a_carry_of_the_wrong_shape_or_dtype_is_refused():
    current = torch.randn(3, 4, 5)
    out = torch.empty_like(current)
    with pytest.raises(ValueError, match=r"carry must have shape \(4, 5\)"):
        fused.snn_steps(current, 0.9, 1.0, 0.5, False, torch.zeros(4, 6), outputs=out)
    with pytest.raises(ValueError, match="carry must be torch.float32"):
        fused.snn_steps(current, 0.9, 1.0, 0.5, False, torch.zeros(4, 5, dtype=torch.float64), outputs=out)
    gates = torch.zeros(3, 4, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="carry must be contiguous"):
        fused.snn_steps_backward(current, gates, out, 0.9, 0.0, True, torch.zeros(5, 4).t())


# ---- torch's OpenMP threads ----


@pytest.mark.skipif(not native.torch_openmp(), reason="torch's parallel backend is not OpenMP here")
def test_the_kernels_run_on_torchs_own_openmp_runtime():
    """Built with -fopenmp, the kernels load no second runtime (Linux: one OpenMP library mapped, torch's)."""
    assert native.threaded("masks") and native.threaded("neurons")
    runtimes = native.openmp_runtimes()
    assert len(runtimes) <= 1, runtimes


@pytest.mark.parametrize("threads", [1, 2, 3, 5])
def test_the_results_do_not_depend_on_how_many_threads_split_them(threads):
    """Each kernel splits its range over ``parts`` threads (OpenMP) or the pool: the numbers are the same."""
    x = torch.rand(30, 784)
    one, split = torch.empty(9, 30, 784), torch.empty(9, 30, 784)
    fn = mask_rng.native()
    rows = 9 * 30
    assert fn(one.data_ptr(), x.data_ptr(), 784, rows, 30, 0, rows, 77, 0, 1) == 0
    assert fn(split.data_ptr(), x.data_ptr(), 784, rows, 30, 0, rows, 77, 0, threads) == 0
    assert torch.equal(one, split)
    current = torch.randn(6, 10, 333) * 1.5
    outs = []
    for parts in (1, threads):
        o, g = torch.empty_like(current), torch.empty(current.shape, dtype=torch.bool)
        k = fused.native().snn_forward
        M = 10 * 333
        assert k(current.data_ptr(), None, o.data_ptr(), g.data_ptr(), 6, M, 0, M, 0.9, 1.0, 0.5, 0.5, 0, parts, None) == 0
        outs.append((o, g))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_without_openmp_the_plain_build_runs_on_the_pool_with_the_same_numbers(monkeypatch, tmp_path):
    """Where torch does not use OpenMP (or -fopenmp fails), the kernels are built without it and ``native.parallel``
    splits the range over the pool, each part a call of one thread."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(native, "torch_openmp", lambda: False)
    plain = native.load(mask_rng.SOURCE, "masks-plain", mask_rng.FLAGS, mask_rng._bind)
    assert plain and not native.threaded("masks-plain")
    x = torch.rand(40, 784)
    a, b = torch.empty(5, 40, 784), torch.empty(5, 40, 784)
    calls = []

    def call(start, stop, parts):
        calls.append((start, stop, parts))
        return plain(b.data_ptr(), x.data_ptr(), 784, 200, 40, start, stop, 11, 0, parts)

    assert native.parallel("masks-plain", call, 200) == [0] * len(calls)
    assert sorted(calls) == [(lo, hi, 1) for lo, hi in native.split(200)]
    assert mask_rng.native()(a.data_ptr(), x.data_ptr(), 784, 200, 40, 0, 200, 11, 0, 2) == 0  # the OpenMP build
    assert torch.equal(a, b)
