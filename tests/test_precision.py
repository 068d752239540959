"""``--precision``: bf16 against fp32, the fast models against their references at bf16, the precision in every row,
run.json and the report, and the peak memory measured per epoch and per step."""

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import models
from bench import speed
from bench.data import load
from bench.precision import PeakMemory, autocast
from bench.results import read_epochs

CASES = [("snn", ":time_steps=32"), ("lif", ":time_steps=25"), ("ffn", "")]


def pass_(model, x, y, precision, *draws):
    model.zero_grad(set_to_none=True)
    with autocast(precision, "cpu"):
        logits = model(x, *draws)
    F.cross_entropy(logits.float(), y).backward()
    return logits.detach().float(), torch.cat([p.grad.flatten() for p in model.parameters()])


def cosine(a, b):
    return F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


@pytest.mark.parametrize("name,keys", CASES)
def test_bf16_logits_and_gradients_point_where_fp32_ones_do(name, keys):
    """Stated tolerance: cosine similarity >= 0.99 of the logits and of all gradients together. Elementwise bounds
    would be wrong for the SNNs: a bf16 current 0.4% off flips a neuron at its threshold, and its gradient with it."""
    data = load("mnist-mini").train
    x, y = data.images[:64], data.labels[:64]
    torch.manual_seed(0)
    model = models.build(name + keys)
    draws = (model.draw(x.flatten(1)),) if hasattr(model, "draw") else ()
    if name == "snn":
        draws = (model.draw_masks(x.flatten(1)),)
    logits32, grads32 = pass_(model, x, y, "fp32", *draws)
    logits16, grads16 = pass_(model, x, y, "bf16", *draws)
    assert cosine(logits16, logits32) >= 0.99 and cosine(grads16, grads32) >= 0.99
    assert not torch.equal(grads16, grads32)  # bf16 did run


@pytest.mark.parametrize("name,keys", CASES[:2])
def test_the_fast_models_equal_their_references_at_bf16(name, keys):
    """Both compute their currents in bf16 (the same dot products, accumulated in another order by the GEMM) and their
    neuron state in fp32: logits to 1e-3 relative, gradients to a cosine of 0.9999."""
    torch.manual_seed(0)
    reference = models.build(f"{name}-reference{keys}")
    fast = models.build(name + keys)
    fast.load_state_dict(reference.state_dict())
    data = load("mnist-mini").train
    x, y = data.images[:64], data.labels[:64]
    draws = reference.draw_masks(x.flatten(1)) if name == "snn" else reference.draw(x.flatten(1))
    want, got = pass_(reference, x, y, "bf16", draws), pass_(fast, x, y, "bf16", draws)
    assert (got[0] - want[0]).abs().max() <= 1e-3 * want[0].abs().max()
    assert cosine(got[1], want[1]) >= 0.9999


def test_the_neuron_state_stays_float32_under_bf16():
    model = models.build("lif:time_steps=5")
    with autocast("bf16", "cpu"):
        act = model.activity(torch.rand(4, 784) - 0.5)
    assert act.logits.dtype == torch.float32 and act.outputs["layer1"].dtype == torch.float32


def test_peak_memory_on_the_cpu_sees_a_known_allocation():
    """The measurement is right: 200 MiB allocated and freed inside the block read as 200 MiB above the baseline."""
    with PeakMemory("cpu") as peak:
        block = torch.ones(50 * 2**20)  # 200 MiB of float32, every page touched
        del block
    assert 190 < peak.mib - peak.baseline_mib < 215
    with PeakMemory("cpu") as again:  # the peak was reset: the freed block does not count again
        pass
    assert again.mib - again.baseline_mib < 20


@pytest.mark.slow
def test_the_speed_memory_column_is_plausible():
    """The floor keeps its T x B x 784 input and its T x B x 100 current: 108 MiB in fp32 at B 1000, T 32 (above it:
    the process's own first-step allocations); in bf16 half as much, plus its 25 MiB float32 chunk."""
    fp32 = speed.peak_step_mib("floor", "cpu", 1000, 32, "fp32")
    bf16 = speed.peak_step_mib("floor", "cpu", 1000, 32, "bf16")
    assert 108 < fp32 < 170 and bf16 < fp32 - 15, (fp32, bf16)


@pytest.mark.slow
def test_a_bf16_run_records_its_precision_and_memory_everywhere(tmp_path):
    def run(precision):
        cmd = [
            sys.executable,
            "-m",
            "bench.run",
            "--models",
            "lif:time_steps=4",
            "--device",
            "cpu",
            "--epochs",
            "1",
            "--max-batches",
            "1",
            "--batch-size",
            "100",
            "--precision",
            precision,
            "--out",
            str(tmp_path),
            "--no-report",
        ]
        subprocess.run(cmd, check=True, capture_output=True)
        return sorted(p for p in tmp_path.iterdir() if p.is_dir())[-1]

    bf16 = run("bf16")
    rows = read_epochs(bf16 / "epochs.csv")
    assert [r["precision"] for r in rows] == ["bf16"] and rows[0]["peak_memory_mib"] > 0
    assert json.loads((bf16 / "run.json").read_text())["schedule"]["precision"] == "bf16"
    run("fp32")
    from report.__main__ import build_report

    text = build_report([tmp_path], tmp_path / "report").read_text()
    assert text.count("bf16 matmuls") >= 1  # the bf16 run's section is its own: never pooled with fp32
    assert "| fp32 " in text and "| bf16 " in text  # provenance names each run's precision
