"""Every number says what made it (issue 24): each training's provenance, taken where it trains, one segment per
stretch between resumes; a resume that would change what the numbers mean is refused unless it asks for a new segment;
the report pools seconds only across identical conditions."""

import csv
import json
import shutil
import socket

import torch
from test_report import rows as report_rows
from test_report import write_run
from test_resume import interrupt_after_epoch

import bench
import bench.executors
from bench.devices import cpu_model
from bench.run import main
from bench.schema import csv_columns, read_epochs
from report.__main__ import build_report
from report.load import load

TINY = ["--models", "ffn", "--device", "cpu", "--dataset", "mnist-mini", "--max-batches", "1", "--batch-size", "100",
        "--epochs", "2", "--no-report"]  # fmt: skip
OTHER = 1 if torch.get_num_threads() != 1 else 2  # threads other than the process's own: set in the training's process


def snapshot(run_dir):
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def cut_run(out, monkeypatch, *extra):
    """A tiny run stopped (as by Ctrl-C) once its first training's epoch 1 is recorded; its folder."""
    with monkeypatch.context() as m:
        m.setattr(bench.executors, "train", interrupt_after_epoch(1))
        assert main([*TINY, *extra, "--out", str(out)]) == 130
    (run_dir,) = out.iterdir()
    return run_dir


def trainings(run_dir):
    return json.loads((run_dir / "run.json").read_text())["trainings"]


def test_each_training_records_its_provenance_taken_in_its_own_process(tmp_path):
    assert main([*TINY, "--threads", str(OTHER), "--out", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.iterdir()
    (training,) = trainings(run_dir)
    (segment,) = training["segments"]
    assert segment["segment"] == 0 and segment["from_epoch"] == 1 and segment["started"]
    assert segment["torch_threads"] == OTHER != torch.get_num_threads()  # the training's threads, not the driver's
    assert segment["host"] == socket.gethostname() and segment["hardware"] == cpu_model()
    assert (segment["executor"], segment["parallel"], segment["precision"]) == ("local", 1, "fp32")
    assert segment["snnbench"] == bench.__version__ and segment["torch"] == torch.__version__
    assert segment["git_commit"] is None or len(segment["git_commit"].removesuffix("-dirty")) == 40
    from models import dispatch

    here = dispatch.provenance("cpu")  # kernels, mask generator; the crossovers known at the training's own threads
    assert {k: segment[k] for k in here if k != "event_products"} == {k: v for k, v in here.items() if k != "event_products"}
    assert f"at {OTHER} threads" in segment["event_products"] and segment["allocator"]


def test_rows_name_their_segment_and_a_resume_is_a_segment_of_its_own(tmp_path, monkeypatch, capsys):
    run_dir = cut_run(tmp_path, monkeypatch, "--threads", "1")
    assert "segment" in csv_columns(run_dir / "epochs.csv")
    # as if the power went out after epoch 1's checkpoint, before its row: the row comes back from the checkpoint
    (run_dir / "epochs.csv").write_bytes((run_dir / "epochs.csv").read_bytes().splitlines(keepends=True)[0])
    capsys.readouterr()
    assert main(["--resume", str(run_dir)]) == 0  # the same conditions: no --new-segment needed
    assert [(r["epoch"], r["segment"]) for r in read_epochs(run_dir / "epochs.csv")] == [(1, 0), (2, 1)]
    segments = trainings(run_dir)[0]["segments"]
    assert [(s["segment"], s["from_epoch"], s["torch_threads"]) for s in segments] == [(0, 1, 1), (1, 2, 1)]
    assert "changed" not in segments[1]


def test_a_resume_with_other_threads_is_refused_in_one_line_and_changes_nothing(tmp_path, monkeypatch, capsys):
    run_dir = cut_run(tmp_path, monkeypatch, "--threads", "1")
    before = snapshot(run_dir)
    capsys.readouterr()
    assert main(["--resume", str(run_dir), "--threads", "2"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"bench.run: error: --resume {run_dir}: ") and "torch threads 1 -> 2" in err
    assert "ffn cpu seed 0" in err and "--new-segment" in err
    assert snapshot(run_dir) == before


def test_new_segment_goes_on_and_is_recorded_as_segment_1(tmp_path, monkeypatch, capsys):
    run_dir = cut_run(tmp_path, monkeypatch, "--threads", "1")
    assert main(["--resume", str(run_dir), "--threads", "2", "--new-segment"]) == 0
    assert [(r["epoch"], r["segment"]) for r in read_epochs(run_dir / "epochs.csv")] == [(1, 0), (2, 1)]
    segments = trainings(run_dir)[0]["segments"]
    assert [(s["segment"], s["from_epoch"], s["torch_threads"]) for s in segments] == [(0, 1, 1), (1, 2, 2)]
    assert segments[1]["changed"] == ["torch_threads"]


def test_new_segment_needs_resume(tmp_path, capsys):
    assert main([*TINY, "--new-segment", "--out", str(tmp_path)]) == 2
    assert "--new-segment needs --resume" in capsys.readouterr().err


def test_the_report_keeps_the_seconds_of_segments_with_other_threads_apart(tmp_path, monkeypatch):
    run_dir = cut_run(tmp_path, monkeypatch, "--threads", "1")
    assert main(["--resume", str(run_dir), "--threads", "2", "--new-segment"]) == 0
    rows = read_epochs(run_dir / "epochs.csv")
    text = build_report([run_dir], tmp_path / "report").read_text()
    assert "measured under different conditions" in text
    apart = text[text.index("Training seconds by condition") :]
    assert "1 thread, one training at a time" in apart and "2 threads, one training at a time" in apart
    summary = load([run_dir]).epochs
    assert summary["train_seconds"].notna().sum() == 1  # pooled: one condition's epoch only (the first, on a tie)
    assert summary["train_seconds"].dropna().tolist() == [rows[0]["train_seconds"]]
    assert f" {rows[0]['train_seconds']:.3g} |" in text[text.index("### Summary") :]


def old_run(run_dir, executor="dask", workers=2):
    """``run_dir`` as snnbench 0.4 left it: no segments in run.json, no segment column, and the arguments of a
    ``--executor dask --workers N --threads 1`` run."""
    meta = json.loads((run_dir / "run.json").read_text())
    for t in meta["trainings"]:
        t.pop("segments", None)
    meta["args"].update(executor=executor, workers=workers)
    (run_dir / "run.json").write_text(json.dumps(meta))
    rows = read_epochs(run_dir / "epochs.csv")
    columns = [c for c in csv_columns(run_dir / "epochs.csv") if c != "segment"]
    with open(run_dir / "epochs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def test_an_old_run_resumed_with_another_executor_is_refused_unless_a_new_segment(tmp_path, monkeypatch, capsys):
    """tuned-15-epochs' case: a run from before segments (2 one-thread Dask workers) resumed another way: what run.json
    records of it (its arguments) stands for its last segment."""
    run_dir = cut_run(tmp_path, monkeypatch, "--threads", "1")
    old_run(run_dir)
    before = snapshot(run_dir)
    capsys.readouterr()
    assert main(["--resume", str(run_dir), "--executor", "local"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trainings in parallel 2 -> 1" in err and "--new-segment" in err, err
    assert snapshot(run_dir) == before
    assert main(["--resume", str(run_dir), "--executor", "local", "--new-segment"]) == 0
    assert "segment" not in csv_columns(run_dir / "epochs.csv")  # finished in its own format
    (segment,) = trainings(run_dir)[0]["segments"]
    assert (segment["segment"], segment["from_epoch"], segment["parallel"]) == (1, 2, 1)
    assert segment["changed"] == ["parallel"]


def test_the_report_leaves_out_the_seconds_of_an_old_run_resumed_with_other_workers(tmp_path):
    """The rows of a run from before segments cannot say which stretch measured them: when its resumes ran under other
    conditions (here --workers 3 after --workers 2), its seconds are pooled nowhere, and the report says so."""
    dask = {"executor": "dask", "workers": 2, "threads": 1, "scheduler": None}
    resumed = [{"command": "python -m bench.run --resume results/run-a --executor dask --workers 3", "started": "x"}]
    a = write_run(tmp_path / "results" / "run-a", report_rows("snn", [0.9, 0.91, 0.92], 2.0), args=dask, resumes=resumed)
    b = write_run(tmp_path / "results" / "run-b", report_rows("ffn", [0.88, 0.89, 0.87], 0.5, run_id="run-b"), args=dask)
    text = build_report([a, b], tmp_path / "report").read_text()
    assert "run `run-a`" in text and "left out" in text
    summary = text[text.index("### Summary") :].split("\n\n")[1]
    (snn,) = [line for line in summary.splitlines() if "| snn " in line]
    (ffn,) = [line for line in summary.splitlines() if "| ffn " in line]
    assert [cell.strip() for cell in snn.split("|")[7:10]] == ["-", "-", "-"]  # s/epoch, total s, samples/s
    assert [cell.strip() for cell in ffn.split("|")[7:10]] == ["0.5", "4.5", "2,000"]
    comparison = text[text.index("### SNN against FFN") :].split("\n\n")[1]
    assert comparison.splitlines()[2].rstrip(" |").endswith("| -")  # no time ratio
    assert "their training times are not compared" in text
    # the threads the trainings had (1 per Dask worker), not the driver's 4
    software = text[text.index("Software and threads") :].split("\n\n")[1]
    assert software.splitlines()[2].rstrip(" |").endswith("| 1")


def test_an_old_run_resumed_under_the_same_conditions_is_pooled_as_before(tmp_path):
    dask = {"executor": "dask", "workers": 2, "threads": 1, "scheduler": None}
    resumed = [{"command": "python -m bench.run --resume results/run-a", "started": "x"}]
    a = write_run(tmp_path / "results" / "run-a", report_rows("snn", [0.9, 0.91, 0.92], 2.0), args=dask, resumes=resumed)
    data = load([a]).epochs
    assert data["train_seconds"].notna().all()
    assert "left out" not in build_report([a], tmp_path / "report").read_text()


def test_runs_with_other_random_streams_are_reported_apart(tmp_path):
    """Accuracy is pooled only where the random numbers are the same: runs whose masks another generator drew get a
    section each."""
    native = {"cpu_mask_generator": "native splitmix64 (models/_masks.c)"}
    env = {"python": "3.11", "torch": "2.9", "torch_threads": 4, "cpu_count": 8, "devices": {"cpu": "Test CPU 9000"}}
    a = write_run(tmp_path / "results" / "run-a", report_rows("snn", [0.9, 0.91, 0.92], 2.0), environment={**env, **native})
    b = write_run(tmp_path / "results" / "run-b", report_rows("snn", [0.8, 0.81, 0.82], 2.0, run_id="run-b"),
                  environment={**env, "cpu_mask_generator": "torch, 8 chunks on threads"})  # fmt: skip
    text = build_report([tmp_path / "results"], tmp_path / "report").read_text()
    assert text.count("\n## Dataset `mnist-mini`, schedule") == 2
    assert "masks native splitmix64 (models/_masks.c)" in text and "masks torch, 8 chunks on threads" in text
    shutil.rmtree(b)
    assert "## Dataset `mnist-mini`\n" in build_report([a], tmp_path / "report").read_text()  # one stream: as before
