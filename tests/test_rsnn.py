"""The recurrent spiking network (models/rsnn.py, models/rsnn_reference.py): ``rsnn`` against the step-by-step
``rsnn-reference`` (and snnTorch's ``snntorch-rlif``), a hand-computed net, the contract, the config's checks, the
operations counted, the kept buffers, bench.run on smnist files and bench.speed's rsnn workload at a tiny size."""

import csv
import importlib.util
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gradients import assert_close, run

import models
from bench import speed
from bench.metrics import Counter
from models import dispatch

SNNTORCH = importlib.util.find_spec("snntorch") is not None
N_IN = 20
KINDS = {"sequence": f"sequence=true,n_in={N_IN}", "static": f"n_in={N_IN}"}


def batch(kind: str, steps: int, n: int = 6, seed: int = 0):
    """Event counts (n, T, 1, N_IN) (mostly 0, some 1, a few 2 and 3), or static inputs (n, N_IN) in [-0.5, 0.5]; and
    labels."""
    g = torch.Generator().manual_seed(seed)
    if kind == "static":
        x = torch.rand(n, N_IN, generator=g) - 0.5
    else:
        x = torch.poisson(torch.full((n, steps, 1, N_IN), 0.4), generator=g).clamp_(max=3)
    return x, torch.randint(0, 10, (n,), generator=g)


def built(name: str, keys: str, like: torch.nn.Module | None = None, scale: float = 1.0) -> torch.nn.Module:
    """``name`` with ``like``'s weights (fc1, rec, fc2), or its own times ``scale``."""
    model = models.build(f"{name}:hidden=24,{keys}")
    with torch.no_grad():
        for module in ("fc1", "rec", "fc2"):
            if like is not None:
                getattr(model, module).load_state_dict(getattr(like, module).state_dict())
            else:
                for p in getattr(model, module).parameters():
                    p.mul_(scale)
    return model


def assert_equal_runs(want, got):
    assert_close(got[0], want[0], "logits")
    for name in want[1]:
        assert_close(got[1][name], want[1][name], f"d/d{name}")
    assert_close(got[2], want[2], "d/dx")


CASES = list(itertools.product(KINDS, [0.0, 0.4], ["subtract", "zero"], ["membrane", "spikes"]))


@pytest.mark.parametrize("kind, adaptation, reset, readout", CASES)
def test_rsnn_equals_rsnn_reference_logits_every_gradient_and_the_input_gradient(kind, adaptation, reset, readout):
    """To 1e-5 (relative to the largest value, tests/gradients.py), with hidden neurons that fire at some steps, not all."""
    keys = (f"{KINDS[kind]},time_steps=12,beta=0.9,threshold=0.5,reset={reset},readout={readout},adaptation={adaptation},"
            "tau_adapt=5")  # fmt: skip
    torch.manual_seed(1)
    reference = built("rsnn-reference", keys, scale=3.0 if kind == "sequence" else 1.5)  # larger weights: many spikes
    fast = built("rsnn", keys, like=reference)
    x, y = batch(kind, 12)
    want, got = run(reference, x, y), run(fast, x, y)
    assert_equal_runs(want, got)
    spikes = reference.activity(x).outputs["layer1"]  # (T, B, hidden)
    some_not_all = (spikes.amax(0) > 0) & (spikes.amin(0) == 0)  # a neuron of a sample fired at some steps, not all
    assert some_not_all.float().mean() > 0.3 and 0.05 < spikes.mean() < 0.7, "the test would prove little"
    assert want[1]["rec.weight"].abs().sum() > 0 and want[1]["fc1.weight"].abs().sum() > 0


@pytest.mark.parametrize("time_steps", [1, 2])
def test_one_and_two_steps(time_steps):
    """T = 1: no recurrent product reaches anything (W_rec's gradient is 0); T = 2: one."""
    keys = f"{KINDS['sequence']},time_steps={time_steps},threshold=0.5,adaptation=0.5"
    torch.manual_seed(2)
    reference = built("rsnn-reference", keys, scale=3.0)
    fast = built("rsnn", keys, like=reference)
    x, y = batch("sequence", time_steps)
    want, got = run(reference, x, y), run(fast, x, y)
    assert_equal_runs(want, got)
    assert (want[1]["rec.weight"].abs().sum() > 0) == (time_steps > 1)


def tiny(name: str, reset: str = "subtract", readout: str = "membrane", adaptation: float = 0.0) -> torch.nn.Module:
    """2 -> 2 (recurrent) -> 2 with hand-set weights, T = 2, beta 0.5, threshold 1: see the sums in the test."""
    model = models.build(f"{name}:sequence=true,n_in=2,hidden=2,n_out=2,time_steps=2,beta=0.5,reset={reset},"
                         f"readout={readout},adaptation={adaptation}")  # fmt: skip
    with torch.no_grad():
        model.fc1.weight.copy_(torch.tensor([[3.0, 0], [0, 1]]))
        model.rec.weight.copy_(torch.tensor([[0.0, 0.5], [1, 0]]))
        model.fc2.weight.copy_(torch.tensor([[1.0, 1], [0, 1]]))
        model.fc1.bias.zero_()
        model.fc2.bias.zero_()
    return model


X = torch.tensor([[[1.0, 0], [1, 1]]])  # (B, T, n_in) = (1, 2, 2): frames (1, 0) then (1, 1)


@pytest.mark.parametrize("name", ["rsnn", "rsnn-reference"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_a_hand_computed_two_step_net(name, reset):
    """Step 1: I_1 = W_in x_1 = (3, 0), U_1 = (3, 0), theta_1 = 1: S_1 = (1, 0). Step 2: a_2 = rho a_1 + S_1 = (1, 0),
    theta_2 = 1 + adaptation (1, 0); I_2 = W_in x_2 + W_rec S_1 = (3, 1) + (0, 1) = (3, 2);
    subtract: U_2 = 0.5 U_1 + I_2 - theta_1 R_1 = (1.5 + 3 - 1, 2) = (3.5, 2); zero: 0.5 (1 - R_1) U_1 + I_2 = (3, 2).
    adaptation 0: S_2 = (1, 1); adaptation 3: theta_2 = (4, 1), S_2 = (0, 1) (either reset).
    Readout: U2_1 = W_out S_1 = (1, 0), no spike (1 is not > 1); U2_2 = 0.5 U2_1 + W_out S_2 = (2.5, 1) (adaptation 0)
    or (1.5, 1) (adaptation 3): logits (U2_1 + U2_2) / 2 = (1.75, 0.5) or (1.25, 0.5); spike counts (1, 0) either way.
    Operations (adaptation 3), all accumulates: W_in's inputs 0, 0 and 1 reach one non-zero weight each (3); the spike
    fed back at step 2 reaches W_rec's one in column 0 (1); W_out's S_1 = (1, 0) one, S_2 = (0, 1) two (3): 7.
    Dense: T (4 + 4 + 4) = 24."""
    for adaptation, logits, hidden in ((0.0, [1.75, 0.5], [[1, 0], [1, 1]]), (3.0, [1.25, 0.5], [[1, 0], [0, 1]])):
        model = tiny(name, reset, adaptation=adaptation)
        assert model(X).tolist() == [logits]
        assert tiny(name, reset, "spikes", adaptation)(X).tolist() == [[1.0, 0.0]]
        act = model.activity(X)
        assert act.logits.tolist() == [logits] and act.outputs["layer1"][:, 0].tolist() == hidden
        assert act.outputs["layer2"][:, 0].tolist() == [[0, 0], [1, 0]]
    counter = Counter()
    counter.add(act)
    values = counter.values()
    assert (values["effective_acs"], values["effective_macs"], values["dense_ops"]) == (7, 0, 24)
    assert values["layer1_firing_rate"] == 0.5


def test_the_reference_traces_the_adaptive_threshold():
    """theta_t = threshold + adaptation a_t, a_t = rho a_{t-1} + S_{t-1}: checked against the recorded spikes."""
    keys = f"{KINDS['sequence']},time_steps=10,threshold=0.5,adaptation=0.3,tau_adapt=4"
    torch.manual_seed(3)
    model = built("rsnn-reference", keys, scale=3.0)
    with torch.no_grad():
        tr = model.trace(batch("sequence", 10)[0])
    spikes, rho = tr["layer1_o"], np.exp(-1 / 4)
    a = torch.zeros_like(spikes[0])
    for t in range(10):
        assert_close(tr["layer1_theta"][t], 0.5 + 0.3 * a, f"theta_{t + 1}")
        assert torch.equal(spikes[t], (tr["layer1_v"][t] > tr["layer1_theta"][t]).float())
        a = rho * a + spikes[t]
    assert spikes.mean() > 0.05 and (tr["layer1_theta"] > 0.5).any()


@pytest.mark.parametrize("name", ["rsnn", "rsnn-reference"])
@pytest.mark.parametrize("kind", KINDS)
def test_contract_shape_finite_every_gradient_and_no_state_between_calls(name, kind):
    torch.manual_seed(4)
    model = models.build(f"{name}:{KINDS[kind]},time_steps=8,adaptation=0.2")
    x, y = batch(kind, 8, n=5)
    logits, grads, _ = run(model, x, y)
    assert logits.shape == (5, 10) and torch.isfinite(logits).all()
    for pname, g in grads.items():
        assert torch.isfinite(g).all() and g.abs().sum() > 0, f"{pname} gets no gradient"
    with torch.no_grad():
        first = model(x)
        model(batch(kind, 8, n=5, seed=9)[0])  # a call in between must not leak into the next one
        assert torch.equal(model(x), first)
    assert models.INFO[name].layers == ("layer1", "layer2") and models.INFO[name].delay == 0


@pytest.mark.parametrize("name", ["rsnn", "rsnn-reference"])
def test_activity_synapses_and_outputs(name):
    """layer1: W_in on the input (T steps of frames; a held image once), W_rec on S_{t-1} (S_0 = 0); layer2: W_out on
    S_t. Its logits are forward's."""
    torch.manual_seed(5)
    for kind in KINDS:
        model = built(name, f"{KINDS[kind]},time_steps=6,threshold=0.5", scale=3.0)
        x, _ = batch(kind, 6)
        act = model.activity(x)
        with torch.no_grad():
            torch.testing.assert_close(act.logits, model(x), rtol=1e-6, atol=1e-6)
        names = [(s.name, tuple(s.inputs.shape), s.weight is w) for s, w in
                 zip(act.synapses, (model.fc1.weight, model.rec.weight, model.fc2.weight))]  # fmt: skip
        steps = 6 if kind == "sequence" else 1
        assert names == [("layer1", (steps, 6, N_IN), True), ("layer1", (6, 6, 24), True), ("layer2", (6, 6, 24), True)]
        spikes = act.outputs["layer1"]
        assert torch.equal(act.synapses[1].inputs[0], torch.zeros_like(spikes[0]))
        assert torch.equal(act.synapses[1].inputs[1:], spikes[:-1]) and torch.equal(act.synapses[2].inputs, spikes)
        assert act.outputs["layer2"].shape == (6, 6, 10) and 0 < spikes.mean() < 1
        want = x + 0.5 if kind == "static" else x.flatten(2).transpose(0, 1)  # a held image's intensities; the frames
        assert torch.equal(act.synapses[0].inputs, want.expand_as(act.synapses[0].inputs))


def test_a_later_forward_overwrites_the_kept_buffers_and_an_earlier_graph_then_refuses_backward():
    """rsnn keeps its (T, B, hidden) buffers between calls (a fresh one costs its page faults every step); autograd's
    version counter makes a backward through a graph whose buffers a later call overwrote raise, not use them. Activity
    has buffers of its own."""
    model = models.build(f"rsnn:{KINDS['sequence']},time_steps=5")
    x, y = batch("sequence", 5)
    first = F.cross_entropy(model(x), y)
    second = F.cross_entropy(model(x), y)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        first.backward()
    second.backward()
    act = model.activity(x)
    kept = act.outputs["layer1"].clone()
    model(batch("sequence", 5, seed=3)[0])
    assert torch.equal(act.outputs["layer1"], kept)


def test_the_recurrence_is_a_dispatched_kernel_of_its_own_family():
    registered = dispatch.kernels()
    assert {n: registered[n].family for n in ("rsnn.forward", "rsnn.backward")} == dict.fromkeys(
        ("rsnn.forward", "rsnn.backward"), "recurrent")  # fmt: skip
    assert dispatch.plan("rsnn.forward", "cpu").backend == "torch" and dispatch.provenance("cpu")["recurrent"] == "torch"
    model = models.build(f"rsnn:{KINDS['sequence']},time_steps=4")
    x, y = batch("sequence", 4)
    with dispatch.watching() as used:
        F.cross_entropy(model(x), y).backward()
    assert {"rsnn.forward", "rsnn.backward", "lif.forward", "lif.backward"} <= used


@pytest.mark.parametrize(
    "spec, message",
    [
        ("rsnn:adaptation=-0.1", "adaptation must be >= 0"),
        ("rsnn-reference:tau_adapt=0", "tau_adapt must be positive"),
        ("rsnn:beta=1.5", "beta must be in"),
        ("rsnn:time_steps=0", "time_steps must be positive"),
        ("rsnn:hidden=0", "hidden must be positive"),
        ("rsnn:surrogate=atan,slope=3", "slope is fast_sigmoid's"),
        ("rsnn:reset=none", "choose from subtract, zero"),
    ],
)
def test_config_checks(spec, message):
    with pytest.raises(models.SpecError, match=message):
        models.parse_spec(spec)


def test_sequence_input_is_checked():
    model = models.build(f"rsnn:{KINDS['sequence']},time_steps=5")
    with pytest.raises(ValueError, match=r"T = 4 time bins, but time_steps = 5"):
        model(batch("sequence", 4)[0])
    with pytest.raises(ValueError, match=r"have 21 elements, but n_in = 20"):
        model(torch.zeros(2, 5, 1, 21))
    torch.testing.assert_close(model(batch("sequence", 5)[0].flatten(1)), model(batch("sequence", 5)[0]))
    assert models.parse_spec("rsnn").config.hidden == 128 and models.parse_spec("rsnn").label == "rsnn"


# ---- snnTorch's RLeaky ----

peers = pytest.mark.skipif(not SNNTORCH, reason="snntorch is not installed")


@peers
@pytest.mark.parametrize("kind, readout", list(itertools.product(KINDS, ["membrane", "spikes"])))
def test_snntorch_rlif_equals_rsnn_with_subtract(kind, readout):
    keys = f"{KINDS[kind]},time_steps=10,beta=0.9,threshold=0.5,readout={readout}"
    torch.manual_seed(6)
    fast = built("rsnn", keys, scale=3.0 if kind == "sequence" else 1.5)
    peer = built("snntorch-rlif", keys, like=fast)
    x, y = batch(kind, 10)
    assert_equal_runs(run(fast, x, y), run(peer, x, y))
    assert peer.lif1.recurrent is peer.rec and [n for n, _ in peer.named_parameters()] == [n for n, _ in fast.named_parameters()]


@peers
def test_snntorch_rlif_takes_rsnns_weights_and_leaves_the_generator_where_rsnn_does():
    torch.manual_seed(7)
    fast, after = models.build("rsnn:n_in=20"), torch.rand(3)
    torch.manual_seed(7)
    peer, again = models.build("snntorch-rlif:n_in=20"), torch.rand(3)
    assert torch.equal(after, again)
    for (n, p), (m, q) in zip(fast.named_parameters(), peer.named_parameters()):
        assert n == m and torch.equal(p, q)


@peers
def test_rleakys_recurrent_bias_is_an_input_bias():
    """RLeaky's own recurrent nn.Linear adds its bias at every step, the first included: the same network as rsnn with
    fc1's bias plus it, and the bias gets fc1's bias's gradient."""
    keys = f"{KINDS['sequence']},time_steps=8,beta=0.9,threshold=0.5"
    torch.manual_seed(8)
    fast = built("rsnn", keys, scale=3.0)
    peer = built("snntorch-rlif", keys, like=fast)
    recurrent = torch.nn.Linear(24, 24)
    with torch.no_grad():
        recurrent.weight.copy_(fast.rec.weight)
        recurrent.bias.uniform_(-0.3, 0.3)
        fast.fc1.bias.add_(recurrent.bias)
    peer.lif1.recurrent = recurrent  # the library's: biased
    x, y = batch("sequence", 8)
    want = run(fast, x, y)
    logits = peer(x)
    F.cross_entropy(logits, y).backward()  # peer.rec is not in its loop now: run() would find no gradient there
    assert_close(logits.detach(), want[0], "logits")
    assert_close(recurrent.bias.grad, want[1]["fc1.bias"], "d/d recurrent.bias")
    assert_close(recurrent.weight.grad, want[1]["rec.weight"], "d/d recurrent.weight")
    for name in ("fc1.weight", "fc1.bias", "fc2.weight"):
        assert_close(peer.get_parameter(name).grad, want[1][name], f"d/d{name}")


@peers
def test_snntorch_rlif_differs_with_reset_zero_and_refuses_adaptation():
    """The hand-computed net: RLeaky's zero reset zeroes U_2 = (1 - R_1) (beta U_1 + I_2) = (0, 2), where rsnn has
    beta (1 - R_1) U_1 + I_2 = (3, 2): neuron 0 loses step 2's input, does not fire, and the logits are (1.25, 0.5),
    not (1.75, 0.5). With reset=subtract both give (1.75, 0.5)."""
    assert tiny("snntorch-rlif", "zero")(X).tolist() == [[1.25, 0.5]] and tiny("rsnn", "zero")(X).tolist() == [[1.75, 0.5]]
    assert tiny("snntorch-rlif", "subtract")(X).tolist() == [[1.75, 0.5]]
    with pytest.raises(models.SpecError, match="RLeaky has no threshold adaptation"):
        models.parse_spec("snntorch-rlif:adaptation=0.5")
    assert "snntorch-rlif" in models.NOTES and "reset=zero" in models.NOTES["snntorch-rlif"]


# ---- bench.run on smnist files, bench.speed's workload ----


def test_bench_run_trains_rsnn_on_smnist_files(tmp_path, monkeypatch):
    pytest.importorskip("tonic")
    from eventfiles import write_mnist_idx

    from bench import data as datasets
    from bench.run import main
    from bench.schema import read_epochs

    monkeypatch.setenv("SNNBENCH_CACHE", str(tmp_path / "cache"))
    for cached in (datasets._loaded, datasets._cached, datasets.training_splits):
        cached.cache_clear()
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        write_mnist_idx(tmp_path / "data", rng.integers(0, 256, (8, 28, 28)), np.arange(8) % 10, split, layout="torchvision")
    argv = ["--models", "rsnn", "rsnn:adaptation=0.5", "--device", "cpu", "--dataset", "smnist:bins=8", "--epochs", "1",
            "--data-dir", str(tmp_path / "data"), "--batch-size", "4", "--out", str(tmp_path / "out"), "--no-report"]  # fmt: skip
    try:
        assert main(argv) == 0
    finally:
        for cached in (datasets._loaded, datasets._cached, datasets.training_splits):
            cached.cache_clear()
    (run_dir,) = (tmp_path / "out").iterdir()
    rows = {r["model"]: r for r in read_epochs(run_dir / "epochs.csv")}
    assert set(rows) == {"rsnn:n_in=99", "rsnn:adaptation=0.5,n_in=99"}
    for row in rows.values():
        assert row["dataset"] == "smnist:bins=8" and float(row["dense_ops"]) == 8 * (128 * 99 + 128 * 128 + 10 * 128)
        assert row["layer1_firing_rate"] == row["layer1_firing_rate"]  # counted (not NaN)


def test_speed_rsnn_workload_at_a_tiny_size(tmp_path):
    out = tmp_path / "speed.csv"
    argv = ["--workload", "rsnn", "--batch-size", "4", "--time-steps", "3", "--repeats", "1", "--no-memory"]
    assert speed.main([*argv, "--csv", str(out)]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["implementation"] for r in rows] == speed.names("rsnn")
    assert speed.names("rsnn")[:2] == ["rsnn", "rsnn-reference"] and speed.names("rsnn")[-1] == "floor (rsnn)"
    assert {(r["workload"], r["batch_size"], r["time_steps"]) for r in rows} == {("rsnn", "4", "3")}
    assert "snntorch-rlif" in speed.names("rsnn") or not SNNTORCH
    x, y = speed.event_sequence(4, 3, "cpu")
    assert x.shape == (4, 3, 1, 99) and y.shape == (4,) and 0.3 < x.mean() < 0.6 and torch.equal(x, x.round())
    assert speed.WORKLOADS["rsnn"] == 112 and speed.BATCH_SIZES["rsnn"] == 256
    assert speed.main(["--workload", "rsnn", "--time-steps", "0"]) == 2
