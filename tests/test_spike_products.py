"""Event-driven layer products for 0/1 inputs (models/spike_products.py, models/_events.c): the same spikes as the
dense generator, products equal to the dense GEMMs to float32 summation order, results independent of the thread
count, and the dispatcher's choice by density against the crossover."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from models import dispatch, masks
from models import spike_products as sp

pytestmark = pytest.mark.skipif(not sp.native() or not masks.native(), reason="the C kernels are not built here")

DENSITIES = (0.0, 0.05, 0.13, 0.5, 1.0)


def probabilities(B: int, n: int, density: float, seed: int = 0) -> torch.Tensor:
    """Probabilities whose mean is ``density``, a digit-like 80% of them exactly 0 (at 0 and 1: all 0, all 1)."""
    g = torch.Generator().manual_seed(seed)
    if density in (0.0, 1.0):
        return torch.full((B, n), density)
    on = torch.rand(B, n, generator=g) < 0.2
    return (torch.rand(B, n, generator=g) * on * density / 0.1).clamp_(0, 1)


def dense_spikes(p: torch.Tensor, steps: int, key: int) -> torch.Tensor:
    out = torch.empty(steps, *p.shape)
    masks._fill_native(masks.native(), out, p.contiguous(), key, spikes=True)
    return out


@pytest.mark.parametrize("density", DENSITIES)
def test_rate_events_are_the_dense_generators_spikes(density):
    p = probabilities(24, 50, density)
    ev = sp.rate_events(p, 5, key=987654321)
    assert torch.equal(ev.dense(), dense_spikes(p, 5, 987654321).view(-1, 50))
    assert ev.total() == int(dense_spikes(p, 5, 987654321).sum())


@pytest.mark.parametrize("density", DENSITIES)
def test_dense_events_read_a_0_1_matrix(density):
    x = (torch.rand(40, 33, generator=torch.Generator().manual_seed(1)) < density).float()
    ev = sp.dense_events(x)
    assert torch.equal(ev.dense(), x)
    assert (ev.count.long() == x.sum(1).long()).all()


@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("N", [100, 10, 7, 128, 48, 200])
@pytest.mark.parametrize("bias", [True, False])
def test_products_equal_the_dense_gemms(density, N, bias):
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(300, 784, generator=g) < density).float()
    w = torch.randn(N, 784, generator=g) * 0.05
    b = torch.randn(N, generator=g) if bias else None
    grad = torch.randn(300, N, generator=g)
    ev = sp.dense_events(x)
    out, gw = sp.forward(ev, w, b), sp.weight_grad(ev, grad)
    # float32 sums of up to 784 terms (forward) and 300 (gradient) in another order: relative to the sum of magnitudes
    scale_out = F.linear(x, w.abs(), None if b is None else b.abs()).clamp_min(1)
    scale_gw = grad.abs().t() @ x
    assert ((out - F.linear(x, w, b)).abs() <= 1e-5 * scale_out).all()
    assert ((gw - grad.t() @ x).abs() <= 1e-5 * scale_gw.clamp_min(1)).all()
    if density == 0.0:
        assert torch.equal(out, (b if b is not None else torch.zeros(N)).expand(300, N))
        assert torch.equal(gw, torch.zeros(N, 784))


def test_results_do_not_depend_on_the_thread_count():
    p = probabilities(64, 784, 0.13)
    w, grad = torch.randn(100, 784) * 0.05, torch.randn(64 * 3, 100)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            ev = sp.rate_events(p, 3, key=5)
            results.append((ev.dense(), sp.forward(ev, w, None), sp.weight_grad(ev, grad)))
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def test_event_linear_gradients_equal_dense_linear():
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(200, 60, generator=g) < 0.2).float()
    w = (torch.randn(20, 60, generator=g) * 0.1).requires_grad_()
    b = torch.randn(20, generator=g).requires_grad_()
    w2, b2 = w.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    upstream = torch.randn(200, 20, generator=g)
    (sp.EventLinear.apply(w, b, sp.dense_events(x)) * upstream).sum().backward()
    (F.linear(x, w2, b2) * upstream).sum().backward()
    torch.testing.assert_close(w.grad, w2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.grad, b2.grad, rtol=1e-5, atol=1e-5)


def test_crossing_reads_the_measured_table():
    def table(*ratios):
        return [{"density": d, "dense_seconds": 1.0, "event_seconds": r} for d, r in zip((0.1, 0.2, 0.3), ratios)]

    assert sp.crossing(table(0.5, 0.9, 1.1)) == pytest.approx(0.25)
    assert sp.crossing(table(1.2, 1.5, 2.0)) == 0.0
    assert sp.crossing(table(0.2, 0.4, 0.8)) == 1.0


def test_measure_times_both_paths():
    rows = sp.measure(64, 16, densities=(0.1, 0.5), rows=256, repeats=1)
    assert [r["density"] for r in rows] == [0.1, 0.5]
    assert all(r["dense_seconds"] > 0 and r["event_seconds"] > 0 for r in rows)


def lif_step(monkeypatch, setting: str):
    """One training step of lif under rate encoding at a size the C generator draws (T 2, B 700: 1.1 M numbers): its
    layer 1 on rate spikes, its layer 2 on layer 1's spikes (with a gradient to them)."""
    from models.registry import build

    monkeypatch.setenv(sp.ENV, setting)
    torch.manual_seed(0)
    model = build("lif:time_steps=2")
    x = torch.rand(700, 784) - 0.5
    x[:, :600] = -0.5  # a background: probabilities of exactly 0, as a digit's
    sp.reset_counts()
    torch.manual_seed(1)
    loss = F.cross_entropy(model(x), torch.arange(700) % 10)
    loss.backward()
    return model, loss.detach(), sp.counts()


def test_lif_trains_the_same_event_driven_or_dense(monkeypatch):
    events, loss_e, counts_e = lif_step(monkeypatch, "1")
    dense, loss_d, counts_d = lif_step(monkeypatch, "0")
    assert counts_e == {"events": 1, "spikes events": 1} and counts_d == {"dense": 1, "spikes dense": 1}  # layers 1, 2
    torch.testing.assert_close(loss_e, loss_d, rtol=1e-5, atol=1e-6)
    for (name, a), (_, b) in zip(events.named_parameters(), dense.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_the_dispatcher_chooses_by_density(monkeypatch):
    p = probabilities(700, 784, 0.13)  # mean 0.13 or so
    w, b = torch.zeros(100, 784), torch.zeros(100)
    monkeypatch.setenv(sp.ENV, "0.05")
    choice = dispatch.choose("products.rate", p, 2, w, b, object())
    assert choice.backend == "torch" and "not below the crossover 0.05" in choice.reason
    monkeypatch.setenv(sp.ENV, "0.5")
    assert dispatch.choose("products.rate", p, 2, w, b, object()).backend.startswith("c+")
    small = probabilities(8, 784, 0.13)  # too few numbers for the C generator: the dense path's other spikes
    assert "would not draw" in dispatch.choose("products.rate", small, 2, w, b, object()).reason
    assert "event-driven below density 0.5" in dispatch.provenance("cpu")["event_products"]


def test_a_bad_setting_is_refused_in_one_line(tmp_path):
    env = {"SNNBENCH_EVENTS": "sometimes", "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    done = subprocess.run([sys.executable, "-m", "bench.run", "--models", "lif", "--epochs", "1", "--max-batches", "1",
                           "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "SNNBENCH_EVENTS must be 0" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("density", [0.0, 0.1, 1.0])
def test_a_layer_fed_by_spikes_gives_the_dense_gradients_to_its_input_too(density, monkeypatch):
    g = torch.Generator().manual_seed(4)
    x = (torch.rand(3, 400, 60, generator=g) < density).float().requires_grad_()
    w = (torch.randn(12, 60, generator=g) * 0.1).requires_grad_()
    b = torch.randn(12, generator=g).requires_grad_()
    upstream = torch.randn(3, 400, 12, generator=g)
    monkeypatch.setenv(sp.ENV, "1")
    assert dispatch.choose("products.spikes", x, w, b).backend.startswith("c+")
    (sp.spike_linear(x, w, b) * upstream).sum().backward()
    got = [t.grad.clone() for t in (x, w, b)]
    for t in (x, w, b):
        t.grad = None
    (F.linear(x, w, b) * upstream).sum().backward()
    for a, t in zip(got, (x, w, b)):
        torch.testing.assert_close(a, t.grad, rtol=1e-5, atol=1e-5)
    monkeypatch.setenv(sp.ENV, "0")
    assert "not below the crossover 0" in dispatch.choose("products.spikes", x, w, b).reason
    assert "below MIN_EVENTS" in dispatch.choose("products.spikes", x[:, :10], w, b).reason


def test_rsnn_readout_and_recurrent_gradient_event_driven_equal_dense(monkeypatch):
    """rsnn's readout (on the hidden spikes) and its recurrent weights' gradient (all steps' spikes at once) through
    the event-driven kernels: the same loss and gradients as dense, to float32 summation order."""
    from models.registry import build

    def step(setting):
        monkeypatch.setenv(sp.ENV, setting)
        torch.manual_seed(0)
        model = build("rsnn:sequence=true,n_in=20,time_steps=10,threshold=0.3")
        x = (torch.rand(64, 10, 20, generator=torch.Generator().manual_seed(1)) < 0.3).float()
        sp.reset_counts()
        loss = F.cross_entropy(model(x), torch.arange(64) % 10)
        loss.backward()
        return loss.detach(), {n: p.grad for n, p in model.named_parameters()}, sp.counts()

    loss_e, grads_e, counts_e = step("1")
    loss_d, grads_d, counts_d = step("0")
    assert counts_e == {"spikes events": 2} and counts_d == {"spikes dense": 2}  # the readout, W_rec's gradient
    torch.testing.assert_close(loss_e, loss_d, rtol=1e-6, atol=1e-7)
    for name in grads_e:
        torch.testing.assert_close(grads_e[name], grads_d[name], rtol=1e-5, atol=1e-6, msg=name)
