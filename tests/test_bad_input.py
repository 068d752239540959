"""Every bad input: one line on stderr naming the problem, exit status 2, no traceback, nothing on disk.

Through ``bench.run.main`` in this process (its return value is the exit status), which is
quick; tests/test_cli.py runs a few of the same as real subprocesses.
"""

import json
import os
import struct
import subprocess
import sys

import pytest

from bench import data as datasets
from bench import results
from bench.run import main


def snapshot(root):
    """Every path under ``root`` with its bytes (files) or None (folders)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = open(path, "rb").read() if name in files else None
    return found


def assert_rejected(tmp_path, capsys, argv, message):
    before = snapshot(tmp_path)
    assert main([*argv]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.startswith("bench.run: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert snapshot(tmp_path) == before


SMALL = ["--device", "cpu", "--dataset", "mnist-mini", "--max-batches", "1", "--batch-size", "100", "--epochs", "1"]
SMALL += ["--no-report"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "rnn"], "unknown model 'rnn'; known: cnn, csnn, csnn-reference, ffn, gru, lif, lif-reference, lstm"),
        (["--models", "snn:colour=red"], "unknown key 'colour' for model snn; valid keys: hidden, time_steps"),
        (["--dataset", "cifar"], "unknown dataset 'cifar'; choose from dvsgesture, fashion-mnist, mnist, mnist-mini, nmnist"),
        (["--device", "tpu"], "unknown device 'tpu'; use cpu, cuda, cuda:N, mps or all"),
        (["--device", "cuda:99"], "device 'cuda:99' is not available here; available: cpu"),
        (["--epochs", "0"], "argument --epochs: expected a positive int, got '0'"),
        (["--epochs", "-2"], "argument --epochs: expected a positive int, got '-2'"),
        (["--batch-size", "0"], "argument --batch-size: expected a positive int, got '0'"),
        (["--max-batches", "-1"], "argument --max-batches: expected a positive int, got '-1'"),
        (["--models", "snn:time_steps=0"], "time_steps must be positive, got 0"),
        (["--models", "ffn:hidden=0"], "hidden must be positive, got 0"),
        (["--models", "snn:hidden=-5"], "hidden must be positive, got -5"),
        (["--lr", "0"], "argument --lr: expected a positive float, got '0'"),
        (["--lr", "-0.1"], "argument --lr: expected a positive float, got '-0.1'"),
        (["--lr", "fast"], "argument --lr: expected a positive float, got 'fast'"),
        (["--lr", "nan"], "argument --lr: expected a positive float, got 'nan'"),
        (["--lr", "inf"], "argument --lr: expected a positive float, got 'inf'"),
        (["--seeds", "1.5"], "argument --seeds: invalid int value: '1.5'"),
        (["--seeds", "one"], "argument --seeds: invalid int value: 'one'"),
        (["--momentum", "1.5"], "argument --momentum: expected a number in [0, 1), got '1.5'"),
        (["--optimizer", "rmsprop"], "argument --optimizer: expected sgd or adam, got 'rmsprop'"),
        (["--optimizer", "Adam"], "argument --optimizer: expected sgd or adam, got 'Adam'"),
        (["--optimizer", "adam", "--momentum", "0.9"], "--momentum is SGD's: --optimizer adam has none"),
        (["--models", "snn:n_in=10"], "snn:n_in=10: n_in=10 does not fit mnist-mini, whose samples have 784 inputs (1x28x28)"),
        (["--models", "ffn:n_in=10"], "ffn:n_in=10: n_in=10 does not fit mnist-mini"),
        (["--models", "snn:n_out=5"], "snn:n_out=5: n_out=5 does not fit mnist-mini, which has 10 classes"),
        (["--models", "snn:time_steps=2"], "snn:time_steps=2: time_steps=2 is below its minimum of 3"),
        (["--models", "snn-reference:time_steps=1"], "time_steps=1 is below its minimum of 3"),
        (["--dataset", "nosuch.module:load"], "cannot import 'nosuch.module' for dataset 'nosuch.module:load'"),
        (["--models", "nosuch.module:Net"], "cannot import 'nosuch.module' for model 'nosuch.module:Net'"),
    ],
)
def test_bad_arguments(tmp_path, capsys, args, message):
    assert_rejected(tmp_path, capsys, [*SMALL, "--out", str(tmp_path / "res"), *args], message)


def test_results_folder_that_is_a_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file, not a folder")
    out = str(tmp_path / "taken")
    assert_rejected(tmp_path, capsys, [*SMALL, "--out", out], f"cannot create a run folder in {out}: Not a directory")
    under = str(tmp_path / "taken" / "results")
    assert_rejected(tmp_path, capsys, [*SMALL, "--out", under], f"cannot create a run folder in {under}: Not a directory")


def test_data_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "data").write_text("a file")
    assert_rejected(tmp_path, capsys, [*SMALL, "--dataset", "mnist", "--data-dir", str(tmp_path / "data"),
                                       "--out", str(tmp_path / "res")], "is not a folder")  # fmt: skip


def write_idx(raw, n_train=3, n_test=2, image_magic=2051):
    raw.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", image_magic, n, 28, 28) + bytes(784 * n))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + bytes(n))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: write_idx(raw, image_magic=1234), "train-images-idx3-ubyte is not an IDX image file"),
        (lambda raw: (write_idx(raw), (raw / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 2))),
         "t10k-labels-idx1-ubyte is truncated or too long: 0 data bytes for 2 items"),
        (lambda raw: (write_idx(raw), (raw / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 1) + b"\0")),
         "train has 3 images but 1 labels"),
    ],
)  # fmt: skip
def test_corrupt_idx_files(tmp_path, capsys, damage, message):
    damage(tmp_path / "data" / "MNIST" / "raw")
    argv = [*SMALL, "--dataset", "mnist", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "res")]
    assert_rejected(tmp_path, capsys, argv, message)


@pytest.mark.slow
def test_missing_data_folder_download_fails_and_leaves_nothing(tmp_path):
    """A real subprocess and torchvision's real download, pointed at a proxy that refuses: no network needed."""
    env = dict(os.environ, http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9", no_proxy="")
    argv = [*SMALL, "--dataset", "mnist", "--data-dir", str(tmp_path / "no" / "data"), "--out", str(tmp_path / "res")]
    proc = subprocess.run([sys.executable, "-m", "bench.run", *argv], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "cannot load mnist from" in proc.stderr and "--dataset mnist-mini ships with snnbench" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # torchvision made no/data/MNIST/raw: it is gone again


def finished_run(tmp_path, capsys):
    assert main(["--models", "ffn", *SMALL, "--seeds", "3", "--out", str(tmp_path / "res")]) == 0
    capsys.readouterr()
    (run_dir,) = (tmp_path / "res").iterdir()
    return run_dir


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "--resume {p}: no such folder"),
        (lambda p: p.mkdir(), "--resume {p}: not a run folder (no run.json)"),
        (lambda p: (p.mkdir(), (p / "run.json").write_text("{not json")), "--resume {p}: cannot read run.json"),
        (lambda p: (p.mkdir(), (p / "run.json").write_text(json.dumps({"run_id": "x"}))),
         "--resume {p}: run.json has no recorded arguments or trainings"),
        (lambda p: (p.write_text("a file")), "--resume {p}: no such folder"),
    ],
)  # fmt: skip
def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys, make, message):
    make(tmp_path / "run")
    assert_rejected(tmp_path, capsys, ["--resume", str(tmp_path / "run")], message.format(p=tmp_path / "run"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "2"], "--epochs 2 contradicts the recorded --epochs 1 of {r}; with --resume only --no-report, "
                            "--keep-checkpoints, --threads, --executor, --workers, --scheduler, --new-segment and "
                            "--download may be given"),
        (["--models", "snn"], "--models snn contradicts the recorded --models ffn"),
        (["--seeds", "3", "4"], "--seeds 3 4 contradicts the recorded --seeds 3"),
        (["--lr", "0.1"], "--lr 0.1 contradicts the recorded --lr 0.1 0.05 0.01"),
        (["--dataset", "mnist"], "--dataset mnist contradicts the recorded --dataset mnist-mini"),
        (["--epochs", "0"], "argument --epochs: expected a positive int, got '0'"),
    ],
)  # fmt: skip
def test_resume_with_contradicting_arguments(tmp_path, capsys, args, message):
    run_dir = finished_run(tmp_path, capsys)
    assert_rejected(tmp_path, capsys, ["--resume", str(run_dir), *args], message.format(r=run_dir))


def test_resume_may_repeat_recorded_arguments_and_add_the_harmless_ones(tmp_path, capsys):
    run_dir = finished_run(tmp_path, capsys)
    before = snapshot(run_dir)
    assert main(["--resume", str(run_dir), "--seeds", "3", "--device", "cpu", "--epochs", "1", "--keep-checkpoints"]) == 0
    assert "has no training left to run: nothing to do" in capsys.readouterr().err
    assert snapshot(run_dir) == before  # nothing changed: not run.json, not the report


def test_out_inside_a_run_folder_points_at_resume(tmp_path, capsys):
    run_dir = finished_run(tmp_path, capsys)
    hint = f"--out {run_dir / 'more'} is inside the run folder {run_dir}; to finish that run, use --resume {run_dir}"
    assert_rejected(tmp_path, capsys, [*SMALL, "--out", str(run_dir / "more")], hint)


def test_arguments_that_run_but_probably_not_as_meant_get_a_warning(tmp_path, capsys):
    argv = ["--models", "ffn", "--device", "cpu", "--epochs", "1", "--lr", "0.1", "0.05", "--batch-size", "7000",
            "--max-batches", "1", "--no-report", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "bench.run: warning: 2 learning rates for 1 epoch(s): the last 1 never used" in err
    assert "bench.run: warning: --batch-size 7000 is more than the 6000 training samples of mnist-mini" in err
    assert "--optimizer adam" not in err


def test_more_threads_than_cores_get_a_warning(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("bench.preflight.cores", lambda: 2)
    argv = ["--models", "ffn", *SMALL, "--threads", "64"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert "bench.run: warning: --threads 64 is more than the 2 cores of this machine: the threads share them" in (
        capsys.readouterr().err
    )
    assert main([*argv[:-1], "2", "--out", str(tmp_path / "b")]) == 0
    assert "warning" not in capsys.readouterr().err
    from bench import preflight

    args = preflight.parse_args(["--models", "ffn", *SMALL, "--executor", "dask", "--workers", "3", "--threads", "1"])
    (line,) = preflight.warnings(args, datasets.load("mnist-mini"))
    assert line.startswith("--workers 3 of 1 thread(s) each are more than the 2 cores of this machine")


def test_adam_on_the_default_sgd_learning_rates_gets_a_warning(tmp_path, capsys):
    argv = ["--models", "ffn", *SMALL, "--optimizer", "adam"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert "bench.run: warning: --optimizer adam with the default --lr 0.1 0.05 0.01" in capsys.readouterr().err
    assert main([*argv, "--lr", "0.001", "--out", str(tmp_path / "b")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_resume_of_a_run_another_process_is_writing(tmp_path, capsys):
    run_dir = finished_run(tmp_path, capsys)
    with results.holding_locks():
        results.lock_run_dir(run_dir)
        assert_rejected(tmp_path, capsys, ["--resume", str(run_dir)], "another bench.run process is writing this run")
