"""--executor dask: the rows of the local executor, through a killed worker, a Ctrl-C and --resume, on a cluster started
apart; no worker idle while trainings wait; and the mistakes that stop it before anything is written (a worker with more
than one thread among them). Each cluster costs seconds: the runs are tiny."""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from bench import dask_executor  # noqa: E402
from bench.cli import UsageError  # noqa: E402
from bench.run import main  # noqa: E402
from bench.schema import TrainingKey, read_epochs  # noqa: E402

TIMING = {"run_id", "train_seconds", "eval_seconds", "train_samples_per_second", "metrics_seconds", "peak_memory_mib",
          "segment"}  # fmt: skip
SMALL = ["--device", "cpu", "--dataset", "mnist-mini", "--max-batches", "2", "--batch-size", "100", "--threads", "1",
         "--no-report"]  # fmt: skip
GRID = ["--models", "snn:time_steps=4", "ffn", "--seeds", "0", "1", "--epochs", "2", *SMALL]


def numbers(run_dir: Path) -> list[dict]:
    """The rows without timings and run id (NaN as None), in the order of their keys: the trainings of a cluster
    interleave, each in ascending epochs."""
    rows = [{k: None if v != v else v for k, v in r.items() if k not in TIMING} for r in read_epochs(run_dir / "epochs.csv")]
    return sorted(rows, key=lambda r: (*TrainingKey.of(r), r["epoch"]))


def window(run_dir: Path) -> list[dict]:
    with open(run_dir / "window.csv", newline="") as f:
        return sorted(({k: v for k, v in r.items() if k != "run_id"} for r in csv.DictReader(f)), key=str)


def only_run(out: Path) -> Path:
    (run_dir,) = out.iterdir()
    return run_dir


def statuses(run_dir: Path) -> list[str]:
    return [t["status"] for t in json.loads((run_dir / "run.json").read_text())["trainings"]]


def first_row_written(out: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        csvs = list(out.glob("*/epochs.csv"))
        if csvs and csvs[0].read_text().count("\n") >= 2:
            return
        time.sleep(0.005)
    raise AssertionError(f"no row in {out} within {timeout} s")


def test_a_grid_on_a_local_cluster_writes_the_rows_of_the_local_executor(tmp_path, capsys):
    assert main([*GRID, "--out", str(tmp_path / "local")]) == 0
    environment = dict(os.environ)
    assert main([*GRID, "--executor", "dask", "--workers", "2", "--out", str(tmp_path / "dask")]) == 0
    # Dask's nanny sets OMP_NUM_THREADS=1 (and more) in this process to start its workers: put back when the run ends,
    # or every process started later from here (a test's bench.run, a user's notebook) would train with one thread
    assert dict(os.environ) == environment
    err = capsys.readouterr().err
    assert "bench.run: 4 trainings on a Dask cluster of 2 worker(s)" in err
    assert "Traceback" not in err
    local, dask = only_run(tmp_path / "local"), only_run(tmp_path / "dask")
    assert numbers(dask) == numbers(local)  # exactly: losses, accuracies, activity and cost columns
    assert window(dask) == window(local)  # the spiking model's analysis came back too, once
    assert sorted(p.name for p in (dask / "activity").iterdir()) == sorted(p.name for p in (local / "activity").iterdir())
    assert set(statuses(dask)) == {"complete"} and not (dask / "checkpoints").exists()


def test_a_worker_killed_mid_training_is_replaced_and_the_rows_are_those_of_an_uninterrupted_run(tmp_path, capsys):
    from distributed import default_client

    argv = ["--models", "snn:time_steps=4", "--epochs", "12", *SMALL]
    killed = {}

    def kill_a_busy_worker():  # once the first row is in the CSV: rows come as epochs end, not when a training ends
        first_row_written(tmp_path / "dask")
        client = default_client()
        busy = [worker for worker, keys in client.processing().items() if keys]
        pids = client.run(os.getpid)
        killed["rows"] = len(read_epochs(only_run(tmp_path / "dask") / "epochs.csv"))
        os.kill(pids[busy[0]], signal.SIGKILL)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    assert main([*argv, "--executor", "dask", "--workers", "2", "--out", str(tmp_path / "dask")]) == 0
    killer.join(timeout=10)
    assert 1 <= killed["rows"] < 12  # it died mid-training, after its first epoch
    assert main([*argv, "--out", str(tmp_path / "local")]) == 0
    dask = only_run(tmp_path / "dask")
    assert numbers(dask) == numbers(only_run(tmp_path / "local"))  # no row twice, none missing, the same numbers
    assert window(dask) == window(only_run(tmp_path / "local"))
    assert statuses(dask) == ["complete"]


def test_a_ctrl_c_stops_the_trainings_on_the_cluster_and_resume_finishes_the_run(tmp_path, capsys):
    argv = ["--models", "ffn", "snn:time_steps=4", "--epochs", "30", *SMALL]
    run = [sys.executable, "-m", "bench.run", *argv, "--executor", "dask", "--workers", "1", "--out", str(tmp_path / "cut")]
    proc = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        first_row_written(tmp_path / "cut")
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: bench.run and its cluster's workers
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted (SIGINT)" in err
    run_dir = only_run(tmp_path / "cut")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert "running" not in statuses(run_dir) and statuses(run_dir) != ["complete", "complete"]
    assert set(statuses(run_dir)) <= {"complete", "interrupted", "pending"}

    unfinished = next(TrainingKey.of(t) for t in json.loads((run_dir / "run.json").read_text())["trainings"]
                      if t["status"] != "complete")  # fmt: skip
    checkpoint = run_dir / "checkpoints" / f"{unfinished.file_stem()}.pt"
    checkpoint.parent.mkdir(exist_ok=True)
    checkpoint.write_bytes(b"not a checkpoint")  # a CheckpointError on a worker stops the run, as it does locally
    assert main(["--resume", str(run_dir)]) == 2
    assert f"bench.run: error: cannot read checkpoint {checkpoint}" in capsys.readouterr().err
    assert "running" not in statuses(run_dir)
    checkpoint.unlink()
    assert main(["--resume", str(run_dir), "--executor", "local", "--threads", "1"]) == 0  # either executor finishes it
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    assert numbers(run_dir) == numbers(only_run(tmp_path / "whole"))
    assert statuses(run_dir) == ["complete", "complete"]


@contextlib.contextmanager
def scheduler_and_worker(tmp_path: Path, nthreads: int = 1):
    """A ``dask scheduler`` and one ``dask worker --nthreads N`` on localhost, as a user starts them; the scheduler's
    address. Both are stopped at the end."""
    scheduler_file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m"]
    started = []
    try:
        started.append(subprocess.Popen([*dask, "distributed.cli.dask_scheduler", "--port", "0", "--no-dashboard",
                                         "--scheduler-file", str(scheduler_file)], stderr=subprocess.DEVNULL))  # fmt: skip
        started.append(subprocess.Popen([*dask, "distributed.cli.dask_worker", "--scheduler-file", str(scheduler_file),
                                         "--nthreads", str(nthreads), "--no-dashboard"], stderr=subprocess.DEVNULL))  # fmt: skip
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # written whole by now
        yield json.loads(scheduler_file.read_text())["address"]
    finally:
        for proc in reversed(started):
            proc.terminate()
        for proc in started:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_a_scheduler_and_worker_started_apart_run_the_grid(tmp_path, capsys):
    with scheduler_and_worker(tmp_path) as address:
        assert main([*GRID, "--executor", "dask", "--scheduler", address, "--out", str(tmp_path / "dask")]) == 0
    err = capsys.readouterr().err
    assert "bench.run: 4 trainings on a Dask cluster of 1 worker(s)" in err
    assert err.count(f"started on worker {address.rsplit(':', 1)[0]}") == 4  # each training: its worker and host
    assert main([*GRID, "--out", str(tmp_path / "local")]) == 0
    assert numbers(only_run(tmp_path / "dask")) == numbers(only_run(tmp_path / "local"))
    assert not list(tmp_path.glob("dask/.snnbench-probe*"))  # the shared-folder check leaves nothing


def test_a_scheduler_s_worker_with_two_threads_is_refused_before_the_run_exists(tmp_path, capsys):
    with scheduler_and_worker(tmp_path, nthreads=2) as address:
        assert main([*GRID, "--executor", "dask", "--scheduler", address, "--out", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bench.run: error: Dask worker(s) {address.rsplit(':', 1)[0]}:") and err.count("\n") == 1
    assert f"(2 threads) of the scheduler at {address} run more than one thread" in err
    assert err.endswith(f"start one process per training: dask worker {address} --nworkers N --nthreads 1\n")
    assert not (tmp_path / "res").exists()


def test_short_trainings_never_wait_behind_a_long_one_while_another_worker_is_free(tmp_path, capsys, monkeypatch):
    """One long training and four short ones on 2 workers: the short ones all run on the other worker while the long
    one trains. Dask binds a task that asks for a resource to a worker when it is submitted: had the grid been submitted
    whole, some short ones would wait behind the long one (work stealing, turned off here, moves them only sometimes)."""
    import dask

    times = tmp_path / "times.jsonl"
    monkeypatch.setenv(dask_executor.TIMES, str(times))
    threads, local_cluster = [], dask_executor._local_cluster

    def recorded(*args):
        cluster = local_cluster(*args)
        threads.extend(w["nthreads"] for w in cluster.scheduler_info["workers"].values())
        return cluster

    monkeypatch.setattr(dask_executor, "_local_cluster", recorded)
    shorts = ["ffn", "ffn:hidden=50", "ffn:hidden=20", "ffn:hidden=10"]
    argv = ["--models", "snn:time_steps=64", *shorts, "--seeds", "0", "--epochs", "3", "--device", "cpu", "--dataset",
            "mnist-mini", "--max-batches", "12", "--batch-size", "100", "--threads", "1", "--no-report"]  # fmt: skip
    with dask.config.set({"distributed.scheduler.work-stealing": False}):
        assert main([*argv, "--executor", "dask", "--workers", "2", "--out", str(tmp_path / "dask")]) == 0
    assert threads == [1, 1]  # one training per worker process
    span: dict[str, list] = {}  # training -> [worker, began, ended]
    for line in map(json.loads, times.read_text().splitlines()):
        if line["kind"] == "Began":
            span[line["training"]] = [line["worker"], line["sent"], None]
        elif line["kind"] == "Ended":
            span[line["training"]][2] = line["sent"]
    long_worker, _, long_ended = span.pop("snn:time_steps=64 cpu seed 0")
    assert sorted(span) == sorted(f"{s} cpu seed 0" for s in shorts)
    for training, (worker, began, _) in span.items():
        assert worker != long_worker and began < long_ended, f"{training} waited behind the long training"


def test_an_unreachable_scheduler_is_one_line_and_exit_2_within_15_s(tmp_path, capsys):
    start = time.monotonic()
    assert main([*GRID, "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1", "--out", str(tmp_path / "res")]) == 2
    assert time.monotonic() - start < 15
    err = capsys.readouterr().err
    assert err.startswith("bench.run: error: cannot reach the Dask scheduler at tcp://127.0.0.1:1") and err.count("\n") == 1
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler needs --executor dask"),
        (["--workers", "2"], "--workers needs --executor dask"),
        (["--executor", "dask", "--workers", "0"], "expected a positive int"),
        (["--executor", "dask", "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], "--workers is for the LocalCluster"),
    ],
)
def test_dask_options_that_cannot_run_are_exit_2(tmp_path, capsys, extra, message):
    assert main([*GRID, *extra, "--out", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "res").exists()


def test_without_distributed_dask_is_exit_2_with_the_install_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    assert main([*GRID, "--executor", "dask", "--out", str(tmp_path / "res")]) == 2
    assert capsys.readouterr().err == (
        "bench.run: error: --executor dask needs the distributed package: pip install -e '.[dask]'\n"
    )
    assert not (tmp_path / "res").exists()


class OtherFilesystem:
    """A client whose one worker sees ``shared`` as another folder: the run folder is not on a shared filesystem."""

    def __init__(self, shared: Path, seen_as: Path):
        self.shared, self.seen_as = shared, seen_as

    def wait_for_workers(self, n, timeout):
        pass

    def scheduler_info(self, n_workers):
        return {"workers": {"tcp://10.0.0.2:40000": {"resources": {}}}}

    def run(self, function, path, on_error):
        return {"tcp://10.0.0.2:40000": function(str(self.seen_as / Path(path).name))}


def test_a_worker_that_does_not_share_the_run_folder_is_a_usage_error(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    client = OtherFilesystem(tmp_path, tmp_path / "elsewhere")
    with pytest.raises(UsageError, match="Dask worker tcp://10.0.0.2:40000 cannot read .*: the run folder must be on a "
                                         "filesystem the workers share"):  # fmt: skip
        dask_executor._check_workers(client, "tcp://10.0.0.1:8786", tmp_path, cuda=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"]  # the probe is gone
    with pytest.raises(UsageError, match="no worker of the Dask scheduler at tcp://10.0.0.1:8786 offers a GPU"):
        dask_executor._check_workers(client, "tcp://10.0.0.1:8786", tmp_path, cuda=True)
    dask_executor._check_workers(OtherFilesystem(tmp_path, tmp_path), "tcp://10.0.0.1:8786", tmp_path, cuda=False)
