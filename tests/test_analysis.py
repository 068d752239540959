"""Neuron activity of one test digit and the STDP-like gradient window, after training."""

import csv
import os
import signal

import numpy as np
import pytest
import torch
from scipy import stats

import bench.analysis
import models
from bench import data
from bench.analysis import MAX_DT, neuron_activity, save_window, window
from bench.run import main


@pytest.fixture(scope="module")
def mini():
    return data.load("mnist-mini")


def test_activity_of_one_digit_has_every_step_and_neuron(mini):
    model = models.build("snn:time_steps=10,hidden=7")
    before = torch.get_rng_state()
    a = neuron_activity(model, mini.test, mini.info.input_shape, index=3)
    assert torch.equal(torch.get_rng_state(), before)  # its fixed masks leave the training's generator alone
    assert a["layer1_v"].shape == a["layer1_o"].shape == (10, 7)
    assert a["layer2_v"].shape == a["layer2_o"].shape == (10, 10)
    assert a["image"].shape == (28, 28) and a["image"].min() >= -0.5 and a["logits"].shape == (10,)
    assert a["label"] == mini.test.labels[3].item() and a["index"] == 3
    assert (a["layer1_o"] >= 0).all()
    b = neuron_activity(model, mini.test, mini.info.input_shape, index=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)  # fixed masks: the same picture every time


def one_spike_net(reset="subtract"):
    """Input 0 and bias 0.3: layer 1's one neuron integrates 0.3, 0.57, 0.813, 1.0317 and fires at step 4 only
    among the steps 1..T-2 = 1..6 that reach the logits (then -0.15, 0.165). Layer 2 never fires."""
    model = models.build(f"snn-reference:n_in=1,hidden=1,n_out=2,time_steps=8,reset={reset}")
    with torch.no_grad():
        model.layer1.fc.weight.fill_(1.0)
        model.layer1.fc.bias.fill_(0.3)
        model.layer2.fc.weight.copy_(torch.tensor([[0.5], [-0.5]]))
        model.layer2.fc.bias.zero_()
    return model


@pytest.mark.parametrize("reset", ["subtract", "proportional"])
def test_window_of_a_single_spike_is_the_decay_to_the_power_dt(reset):
    split = data.Split(torch.zeros(1, 1), torch.tensor([0]))
    rows = window(one_spike_net(reset), split, delay=2)
    assert [r["pairs"] for r in rows] == [1, 1, 1, 1, 0, 0]  # one spike at step 4: inputs at steps 4, 3, 2, 1
    got = [r["relative"] for r in rows[:4]]
    assert got == pytest.approx([0.9**dt for dt in range(4)], rel=1e-5)
    assert [r["isolated_relative"] for r in rows[:4]] == pytest.approx(got)


@pytest.mark.parametrize("reset", ["subtract", "proportional"])
def test_window_decays_with_dt_on_a_small_fixed_network(mini, reset):
    torch.manual_seed(0)
    model = models.build(f"snn:time_steps=48,reset={reset}")
    with torch.no_grad():
        model.layer1.fc.weight.mul_(2)  # more spikes than at initialisation: more pairs
    rows = window(model, mini.test, delay=2, samples=50)
    assert len(rows) == MAX_DT + 1 and rows[0]["relative"] == 1.0
    relative = np.array([r["relative"] for r in rows])
    isolated = np.array([r["isolated_relative"] for r in rows])
    assert (relative[1:] < 1).all() and relative[1] < relative[0]
    assert (np.diff(isolated) < 0).all()  # the window decays with dt ...
    fit = stats.linregress(np.arange(1, MAX_DT + 1), np.log(isolated[1:]))
    assert np.exp(fit.slope) == pytest.approx(0.9, abs=0.03)  # ... by about d = 0.9 per step
    assert all(r["pairs"] > 100 for r in rows)


def test_run_writes_metric_columns_activity_and_window(tmp_path):
    out = tmp_path / "res"
    args = ["--models", "snn:time_steps=8", "ffn", "--device", "cpu", "--max-batches", "1", "--epochs", "1",
            "--batch-size", "100", "--out", str(out), "--no-report"]  # fmt: skip
    assert main(args) == 0
    (run_dir,) = out.iterdir()
    rows = {r["model"]: r for r in csv.DictReader(open(run_dir / "epochs.csv"))}
    snn, ffn = rows["snn:time_steps=8"], rows["ffn"]
    assert float(snn["dense_ops"]) == 6 * 784 * 100 + 7 * 100 * 10 and float(ffn["dense_ops"]) == 784 * 100 + 100 * 10
    assert 0 < float(snn["layer1_firing_rate"]) < 1 and float(snn["effective_acs"]) == 0
    assert ffn["layer2_firing_rate"] == "nan" and float(ffn["activation_sparsity"]) == pytest.approx(
        1 - float(ffn["layer1_firing_rate"])
    )
    assert 0 < float(snn["metrics_seconds"]) < float(snn["eval_seconds"])
    (npz,) = (run_dir / "activity").iterdir()  # the SNN only: the FFN has no time axis
    saved = np.load(npz)
    assert saved["layer1_v"].shape == (8, 100) and str(saved["model"]) == "snn:time_steps=8" and int(saved["epoch"]) == 1
    window_rows = list(csv.DictReader(open(run_dir / "window.csv")))
    assert [int(r["dt"]) for r in window_rows] == list(range(6))  # T - 2 = 6 steps reach the logits
    assert {r["model"] for r in window_rows} == {"snn:time_steps=8"} and window_rows[0]["reset"] == "subtract"

    out2 = tmp_path / "plain"
    assert main([*args[:-3], "--out", str(out2), "--no-report", "--no-metrics"]) == 0
    (run_dir,) = out2.iterdir()
    assert not (run_dir / "activity").exists() and not (run_dir / "window.csv").exists()
    assert all(r["dense_ops"] == "" for r in csv.DictReader(open(run_dir / "epochs.csv")))


def test_window_rows_go_after_a_torn_last_line(tmp_path):
    path = tmp_path / "window.csv"
    save_window(path, [{"dt": 0, "relative": 1.0}])
    with open(path, "a") as f:
        f.write("run,mnist-mini,snn,cpu,0,3,subtr")  # a write torn by a crash
    save_window(path, [{"dt": 1, "relative": 0.9}])
    rows = list(csv.DictReader(open(path)))
    assert [(r["dt"], r["relative"]) for r in rows] == [("0", "1.0"), ("1", "0.9")]


def test_a_signal_during_the_analysis_does_not_write_its_rows_twice(tmp_path, monkeypatch):
    real = bench.analysis.save_window

    def save_then_signal(path, rows, *args):
        os.kill(os.getpid(), signal.SIGINT)  # only asks the run to stop: the file, the rows and their record are whole
        real(path, rows, *args)

    monkeypatch.setattr(bench.analysis, "save_window", save_then_signal)
    argv = ["--models", "snn:time_steps=6", "--device", "cpu", "--max-batches", "1", "--epochs", "1", "--batch-size", "100",
            "--out", str(tmp_path), "--no-report"]  # fmt: skip
    assert main(argv) == 130
    monkeypatch.setattr(bench.analysis, "save_window", real)
    (run_dir,) = tmp_path.iterdir()
    assert main(["--resume", str(run_dir)]) == 0
    assert [r["dt"] for r in csv.DictReader(open(run_dir / "window.csv"))] == ["0", "1", "2", "3"]
