"""``python -m bench.speed`` at a tiny size: its table, its CSV and its errors."""

import csv
import subprocess
import sys

import pytest

import models
from bench import peers, speed


def test_speed_table_and_csv(tmp_path, capsys):
    out = tmp_path / "speed.csv"
    argv = ["--batch-size", "20", "--time-steps", "4", "--repeats", "2", "--precision", "fp32", "bf16", "--no-memory"]
    assert speed.main([*argv, "--csv", str(out)]) == 0
    with open(out) as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == speed.COLUMNS
    lif = [n for n in speed.LIF_MODELS if n in models.available()]
    snn_names = ["ffn", "snn", "snn-reference", "floor", *peers.installed()]
    lif_names = ["lif", speed.LIF_DENSE, *lif[1:], "floor (lif)"]  # lif, then lif with its products dense
    assert [(r["implementation"], r["precision"]) for r in rows] == [
        *[(n, p) for p in ("fp32", "bf16") for n in snn_names],  # one row per implementation and precision, floor too
        *[(n, p) for p in ("fp32", "bf16") for n in lif_names],
    ]
    assert [r["workload"] for r in rows] == ["snn"] * 2 * len(snn_names) + ["lif"] * 2 * len(lif_names)
    for r in rows:
        assert r["device"] == "cpu" and r["batch_size"] == "20" and r["time_steps"] == "4" and r["repeats"] == "2"
        assert 0 < float(r["min_seconds"]) <= float(r["median_seconds"]) <= float(r["max_seconds"])
        assert r["peak_mib"] == "nan"  # --no-memory
    table = capsys.readouterr().out
    for base in ("snn", "lif"):  # ratios are to each workload's own base, at fp32
        line = next(line for line in table.splitlines() if line.startswith(f"{base} ") and " fp32 " in line)
        assert line.split()[-3:] == ["1.00", base, "nan"]


def test_each_workload_has_its_own_default_time_steps(tmp_path):
    out = tmp_path / "speed.csv"
    assert speed.main(["--batch-size", "4", "--repeats", "1", "--workload", "lif", "--no-memory", "--csv", str(out)]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert {r["time_steps"] for r in rows} == {"25"} and {r["workload"] for r in rows} == {"lif"}


def test_measure_interleaves_and_rotates():
    calls = []
    impls = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    times = speed.measure(impls, "cpu", repeats=3, warmup=0)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(len(ts) == 3 for ts in times.values())


def test_bad_input_is_one_line_exit_2(tmp_path):
    for args in (
        ["--repeats", "0"],
        ["--device", "tpu"],
        ["--csv", str(tmp_path / "nowhere" / "x.csv")],
        ["--workload", "x"],
        ["--precision", "fp16"],
    ):
        proc = subprocess.run([sys.executable, "-m", "bench.speed", *args], capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--time-steps", "2", "--workload", "snn"], "snn:time_steps=2: time_steps=2 is below its minimum of 3"),
        (["--csv", "/sys/speed.csv"], "--csv /sys/speed.csv cannot be written (Permission denied)"),
        (["--csv", "{tmp}"], "cannot be written (Is a directory)"),
    ],
)
def test_what_would_fail_after_the_timings_is_refused_before_them(tmp_path, capsys, monkeypatch, args, message):
    timed = []
    monkeypatch.setattr(speed, "measure", lambda *a, **k: timed.append(a) or {})
    assert speed.main(["--repeats", "1", "--no-memory", *[a.format(tmp=tmp_path) for a in args]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not timed
    assert list(tmp_path.iterdir()) == []  # the trial write of --csv leaves nothing behind


# ---- cost curves (bench/sweep.py, issue 28) ----


def test_the_fitted_exponent_is_the_log_log_slope():
    from bench import sweep

    rows = [{"workload": "lif", "device": "cpu", "implementation": name, "axis": "batch_size", "batch_size": b,
             "median_seconds": c * b**k, "peak_mib": 10.0 * b}
            for name, c, k in (("lif", 0.01, 1.0), ("floor (lif)", 1e-4, 2.0)) for b in (250, 500, 1000)]  # fmt: skip
    fitted = {f["implementation"]: f for f in sweep.exponents(rows)}
    assert fitted["lif"]["time_exponent"] == pytest.approx(1.0) and fitted["floor (lif)"]["time_exponent"] == pytest.approx(2.0)
    assert fitted["lif"]["memory_exponent"] == pytest.approx(1.0) and fitted["lif"]["points"] == 3


def test_the_sweep_points_scale_one_axis_at_a_time():
    from bench import sweep

    lif = sweep.points("lif", 24, 1000)
    assert ("time_steps", 6, 1000, 100) in lif and ("time_steps", 48, 1000, 100) in lif
    assert ("hidden", 24, 1000, 25) in lif and ("hidden", 24, 1000, 200) in lif
    assert ("batch_size", 24, 250, 100) in lif and len(lif) == 4 + 4 + 3
    assert not any(axis == "hidden" for axis, *_ in sweep.points("csnn", 25, 128))  # no hidden layer


def test_a_sweep_writes_its_curves_exponents_and_figure(tmp_path):
    out = tmp_path / "sweep"
    argv = ["--sweep", str(out), "--workload", "lif", "--batch-size", "8", "--time-steps", "4", "--repeats", "1", "--no-memory"]
    proc = subprocess.run([sys.executable, "-m", "bench.speed", *argv], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    names = speed.names("lif")
    hidden_names = [n for n in names if n not in peers.PEERS]  # all of lif's take a hidden size
    assert len(rows) == len(names) * (4 + 3) + len(hidden_names) * 4
    assert {r["axis"] for r in rows} == {"time_steps", "hidden", "batch_size"}
    assert sorted({int(r["hidden"]) for r in rows if r["axis"] == "hidden" and r["implementation"] == "lif"}) == [
        25,
        50,
        100,
        200,
    ]
    assert all(float(r["median_seconds"]) > 0 for r in rows)
    with open(out / "exponents.csv") as f:
        fitted = list(csv.DictReader(f))
    assert {(f["implementation"], f["axis"]) for f in fitted} >= {("lif", "time_steps"), ("floor (lif)", "batch_size")}
    assert (out / "sweep-lif.png").stat().st_size > 1000 and "time exponent" in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [(["--sweep", "DIR", "--csv", "x.csv"], "--sweep times fp32 and writes its own files"),
     (["--sweep", "FILE"], "is a file, not a folder"), (["--crossover", "FILE"], "--crossover")],
)  # fmt: skip
def test_bad_sweep_input_is_one_line_exit_2(tmp_path, args, message):
    (tmp_path / "FILE").write_text("")
    args = [str(tmp_path / a) if a in ("DIR", "FILE", "x.csv") else a for a in args]
    proc = subprocess.run([sys.executable, "-m", "bench.speed", *args], capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_the_crossover_figure_and_table(tmp_path):
    """bench.speed --crossover's work at a small size: every curve at every density, both paths timed, a figure."""
    from bench import crossover
    from models import spike_products

    if not spike_products.native():
        pytest.skip("the event-driven kernels are not built here")
    found = crossover.run(tmp_path, rows=512, repeats=1)
    assert set(found) == {c for c, _, _ in crossover.CURVES} and all(0 <= d <= 1 for d in found.values())
    with open(tmp_path / "crossover.csv") as f:
        rows = list(csv.DictReader(f))
    active = {"products": 1.0, "rate, active 0.2": 0.2, "rate, active 1": 1.0}
    for curve in found:  # densities above the share that can fire are left out
        kept = [d for d in crossover.DENSITIES if d <= active[curve]]
        assert [float(r["density"]) for r in rows if r["curve"] == curve] == kept
    assert all(float(r["speedup"]) > 0 and r["rows"] == "512" for r in rows)
    assert (tmp_path / "crossover.png").stat().st_size > 1000


def test_the_allocator_is_steadied_and_said():
    from bench.record import provenance
    from bench.timing import steady_allocator

    said = steady_allocator()
    assert said == steady_allocator() and provenance("cpu", "fp32", "local", 1)["allocator"] == said
    if sys.platform.startswith("linux"):
        assert "mmap threshold 32 MB" in said
