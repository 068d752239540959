"""``python -m bench.speed`` at a tiny size: its table, its CSV and its errors."""

import csv
import subprocess
import sys

import models
from bench import peers, speed


def test_speed_table_and_csv(tmp_path, capsys):
    out = tmp_path / "speed.csv"
    assert speed.main(["--batch-size", "20", "--time-steps", "4", "--repeats", "2", "--csv", str(out)]) == 0
    with open(out) as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == speed.COLUMNS
    lif = [n for n in speed.LIF_MODELS if n in models.available()]
    assert [r["implementation"] for r in rows] == [
        "ffn",
        "snn",
        "snn-reference",
        "floor",
        *peers.installed(),
        *lif,
        "floor (lif)",
    ]
    assert [r["workload"] for r in rows] == ["snn"] * (4 + len(peers.installed())) + ["lif"] * (len(lif) + 1)
    for r in rows:
        assert r["device"] == "cpu" and r["batch_size"] == "20" and r["time_steps"] == "4" and r["repeats"] == "2"
        assert 0 < float(r["min_seconds"]) <= float(r["median_seconds"]) <= float(r["max_seconds"])
    table = capsys.readouterr().out
    for base in ("snn", "lif"):  # ratios are to each workload's own base
        line = next(line for line in table.splitlines() if line.startswith(f"{base} "))
        assert line.split()[-2:] == ["1.00", base]


def test_each_workload_has_its_own_default_time_steps(tmp_path):
    out = tmp_path / "speed.csv"
    assert speed.main(["--batch-size", "4", "--repeats", "1", "--workload", "lif", "--csv", str(out)]) == 0
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
    for args in (["--repeats", "0"], ["--device", "tpu"], ["--csv", str(tmp_path / "nowhere" / "x.csv")], ["--workload", "x"]):
        proc = subprocess.run([sys.executable, "-m", "bench.speed", *args], capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
