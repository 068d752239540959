"""The command line end to end, as a user runs it (a subprocess: real exit codes and stderr)."""

import csv
import json
import subprocess
import sys

import pytest

from bench.schema import header


def bench_run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bench.run", *args], capture_output=True, text=True, cwd=cwd)


def test_smoke_run_writes_tidy_rows_and_run_json(tmp_path):
    out = tmp_path / "res"
    proc = bench_run("--models", "snn:time_steps=4", "ffn", "--device", "cpu", "--max-batches", "2",
                     "--epochs", "2", "--seeds", "0", "1", "--batch-size", "100", "--out", str(out), "--no-report")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = out.iterdir()
    with open(run_dir / "epochs.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == header()  # every built-in model's columns, the optimizer of every row among them
    assert len(rows) == 2 * 2 * 2  # models x seeds x epochs
    assert {r["model"] for r in rows} == {"snn:time_steps=4", "ffn"}
    assert {(r["seed"], r["epoch"]) for r in rows} == {("0", "1"), ("0", "2"), ("1", "1"), ("1", "2")}
    for r in rows:
        assert r["run_id"] == run_dir.name and r["dataset"] == "mnist-mini" and r["device"] == "cpu"
        assert r["optimizer"] == "sgd"
        assert r["train_samples"] == "200" and r["test_samples"] == "200"
        assert 0 <= float(r["test_accuracy"]) <= 1 and float(r["train_seconds"]) > 0
        assert float(r["train_samples_per_second"]) == pytest.approx(200 / float(r["train_seconds"]), rel=1e-6)
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "complete" and meta["finished"]
    assert meta["models"]["snn:time_steps=4"]["config"]["time_steps"] == 4
    assert meta["schedule"]["lrs"] == [0.1, 0.05, 0.01] and meta["seeds"] == [0, 1]
    assert "--max-batches 2" in meta["command"]
    # what to expect of the shipped subset, before a newcomer takes 70% for a broken SNN
    note = "bench.run: note: mnist-mini is a 6,000-digit subset of MNIST's 60,000 training digits (1,000 test digits)"
    assert note in proc.stderr and "64% (ffn) to 72% (snn)" in proc.stderr
    full = bench_run("--models", "ffn", "--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--out", str(out))
    assert "note:" not in full.stderr
    assert meta["environment"]["torch"] and meta["environment"]["cpu_model"]
    assert "snn:time_steps=4" in proc.stdout and str(run_dir / "epochs.csv") in proc.stdout
    # stderr is a pipe, not a terminal: no progress bars, but one line per finished epoch
    lines = [line for line in proc.stderr.splitlines() if " epoch " in line]
    assert len(lines) == 8 and lines[0].startswith("bench.run: snn:time_steps=4 cpu seed 0 epoch 1/2: test accuracy ")
    assert all(line.split("test accuracy ")[1].split("%")[0].replace(".", "").isdigit() for line in lines)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "rnn"], "unknown model 'rnn'; known: cnn, csnn, csnn-reference, ffn, gru, lif, lif-reference, lstm"),
        (["--models", "snn:colour=red"], "unknown key 'colour'"),
        (["--device", "cuda:99"], "device 'cuda:99' is not available here; available: cpu"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--epochs", "0"], "expected a positive int"),
        (["--lr", "-1"], "expected a positive float"),
        (["--dataset", "cifar"], "unknown dataset 'cifar'"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, message):
    proc = bench_run(*args, "--out", str(tmp_path / "res"), "--no-report")
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "res").exists()
