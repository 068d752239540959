"""What ``--executor dask`` costs on this machine: one grid of mnist-mini trainings run by the local executor and by
LocalClusters of one and of two workers, each a ``python -m bench.run`` of its own; the cluster's start-up; and each
training's overhead as its events show it.

    python scripts/dask_overhead.py [--epochs 2] [--seeds 0 1 2 3 4]
    python scripts/dask_overhead.py --busy TIMES_FILE   # each worker's busy time in runs made with SNNBENCH_DASK_TIMES

A training's overhead is the time from its submission (or from the end of the training its worker ran before it) to
its first epoch reaching bench.run, less that epoch's own training and test seconds: the scheduling, the worker's
data load and model build (the first training on a worker also waits for the worker's imports), the checkpoint,
and the trip of the event. bench.run writes the events' times where SNNBENCH_DASK_TIMES says (bench/dask_executor.py).

A worker's busy time is the sum of its trainings' times from their start there to their end (the ``Began`` and
``Ended`` messages it sent); the grid's wall time runs from the trainings handed to the executor to the last end.
"While queued" is the part of it until the last training began: a worker not busy then left a training waiting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import dask_executor  # noqa: E402
from bench.schema import read_epochs  # noqa: E402

CONFIGS = {  # name: the options that choose where the trainings run, and the workers that share the cores
    "local --threads 2": (["--executor", "local", "--threads", "2"], 1),
    "dask --workers 1 --threads 2": (["--executor", "dask", "--workers", "1", "--threads", "2"], 1),
    "dask --workers 2 --threads 1": (["--executor", "dask", "--workers", "2", "--threads", "1"], 2),
}


def run(grid: list[str], options: list[str], out: Path, times: Path) -> float:
    """Wall seconds of one ``python -m bench.run``, from its start to its exit."""
    env = dict(os.environ, SNNBENCH_DASK_TIMES=str(times))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.run", *grid, *options, "--no-report", "--out", str(out)],
                          capture_output=True, text=True, env=env)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"bench.run {' '.join(options)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def overheads(times: Path) -> tuple[list[float], list[float]]:
    """Each training's overhead (see the module's doc) and each event's trip from its worker to bench.run, in seconds."""
    lines = [json.loads(line) for line in times.read_text().splitlines()] if times.exists() else []
    free: dict[str, float] = {}  # worker -> when its previous training sent its end
    began: dict[str, float] = {}  # training -> when it could begin: submitted, or its worker free
    overhead: dict[str, float] = {}
    for line in sorted(lines, key=lambda m: m["sent"]):
        worker, training = line["worker"], line["training"]
        if line["kind"] == "Began":
            began.setdefault(training, max(line["submitted"], free.get(worker, line["submitted"])))
        elif line["kind"] == "Epoch" and line["compute"] is not None and training in began:
            overhead.setdefault(training, line["received"] - began[training] - line["compute"])  # its first epoch
        elif line["kind"] == "Ended":
            free[worker] = line["sent"]
    per_training = list(overhead.values())
    return per_training, [line["received"] - line["sent"] for line in lines]


def busy(times: Path) -> list[tuple[str, float, float, list[list]]]:
    """Per run in the file: its id, wall seconds, seconds while trainings were queued, and a row per worker (address,
    host, trainings, busy s, busy % of the wall time, busy % while queued); see the module's doc."""
    runs: dict[str, list[dict]] = {}
    for line in times.read_text().splitlines():
        message = json.loads(line)
        runs.setdefault(message.get("run", "-"), []).append(message)  # files of older versions: one run, no "run"
    found = []
    for run_id, lines in runs.items():
        start = min(m.get("queued", m["submitted"]) for m in lines)
        spans: dict[str, list] = {}  # worker -> [host, [(began, ended)]]
        began: dict[tuple, float] = {}
        for m in sorted(lines, key=lambda m: m["sent"]):
            if m["kind"] == "Began":
                began[m["worker"], m["training"]] = m["sent"]
            elif m["kind"] == "Ended" and (m["worker"], m["training"]) in began:
                spans.setdefault(m["worker"], [m.get("host", "-"), []])[1].append((began[m["worker"], m["training"]], m["sent"]))
        if not spans:
            continue
        end = max(e for _, ss in spans.values() for _, e in ss)
        last_began = max(began.values())
        wall, queued = end - start, last_began - start
        rows = [[worker, host, len(ss), sum(e - b for b, e in ss), 100 * sum(e - b for b, e in ss) / wall,
                 100 * sum(max(0.0, min(e, last_began) - b) for b, e in ss) / queued if queued > 0 else None]
                for worker, (host, ss) in sorted(spans.items())]  # fmt: skip
        found.append((run_id, wall, queued, rows))
    return found


def print_busy(times: Path) -> None:
    for run_id, wall, queued, rows in busy(times):
        print(f"run {run_id}: wall {wall:.1f} s, trainings queued for the first {queued:.1f} s")
        print(tabulate(rows, floatfmt=".1f", missingval="-",
                       headers=["worker", "host", "trainings", "busy s", "busy % of wall", "busy % while queued"]))  # fmt: skip
        print()


def cluster_start(workers: int) -> float:
    """Seconds from nothing to a LocalCluster whose workers are all up (their imports done: the preload imports torch)."""
    start = time.perf_counter()
    cluster = dask_executor._local_cluster(["cpu"], workers)
    seconds = time.perf_counter() - start
    cluster.close()
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=2, help="epochs per training (default: %(default)s)")
    p.add_argument("--seeds", nargs="+", default=["0", "1", "2", "3", "4"], help="(default: 0 1 2 3 4)")
    p.add_argument("--busy", type=Path, metavar="TIMES_FILE", help="only print each worker's busy time in the runs of a "
                   "SNNBENCH_DASK_TIMES file")  # fmt: skip
    args = p.parse_args()
    if args.busy:
        return print_busy(args.busy)
    grid = ["--models", "ffn", "snn:time_steps=16", "--lr-scale", "0.5", "1", "--seeds", *args.seeds,
            "--epochs", str(args.epochs), "--device", "cpu", "--dataset", "mnist-mini"]  # fmt: skip
    trainings = 2 * 2 * len(args.seeds)
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (options, workers) in CONFIGS.items():
            times = Path(tmp) / f"{len(table)}.jsonl"
            wall = run(grid, options, Path(tmp) / str(len(table)), times)
            (run_dir,) = (Path(tmp) / str(len(table))).iterdir()
            compute = sum(r["train_seconds"] + r["eval_seconds"] for r in read_epochs(run_dir / "epochs.csv"))
            per_training, trips = overheads(times)
            runs = busy(times) if times.exists() else []
            table.append([name, wall, compute, (wall * workers - compute) / trainings,
                          statistics.median(per_training) if per_training else None,
                          statistics.median(trips) * 1000 if trips else None,
                          min(r[5] for r in runs[0][3]) if runs and runs[0][2] > 0 else None])  # fmt: skip
        starts = {n: cluster_start(n) for n in (1, 2)}
    print(f"{trainings} mnist-mini trainings (ffn and snn:time_steps=16, lr scales 0.5 1, seeds {' '.join(args.seeds)}, "
          f"{args.epochs} epoch(s) each) on {os.cpu_count()} core(s)\n")  # fmt: skip
    print(tabulate(table, floatfmt=".2f", missingval="-", headers=[
        "executor", "wall s", "Σ epoch s", "other s per training", "median overhead s", "median event trip ms",
        "least busy worker % while queued"]))  # fmt: skip
    print(
        "\nwall s: the whole bench.run process; Σ epoch s: the training and test seconds of all epochs; other s per "
        "training: (wall s x workers - Σ epoch s) / trainings, the cost of everything else, start-up included; "
        "median overhead: submission (or the worker free) to the first epoch received, less that epoch's seconds; "
        "least busy worker: its busy time while trainings were queued (python scripts/dask_overhead.py --busy FILE)."
    )
    print("LocalCluster start-up: " + ", ".join(f"{s:.2f} s with {n} worker(s)" for n, s in starts.items()))


if __name__ == "__main__":
    main()
