"""A grid over learning-rate scales and a validation split, with the in-process executor (Dask: tests/test_dask.py)."""

import json

import pytest
import torch

import bench.executors
import models
from bench import data
from bench.config import TrainConfig
from bench.run import main
from bench.schema import BASE_COLUMNS, METRIC_COLUMNS, TrainingKey, csv_columns, read_epochs
from bench.train import Epoch, Task, train

SMALL = ["--device", "cpu", "--epochs", "2", "--max-batches", "2", "--batch-size", "100", "--no-report"]


def test_the_validation_split_is_stratified_disjoint_and_fixed():
    mini = data.load("mnist-mini")
    kept, held = data.hold_out(mini.train, 1000)
    assert len(held) == 1000 and len(kept) == 5000
    assert torch.bincount(held.labels).tolist() == [100] * 10  # each class its share
    again_kept, again_held = data.hold_out(mini.train, 1000)
    assert torch.equal(held.images, again_held.images) and torch.equal(kept.labels, again_kept.labels)
    # disjoint and complete: every training image is in exactly one of the two (rows compared as bytes)
    rows = {bytes(x.numpy().tobytes()) for x in mini.train.images}
    split = [bytes(x.numpy().tobytes()) for x in torch.cat([kept.images, held.images])]
    assert len(split) == len(mini.train) and set(split) == rows
    odd = data.hold_out(mini.train, 15)[1]  # 1.5 per class: the largest remainders get the second one
    assert len(odd) == 15 and sorted(torch.bincount(odd.labels).tolist()) == [1] * 5 + [2] * 5


def test_every_model_seed_and_scale_trains_on_the_same_samples(tmp_path):
    """The held-out samples never train: train_samples is what is left, and every task evaluates the same split."""
    config = TrainConfig(epochs=1, batch_size=1000, validation=1000)
    rows = []
    for spec, seed, scale in [("ffn", 0, 1.0), ("ffn", 1, 2.0), ("ffn:hidden=50", 0, 0.5)]:
        task = Task("r", "mnist-mini", "data", models.parse_spec(spec), "cpu", seed, config, False, scale)
        rows += [e.row for e in train(task, tmp_path / spec / str(seed)) if isinstance(e, Epoch)]
    assert {r["train_samples"] for r in rows} == {5000}
    assert [r["lr"] for r in rows] == [0.1, 0.2, 0.05] and [r["lr_scale"] for r in rows] == [1.0, 2.0, 0.5]
    assert all(0 <= r["val_accuracy"] <= 1 and r["val_loss"] > 0 for r in rows)


def test_the_scale_is_a_column_and_part_of_every_key(tmp_path, capsys):
    argv = ["--models", "snn:time_steps=4", "ffn", "--lr-scale", "0.5", "2", "--validation", "500", *SMALL]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.iterdir()
    columns = csv_columns(run_dir / "epochs.csv")
    assert columns[16:25] == ["optimizer", "precision", "peak_memory_mib", "train_joules", "eval_joules", "segment", "lr_scale",
                              "val_loss", "val_accuracy"]  # fmt: skip
    rows = read_epochs(run_dir / "epochs.csv")
    assert {(r["model"], r["lr_scale"], r["lr"]) for r in rows if r["epoch"] == 2} == {
        ("snn:time_steps=4", 0.5, 0.025), ("snn:time_steps=4", 2.0, 0.1), ("ffn", 0.5, 0.025), ("ffn", 2.0, 0.1)
    }  # fmt: skip
    meta = json.loads((run_dir / "run.json").read_text())
    assert [(t["model"], t["lr_scale"]) for t in meta["trainings"]] == [
        ("snn:time_steps=4", 0.5), ("snn:time_steps=4", 2.0), ("ffn", 0.5), ("ffn", 2.0)
    ]  # fmt: skip
    assert meta["args"]["lr_scale"] == [0.5, 2.0] and meta["schedule"]["validation"] == 500 and meta["validation_seed"]
    npz = sorted(p.name for p in (run_dir / "activity").iterdir())
    assert npz == sorted(f"{TrainingKey('snn:time_steps=4', 'cpu', 0, s).file_stem()}.npz" for s in (0.5, 2.0))
    window = (run_dir / "window.csv").read_text().splitlines()
    assert window[0].split(",")[5] == "lr_scale" and {line.split(",")[5] for line in window[1:]} == {"0.5", "2.0"}
    assert "lr scale" in capsys.readouterr().out  # the console table has the scale


def test_a_plain_run_keeps_the_header_it_had(tmp_path):
    assert main(["--models", "ffn", *SMALL, "--out", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.iterdir()
    assert csv_columns(run_dir / "epochs.csv") == [*BASE_COLUMNS, "optimizer", "precision", "peak_memory_mib", "train_joules",
                                                   "eval_joules", "segment",
                                                   *METRIC_COLUMNS]  # fmt: skip
    assert "lr_scale" not in json.loads((run_dir / "run.json").read_text())["models"]["ffn"]


def test_an_interrupted_grid_resumes_to_the_rows_of_a_whole_one(tmp_path, monkeypatch):
    import os
    import signal

    argv = ["--models", "ffn", "--lr-scale", "0.5", "2", "--seeds", "3", "--validation", "300", *SMALL]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    real = bench.executors.train

    def train_then_signal(task, *args, **kwargs):
        for event in real(task, *args, **kwargs):
            yield event
            if isinstance(event, Epoch) and task.lr_scale == 2.0 and event.epoch == 1:
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(bench.executors, "train", train_then_signal)
    assert main([*argv, "--out", str(tmp_path / "cut")]) == 130
    monkeypatch.undo()
    (run_dir,) = (tmp_path / "cut").iterdir()
    statuses = [(t["lr_scale"], t["status"]) for t in json.loads((run_dir / "run.json").read_text())["trainings"]]
    assert statuses == [(0.5, "complete"), (2.0, "interrupted")]
    assert main(["--resume", str(run_dir)]) == 0
    timing = {"run_id", "train_seconds", "eval_seconds", "train_samples_per_second", "metrics_seconds", "peak_memory_mib",
              "segment"}  # fmt: skip

    def numbers(folder):
        return [{k: None if v != v else v for k, v in r.items() if k not in timing} for r in read_epochs(folder / "epochs.csv")]

    (whole,) = (tmp_path / "whole").iterdir()
    assert numbers(run_dir) == numbers(whole)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--validation", "6000"], "--validation 6000 is not below the 6000 training samples of mnist-mini"),
        (["--validation", "5"], "--validation 5 is fewer than the 10 classes of mnist-mini"),
        (["--validation", "5995"], "--validation 5995 leaves class 0 of mnist-mini without a training sample (all 600 held out)"),
        (["--validation", "-1"], "argument --validation: expected a whole number >= 0, got '-1'"),
        (["--lr-scale", "0"], "argument --lr-scale: expected a positive float, got '0'"),
        (["--lr-scale", "nan"], "argument --lr-scale: expected a positive float, got 'nan'"),
        (["--lr-scale", "inf"], "argument --lr-scale: expected a positive float, got 'inf'"),
        (["--lr-scale", "2", "2"], "the same --lr-scale is given twice: 2.0 2.0"),
        (["--workers", "0"], "argument --workers: expected a positive int, got '0'"),
        (["--workers", "2"], "--workers needs --executor dask"),
        (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler needs --executor dask"),
        (["--threads", "0"], "argument --threads: expected a positive int, got '0'"),
    ],
)
def test_bad_grid_arguments_are_one_line_and_nothing_written(tmp_path, capsys, args, message):
    assert main(["--models", "ffn", *SMALL, "--out", str(tmp_path / "res"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "res").exists()


def test_threads_are_the_trainings_own_and_given_back(tmp_path, monkeypatch):
    """--threads sets torch's threads while a training runs (recorded in run.json) and the process gets its own back."""
    seen, real, before = [], bench.executors.train, torch.get_num_threads()

    def train_and_count(*args, **kwargs):
        for event in real(*args, **kwargs):
            seen.append(torch.get_num_threads())
            yield event

    monkeypatch.setattr(bench.executors, "train", train_and_count)
    want = 1 if before > 1 else 2
    assert main(["--models", "ffn", *SMALL, "--threads", str(want), "--out", str(tmp_path)]) == 0
    assert seen and set(seen) == {want} and torch.get_num_threads() == before
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / "run.json").read_text())["args"]["threads"] == want


def test_the_console_summary_lists_a_grid_in_the_reports_order(tmp_path, capsys):
    """Models as given, each model's scales together and ascending, whatever order the scales were given or finished in."""
    argv = ["--models", "snn:time_steps=4", "ffn", "--lr-scale", "2", "0.5", *SMALL, "--epochs", "1", "--max-batches", "1"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    rows = [(line[0], line[2]) for line in lines if line and line[0] in ("snn:time_steps=4", "ffn")]
    assert rows == [("snn:time_steps=4", "x0.5"), ("snn:time_steps=4", "x2"), ("ffn", "x0.5"), ("ffn", "x2")]
