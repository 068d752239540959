"""The training config: one dataclass that the parser, the checks, run.json and --resume all read."""

import dataclasses
import json

import pytest
import torch

from bench import config
from bench.config import TrainConfig
from bench.record import to_argv
from bench.run import build_parser, main, parse_args
from bench.schema import read_epochs

FLAGGED = [f for f in dataclasses.fields(TrainConfig) if "flag" in f.metadata]


def test_every_flagged_field_is_an_option_with_its_default_in_the_help():
    text = " ".join(build_parser().format_help().split())
    for f in FLAGGED:
        assert f.metadata["flag"] in text
    assert "(default: 0.1 0.05 0.01)" in text and "(default: no cap)" in text
    assert parse_args(["--device", "cpu"]).config == TrainConfig()


def test_the_parsed_config_round_trips_through_run_json_arguments():
    args = parse_args(["--device", "cpu", "--epochs", "7", "--lr", "0.2", "0.1", "--momentum", "0.9", "--max-batches", "3"])
    assert args.config == TrainConfig(epochs=7, lrs=(0.2, 0.1), momentum=0.9, max_batches=3)
    recorded = json.loads(json.dumps(config.recorded_args(args.config)))
    assert parse_args(["--device", "cpu", *to_argv(recorded)]).config == args.config


def test_values_given_in_python_are_checked_as_on_the_command_line():
    with pytest.raises(ValueError, match="--epochs: expected a positive int, got '0'"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="--lr: expected a positive float"):
        TrainConfig(lrs=[0.1, -1.0])
    with pytest.raises(ValueError, match="--optimizer: expected sgd or adam, got 'rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="--momentum is SGD's: --optimizer adam has none"):
        TrainConfig(optimizer="adam", momentum=0.9)


def test_sgd_is_the_2018_optimizer_made_fresh_each_epoch_and_adam_keeps_its_state():
    sgd = TrainConfig()
    assert sgd == TrainConfig(optimizer="sgd", momentum=0.5, fresh_optimizer=True)  # as every run before --optimizer
    assert sgd.record() == {"epochs": 3, "lrs": [0.1, 0.05, 0.01], "optimizer": "sgd", "momentum": 0.5, "batch_size": 1000,
                            "max_batches": None, "validation": 0, "weight_decay": 0.0, "input_scaling": "centered",
                            "patience": None, "precision": "fp32", "fresh_optimizer": True}  # fmt: skip
    params = [torch.nn.Parameter(torch.zeros(2))]
    first = sgd.optimizer_for(1, params, None)
    assert type(first) is torch.optim.SGD and first.defaults["momentum"] == 0.5
    assert sgd.optimizer_for(2, params, first) is not first
    adam = TrainConfig(optimizer="adam", lrs=(0.01, 0.001))
    assert adam.momentum is None and adam.fresh_optimizer is False  # momentum is SGD's; Adam's betas are torch's defaults
    first = adam.optimizer_for(1, params, None)
    assert type(first) is torch.optim.Adam and first.defaults["betas"] == (0.9, 0.999)
    assert adam.optimizer_for(2, params, first) is first and first.param_groups[0]["lr"] == 0.001  # the epoch's lr
    assert TrainConfig(optimizer="adam", fresh_optimizer=True).optimizer_for(2, params, first) is not first
    assert TrainConfig(**json.loads(json.dumps(adam.record()))) == adam


def test_the_optimizer_option_sets_adam_and_momentum_stays_sgds():
    assert parse_args(["--device", "cpu", "--optimizer", "adam"]).config == TrainConfig(optimizer="adam")
    assert parse_args(["--device", "cpu", "--optimizer", "sgd", "--momentum", "0.9"]).config == TrainConfig(momentum=0.9)
    recorded = config.recorded_args(TrainConfig(optimizer="adam"))
    assert recorded["optimizer"] == "adam" and recorded["momentum"] is None and "--momentum" not in to_argv(recorded)
    text = " ".join(build_parser().format_help().split())
    assert "--optimizer {sgd,adam}" in text and "adam: torch's Adam" in text


def test_run_json_records_the_config_from_the_dataclass(tmp_path):
    argv = ["--models", "ffn", "--device", "cpu", "--epochs", "1", "--max-batches", "1", "--batch-size", "100",
            "--no-report", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    (run_dir,) = tmp_path.iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["schedule"] == TrainConfig(epochs=1, batch_size=100, max_batches=1).record()
    assert TrainConfig(**meta["schedule"]) == TrainConfig(epochs=1, batch_size=100, max_batches=1)


@pytest.mark.parametrize("field", FLAGGED, ids=[f.name for f in FLAGGED])
def test_resume_refuses_a_new_value_of_every_option(tmp_path, capsys, field):
    argv = ["--models", "ffn", "--device", "cpu", "--epochs", "1", "--max-batches", "1", "--batch-size", "100",
            "--no-report", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    (run_dir,) = tmp_path.iterdir()
    others = {"epochs": "2", "lrs": "0.3", "momentum": "0.25", "batch_size": "50", "max_batches": "2", "validation": "100",
              "optimizer": "adam", "precision": "bf16", "weight_decay": "0.01", "input_scaling": "unit",
              "patience": "2"}  # fmt: skip
    other = others[field.name]
    capsys.readouterr()
    assert main(["--resume", str(run_dir), field.metadata["flag"], other]) == 2
    err = capsys.readouterr().err
    if field.name == "patience":  # refused before the recorded options are read: this run has no validation split
        assert "--patience stops on the validation loss: give --validation N too" in err and len(err.splitlines()) == 1
    else:
        assert f"{field.metadata['flag']} {other} contradicts the recorded" in err


def test_an_adam_run_records_its_optimizer_in_run_json_and_every_row(tmp_path):
    argv = ["--models", "ffn", "--device", "cpu", "--epochs", "2", "--max-batches", "1", "--batch-size", "100",
            "--no-report", "--seeds", "0", "1"]  # fmt: skip
    assert main([*argv, "--optimizer", "adam", "--lr", "0.001", "--out", str(tmp_path / "adam")]) == 0
    (run_dir,) = (tmp_path / "adam").iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["schedule"] == TrainConfig(epochs=2, lrs=(0.001,), optimizer="adam", batch_size=100, max_batches=1).record()
    assert meta["schedule"]["momentum"] is None and meta["schedule"]["fresh_optimizer"] is False
    assert meta["args"]["optimizer"] == "adam" and meta["args"]["momentum"] is None
    rows = read_epochs(run_dir / "epochs.csv")
    assert len(rows) == 4 and {r["optimizer"] for r in rows} == {"adam"}
    assert main([*argv, "--out", str(tmp_path / "sgd")]) == 0  # the default: sgd, named in every row too
    (run_dir,) = (tmp_path / "sgd").iterdir()
    assert {r["optimizer"] for r in read_epochs(run_dir / "epochs.csv")} == {"sgd"}
    assert json.loads((run_dir / "run.json").read_text())["args"]["optimizer"] == "sgd"


@pytest.mark.parametrize("recorded, given", [("sgd", "adam"), ("adam", "sgd")])
def test_resume_refuses_another_optimizer(tmp_path, capsys, recorded, given):
    argv = ["--models", "ffn", "--device", "cpu", "--epochs", "1", "--max-batches", "1", "--batch-size", "100",
            "--no-report", "--optimizer", recorded, "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    (run_dir,) = tmp_path.iterdir()
    capsys.readouterr()
    assert main(["--resume", str(run_dir), "--optimizer", given]) == 2
    err = capsys.readouterr().err
    assert f"--optimizer {given} contradicts the recorded --optimizer {recorded} of {run_dir}" in err
    assert err.count("\n") == 1
    assert main(["--resume", str(run_dir), "--optimizer", recorded]) == 0  # the recorded one again: nothing left to do
