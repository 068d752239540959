"""The neuron recurrences fused in C (models/fused.py, models/_neurons.c) against the torch loops they replace on the CPU:
forward outputs, states, gates, membranes and spikes bit for bit, gradients to 1e-6 relative; and the checks that stand
between a tensor and a raw pointer."""

import itertools

import pytest
import torch

from models import fused, native, snn
from models.lif import LIFRecurrence
from models.lif import simulate_torch as lif_simulate_torch
from models.snn import NeuronRecurrence

STEPS = [1, 2, 5, 25, 128]
REGIMES = ["silent", "mixed", "firing"]
SURROGATES = ["atan", "sigmoid", "fast_sigmoid"]


@pytest.fixture
def kernels():
    k = fused.native()
    if not k:
        pytest.skip("no C compiler here (or SNNBENCH_NATIVE=0): the fused kernels are unavailable")
    return k


def currents(shape, regime: str, seed: int) -> torch.Tensor:
    """Input currents that never reach the threshold (1), cross it now and then, or exceed it at most steps."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    if regime == "silent":
        return -x.abs() * 0.5  # below 0: no neuron ever fires
    if regime == "firing":
        return x * 3 + 5  # far above the threshold: most neurons fire at most steps
    return x * 0.8 + 0.3


def assert_rel_close(got, want, rel=1e-6, what=""):
    err = (got - want).abs().max().item() if want.numel() else 0.0
    size = want.abs().max().item() if want.numel() else 0.0
    assert err <= rel * max(size, 1e-30), f"{what}: max error {err:.3g} vs max size {size:.3g}"


def torch_only(monkeypatch):
    monkeypatch.setattr(fused, "_native", False)  # as SNNBENCH_NATIVE=0 or no compiler


# ---- snn: forward bit for bit, backward to 1e-6 ----


SNN_ARGS = {"subtract": (0.9, 1.0, 0.5, False), "proportional": (0.9, 1.0, 0.5, True)}


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("time_steps", STEPS)
@pytest.mark.parametrize("reset", ["subtract", "proportional"])
def test_snn_forward_is_bit_identical_to_the_torch_loop(kernels, reset, time_steps, regime):
    current = currents((time_steps, 7, 150), regime, seed=time_steps)  # 1050 neurons: blocks of 512 and a tail of 26
    for keep in ("states", "outputs", "both"):
        want_gates, got_gates = (torch.zeros(current.shape, dtype=torch.bool) for _ in range(2))
        want = snn.simulate_torch(current, *SNN_ARGS[reset], keep, want_gates)
        got = fused.snn_forward(current, *SNN_ARGS[reset], keep, got_gates)
        assert got is not None
        for w, g in zip(want, got):
            assert (w is None) == (g is None)
            if w is not None:
                assert torch.equal(g, w)
                assert torch.equal(g.view(torch.int32), w.view(torch.int32)), "the same values but other bits (-0.0, NaN)"
        assert torch.equal(got_gates, want_gates)
        assert torch.equal(snn.simulate(current, *SNN_ARGS[reset], keep)[keep == "outputs"], want[keep == "outputs"])
    share = want_gates.float().mean().item()
    assert {"silent": share == 0, "mixed": 0.05 < share < 0.6, "firing": share > 0.6}[regime], share


def snn_gradient(current, args, keep, upstream):
    c = current.clone().requires_grad_()
    out = NeuronRecurrence.apply(c, *args, keep)
    (out * upstream).sum().backward() if upstream is not None else out.sum().backward()  # None: an expanded gradient
    return out.detach(), c.grad


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("time_steps", STEPS)
@pytest.mark.parametrize("reset", ["subtract", "proportional", "proportional-full"])
def test_snn_gradients_match_the_torch_loop(kernels, monkeypatch, reset, time_steps, regime):
    # proportional-full: penalty = threshold, so a neuron that fired keeps nothing of h (the slope 1 - p/theta is 0)
    args = (0.9, 1.0, 1.0, True) if reset == "proportional-full" else SNN_ARGS[reset]
    current = currents((time_steps, 5, 230), regime, seed=100 + time_steps)
    upstream = torch.randn(current.shape, generator=torch.Generator().manual_seed(1))
    for keep, up in itertools.product(("states", "outputs"), (upstream, None)):
        got_out, got = snn_gradient(current, args, keep, up)
        with monkeypatch.context() as m:
            torch_only(m)
            want_out, want = snn_gradient(current, args, keep, up)
        assert torch.equal(got_out, want_out)
        assert_rel_close(got, want, what=f"{keep}, upstream {'random' if up is not None else 'expanded'}")


def test_snn_runs_the_kernel_on_threads_with_the_same_results(kernels, monkeypatch):
    """Enough work to be split over the pool (at cuts that are multiples of ALIGN, not of the block)."""
    current = currents((25, 300, 101), "mixed", seed=3)
    assert current.numel() >= fused.MIN_PARALLEL
    want = snn.simulate_torch(current, *SNN_ARGS["subtract"], "both")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)  # three chunks whatever this machine has
    assert len(native.split(current[0].numel(), fused.ALIGN)) == 3
    got = fused.snn_forward(current, *SNN_ARGS["subtract"], "both")
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


# ---- lif: forward bit for bit, backward to 1e-6 ----


def lif_gradient(current, steps, zero, surrogate, out, upstream):
    c = current.clone().requires_grad_()
    result = LIFRecurrence.apply(c, steps, 0.9, 1.0, zero, surrogate, {"fast_sigmoid": 25.0}.get(surrogate, 3.0), out)
    (result * upstream).sum().backward() if upstream is not None else result.sum().backward()
    return result.detach(), c.grad


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("time_steps", STEPS)
@pytest.mark.parametrize("held", [False, True], ids=["per-step", "held"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_lif_forward_is_bit_identical_to_the_torch_loop(kernels, reset, held, time_steps, regime):
    shape = (7, 150) if held else (time_steps, 7, 150)
    current = currents(shape, regime, seed=time_steps)
    want = lif_simulate_torch(current, time_steps, 0.9, 1.0, reset == "zero")
    got, spikes = fused.lif_forward(current, time_steps, 0.9, 1.0, reset == "zero", spikes=True)
    assert torch.equal(got, want) and torch.equal(got.view(torch.int32), want.view(torch.int32))
    assert torch.equal(spikes, (want > 1.0).float())
    share = spikes.mean().item()
    assert {"silent": share == 0, "mixed": share < 0.6 and (share > 0 or time_steps < 5), "firing": share > 0.6}[regime], share


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("time_steps", STEPS)
@pytest.mark.parametrize("held", [False, True], ids=["per-step", "held"])
@pytest.mark.parametrize("out", ["spikes", "membrane"])
@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_lif_gradients_match_the_torch_path(kernels, monkeypatch, reset, surrogate, out, held, time_steps, regime):
    shape = (5, 230) if held else (time_steps, 5, 230)
    current = currents(shape, regime, seed=200 + time_steps)
    upstream = torch.randn((time_steps, 5, 230), generator=torch.Generator().manual_seed(2))
    for up in (upstream, None):
        got_out, got = lif_gradient(current, time_steps, reset == "zero", surrogate, out, up)
        with monkeypatch.context() as m:
            torch_only(m)
            want_out, want = lif_gradient(current, time_steps, reset == "zero", surrogate, out, up)
        assert torch.equal(got_out, want_out)
        assert got.shape == current.shape
        assert_rel_close(got, want, what=f"upstream {'random' if up is not None else 'expanded'}")
        if out == "membrane" or regime != "silent":
            assert want.abs().max() > 0, "no gradient at all: the comparison would prove nothing"


def test_the_models_give_the_same_logits_and_gradients_either_way(kernels, monkeypatch):
    import models

    for spec in ("snn:time_steps=12", "snn:time_steps=12,reset=proportional", "lif:time_steps=9,encoding=direct",
                 "lif:time_steps=9,reset=zero,readout=spikes,surrogate=sigmoid"):  # fmt: skip
        torch.manual_seed(0)
        model = models.build(spec)
        x, y = torch.rand(16, 784) - 0.5, torch.randint(0, 10, (16,))
        draws = torch.rand(model.config.time_steps, 16, 784) if spec.startswith("snn") else model.draw(x)
        results = []
        for path in ("native", "torch"):
            with monkeypatch.context() as m:
                if path == "torch":
                    torch_only(m)
                model.zero_grad(set_to_none=True)
                logits = model(x, draws)
                torch.nn.functional.cross_entropy(logits, y).backward()
                results.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
        (got_logits, got_grads), (want_logits, want_grads) = results
        assert torch.equal(got_logits, want_logits), spec
        for name in want_grads:
            assert_rel_close(got_grads[name], want_grads[name], rel=1e-5, what=f"{spec} {name}")


# ---- what takes the torch path, what raises ----


def test_what_the_kernels_do_not_take_goes_to_the_torch_path(kernels):
    c = currents((4, 3, 20), "mixed", 0)
    for other in (c.double(), c.transpose(1, 2), c[:, :, ::2], c.to("meta"), c.clone().requires_grad_()):
        assert fused.snn_forward(other, *SNN_ARGS["subtract"], "both") is None
        assert fused.lif_forward(other, 4, 0.9, 1.0, False) is None
        assert fused.lif_forward(other[0], 4, 0.9, 1.0, False) is None
    assert fused.lif_forward(c, 5, 0.9, 1.0, False) is None  # T does not match steps: the torch loop decides
    assert fused.snn_forward(c[0], *SNN_ARGS["subtract"], "both") is None  # (B, N): not a sequence
    with torch.no_grad():  # no graph to record: the kernel takes it
        assert fused.snn_forward(c.clone().requires_grad_(), *SNN_ARGS["subtract"], "both") is not None
    gates = torch.zeros(c.shape, dtype=torch.bool)
    assert fused.snn_backward(c.double(), gates, 0.9, 0.0, True) is None
    assert fused.snn_backward(c, gates.to("meta"), 0.9, 0.0, True) is None
    assert fused.lif_backward(c.double(), c.double(), False, 0.9, 1.0, False, "atan", 2.0, "spikes") is None
    assert fused.lif_backward(c, c.double(), False, 0.9, 1.0, False, "atan", 2.0, "spikes") is None
    with torch.enable_grad():  # a backward with create_graph: its operations are recorded, by torch only
        graded = c.clone().requires_grad_()
        assert fused.snn_backward(graded, gates, 0.9, 0.0, True) is None
        assert fused.lif_backward(c, graded, False, 0.9, 1.0, False, "atan", 2.0, "spikes") is None
    assert fused.snn_backward(c, gates, 0.9, 0.0, True) is not None
    # a float64 run goes through the torch loop end to end, and still gives float64 results
    states, _ = snn.simulate(c.double(), *SNN_ARGS["subtract"], "states")
    assert states.dtype == torch.float64
    assert torch.equal(states, snn.simulate_torch(c.double(), *SNN_ARGS["subtract"], "states")[0])


def test_a_non_contiguous_gradient_is_made_contiguous_not_misread(kernels, monkeypatch):
    current = currents((6, 4, 33), "mixed", 5)
    upstream = torch.randn(6, 33, 4).transpose(1, 2)  # the right shape, the wrong strides
    got = snn_gradient(current, SNN_ARGS["subtract"], "states", upstream)[1]
    got_lif = lif_gradient(current, 6, False, "atan", "spikes", upstream)[1]
    torch_only(monkeypatch)
    assert_rel_close(got, snn_gradient(current, SNN_ARGS["subtract"], "states", upstream)[1])
    assert_rel_close(got_lif, lif_gradient(current, 6, False, "atan", "spikes", upstream)[1])


def f32(*shape):
    return torch.zeros(shape)


def b8(*shape, device="cpu"):
    return torch.zeros(shape, dtype=torch.bool, device=device)


# (which call, its tensors, what the ValueError says): snn forward (current, states, outputs, gates), snn backward
# (grad, gates, grad_current), lif forward (current, u, spikes), lif backward (u, grad_out, grad, grad_sum, surrogate)
WRONG_CALLS = [
    ("snn forward", (f32(3, 4), None, None, None), "current must be (T, B, N), got shape (3, 4)"),
    ("snn forward", (f32(3, 4, 5), f32(3, 4, 6), None, None), "states must have shape (3, 4, 5), got (3, 4, 6)"),
    ("snn forward", (f32(3, 4, 5), None, f32(3, 20), None), "outputs must have shape (3, 4, 5)"),
    ("snn forward", (f32(3, 4, 5), None, None, f32(3, 4, 5)), "gates must be torch.bool on the CPU, got torch.float32"),
    ("snn forward", (f32(3, 4, 5), None, None, torch.zeros(3, 4, 5, dtype=torch.uint8)), "gates must be torch.bool"),
    ("snn forward", (f32(3, 4, 5).double(), None, None, None), "current must be torch.float32 on the CPU, got torch.float64"),
    ("snn forward", (f32(3, 5, 4).transpose(1, 2), None, None, None), "current must be contiguous, got strides (20, 1, 4)"),
    ("snn forward", (f32(3, 4, 10)[..., ::2], f32(3, 4, 5), None, None), "current must be contiguous"),
    ("snn forward", (f32(3, 4, 5), f32(3, 4, 10)[..., ::2], None, None), "states must be contiguous"),
    ("snn forward", (f32(3, 4, 5), None, None, b8(3, 4, 5, device="meta")), "gates must be torch.bool on the CPU, got "
     "torch.bool on meta"),
    ("snn forward", (f32(3, 4, 5), f32(1, 4, 5).expand(3, 4, 5), None, None), "states must be contiguous"),  # never expanded
    ("snn backward", (f32(3, 4, 5), f32(3, 4, 5), f32(3, 4, 5)), "gates must be torch.bool"),
    ("snn backward", (f32(3, 4, 6), b8(3, 4, 5), f32(3, 4, 5)), "grad must have shape (3, 4, 5)"),
    ("snn backward", (f32(3, 4, 5), b8(3, 4, 5), f32(3, 4)), "grad_current must have shape (3, 4, 5)"),
    ("snn backward", (f32(3, 4, 5).double(), b8(3, 4, 5), f32(3, 4, 5)), "grad must be torch.float32"),
    ("snn backward", (f32(3, 5, 4).transpose(1, 2), b8(3, 4, 5), f32(3, 4, 5)), "grad must be contiguous"),
    ("snn backward", (f32(4, 5).expand(3, 4, 5)[:, :, :4], b8(3, 4, 4), f32(3, 4, 4)), "grad must be contiguous"),  # stride 0
    ("snn backward", (f32(3, 4, 5), b8(3, 4, 5), f32(3, 5, 4).transpose(1, 2)), "grad_current must be contiguous"),
    ("snn backward", (f32(3, 4, 5), b8(4, 5), f32(4, 5)), "gates must be (T, B, N)"),
    ("lif forward", (f32(3, 4, 5), f32(4, 5), None), "u must be (T, B, N), got shape (4, 5)"),
    ("lif forward", (f32(2, 4, 5), f32(3, 4, 5), None), "current must have shape (3, 4, 5), got (2, 4, 5)"),
    ("lif forward", (f32(5, 4), f32(3, 4, 5), None), "current must have shape (4, 5), got (5, 4)"),  # held, transposed
    ("lif forward", (f32(3, 4, 5), f32(3, 4, 5), f32(3, 4, 4)), "spikes must have shape (3, 4, 5)"),
    ("lif forward", (f32(3, 4, 5).double(), f32(3, 4, 5), None), "current must be torch.float32"),
    ("lif forward", (f32(5, 4).t(), f32(3, 4, 5), None), "current must be contiguous"),
    ("lif forward", (f32(4, 5).expand(3, 4, 5), f32(3, 4, 5), None), "current must be contiguous"),  # held is (B, N)
    ("lif forward", (f32(3, 4, 5), f32(3, 4, 5).to("meta"), None), "u must be torch.float32 on the CPU, got torch.float32 "
     "on meta"),
    ("lif backward", (f32(3, 4, 5), f32(3, 4, 5), f32(3, 4, 5), None, "tanh"), "surrogate must be one of membrane, atan"),
    ("lif backward", (f32(3, 4, 5), f32(3, 4, 5), f32(3, 4, 5), f32(4, 5), "atan"), "give grad (T, B, N) or grad_sum (B, N)"),
    ("lif backward", (f32(3, 4, 5), f32(3, 4, 5), None, None, "atan"), "give grad (T, B, N) or grad_sum (B, N), one of them"),
    ("lif backward", (f32(3, 4, 5), f32(3, 4, 5), None, f32(3, 4, 5), "atan"), "grad_sum must have shape (4, 5), got (3, 4, 5)"),
    ("lif backward", (f32(3, 4, 5), f32(2, 4, 5), f32(3, 4, 5), None, "atan"), "grad_out must have shape (3, 4, 5)"),
    ("lif backward", (f32(3, 4, 5), f32(3, 4, 5), f32(3, 4, 5).double(), None, "atan"), "grad must be torch.float32"),
    ("lif backward", (f32(3, 5, 4).transpose(1, 2), f32(3, 4, 5), f32(3, 4, 5), None, "atan"), "u must be contiguous"),
    ("lif backward", (f32(3, 4, 5), f32(3, 5, 4).transpose(1, 2), f32(3, 4, 5), None, "atan"), "grad_out must be contiguous"),
]  # fmt: skip


def call(kernels, which: str, tensors):
    """One ``_call_*`` of models.fused with these tensors and fixed constants."""
    if which == "snn forward":
        return fused._call_snn_forward(kernels.snn_forward, *tensors, 0.9, 1.0, 0.5, False)
    if which == "snn backward":
        return fused._call_snn_backward(kernels.snn_backward, *tensors, 0.9, 0.0, True)
    if which == "lif forward":
        return fused._call_lif_forward(kernels.lif_forward, *tensors, 0.9, 1.0, False)
    u, grad_out, grad, grad_sum, surrogate = tensors
    return fused._call_lif_backward(kernels.lif_backward, u, grad_out, grad, grad_sum, 0.9, 1.0, False, surrogate, 2.0)


@pytest.mark.parametrize("which, tensors, message", WRONG_CALLS)
def test_each_call_checks_what_its_pointers_assume(kernels, which, tensors, message):
    with pytest.raises(ValueError, match=f"native {which}: ") as info:
        call(kernels, which, tensors)
    assert message in str(info.value)


# ---- the C functions' own checks: -1 and nothing written ----

BAD_COUNTS = [(-1, 10, 0, 10), (3, -1, 0, 0), (3, 10, -1, 10), (3, 10, 6, 5), (3, 10, 0, 11), (2**62, 4, 0, 4)]
BAD_IDS = ["T<0", "M<0", "start<0", "start>stop", "stop>M", "T*M-overflows"]


def sentinel_buffers():
    """(4, 10) float32 and bool buffers, one row more than T = 3 needs: a write past T * M would show."""
    return torch.full((4, 10), -7.0), torch.full((4, 10), -7.0), torch.ones(4, 10, dtype=torch.bool)


@pytest.mark.parametrize("T, M, start, stop", BAD_COUNTS, ids=BAD_IDS)
def test_the_c_kernels_refuse_counts_that_do_not_fit_and_write_nothing(kernels, T, M, start, stop):
    a, b, gates = sentinel_buffers()
    src = torch.ones(4, 10)
    p = (a.data_ptr(), b.data_ptr(), gates.data_ptr(), src.data_ptr())
    assert kernels.snn_forward(p[3], p[0], p[1], p[2], T, M, start, stop, 0.9, 1.0, 0.5, 0.5, 0, 2, None) == -1
    assert kernels.snn_backward(p[3], M, p[2], p[0], T, M, start, stop, 0.9, 0.0, 1, 2, None) == -1
    assert kernels.lif_forward(p[3], M, p[0], p[1], T, M, start, stop, 0.9, 1.0, 0, 2) == -1
    assert kernels.lif_backward(p[3], p[3], M, p[0], None, T, M, start, stop, 0.9, 1.0, 0, 1, 1.0, 1.0, 2) == -1
    assert (a == -7).all() and (b == -7).all() and gates.all()
    # the same buffers with counts that fit: T = 3 rows written, the fourth untouched
    assert kernels.snn_forward(p[3], p[0], p[1], p[2], 3, 10, 0, 10, 0.9, 1.0, 0.5, 0.5, 0, 2, None) == 0
    assert (a[:3] != -7).all() and (a[3] == -7).all() and (b[3] == -7).all() and gates[3].all()


def test_the_c_kernels_refuse_other_strides_surrogates_and_missing_pointers(kernels):
    a, b, gates = sentinel_buffers()
    src = torch.ones(4, 10)
    pa, pb, pg, ps = a.data_ptr(), b.data_ptr(), gates.data_ptr(), src.data_ptr()
    assert kernels.snn_backward(ps, 5, pg, pa, 3, 10, 0, 10, 0.9, 0.0, 1, 2, None) == -1  # a t-stride neither 0 nor M
    assert kernels.lif_forward(ps, 20, pa, pb, 3, 10, 0, 10, 0.9, 1.0, 0, 2) == -1
    assert kernels.lif_backward(ps, ps, 3, pa, None, 3, 10, 0, 10, 0.9, 1.0, 0, 1, 1.0, 1.0, 2) == -1
    assert kernels.lif_backward(ps, ps, 10, pa, None, 3, 10, 0, 10, 0.9, 1.0, 0, 4, 1.0, 1.0, 2) == -1  # no surrogate 4
    assert kernels.lif_backward(ps, ps, 10, None, None, 3, 10, 0, 10, 0.9, 1.0, 0, 1, 1.0, 1.0, 2) == -1  # nowhere to write
    assert kernels.snn_backward(ps, 10, None, pa, 3, 10, 0, 10, 0.9, 0.0, 1, 2, None) == -1
    assert kernels.snn_forward(None, pa, pb, pg, 3, 10, 0, 10, 0.9, 1.0, 0.5, 0.5, 0, 2, None) == -1
    assert kernels.lif_forward(ps, 10, None, pb, 3, 10, 0, 10, 0.9, 1.0, 0, 2) == -1
    assert (a == -7).all() and (b == -7).all() and gates.all()
    assert kernels.lif_backward(ps, ps, 0, None, pa, 3, 10, 0, 10, 0.9, 1.0, 0, 0, 0.0, 0.0, 2) == 0  # held: sums into (M,)
    # U = 1 (not above the threshold 1), dL/dU_t = 1 + 0.9 dL/dU_{t+1}: 1, 1.9, 2.71, summed over t
    assert torch.allclose(a.view(-1)[:10], torch.tensor(1 + 1.9 + 2.71)) and (a.view(-1)[10:] == -7).all()


# ---- build, cache, fallback ----


def test_native_code_off_or_no_compiler_falls_back_quietly(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("SNNBENCH_NATIVE", "0")
    assert native.load(fused.SOURCE, "neurons", fused.FLAGS, fused._Kernels) is False
    monkeypatch.setenv("SNNBENCH_NATIVE", "1")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    assert native.load(fused.SOURCE, "neurons", fused.FLAGS, fused._Kernels) is False
    assert not list((tmp_path / "snnbench").glob("*")), "a failed build leaves nothing in the cache"
    monkeypatch.setattr(fused, "_native", None)
    assert fused.native() is False and fused.name() == "torch, one step at a time"
    # and the model still trains, through the torch loops
    current = currents((3, 2, 5), "mixed", 1).requires_grad_()
    NeuronRecurrence.apply(current, *SNN_ARGS["subtract"], "states").sum().backward()
    assert current.grad is not None


@pytest.mark.slow
def test_the_build_is_cached_per_source_flags_and_cpu_model(kernels, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = native.build(fused.SOURCE, "neurons", fused.FLAGS)
    assert first.parent == tmp_path / "snnbench" and first.name.startswith("neurons-") and first.exists()
    stamp = first.stat().st_mtime_ns
    assert native.build(fused.SOURCE, "neurons", fused.FLAGS) == first and first.stat().st_mtime_ns == stamp  # reused
    monkeypatch.setattr(native, "cpu_model", lambda: "another CPU")
    assert native.build(fused.SOURCE, "neurons", fused.FLAGS) != first
    assert len(list((tmp_path / "snnbench").glob("neurons-*.so"))) == 2


def test_a_second_derivative_is_refused_as_by_the_torch_loop(kernels, monkeypatch):
    """create_graph=True differentiates the backward itself (here with respect to the upstream gradient). The torch
    loops write with out= and refuse it; the kernels step aside for them rather than return a gradient that silently
    has no graph."""
    current = currents((5, 3, 40), "mixed", 9)
    for apply in (lambda c: NeuronRecurrence.apply(c, *SNN_ARGS["proportional"], "outputs"),
                  lambda c: LIFRecurrence.apply(c, 5, 0.9, 1.0, False, "atan", 2.0, "spikes"),
                  lambda c: LIFRecurrence.apply(c, 5, 0.9, 1.0, True, "sigmoid", 2.0, "membrane")):  # fmt: skip
        for path in ("native", "torch"):
            with monkeypatch.context() as m:
                if path == "torch":
                    torch_only(m)
                c, v = current.clone().requires_grad_(), torch.randn(current.shape, requires_grad=True)
                with pytest.raises(RuntimeError, match="out=... arguments don't support automatic differentiation"):
                    torch.autograd.grad(apply(c), c, v, create_graph=True)
