"""``python -m report`` is safe to use: the report folder is replaced whole or not at all (Ctrl-C, SIGTERM, errors), a
training found twice counts once, schedules are never pooled, and the shipped reference runs stay out of a user's
report. Hand-made run folders, as in test_report.py; nothing is trained."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import test_report_spiking as spiking
from test_report import FFN, SNN, rows, write_run

from bench import schema
from report import activity, folder, plots, pooling, stats, window
from report.__main__ import build_parser, build_report, main
from report.folder import ReportError
from report.load import load

ROOT = Path(__file__).resolve().parent.parent


def listing(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def leftovers(out: Path) -> list[str]:
    """What a build left beside ``out``: its temporary or set-aside folders."""
    return [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


@pytest.fixture
def old_report(tmp_path):
    """A previous report: its Markdown and a figure that the next report does not draw."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("# the previous report\n")
    (out / "old-figure.png").write_bytes(b"\x89PNG old")
    return out


@pytest.fixture
def one_run(tmp_path):
    return write_run(tmp_path / "results" / "run-a", rows("snn", SNN, 2.0) + rows("ffn", FFN, 0.0125))


# --- the report folder, whole or not at all ---


def test_a_new_report_replaces_the_old_folder_whole(one_run, old_report):
    before = listing(old_report)
    path = build_report([one_run], old_report)
    after = listing(old_report)
    assert path == old_report / "report.md" and after["report.md"] != before["report.md"]
    assert "old-figure.png" not in after  # nothing of the earlier report survives beside the new one
    assert set(after) == {"report.md", *re.findall(r"!\[[^]]*\]\(([^)]+)\)", after["report.md"].decode())}
    assert leftovers(old_report) == []


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
@pytest.mark.parametrize("previous", [True, False], ids=["previous report", "no report yet"])
def test_an_error_while_writing_leaves_the_previous_report_whole(one_run, tmp_path, monkeypatch, error, previous):
    out = tmp_path / "out"
    if previous:
        out.mkdir()
        (out / "report.md").write_text("# the previous report\n")
    before = listing(out) if previous else None

    def fail(epochs, dataset, out_dir, *args):  # a figure is half written into the temporary folder
        assert out_dir.parent == tmp_path and out_dir.name.startswith(".out.tmp-")
        (out_dir / "half.png").write_bytes(b"\x89PNG")
        raise error

    monkeypatch.setattr(plots, "draw_all", fail)
    with pytest.raises(type(error)):
        build_report([one_run], out)
    assert (listing(out) == before) if previous else not out.exists()
    assert leftovers(out) == []


@pytest.mark.parametrize("make", [
    lambda out: (out / "notes.txt").write_text("mine"),
    lambda out: (out / "figures").mkdir(),
    lambda out: (out / "report.md").mkdir(),
], ids=["a text file", "a subfolder", "a folder named report.md"])  # fmt: skip
def test_a_folder_that_is_not_a_report_is_refused_and_kept(one_run, tmp_path, make):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "figure.png").write_bytes(b"\x89PNG")
    make(out)
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(ReportError, match="not a report's"):
        build_report([one_run], out)
    assert sorted(p.name for p in out.rglob("*")) == before and leftovers(out) == []


def test_the_refusal_is_one_line_and_exit_2(one_run, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = subprocess.run([sys.executable, "-m", "report", str(one_run), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("report: error: ") and "choose another --out" in proc.stderr
    assert listing(out) == {"notes.txt": b"mine"}


def test_a_file_as_out_is_refused(one_run, tmp_path):
    out = tmp_path / "notes.md"
    out.write_text("mine")
    assert main([str(one_run), "--out", str(out)]) == 2
    assert out.read_text() == "mine"


def many_datasets(tmp_path: Path) -> Path:
    """Three datasets: twelve figures, a few seconds of drawing."""
    for dataset in ["mnist-mini", "fashion-mnist", "kmnist"]:
        run = f"run-{dataset}"
        write_run(tmp_path / "res" / run, rows("snn", SNN, 2.0, dataset=dataset, run_id=run)
                  + rows("ffn", FFN, 0.01, dataset=dataset, run_id=run))  # fmt: skip
    return tmp_path / "res"


# python -m report in a process of its own that, once its first figure is drawn into the temporary folder, makes the
# file READY and waits there for the signal: the signal always comes while drawing, however fast the machine.
PARKED_REPORT = """
import sys, time
from pathlib import Path
from report import plots
from report.__main__ import main

real, ready = plots.draw_all, Path(sys.argv.pop(1))

def parked(*args, **kwargs):
    real(*args, **kwargs)
    ready.touch()
    while True:
        time.sleep(0.01)  # until the signal raises here

plots.draw_all = parked
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_real_signal_while_drawing_leaves_the_previous_report(tmp_path, old_report, signum, status):
    before, ready = listing(old_report), tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", PARKED_REPORT, str(ready), str(many_datasets(tmp_path)), "--out",
                             str(old_report)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.01)
    assert any(tmp_path.glob(".out.tmp-*/*.png"))  # drawing has begun
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert err == f"report: interrupted; the previous report in {old_report} is unchanged\n" and out == ""
    assert listing(old_report) == before and leftovers(old_report) == []


def test_a_build_killed_between_the_renames_is_put_back(one_run, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    out = tmp_path / "out"
    aside, half = tmp_path / f".out.old-{pid}", tmp_path / f".out.tmp-{pid}"  # what _swap leaves when killed
    aside.mkdir()
    (aside / "report.md").write_text("# the previous report\n")
    half.mkdir()
    (half / "report.md").write_text("# half a report\n")
    with pytest.raises(ReportError, match="does not exist"):  # even a build that fails puts the old one back first
        build_report([tmp_path / "missing"], out)
    assert (out / "report.md").read_text() == "# the previous report\n" and leftovers(out) == []


def test_the_temporary_folder_is_beside_out_and_a_running_build_is_left_alone(one_run, tmp_path):
    out = tmp_path / "out"
    other = tmp_path / f".out.tmp-{os.getppid()}"  # another build, still running (our parent is alive)
    other.mkdir()
    with folder.interruptible() as signals, folder.replacing(out, signals) as tmp:
        assert tmp.parent == tmp_path and tmp.name == f".out.tmp-{os.getpid()}"
        (tmp / "report.md").write_text("new")
    assert listing(out) == {"report.md": b"new"} and other.is_dir()


# --- identical trainings count once ---


def test_the_same_deterministic_training_in_two_runs_counts_once(tmp_path):
    """Two seeds of each model run twice (only the timings differ): 2 trainings each, not 4."""
    write_run(tmp_path / "res" / "a", rows("snn", SNN[:2], 2.0) + rows("ffn", FFN[:2], 0.01))
    write_run(tmp_path / "res" / "b", rows("snn", SNN[:2], 2.5, run_id="run-b") + rows("ffn", FFN[:2], 0.02, run_id="run-b"))
    results = load([tmp_path / "res"])
    assert set(results.epochs["run_id"]) == {"run-a"} and len(results.duplicates) == 12
    summary = stats.summary(results.epochs).set_index("model")
    assert summary["seeds"].tolist() == [2, 2] and summary.loc["snn", "seconds_per_epoch"] == pytest.approx(2.0)
    (h2h,) = stats.head_to_head(results.epochs).to_dict("records")
    assert (h2h["seeds_snn"], h2h["seeds_ffn"]) == (2, 2) and np.isnan(h2h["p_value"])  # 4 / 4 gave p = 0.0064
    assert stats.time_to_accuracy(results.epochs, 0.85)["seeds"].tolist() == [2, 2]
    text = build_report([tmp_path / "res"], tmp_path / "out").read_text()
    assert "| 2 / 2 " in text and "4 / 4" not in text and "p = " not in text
    assert "**Note:** 4 duplicate trainings dropped" in text and "4 of run `run-b` (identical to run `run-a`)" in text
    assert "was trained in 2 runs" not in text and "Runs without any result row" not in text


def test_a_copied_run_folder_counts_once_with_its_window_and_activity(tmp_path):
    npz = {"snn-seed0.npz": spiking.activity_arrays(seed=0)}
    epoch_rows = spiking.epoch_rows("snn", spiking.SNN_FINAL, 10.0, 2.5, 0.5)
    epoch_rows += spiking.epoch_rows("ffn", spiking.FFN_FINAL, 0.1, 0.03, 0.01)
    run = spiking.write_run(tmp_path / "res" / "run-a", epoch_rows, windows=spiking.window_rows("snn", [0.85, 0.87]), npz=npz)
    shutil.copytree(run, tmp_path / "res" / "copy")
    once, twice = load([run]), load([tmp_path / "res"])
    assert len(twice.runs) == 2 and len(twice.epochs) == len(once.epochs) and len(twice.activity) == 1
    assert activity.activity(twice.epochs)["seeds"].tolist() == [2, 2]
    assert window.summary(twice.windows)["seeds"].tolist() == [2]
    assert stats.summary(twice.epochs)["train_seconds"].tolist() == pytest.approx([40.0, 0.4])  # not doubled
    text = build_report([tmp_path / "res"], tmp_path / "out").read_text()
    assert "4 duplicate trainings dropped" in text and "4 of run `run-a` (a second copy of that run)" in text
    runs_table = text.split("### Where the numbers come from")[1].split("Commands:")[0]
    assert runs_table.count("| run-a ") == 1  # the copy is the same run


def test_the_same_seed_with_different_numbers_still_counts_twice(tmp_path):
    write_run(tmp_path / "res" / "a", rows("snn", SNN[:2], 2.0))
    # seed 0 again with another final accuracy (another device's arithmetic); seed 1 again, identical
    write_run(tmp_path / "res" / "b", rows("snn", [0.80, SNN[1]], 2.0, run_id="run-b"))
    results = load([tmp_path / "res"])
    assert stats.summary(results.epochs)["seeds"].tolist() == [3]
    text = build_report([tmp_path / "res"], tmp_path / "out").read_text()
    assert "seed 0 of snn on cpu was trained in 2 runs; each counts as one seed" in text
    assert "seed 1 of snn" not in text and "1 duplicate training dropped" in text


# --- schedules are never pooled ---


def test_different_schedules_get_their_own_sections_and_statistics(tmp_path):
    long = {"epochs": 3, "lrs": [0.05], "momentum": 0.5, "batch_size": 100, "max_batches": None}
    write_run(tmp_path / "res" / "a", rows("snn", SNN, 2.0) + rows("ffn", FFN, 0.01))
    write_run(tmp_path / "res" / "b", rows("snn", [0.5, 0.6, 0.7], 2.0, run_id="run-b"), schedule=long)
    epochs = load([tmp_path / "res"]).epochs
    assert epochs.groupby("run_id")["schedule"].first().to_dict() == {
        "run-a": "3 epochs, lr 0.1, momentum 0.5, batch 100, all batches",
        "run-b": "3 epochs, lr 0.05, momentum 0.5, batch 100, all batches",
    }
    summary = stats.summary(epochs)
    assert summary[summary["model"] == "snn"]["seeds"].tolist() == [5, 3]  # two rows, not one of 8 seeds
    assert stats.head_to_head(epochs)["seeds_snn"].tolist() == [5]  # run-b's snn meets no ffn of its schedule
    assert len(stats.time_to_accuracy(epochs, 0.85)) == 3 and len(stats.devices(epochs)) == 3
    text = build_report([tmp_path / "res"], tmp_path / "out").read_text()
    headings = re.findall(r"^## .*", text, flags=re.M)
    assert headings == [f"## Dataset `mnist-mini`, schedule {i} of 2: 3 epochs, lr {lr}, momentum 0.5, batch 100, all batches"
                        for i, lr in [(1, 0.1), (2, 0.05)]]  # fmt: skip
    first, second = text.split("\n## ")[1:]
    assert "run-b" not in first and "run-a" not in second and "pooled below" not in text
    assert first.count("reported in its own section") == second.count("reported in its own section") == 1
    assert "No comparison" in second and re.search(r"\| cpu +\| snn +\| +3 \|", second)
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert len(images) == len(set(images)) == 8 and all((tmp_path / "out" / i).is_file() for i in images)
    assert "mnist-mini-schedule-2-accuracy-by-epoch.png" in images


def test_schedule_labels_name_every_value_and_read_old_run_json():
    new = {"epochs": 3, "lrs": [0.1, 0.05, 0.01], "momentum": 0.5, "batch_size": 1000, "max_batches": None,
           "optimizer": "sgd", "fresh_optimizer": True}  # fmt: skip
    old = {**new, "optimizer": "SGD, fresh each epoch"}
    del old["fresh_optimizer"]
    assert (
        pooling.schedule_label(new)
        == pooling.schedule_label(old)
        == ("3 epochs, lr 0.1 0.05 0.01, momentum 0.5, batch 1000, all batches, sgd, fresh optimizer each epoch")
    )
    changed = [{**new, key: value} for key, value in [("momentum", 0.9), ("max_batches", 2), ("fresh_optimizer", False),
                                                      ("batch_size", 100), ("precision", "bf16")]]  # fmt: skip
    labels = {pooling.schedule_label(s) for s in [new, *changed]}
    assert len(labels) == 6 and pooling.schedule_label(None) == pooling.schedule_label({}) == pooling.UNKNOWN


def with_optimizer(run: Path, optimizer: str | None) -> Path:
    """``run``'s epochs.csv as bench writes it since --optimizer: a column naming it in every row (None: no column)."""
    rows = pd.read_csv(run / "epochs.csv")
    if optimizer is not None:
        rows.insert(len(schema.BASE_COLUMNS), "optimizer", optimizer)
    rows.to_csv(run / "epochs.csv", index=False)
    return run


def test_an_sgd_and_an_adam_run_of_one_model_are_never_pooled(tmp_path):
    sgd = {"epochs": 3, "lrs": [0.1], "optimizer": "sgd", "momentum": 0.5, "batch_size": 100, "max_batches": None,
           "validation": 0, "fresh_optimizer": True}  # fmt: skip
    adam = {**sgd, "lrs": [0.1], "optimizer": "adam", "momentum": None, "fresh_optimizer": False}  # the same lr
    with_optimizer(write_run(tmp_path / "res" / "a", rows("snn", SNN, 2.0), schedule=sgd), "sgd")
    with_optimizer(write_run(tmp_path / "res" / "b", rows("snn", [0.5, 0.6, 0.7], 2.0, run_id="run-b"), schedule=adam),
                   "adam")  # fmt: skip
    epochs = load([tmp_path / "res"]).epochs
    assert epochs.groupby("run_id")["schedule"].first().to_dict() == {
        "run-a": "3 epochs, lr 0.1, momentum 0.5, batch 100, all batches, sgd, fresh optimizer each epoch",
        "run-b": "3 epochs, lr 0.1, batch 100, all batches, adam, optimizer kept across epochs",  # no momentum
    }
    assert stats.summary(epochs)["seeds"].tolist() == [5, 3]  # two rows, not one of 8 seeds
    text = build_report([tmp_path / "res"], tmp_path / "out").read_text()
    headings = re.findall(r"^## .*", text, flags=re.M)
    assert len(headings) == 2 and "sgd" in headings[0] and "adam" in headings[1]
    first, second = text.split("\n## ")[1:]  # each section's provenance: its run, its optimizer
    assert re.search(r"\| run-a .*\| sgd, momentum 0\.5, fresh each epoch +\|", first) and "run-b" not in first
    assert re.search(r"\| run-b .*\| adam, kept across epochs +\|", second) and "run-a" not in second


def test_without_run_json_the_rows_optimizer_keeps_them_apart_and_old_rows_are_sgd(tmp_path):
    for name, run_id, optimizer in [("old", "run-a", None), ("new", "run-b", "sgd"), ("adam", "run-c", "adam")]:
        run = write_run(tmp_path / "res" / name, rows("snn", SNN[:2], 1.0, run_id=run_id))
        (with_optimizer(run, optimizer) / "run.json").unlink()
    results = load([tmp_path / "res"])  # read in path order: adam, new, old
    assert results.epochs.groupby("run_id")["schedule"].first().to_dict() == {
        "run-b": pooling.UNKNOWN,
        "run-c": f"{pooling.UNKNOWN}, adam",
    }
    # the old rows (no optimizer column) read as sgd: the same trainings as run-b's, counted once; run-c's never with them
    assert set(results.duplicates["run_id"]) == {"run-a"} and set(results.duplicates["same_as"]) == {"run-b"}
    assert stats.summary(results.epochs)["seeds"].tolist() == [2, 2]
    assert set(results.epochs["optimizer"]) == {"sgd", "adam"}


def test_csvs_without_run_json_are_one_group(tmp_path):
    for name, run_id in [("a", "run-a"), ("b", "run-b")]:
        run = write_run(tmp_path / "res" / name, rows("snn", [0.9, 0.8] if name == "a" else [0.7], 1.0, run_id=run_id))
        (run / "run.json").unlink()
    epochs = load([tmp_path / "res"]).epochs
    assert set(epochs["schedule"]) == {pooling.UNKNOWN} and stats.summary(epochs)["seeds"].tolist() == [3]
    assert "schedule 1 of" not in build_report([tmp_path / "res"], tmp_path / "out").read_text()


# --- the shipped reference runs stay out ---


@pytest.fixture
def results_folder(tmp_path, monkeypatch):
    """A working copy's results/: one run of the user's, and a shipped reference run of another model."""
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path / "results" / "mine", rows("snn", SNN, 2.0) + rows("ffn", FFN, 0.01))
    write_run(tmp_path / "results" / "reference" / "ref", rows("reference-snn", SNN, 2.0, run_id="run-ref"))
    return tmp_path / "results"


def test_no_path_leaves_the_reference_runs_out(results_folder, capsys):
    assert main([]) == 0
    text = (results_folder / "report" / "report.md").read_text()
    assert "run-a" in text and "run-ref" not in text and "reference-snn" not in text
    assert "left out results/reference (the shipped reference runs)" in capsys.readouterr().err
    assert set(load(["results"]).epochs["run_id"]) == set(load(["."]).epochs["run_id"]) == {"run-a"}


def test_the_reference_runs_are_read_when_named(results_folder):
    assert set(load(["results/reference"]).epochs["run_id"]) == {"run-ref"}
    assert set(load([results_folder / "reference" / "ref"]).epochs["run_id"]) == {"run-ref"}
    assert set(load(["results", "results/reference"]).epochs["run_id"]) == {"run-a", "run-ref"}


def test_only_reference_runs_is_an_error_that_says_how_to_read_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path / "results" / "reference" / "ref", rows("snn", SNN, 2.0, run_id="run-ref"))
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "read only when named (python -m report results/reference)" in err


def test_help_says_the_reference_runs_are_left_out():
    text = " ".join(build_parser().format_help().split())
    assert "except in results/reference (the shipped reference runs) unless a PATH names it" in text
    page = (ROOT / "docs" / "report.md").read_text().split("## Options")[1].split("\n## ")[0]
    assert "results/reference" in page  # documented beside the options
