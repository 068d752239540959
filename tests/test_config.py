"""The training config: one dataclass that the parser, the checks, run.json and --resume all read."""

import dataclasses
import json

import pytest

from bench import config
from bench.config import TrainConfig
from bench.record import to_argv
from bench.run import build_parser, main, parse_args

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
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        TrainConfig(optimizer="adam")


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
    others = {"epochs": "2", "lrs": "0.3", "momentum": "0.25", "batch_size": "50", "max_batches": "2", "validation": "100"}
    other = others[field.name]
    capsys.readouterr()
    assert main(["--resume", str(run_dir), field.metadata["flag"], other]) == 2
    assert f"{field.metadata['flag']} {other} contradicts the recorded" in capsys.readouterr().err
