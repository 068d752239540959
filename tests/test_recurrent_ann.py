"""The recurrent baselines ``gru`` and ``lstm`` (models/recurrent_ann.py): the model contract, torch's GRU against its
equations by hand, the operations counted by hand, static images read as rows, sequence input, and a run of bench.run
on smnist made from tiny MNIST files."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import models
from bench import data as datasets
from bench.metrics import Counter

NAMES = ["gru", "lstm"]
GATES = {"gru": 3, "lstm": 4}


def counts(shape: tuple[int, ...], seed: int = 0, binary: bool = False) -> torch.Tensor:
    """Float event counts, mostly 0, some 1, a few 2 and 3 (0/1 only when ``binary``)."""
    c = torch.poisson(torch.full(shape, 0.5), generator=torch.Generator().manual_seed(seed)).clamp_(max=3)
    return c.clamp_(max=1) if binary else c


def inputs(kind: str, B: int = 5) -> tuple[str, torch.Tensor]:
    """(spec keys, x): static images as the data gives them, or smnist-like frames (B, T, 1, 9)."""
    if kind == "static":
        return "", torch.rand(B, 1, 28, 28, generator=torch.Generator().manual_seed(1)) - 0.5
    return ",sequence=true,time_steps=6,n_in=9", counts((B, 6, 1, 9))


@pytest.mark.parametrize("kind", ["static", "sequence"])
@pytest.mark.parametrize("name", NAMES)
def test_contract(name, kind):
    """Logits (B, n_out), finite; every parameter a non-zero gradient; nothing kept between calls; activity's logits are
    forward's."""
    keys, x = inputs(kind)
    torch.manual_seed(0)
    model = models.build(f"{name}:n_out=4{keys}")
    logits = model(x)
    assert logits.shape == (5, 4) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.arange(5) % 4).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname
    first = model(x)
    model(x.flip(0) + 1)  # a call in between leaves nothing behind
    assert torch.equal(model(x), first)
    assert torch.equal(model.activity(x).logits, first.detach())


def test_the_defaults():
    for name in NAMES:
        model = models.build(name)
        assert (model.config.hidden, model.config.time_steps, model.config.n_in) == (128, 28, 784)
        assert model.layer1.input_size == 28 and model.layer1.batch_first and model.layer1.num_layers == 1
        assert model.layer1.weight_ih_l0.shape == (GATES[name] * 128, 28) and model.layer2.weight.shape == (10, 128)
        assert models.INFO[name].kind == "baseline" and models.INFO[name].layers == ("layer1", "layer2")


def test_the_gru_is_torchs_equations_by_hand():
    """h_t = (1 - z) n + z h_{t-1}, r, z sigmoids, n = tanh(W_in x + b_in + r (W_hn h + b_hn)); logits = W h_T + b."""
    torch.manual_seed(3)
    model = models.build("gru:sequence=true,time_steps=4,n_in=3,hidden=2,n_out=2")
    x = counts((3, 4, 3), seed=2)
    rnn = model.layer1
    (wir, wiz, win), (whr, whz, whn) = rnn.weight_ih_l0.chunk(3), rnn.weight_hh_l0.chunk(3)
    (bir, biz, bin_), (bhr, bhz, bhn) = rnn.bias_ih_l0.chunk(3), rnn.bias_hh_l0.chunk(3)
    h, hs = torch.zeros(3, 2), []
    for t in range(4):
        xt = x[:, t]
        r = torch.sigmoid(xt @ wir.T + bir + h @ whr.T + bhr)
        z = torch.sigmoid(xt @ wiz.T + biz + h @ whz.T + bhz)
        n = torch.tanh(xt @ win.T + bin_ + r * (h @ whn.T + bhn))
        h = (1 - z) * n + z * h
        hs.append(h)
    act = model.activity(x)
    torch.testing.assert_close(act.outputs["layer1"], torch.stack(hs))
    torch.testing.assert_close(model(x), h @ model.layer2.weight.T + model.layer2.bias)


@pytest.mark.parametrize("name", NAMES)
def test_operations_counted_by_hand(name):
    """T = 5 steps of 3 inputs, H = 2, 4 classes, B = 2. Dense per sample: T (G H n_in + G H H) + H n_out,
    GRU 5 (18 + 12) + 8 = 158, LSTM 5 (24 + 16) + 8 = 208. Effective: the input's non-zero elements times G H (0/1
    frames: ACs); h_0 = 0 does nothing, h_1 .. h_4 (never exactly 0) G H H each, and h_5 the readout's H n_out: MACs."""
    G, T, n, H, K, B = GATES[name], 5, 3, 2, 4, 2
    torch.manual_seed(0)
    model = models.build(f"{name}:sequence=true,time_steps={T},n_in={n},hidden={H},n_out={K}")
    x = counts((B, T, n), seed=4, binary=True)
    act = model.activity(x)
    torch.testing.assert_close(act.logits, model(x), rtol=0, atol=0)
    (s_in, s_rec, s_out) = act.synapses
    assert [s.name for s in act.synapses] == ["layer1", "layer1", "layer2"]
    assert torch.equal(s_in.inputs, x.transpose(0, 1))  # x_t, (T, B, n)
    h = act.outputs["layer1"]
    assert h.shape == (T, B, H) and (h != 0).all()
    assert torch.equal(s_rec.inputs, torch.cat([torch.zeros(1, B, H), h[:-1]]))  # h_0 = 0, h_1 .. h_{T-1}
    assert torch.equal(s_out.inputs, h[-1:])  # h_T, one step
    assert s_rec.weight.shape == (G * H, H) and s_out.weight.shape == (K, H)
    counter = Counter()
    counter.add(act)
    values = counter.values()
    assert values["dense_ops"] == T * (G * H * n + G * H * H) + H * K == {"gru": 158, "lstm": 208}[name]
    assert values["effective_acs"] == int(x.count_nonzero()) * G * H / B
    assert values["effective_macs"] == (T - 1) * G * H * H + H * K
    assert values["layer1_firing_rate"] == float((h > 0).float().mean())
    assert values["layer2_firing_rate"] != values["layer2_firing_rate"]  # the readout: no nonlinearity, NaN


@pytest.mark.parametrize("name", NAMES)
def test_static_images_are_read_row_by_row(name):
    torch.manual_seed(0)
    model = models.build(name)
    x = torch.rand(3, 1, 28, 28) - 0.5
    assert torch.equal(model.steps(x), x[:, 0])  # step t: row t, 28 pixels
    assert torch.equal(model(x.flatten(1)), model(x))
    hidden, _ = model.layer1(x[:, 0])
    assert torch.equal(model(x), model.layer2(hidden[:, -1]))
    act = model.activity(x)
    assert act.synapses[0].inputs.shape == (28, 3, 28) and act.outputs["layer1"].shape == (28, 3, 128)
    pixels = models.build(f"{name}:time_steps=784")  # sequential MNIST pixel by pixel
    assert pixels.layer1.input_size == 1 and pixels.steps(x).shape == (3, 784, 1)
    with pytest.raises(models.SpecError, match="n_in=784 is not a multiple of time_steps=30"):
        models.parse_spec(f"{name}:time_steps=30")
    with pytest.raises(ValueError, match=r"a static sample of shape \(1, 28, 27\) has 756 inputs, but n_in = 784"):
        model(torch.rand(3, 1, 28, 27))


@pytest.mark.parametrize("name", NAMES)
def test_sequence_input(name):
    """Frame t is the input at step t; a flattened (B, T n_in) x is T frames; T and the frame size are checked."""
    torch.manual_seed(0)
    model = models.build(f"{name}:sequence=true,time_steps=7,n_in=99")
    x = counts((4, 7, 1, 99))
    assert torch.equal(model.steps(x), x[:, :, 0])
    assert torch.equal(model(x.flatten(1)), model(x))
    assert torch.equal(model.activity(x).synapses[0].inputs, x[:, :, 0].transpose(0, 1))
    with pytest.raises(ValueError, match="T = 6 time bins, but time_steps = 7"):
        model(counts((4, 6, 1, 99)))
    with pytest.raises(ValueError, match=r"frames \(1, 98\) have 98 elements, but n_in = 99"):
        model(counts((4, 7, 1, 98)))
    with pytest.raises(models.SpecError, match="hidden must be positive"):
        models.parse_spec(f"{name}:hidden=0")


def test_the_data_sets_the_keys_and_the_label_hides_them():
    """On smnist the harness gives sequence, time_steps, n_in and n_out; the label shows n_in as for every model."""
    spec = models.parse_spec("gru", defaults=datasets.model_defaults("smnist"))
    c = spec.config
    assert (c.sequence, c.time_steps, c.n_in, c.n_out) == (True, 112, 99, 10) and spec.label == "gru:n_in=99"
    datasets.check_fits(spec.label, c, "smnist")
    assert models.parse_spec("lstm", defaults=datasets.model_defaults("mnist-mini")).label == "lstm"


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A frame cache of the test's own, no downloads (as tests/test_events.py)."""
    events = pytest.importorskip("bench.events")
    pytest.importorskip("tonic")
    monkeypatch.setenv("SNNBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(events, "DOWNLOAD", False)
    for cached in (datasets._loaded, datasets._cached, datasets.training_splits):
        cached.cache_clear()
    yield
    for cached in (datasets._loaded, datasets._cached, datasets.training_splits):
        cached.cache_clear()


def test_bench_run_trains_gru_and_lstm_on_smnist_from_tiny_mnist_files(tmp_path, own_cache):
    from eventfiles import write_mnist_idx

    from bench.run import main
    from bench.schema import read_epochs

    root = tmp_path / "data"
    images = np.random.default_rng(0).integers(0, 256, (12, 28, 28)).astype(np.uint8)
    for split in ("train", "test"):
        write_mnist_idx(root, images, np.arange(12) % 10, split, layout="torchvision")
    argv = ["--models", "gru", "lstm", "--device", "cpu", "--dataset", "smnist:bins=8", "--data-dir", str(root),
            "--epochs", "1", "--batch-size", "4", "--out", str(tmp_path / "out"), "--no-report"]  # fmt: skip
    assert main(argv) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    rows = {r["model"]: r for r in read_epochs(run_dir / "epochs.csv")}
    assert set(rows) == {"gru:n_in=99", "lstm:n_in=99"}
    T, n, H, K = 8, 99, 128, 10
    for name, G in GATES.items():
        row = rows[f"{name}:n_in=99"]
        assert row["dense_ops"] == T * (G * H * n + G * H * H) + H * K
        assert 0 < row["layer1_firing_rate"] < 1 and row["layer2_firing_rate"] != row["layer2_firing_rate"]
    config = json.loads((run_dir / "run.json").read_text())["models"]["gru:n_in=99"]["config"]
    assert config == {"hidden": 128, "time_steps": 8, "sequence": True, "n_in": 99, "n_out": 10}
