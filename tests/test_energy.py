"""Measured energy (bench/energy.py, report/energy.py): the device's own counter read over the spans the clock times,
empty columns and a stated reason where there is none (every CPU), and the report's table where there is one."""

import csv
import json
import math
import subprocess
import sys
import types

import pandas as pd
import pytest
import torch
from test_report_spiking import row

from bench import energy, schema
from bench.timing import Stopwatch
from report import energy as report_energy

SMALL = ["--dataset", "mnist-mini", "--epochs", "2", "--max-batches", "2", "--batch-size", "100"]


def test_the_stopwatch_reads_the_counter_after_each_sync_over_the_clock_s_span():
    said = []
    readings = iter([1000.0, 1012.5])

    def sync():
        said.append("sync")

    def counter():
        said.append("read")
        return next(readings)

    with Stopwatch(sync, counter) as sw:
        said.append("work")
    assert said == ["sync", "read", "work", "sync", "read"]
    assert sw.joules == pytest.approx(12.5) and sw.seconds >= 0
    with Stopwatch(lambda: None) as plain:
        pass
    assert math.isnan(plain.joules)


def test_no_counter_on_a_cpu_or_a_shared_gpu_and_each_says_why(monkeypatch):
    cpu = energy.counter("cpu")
    assert not cpu.available and math.isnan(cpu.read())
    assert cpu.description == "none: snnbench reads NVML, which measures NVIDIA GPUs only"
    shared = energy.counter("cuda:0", parallel=2)
    assert shared.description == "none: 2 trainings share cuda:0, and its counter measures the whole GPU"
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    assert energy.counter("cuda:0").description == "none: nvidia-ml-py is not installed (pip install nvidia-ml-py)"


class FakeNVML(types.ModuleType):
    """nvidia-ml-py's calls that bench.energy makes, over a counter in millijoules that a test moves."""

    class NVMLError(Exception):
        pass

    def __init__(self, supported=True):
        super().__init__("pynvml")
        self.millijoules, self.supported = 5_000_000, supported

    def nvmlInit(self):
        pass

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.supported:
            raise self.NVMLError("Not Supported")
        return self.millijoules


def test_the_nvml_counter_is_read_in_joules_and_a_gpu_without_it_says_so(monkeypatch):
    """The arithmetic and the refusals of bench.energy's NVML path against a stand-in module; the real counter is read
    on a GPU (test_a_cuda_training_records_its_joules, in scripts/device_check.sh)."""
    fake = FakeNVML()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(energy, "_handle", lambda pynvml, device: "handle")
    meter = energy.counter("cuda:0")
    assert meter.available and meter.description.startswith("nvml: NVIDIA H100 80GB HBM3")
    start = meter.read()
    fake.millijoules += 2_500
    assert meter.read() - start == pytest.approx(2.5)
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML(supported=False))
    assert energy.counter("cuda:0").description == "none: NVML on cuda:0: Not Supported"


def test_a_cpu_run_has_empty_joule_columns_and_its_report_says_why(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--models", "ffn", "--device", "cpu", *SMALL, "--out",
                           str(out)], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (run,) = out.iterdir()
    with open(run / "epochs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(r["train_joules"] == r["eval_joules"] == "nan" for r in rows)
    segment = json.loads((run / "run.json").read_text())["trainings"][0]["segments"][0]
    assert segment["energy_counter"] == "none: snnbench reads NVML, which measures NVIDIA GPUs only"
    text = (run / "report" / "report.md").read_text()
    assert ("No energy was measured: no training read an energy counter (cpu: snnbench reads NVML, which measures "
            "NVIDIA GPUs only). The `train_joules` and `eval_joules` columns are empty.") in text  # fmt: skip


def test_the_joules_are_measured_columns_that_a_new_file_has_beside_the_seconds():
    header = schema.header()
    assert header.index("train_joules") > header.index("eval_seconds") and "eval_joules" in header
    assert schema.is_measured("train_joules") and schema.is_measured("eval_joules")
    assert schema.header_problem(header) is None


def frame(rows):
    base = {"dataset": "mnist", "run_id": "r", "lr_scale": 1.0, "test_samples": 1000, "condition": None}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_the_report_gives_joules_per_epoch_power_and_per_sample_with_ratios_to_the_ffn():
    rows = []
    for seed in (0, 1):
        for epoch in (1, 2):
            rows.append({"model": "ffn", "kind": "baseline", "device": "cuda", "seed": seed, "epoch": epoch, "train_seconds": 2.0,
                         "train_joules": 200.0, "eval_joules": 10.0, "test_accuracy": 0.9, "train_samples": 60000})  # fmt: skip
            rows.append({"model": "snn", "kind": "spiking", "device": "cuda", "seed": seed, "epoch": epoch,
                         "train_seconds": 10.0, "train_joules": 3000.0, "eval_joules": 150.0, "test_accuracy": 0.9,
                         "train_samples": 60000})  # fmt: skip
    measured = report_energy.measured(frame(rows)).set_index("model")
    assert measured.loc["ffn", "watts"] == pytest.approx(100.0) and measured.loc["snn", "watts"] == pytest.approx(300.0)
    assert measured.loc["snn", "energy_ratio"] == pytest.approx(15.0)
    assert measured.loc["snn", "j_per_test_sample"] == pytest.approx(0.15) and measured.loc["snn", "sample_ratio"] == 15
    text = "\n".join(report_energy.section(frame(rows), []))
    assert row(text, "cuda", "snn") == ["cuda", "snn", "2", "3000", "10", "300", "0.15", "ffn", "15x", "15x"]
    # a test pass that spent a fifth of its seconds counting metrics: a fifth of its joules left out per sample
    counted = frame([dict(r, eval_seconds=1.0, metrics_seconds=0.2 if r["model"] == "snn" else 0.0) for r in rows])
    assert report_energy.measured(counted).set_index("model").loc["snn", "j_per_test_sample"] == pytest.approx(0.12)


def test_runs_from_before_the_counter_get_no_energy_section():
    rows = [{"model": "ffn", "kind": "baseline", "device": "cpu", "seed": 0, "epoch": 1, "train_seconds": 1.0}]
    assert report_energy.section(frame(rows), []) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_training_records_its_joules(tmp_path):
    """On a GPU with nvidia-ml-py: the counter is NVML's and every epoch's joules are positive (a board draws tens of
    watts idle); without nvidia-ml-py the columns stay empty and run.json says so."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--models", "ffn", "snn:time_steps=8", "--device", "cuda",
                           *SMALL, "--out", str(out)], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (run,) = out.iterdir()
    data = pd.read_csv(run / "epochs.csv")
    said = json.loads((run / "run.json").read_text())["trainings"][0]["segments"][0]["energy_counter"]
    try:
        import pynvml  # noqa: F401
    except ImportError:
        assert said.startswith("none: nvidia-ml-py") and data["train_joules"].isna().all()
        return
    assert said.startswith("nvml: ") and (data["train_joules"] > 0).all() and (data["eval_joules"] > 0).all()
    watts = data["train_joules"] / data["train_seconds"]
    assert ((watts > 10) & (watts < 2000)).all()  # a board's power, not millijoules read as joules
    assert "### Measured energy" in (run / "report" / "report.md").read_text()
