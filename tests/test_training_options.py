"""The options a tuning study varies (issue 27): weight decay, the input's scaling, early stopping on the validation loss."""

import json
import subprocess
import sys

import pytest
import torch

from bench import data as datasets
from bench.checkpoint import Checkpoints
from bench.config import TrainConfig
from bench.schema import TrainingKey, schedule
from report.pooling import schedule_label


def bench_run(*args):
    return subprocess.run([sys.executable, "-m", "bench.run", *args], capture_output=True, text=True)


SMALL = ["--device", "cpu", "--dataset", "mnist-mini", "--max-batches", "2", "--batch-size", "100", "--no-report"]


def run_json(out):
    (run_dir,) = out.iterdir()
    return run_dir, json.loads((run_dir / "run.json").read_text())


# ---- weight decay ----


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_weight_decay_reaches_the_optimizer(optimizer):
    config = TrainConfig(optimizer=optimizer, weight_decay=1e-3)
    opt = config.make_optimizer([torch.nn.Parameter(torch.ones(2))], 0.1)
    assert opt.param_groups[0]["weight_decay"] == 1e-3
    assert TrainConfig().make_optimizer([torch.nn.Parameter(torch.ones(2))], 0.1).param_groups[0]["weight_decay"] == 0


def test_weight_decay_shrinks_the_weights_of_a_step():
    """With a zero gradient, one SGD step multiplies the weights by 1 - lr * weight_decay."""
    p = torch.nn.Parameter(torch.full((3,), 2.0))
    opt = TrainConfig(optimizer="sgd", momentum=0.0, weight_decay=0.5).make_optimizer([p], 0.1)
    p.grad = torch.zeros(3)
    opt.step()
    assert torch.allclose(p.detach(), torch.full((3,), 2.0 * (1 - 0.1 * 0.5)))


# ---- input scaling ----


def test_each_scaling_maps_the_stored_pixels_as_documented():
    split = datasets.Split(torch.tensor([[-0.5, 0.0, 0.5, 0.5]]), torch.tensor([0]))
    assert datasets.scaling("centered", split) == (1.0, 0.0)
    a, b = datasets.scaling("unit", split)
    assert torch.equal(datasets.scaled(split, a, b).inputs(slice(0, 1)), torch.tensor([[0.0, 0.5, 1.0, 1.0]]))
    a, b = datasets.scaling("standard", split)
    x = datasets.scaled(split, a, b).inputs(slice(0, 1)).double()
    assert float(x.mean()) == pytest.approx(0, abs=1e-6) and float(x.std()) == pytest.approx(1, rel=1e-6)
    with pytest.raises(ValueError, match="unknown input scaling"):
        datasets.scaling("log", split)


def test_scaled_batches_leave_the_stored_images_alone():
    """A batch taken by a slice is a view of the stored images: the scaling must never write into them."""
    images = torch.linspace(-0.5, 0.5, 12).reshape(3, 4)
    split = datasets.scaled(datasets.Split(images.clone(), torch.arange(3)), 2.0, 0.5)
    for index in (slice(1, 3), torch.tensor([2, 0])):
        split.inputs(index)
    assert torch.equal(split.images, images)
    assert torch.equal(split.inputs(slice(1, 2)), images[1:2] * 2 + 0.5)


def test_standard_scaling_uses_the_training_pixels_only(tmp_path):
    """The mean and std come from what trains: the held-out samples of --validation are not in them."""
    train, held = datasets.training_splits("mnist-mini", "data", "cpu", 1000)
    a, b = datasets.scaling("standard", train)
    whole = datasets.load("mnist-mini").train.images.double()
    assert (a, b) != pytest.approx((1 / float(whole.std()), -float(whole.mean()) / float(whole.std())), rel=1e-9)
    x = datasets.scaled(train, a, b).inputs(slice(0, len(train))).double()
    assert float(x.mean()) == pytest.approx(0, abs=1e-5) and float(x.std()) == pytest.approx(1, rel=1e-5)


def test_the_scaling_changes_what_ffn_learns_and_run_json_records_it(tmp_path):
    from bench.run import main

    losses = {}
    for scaling in ("centered", "unit", "standard"):
        out = tmp_path / scaling
        assert main(["--models", "ffn", "--epochs", "1", "--input-scaling", scaling, "--out", str(out), *SMALL]) == 0
        run_dir, meta = run_json(out)
        assert meta["schedule"]["input_scaling"] == scaling
        losses[scaling] = (run_dir / "epochs.csv").read_text().splitlines()[1].split(",")[7]  # train_loss
    assert len(set(losses.values())) == 3, losses


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "ffn", "lif", "--input-scaling", "unit"], "--input-scaling unit: lif encode(s) the pixel intensities"),
        (["--models", "ffn", "--input-scaling", "zscore"], "--input-scaling: expected centered, unit or standard, got 'zscore'"),
        (["--models", "ffn", "--weight-decay", "-1"], "-1 is not a finite number >= 0"),
        (["--models", "ffn", "--patience", "2"], "--patience stops on the validation loss: give --validation N too"),
    ],
)
def test_bad_training_options_are_one_line_exit_2(tmp_path, args, message):
    proc = bench_run(*args, "--out", str(tmp_path / "out"), *SMALL)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_event_data_refuses_an_input_scaling(tmp_path):
    """Refused before any file is looked for: shd's inputs are spike counts, not pixels."""
    proc = bench_run("--models", "ffn", "--dataset", "shd", "--data-dir", str(tmp_path), "--input-scaling", "unit",
                     "--out", str(tmp_path / "out"))  # fmt: skip
    assert proc.returncode == 2 and "--input-scaling unit is for static images; shd" in proc.stderr, proc.stderr


def test_old_schedules_read_as_the_defaults_of_the_new_options():
    """A run from before these options ran as their defaults: it pools with a new run at the defaults, and the
    report's schedule label names none of them."""
    new = TrainConfig().record()
    old = {k: v for k, v in new.items() if k not in ("weight_decay", "input_scaling", "patience")}  # snnbench 0.5
    assert schedule(old) == schedule(new)
    label = schedule_label(schedule(new))
    assert "decay" not in label and "inputs" not in label and "early" not in label
    shown = schedule_label(schedule({**new, "weight_decay": 1e-4, "input_scaling": "unit", "patience": 3}))
    assert "weight decay 0.0001" in shown and "inputs in [0, 1]" in shown and "early stopping (patience 3)" in shown


# ---- early stopping ----


def test_a_training_stops_once_its_validation_loss_stalls_and_resume_accepts_it(tmp_path):
    """At lr 1e-30 no float32 weight moves, so the validation loss is the same every epoch: never bettered after
    epoch 1, the training stops after epoch 1 + patience, is complete, and --resume finds nothing to do."""
    out = tmp_path / "out"
    proc = bench_run("--models", "ffn", "--epochs", "6", "--lr", "1e-30", "--validation", "200", "--patience", "2",
                     "--out", str(out), *SMALL)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run_dir, meta = run_json(out)
    (t,) = meta["trainings"]
    assert t["status"] == "complete" and t["epochs_done"] == 3 and t["stopped_early"] == 3
    assert "stopped early after epoch 3" in t["detail"] and "at epoch 1, not bettered in 2 epoch(s)" in t["detail"]
    assert "ffn cpu seed 0 stopped early after epoch 3" in proc.stderr
    rows = (run_dir / "epochs.csv").read_text().splitlines()[1:]
    assert len(rows) == 3
    again = bench_run("--resume", str(run_dir))
    assert again.returncode == 0 and "has no training left to run" in again.stderr, again.stderr


def test_a_training_that_keeps_improving_runs_every_epoch(tmp_path):
    out = tmp_path / "out"
    proc = bench_run("--models", "ffn", "--epochs", "3", "--validation", "200", "--patience", "1",
                     "--optimizer", "adam", "--lr", "0.001", "--out", str(out), *SMALL)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    _, meta = run_json(out)
    (t,) = meta["trainings"]
    assert t["epochs_done"] == 3 and "stopped_early" not in t


def test_the_best_validation_loss_survives_a_checkpoint(tmp_path):
    """A resumed training stops where it would have: the best loss and its epoch travel in the checkpoint."""
    key, model = TrainingKey("ffn", "cpu", 0), torch.nn.Linear(2, 2)
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save(key, 4, {"epoch": 4}, model, None, torch.Generator(), {"best": (0.25, 2)})
    assert checkpoints.extra(key) == {"best": (0.25, 2)}
    checkpoints.save(key, 5, {"epoch": 5}, model, None, torch.Generator())
    assert checkpoints.extra(key) == {}
    assert Checkpoints(tmp_path / "none").extra(key) == {}
