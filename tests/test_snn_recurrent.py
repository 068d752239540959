"""``snn:recurrent=true``: the 2018 neuron with recurrent weights W_rec on layer 1's own delayed output o1_{t-1}
(models/snn_reference.py). The fast ``snn`` against the step-by-step ``snn-reference`` (logits, every gradient), both
against a scalar rewrite by hand, the masks drawn without a ``masks`` argument, the activity and its counts, a run."""

import pytest
import torch
import torch.nn.functional as F
from test_snn_spec import reference_snn  # the scalar rewrite of SPEC.md, with its recurrent weight wr

import models
from bench.metrics import Counter
from models import masked_linear
from models import masks as mask_rng

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def pair(keys: str, scale: float = 1.0, rec_scale: float = 1.0, device: str = "cpu"):
    """snn-reference and snn with ``recurrent=true`` and the same parameters, scaled (larger: more firing)."""
    reference = models.build(f"snn-reference:recurrent=true{keys}").to(device)
    fast = models.build(f"snn:recurrent=true{keys}").to(device)
    with torch.no_grad():
        for p in reference.parameters():
            p.mul_(scale)
        reference.layer1_rec.weight.mul_(rec_scale)
    fast.load_state_dict(reference.state_dict())
    return reference, fast


def logits_and_grads(model, x, masks, y):
    """Logits, every parameter's gradient and the input's, one forward and backward pass."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    logits = model(x, masks=masks)
    if logits.requires_grad:  # snn at T = 1: the logits are v2_0 = 0, a constant
        F.cross_entropy(logits, y).backward()
    grads = {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}
    return logits.detach(), {**grads, "x": x.grad if x.grad is not None else torch.zeros_like(x)}


def assert_rel_close(got, want, what, rel=1e-5):
    err, size = (got - want).abs().max().item(), want.abs().max().item()
    assert err <= rel * max(size, 1e-12), f"{what}: max error {err:.3g} vs max size {size:.3g}"


def test_the_key_is_off_by_default_and_adds_one_weight():
    """recurrent=false: the 2018 network, its parameters as before; recurrent=true adds W_rec (hidden, hidden), no bias,
    Linear's default init, and leaves the other weights as one seed draws them without it."""
    for name in ("snn", "snn-reference"):
        torch.manual_seed(0)
        plain = models.build(name)
        assert plain.config.recurrent is False and plain.layer1_rec is None
        assert list(plain.state_dict()) == ["layer1.fc.weight", "layer1.fc.bias", "layer2.fc.weight", "layer2.fc.bias"]
        torch.manual_seed(0)
        rec = models.build(f"{name}:recurrent=true,hidden=64")
        assert models.parse_spec(f"{name}:recurrent=true").label == f"{name}:recurrent=True"
        assert rec.layer1_rec.weight.shape == (64, 64) and rec.layer1_rec.bias is None
        assert 0 < rec.layer1_rec.weight.abs().max() <= 64**-0.5  # U(-1/sqrt(hidden), 1/sqrt(hidden))
        torch.manual_seed(0)
        same = models.build(f"{name}:hidden=64")
        for key, value in same.state_dict().items():
            assert torch.equal(rec.state_dict()[key], value), key
    assert models.INFO["snn"].delay == 2  # only earlier steps feed back: the delays stay


@pytest.mark.parametrize("reset", ["subtract", "proportional"])
@pytest.mark.parametrize("time_steps", [1, 2, 3, 4, 12])
@pytest.mark.parametrize("name", ["snn", "snn-reference"])
def test_a_scalar_network_by_hand(name, reset, time_steps):
    """wr = -0.8: a spike at t - 1 lowers the current at t (and so changes which steps fire) from T = 4 on."""
    model = models.build(f"{name}:n_in=1,hidden=1,n_out=1,time_steps={time_steps},reset={reset},recurrent=true")
    w1, b1, wr, w2, b2 = 3.0, 0.2, -0.8, 1.7, 0.3
    with torch.no_grad():
        for param, value in ((model.layer1.fc.weight, w1), (model.layer1.fc.bias, b1), (model.layer1_rec.weight, wr),
                             (model.layer2.fc.weight, w2), (model.layer2.fc.bias, b2)):  # fmt: skip
            param.fill_(value)
    masks = torch.linspace(0.3, 0.9, time_steps).view(time_steps, 1, 1)
    got = model(torch.tensor([[0.7]]), masks=masks).item()
    want = reference_snn(0.7, masks.flatten().tolist(), w1, b1, w2, b2, reset, wr=wr)
    assert got == pytest.approx(want, abs=1e-6)
    if time_steps == 12:
        assert want != pytest.approx(reference_snn(0.7, masks.flatten().tolist(), w1, b1, w2, b2, reset))


@pytest.mark.parametrize("reset", ["subtract", "proportional"])
@pytest.mark.parametrize("time_steps, batch", [(1, 3), (2, 5), (3, 4), (4, 6), (9, 16), (64, 8)])
# firing-heavy: W1, W2 4 times, W_rec 2 times their init (at 4 times W_rec's own, the graded outputs feed themselves
# without bound: 1e10 by step 64)
@pytest.mark.parametrize("scale, rec_scale", [(1.0, 1.0), (4.0, 0.5)], ids=["usual", "firing-heavy"])
@pytest.mark.parametrize("device", DEVICES)
def test_fast_equals_reference(reset, time_steps, batch, scale, rec_scale, device):
    """The same masks: the same logits and gradients (parameters, W_rec, the input) to 1e-5 of their largest size."""
    torch.manual_seed(time_steps * 100 + batch)
    reference, fast = pair(f",reset={reset},time_steps={time_steps},hidden=40", scale, rec_scale, device)
    x = torch.rand(batch, 784, device=device) - 0.5
    masks = torch.rand(time_steps, batch, 784, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    want_logits, want = logits_and_grads(reference, x, masks, y)
    got_logits, got = logits_and_grads(fast, x, masks, y)
    assert torch.isfinite(want_logits).all()
    assert_rel_close(got_logits, want_logits, "logits")
    for name in want:
        assert_rel_close(got[name], want[name], f"d/d{name}")
    if time_steps >= 9:
        assert want["layer1_rec.weight"].abs().sum() > 0, "no gradient reached W_rec: the test would prove little"
        torch.manual_seed(0)
        plain = models.build(f"snn:reset={reset},time_steps={time_steps},hidden=40").to(device)
        plain.load_state_dict({k: v for k, v in fast.state_dict().items() if k != "layer1_rec.weight"})
        assert not torch.allclose(plain(x, masks=masks), got_logits), "the recurrence changed nothing"


@pytest.mark.parametrize("proportional", [False, True])
def test_the_written_out_backward_is_autograd_through_the_reference_step(proportional):
    """models/snn_recurrent.py against autograd through snn-reference's step on the same currents, in float64: equal
    to 1e-12, and torch's gradcheck (finite differences) passes."""
    from models import snn_recurrent

    torch.manual_seed(4)
    keys = f",time_steps=14,hidden=12,reset={'proportional' if proportional else 'subtract'}"
    reference = models.build(f"snn-reference:recurrent=true{keys}").double()
    current = (torch.randn(12, 3, 12, dtype=torch.float64) * 1.5 + 1.0).requires_grad_()
    w = (reference.layer1_rec.weight.detach() * 3).requires_grad_()
    with torch.no_grad():
        reference.layer1_rec.weight.copy_(w)
    c = reference.config
    args = (c.decay, c.threshold, c.penalty, proportional)
    got = snn_recurrent.layer1(current, w, *args)
    zeros, outs = torch.zeros(3, 12, dtype=torch.float64), []
    state = (zeros, zeros)
    for t in range(12):
        _, state = reference.step1(current[t], *state)
        outs.append(state[1])
    want = torch.stack(outs)
    assert (want > 0).double().mean() > 0.15, "few neurons fire: the gates would be tested little"
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(want)
    got_grads = torch.autograd.grad(got, (current, w), g)
    want_grads = torch.autograd.grad(want, (current, reference.layer1_rec.weight), g)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda i, r: snn_recurrent.layer1(i, r, *args), (current, w))


def test_a_zero_recurrent_weight_is_the_2018_network():
    torch.manual_seed(1)
    reference, fast = pair(",time_steps=20,hidden=30", scale=3.0, rec_scale=0.0)
    plain = models.build("snn:time_steps=20,hidden=30")
    plain.load_state_dict({k: v for k, v in fast.state_dict().items() if k != "layer1_rec.weight"})
    x, masks, y = torch.rand(6, 784) - 0.5, torch.rand(20, 6, 784), torch.arange(6)
    want_logits, want = logits_and_grads(plain, x, masks, y)
    for model in (fast, reference):
        got_logits, got = logits_and_grads(model, x, masks, y)
        assert_rel_close(got_logits, want_logits, "logits", rel=1e-6)
        for name in want:
            assert_rel_close(got[name], want[name], f"d/d{name}")


@pytest.mark.skipif(not mask_rng.native(), reason="no C compiler: the masks' C generator is not built")
def test_drawn_masks_and_activity_at_the_size_of_training():
    """Without ``masks``: layer 1's currents from masks drawn a chunk at a time (models/masked_linear.py), the numbers
    masks.masked_uniform_ gives from the same seed. Pixels of +-0.5 and +-0.25 make u_t x exact, so the masks are read
    back and handed to the reference. activity (all masks kept) gives the training forward's logits bit for bit."""
    T, B = 12, 140  # layer 1: 10 steps x 140 x 784 numbers, above masks.MIN_PARALLEL
    reference, fast = pair(f",time_steps={T}", scale=3.0, rec_scale=4.0)
    x = torch.tensor([0.5, -0.5, 0.25, -0.25])[torch.randint(0, 4, (B, 784), generator=torch.Generator().manual_seed(2))]
    y = torch.arange(B) % 10
    assert masked_linear.available(x, fast.layer1.fc.weight, T - 2)
    torch.manual_seed(5)
    logits = fast(x)
    grads = torch.autograd.grad(F.cross_entropy(logits, y), list(fast.parameters()))
    torch.manual_seed(5)
    drawn = mask_rng.masked_uniform_(torch.empty(T - 2, B, 784), x) / x  # u_t, exactly
    masks = torch.cat([drawn, torch.rand(2, B, 784)])  # the last two steps never reach the logits
    want_logits, want = logits_and_grads(reference, x, masks, y)
    assert_rel_close(logits.detach(), want_logits, "logits")
    for (name, _), got in zip(fast.named_parameters(), grads):
        assert_rel_close(got, want[name], f"d/d{name}")
    with torch.no_grad():
        torch.manual_seed(5)
        act = fast.activity(x)
    assert torch.equal(act.logits, logits.detach())
    assert act.outputs["layer1"].mean() > 0.02, "layer 1 hardly fires: the recurrence would carry little"


def test_the_activity_counts_the_recurrent_synapse():
    """Layer 1 at steps 1..T-2: W1 on u_t x, W_rec on o1_{t-1} (o1_0 = 0 first); layer 2 at 1..T-1. Dense per sample:
    (T-2)(784 H + H H) + (T-1) 10 H; graded outputs, so the recurrent operations are MACs. The reference's the same."""
    T, H, B = 9, 30, 4
    reference, fast = pair(f",time_steps={T},hidden={H}", scale=3.0)
    x, masks = torch.rand(B, 784) - 0.5, torch.rand(T, B, 784)
    act, ref = fast.activity(x, masks), reference.activity(x, masks)
    assert [s.weight.shape for s in act.synapses] == [(H, 784), (H, H), (10, H)]
    assert [s.name for s in act.synapses] == ["layer1", "layer1", "layer2"]
    out1 = act.outputs["layer1"]
    assert out1.shape == (T - 2, B, H) and out1.count_nonzero() > 0
    assert torch.equal(act.synapses[1].inputs, torch.cat([torch.zeros(1, B, H), out1[:-1]]))
    assert_rel_close(act.logits, fast(x, masks=masks), "logits")
    counters = []
    for a in (act, ref):
        assert_rel_close(a.synapses[1].inputs, ref.synapses[1].inputs, "o1_{t-1}")
        counters.append(Counter())
        counters[-1].add(a)
    values = counters[0].values()
    assert values["dense_ops"] == (T - 2) * (784 * H + H * H) + (T - 1) * 10 * H
    plain = (torch.count_nonzero(act.synapses[0].inputs) * H + torch.count_nonzero(act.synapses[2].inputs) * 10).item()
    assert values["effective_macs"] == (plain + torch.count_nonzero(out1[:-1]).item() * H) / B
    assert values["effective_acs"] == 0
    assert values == counters[1].values()


def test_trace_gives_the_forward_logits_and_dl_di():
    """The analysis' trace (bench/analysis.py) with the recurrence: forward's logits, and layer 1's current a leaf of
    the step-by-step graph whose gradient is dL/dh1_t."""
    reference, fast = pair(",time_steps=10,hidden=20", scale=3.0)
    x, masks = torch.rand(3, 784) - 0.5, torch.rand(10, 3, 784)
    tr = fast.trace(x, masks)
    assert_rel_close(tr["logits"].detach(), reference(x, masks=masks).detach(), "logits")
    tr["layer1_current"].retain_grad()
    tr["logits"].sum().backward()
    assert tr["layer1_current"].grad[:8].abs().sum() > 0 and tr["layer1_current"].grad[8:].abs().sum() == 0  # delay 2


def test_bf16_autocast_runs_with_a_float32_state():
    torch.manual_seed(0)
    model = models.build("snn:recurrent=true,time_steps=12,hidden=40")
    x = torch.rand(50, 784) - 0.5
    torch.manual_seed(3)
    want = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(3)
        got = model(x)
    assert got.dtype == torch.float32 and (got - want).abs().max() <= 2e-2 * want.abs().max()
    F.cross_entropy(got, torch.arange(50) % 10).backward()
    assert model.layer1_rec.weight.grad.dtype == torch.float32


def test_every_parameter_gets_a_gradient_at_the_2018_size():
    torch.manual_seed(0)
    model = models.build("snn:recurrent=true")
    logits = model(torch.rand(8, 1, 28, 28) - 0.5)
    F.cross_entropy(logits, torch.arange(8)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_bench_run_trains_it_with_metrics_and_analysis(tmp_path):
    from bench.run import main
    from bench.schema import read_epochs

    argv = ["--models", "snn:recurrent=true,time_steps=8", "--device", "cpu", "--dataset", "mnist-mini", "--epochs", "1",
            "--batch-size", "50", "--max-batches", "2", "--out", str(tmp_path / "out"), "--no-report"]  # fmt: skip
    assert main(argv) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    (row,) = read_epochs(run_dir / "epochs.csv")
    assert row["model"] == "snn:recurrent=True,time_steps=8"
    assert row["dense_ops"] == 6 * (784 * 100 + 100 * 100) + 7 * 10 * 100
    assert (run_dir / "window.csv").exists() and list((run_dir / "activity").glob("*.npz"))
