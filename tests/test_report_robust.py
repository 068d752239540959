"""The report with degenerate data (issue 23): an SNN that never fired, trainings that all diverged, NaN metrics, a
single seed, partial epochs, an --out that cannot be written. Every case gives a report, or a one-line error with
exit status 2, that says what could not be computed and why; never a traceback. Hand-made run folders (as in
test_report.py and test_report_spiking.py), and two short bench.run runs."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import test_report_spiking as spiking
from test_report import FFN, SNN, rows, write_run

from bench import schema
from report import neurons, plots, window
from report.__main__ import build_report, main
from report.load import load

ROOT = Path(__file__).resolve().parent.parent
NAN = float("nan")


def silent(windows: list[dict], seeds=None) -> list[dict]:
    """``windows`` as a layer that never fired writes them: no pairs at any dt, relative NaN (for ``seeds``: all)."""
    return [dict(r, relative=NAN, pairs=0) if seeds is None or r["seed"] in seeds else r for r in windows]


def spiking_run(folder: Path, windows=(), npz=None, snn=None, ffn=None) -> Path:
    snn_rows = spiking.epoch_rows("snn", spiking.SNN_FINAL, 1.0, 1.0, 0.1) if snn is None else snn
    ffn_rows = spiking.epoch_rows("ffn", spiking.FFN_FINAL, 0.1, 0.1, 0.01) if ffn is None else ffn
    return spiking.write_run(folder, snn_rows + ffn_rows, windows=windows, npz=npz)


def no_traceback(text: str) -> bool:
    return "Traceback" not in text


# --- the gradient window of an SNN that never fired ---


def test_a_window_of_a_model_that_never_fired_is_stated_not_a_crash(tmp_path, capsys):
    run = spiking_run(tmp_path / "r", windows=silent(spiking.window_rows("snn", [0.9, 0.9])))
    assert main([str(run), "--out", str(tmp_path / "out")]) == 0
    assert no_traceback(capsys.readouterr().err)
    text = (tmp_path / "out" / "report.md").read_text()
    assert "### STDP-like gradient window" in text
    assert ("The gradient window of snn on cpu could not be computed: it never fired (0 spike pairs) in any of its "
            "2 trainings (seeds 0, 1).") in text  # fmt: skip
    assert not (tmp_path / "out" / "mnist-mini-gradient-window.png").exists()  # nothing to draw, and nothing drawn
    assert "fitted decay per step" not in text  # no table of nothing
    assert window.summary(load([run]).windows).empty  # results/README.md's block: no row, no crash


def test_a_training_that_never_fired_is_left_out_of_the_window_and_named(tmp_path):
    run = spiking_run(tmp_path / "r", windows=silent(spiking.window_rows("snn", [0.85, 0.85]), seeds={1}))
    text = build_report([run], tmp_path / "out").read_text()
    assert spiking.row(text, "cpu", "snn", "all spikes")[5:7] == ["1", "0.850 (one seed)"]
    assert "Left out of the window: seed 1 of snn on cpu (run run-a): it never fired (0 spike pairs)." in text
    assert (tmp_path / "out" / "mnist-mini-gradient-window.png").exists()


def test_spikes_without_any_gradient_are_named_with_their_reason(tmp_path):
    run = spiking_run(tmp_path / "r", windows=[dict(r, relative=NAN) for r in spiking.window_rows("snn", [0.9])])
    text = build_report([run], tmp_path / "out").read_text()
    assert ("The gradient window of snn on cpu could not be computed: no gradient reached its spikes (the gradient at "
            "dt = 0 is 0, so nothing is relative to it) in its 1 training (seed 0).") in text  # fmt: skip


@pytest.mark.slow
def test_the_reproducer_run_of_issue_23_reports(tmp_path):
    """bench.run's own files of an SNN whose threshold it never reaches: window.csv all NaN, 0 pairs; a report."""
    out = tmp_path / "res"
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--models", "snn:threshold=100,time_steps=4", "ffn",
                           "--device", "cpu", "--max-batches", "1", "--epochs", "1", "--out", str(out)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert no_traceback(proc.stderr + proc.stdout)
    (run_dir,) = out.iterdir()
    text = (run_dir / "report" / "report.md").read_text()
    assert "could not be computed: it never fired (0 spike pairs)" in text
    assert "its layer 1 never fired on this digit" in text
    # a later report over a folder holding that run reads it too
    assert main([str(out), "--out", str(tmp_path / "again")]) == 0


# --- trainings that all failed or diverged: nothing to compare, and a report that says why ---


def header_only_run(folder: Path, trainings: list[dict], status="partial") -> Path:
    """A run folder as bench.run leaves it when no training finished an epoch: epochs.csv has its header only."""
    folder.mkdir(parents=True)
    with open(folder / "epochs.csv", "w", newline="") as f:
        csv.writer(f).writerow(schema.COLUMNS)
    (folder / "run.json").write_text(json.dumps({
        "run_id": folder.name, "command": "python -m bench.run --lr 1e30", "status": status, "dataset": "mnist-mini",
        "started": "2026-01-01T10:00:00+0000", "finished": "2026-01-01T10:01:00+0000", "devices": ["cpu"], "seeds": [0],
        "schedule": {"epochs": 2, "lrs": [1e30], "batch_size": 100, "max_batches": None},
        "models": {t["model"]: {"name": t["model"], "config": {}} for t in trainings}, "trainings": trainings,
    }))  # fmt: skip
    return folder


DIVERGED = [
    {"model": "snn", "device": "cpu", "seed": 0, "lr_scale": 1.0, "status": "diverged", "epochs_done": 0,
     "detail": "train loss nan in epoch 1 (lr 1e+30)"},
    {"model": "ffn", "device": "cpu", "seed": 0, "lr_scale": 1.0, "status": "failed", "epochs_done": 0,
     "detail": "RuntimeError: boom"},
]  # fmt: skip


def test_a_run_whose_trainings_all_diverged_gets_a_report_that_says_why(tmp_path, capsys):
    run = header_only_run(tmp_path / "run-x", DIVERGED)
    (run / "errors.log").write_text("--- ffn cpu seed 0\nTraceback ...\n")
    assert main([str(run)]) == 0
    assert no_traceback(capsys.readouterr().err)
    text = (run / "report" / "report.md").read_text()
    assert ("No training finished an epoch, so there is nothing to compare: no accuracy tables, no comparison, no "
            "time to accuracy and no figures.") in text  # fmt: skip
    assert spiking.row(text, "run-x", "snn", "cpu", "0") == ["run-x", "snn", "cpu", "0", "diverged", "0 of 2",
                                                            "train loss nan in epoch 1 (lr 1e+30)"]  # fmt: skip
    assert spiking.row(text, "run-x", "ffn", "cpu", "0")[4:] == ["failed", "0 of 2", "RuntimeError: boom"]
    assert "errors.log" in text and "python -m bench.run --lr 1e30" in text
    assert sorted(p.name for p in (run / "report").iterdir()) == ["report.md"]


def test_without_run_json_and_rows_it_is_still_a_one_line_error(tmp_path, capsys):
    run = header_only_run(tmp_path / "run-x", DIVERGED)
    (run / "run.json").unlink()
    assert main([str(run)]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"report: error: no result rows in {run}\n") and not (run / "report").exists()


def test_a_run_without_rows_beside_one_with_rows_says_why_it_has_none(tmp_path):
    header_only_run(tmp_path / "res" / "run-x", DIVERGED[:1])
    write_run(tmp_path / "res" / "run-a", rows("snn", SNN, 2.0) + rows("ffn", FFN, 0.1))
    text = build_report([tmp_path / "res"], tmp_path / "out").read_text()
    assert ("Runs without any result row (not used): `run-x` (partial; snn on cpu, seed 0: diverged, train loss nan in "
            "epoch 1 (lr 1e+30))") in text  # fmt: skip


def test_the_incomplete_trainings_say_why_they_stopped(tmp_path):
    epoch_rows = [r for r in rows("snn", SNN[:3], 1.0) + rows("ffn", FFN[:3], 1.0)
                  if not (r["model"] == "ffn" and r["seed"] == 2)]  # fmt: skip
    trainings = [{"model": m, "device": "cpu", "seed": s, "lr_scale": 1.0, "status": "complete", "epochs_done": 3}
                 for m in ("snn", "ffn") for s in range(3)]  # fmt: skip
    trainings[-1].update(status="diverged", epochs_done=0, detail="train loss nan in epoch 1 (lr 0.1)")
    run = write_run(tmp_path / "r", epoch_rows, status="partial", seeds=[0, 1, 2], trainings=trainings)
    text = build_report([run], tmp_path / "out").read_text()
    assert spiking.row(text, "run-a", "mnist-mini", "cpu", "ffn", "2") == ["run-a", "mnist-mini", "cpu", "ffn", "2", "0", "3",
                                                                      "diverged: train loss nan in epoch 1 (lr 0.1)"]  # fmt: skip


@pytest.mark.slow
def test_bench_run_whose_every_training_diverged_writes_a_report_and_no_traceback(tmp_path):
    out = tmp_path / "res"
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--models", "ffn", "--device", "cpu", "--max-batches", "3",
                           "--epochs", "1", "--lr", "1e30", "--out", str(out)], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # a training diverged
    assert no_traceback(proc.stderr + proc.stdout), proc.stderr
    (run_dir,) = out.iterdir()
    assert f"report: {run_dir / 'report' / 'report.md'}" in proc.stdout
    text = (run_dir / "report" / "report.md").read_text()
    assert "No training finished an epoch" in text and "| diverged " in text and "train loss nan in epoch 1" in text


def test_bench_run_says_in_one_line_when_its_report_cannot_be_written(tmp_path, monkeypatch, capsys):
    """Whatever goes wrong in the report, the run is recorded whole, and bench.run says so in one line."""
    import report.__main__ as entry
    from bench import run as bench_run

    def broken(*args, **kwargs):
        raise ValueError("No objects to concatenate")

    monkeypatch.setattr(entry, "build_report", broken)
    status = bench_run.main(["--models", "ffn", "--device", "cpu", "--max-batches", "1", "--epochs", "1",
                             "--out", str(tmp_path / "res")])  # fmt: skip
    err = capsys.readouterr().err
    (run_dir,) = (tmp_path / "res").iterdir()
    assert status == 1 and no_traceback(err)
    assert (f"bench.run: error: the report could not be written (ValueError: No objects to concatenate); the run is "
            f"complete and its files are whole. Write the report with:\n  python -m report {run_dir}\n") in err  # fmt: skip
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"


# --- other sections with degenerate data ---


def test_zero_evaluation_time_gives_no_share_of_it_and_no_crash(tmp_path):
    run = spiking_run(tmp_path / "r", snn=spiking.epoch_rows("snn", spiking.SNN_FINAL, 1.0, 0.0, 0.0),
                      ffn=spiking.epoch_rows("ffn", spiking.FFN_FINAL, 0.1, 0.0, 0.0))  # fmt: skip
    text = build_report([run], tmp_path / "out").read_text()
    assert "### Activity and cost" in text
    assert "the evaluation time recorded is 0 s, so no share of it can be given" in text


def test_a_baseline_without_operation_counts_gives_no_ratio_and_says_why(tmp_path):
    ops = ["dense_ops", "effective_macs", "effective_acs"]
    ffn = [{k: (NAN if k in ops else v) for k, v in r.items()} for r in spiking.epoch_rows("ffn", spiking.FFN_FINAL, 0.1, 0.1, 0)]
    text = build_report([spiking_run(tmp_path / "r", ffn=ffn)], tmp_path / "out").read_text()
    assert "- snn on cpu: no ratio of operations to ffn: ffn recorded no operation counts." in text


def test_a_model_that_never_fired_on_the_digit_is_said_so_and_nan_logits_predict_nothing(tmp_path):
    quiet = spiking.activity_arrays()
    for key in ("layer1_o", "layer2_o"):
        quiet[key] = np.zeros_like(quiet[key])
    quiet["logits"] = np.full_like(quiet["logits"], np.nan)
    quiet["layer1_v"][0, 0] = np.inf
    run = spiking_run(tmp_path / "r", npz={"a.npz": quiet})
    text = build_report([run], tmp_path / "out").read_text()
    assert "true label 2, no prediction (its logits are not finite)" in text and "predicted 0" not in text
    assert "its layer 1 never fired on this digit" in text
    assert "its layer 1 inner state holds 1 value that is not finite (left blank in the heatmap)" in text
    assert spiking.png_ok(tmp_path / "out" / "mnist-mini-neurons-snn.png")


def test_zero_seconds_per_epoch_draw_no_log_axis(tmp_path):
    run = write_run(tmp_path / "r", [dict(r, train_seconds=0.0) for r in rows("snn", [0.9], 1.0)] + rows("ffn", [0.8], 0.05))
    epochs = load([run]).epochs
    (ax,) = plots.seconds_per_epoch(epochs, "mnist-mini").axes
    assert ax.get_yscale() == "linear"
    text = build_report([run], tmp_path / "out").read_text()
    assert "| inf" not in text


def test_one_seed_everywhere_reports_with_no_interval(tmp_path):
    windows = spiking.window_rows("snn", [0.9])
    run = spiking_run(tmp_path / "r", windows=windows, npz={"a.npz": spiking.activity_arrays()},
                      snn=spiking.epoch_rows("snn", spiking.SNN_FINAL[:1], 1.0, 1.0, 0.1),
                      ffn=spiking.epoch_rows("ffn", spiking.FFN_FINAL[:1], 0.1, 0.1, 0.01))  # fmt: skip
    text = build_report([run], tmp_path / "out").read_text()
    assert "(one seed)" in text and "no conclusion can be drawn" in text and "### Neuron activity" in text


# --- an --out that cannot be written: one line, exit status 2, nothing written ---


@pytest.fixture
def run_folder(tmp_path):
    return write_run(tmp_path / "res" / "run-a", rows("snn", SNN, 2.0) + rows("ffn", FFN, 0.1))


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_run_folder_is_one_line_and_exit_2(run_folder):
    before = listing(run_folder.parent)
    run_folder.chmod(0o555)
    try:
        proc = subprocess.run([sys.executable, "-m", "report", str(run_folder)], capture_output=True, text=True)
    finally:
        run_folder.chmod(0o755)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and no_traceback(proc.stderr)
    assert proc.stderr.startswith(f"report: error: cannot write the report to {run_folder.resolve() / 'report'}: ")
    assert listing(run_folder.parent) == before


def test_a_run_folder_that_cannot_be_written_is_one_line_and_exit_2(run_folder, monkeypatch, capsys):
    """As a read-only folder looks to anyone but root: os.access says no (root is allowed everything)."""
    before = listing(run_folder.parent)
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == run_folder.resolve() else real(path, mode))
    assert main([str(run_folder)]) == 2
    assert capsys.readouterr().err == (f"report: error: cannot write the report to {run_folder.resolve() / 'report'}: "
                                       f"{run_folder.resolve()} is not writable\n")  # fmt: skip
    assert listing(run_folder.parent) == before


def test_a_file_where_a_folder_is_expected_is_one_line_and_exit_2(run_folder, tmp_path):
    (tmp_path / "notes").write_text("mine")
    proc = subprocess.run([sys.executable, "-m", "report", str(run_folder), "--out", str(tmp_path / "notes" / "report")],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and no_traceback(proc.stderr)
    assert proc.stderr == (f"report: error: cannot write the report to {tmp_path / 'notes' / 'report'}: "
                           f"{tmp_path / 'notes'} is not a folder\n")  # fmt: skip
    assert (tmp_path / "notes").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "res"]


# --- python -m report.readme --check says what it checked ---


def test_readme_check_prints_one_line_on_success(capsys):
    from report.readme import main as readme_main

    assert readme_main(["--check"]) == 0
    out = capsys.readouterr().out
    from report.readme import run_folders

    runs = len(run_folders(ROOT / "results" / "reference"))  # (a run in progress is not in the block)
    assert out == (f"{ROOT / 'results' / 'README.md'}: its generated block matches the {runs} runs in "
                   f"{ROOT / 'results' / 'reference'}\n")  # fmt: skip


# --- the neuron figure's legends cover no trace ---


def test_the_neuron_figure_legends_overlap_no_axes():
    fig = neurons.figure(spiking.activity_arrays(), threshold=1.0)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    assert legends, "the traces need a legend"
    texts = {t.get_text() for legend in legends for t in legend.get_texts()}
    assert {"inner state v", "output o", "threshold 1"} <= texts
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), f"a legend covers {ax.get_title()!r}"


# --- partial epochs: --max-batches ---


def capped_run(folder: Path, max_batches) -> Path:
    """rows() train 1,000 samples an epoch in batches of 100: --max-batches 10 reaches the cap, 20 does not."""
    run = write_run(folder, rows("snn", SNN, 2.0) + rows("ffn", FFN, 0.1))
    meta = json.loads((run / "run.json").read_text())
    meta["schedule"]["max_batches"] = max_batches
    (run / "run.json").write_text(json.dumps(meta))
    return run


def test_seconds_per_epoch_of_partial_epochs_say_so(tmp_path):
    run = capped_run(tmp_path / "r", 10)
    text = build_report([run], tmp_path / "out").read_text()
    header = "train s/epoch (partial epochs: --max-batches 10)"
    summary = text[text.index("### Summary") : text.index("### SNN against FFN")]
    devices = text[text.index("### Devices") : text.index("### Figures")]
    assert header in summary and header in devices
    assert ("**Note:** every epoch here stopped at --max-batches 10 (1,000 training samples): training seconds per "
            "epoch are of partial epochs") in text  # fmt: skip
    data = load([run])
    from report.runs import partial_epochs

    note = partial_epochs(data.epochs, data.runs)
    assert note == "partial epochs: --max-batches 10"
    (ax,) = plots.seconds_per_epoch(data.epochs, "mnist-mini", note).axes
    assert ax.get_title() == ("mnist-mini: training seconds per epoch (partial epochs: --max-batches 10)\n(mean over "
                              "seeds; whiskers: fastest to slowest seed)")  # fmt: skip


@pytest.mark.parametrize("max_batches", [None, 20], ids=["all batches", "a cap the data never reached"])
def test_full_epochs_say_nothing_of_partial_ones(tmp_path, max_batches):
    text = build_report([capped_run(tmp_path / "r", max_batches)], tmp_path / "out").read_text()
    assert "partial" not in text and "| train s/epoch |" in re.sub(r" +", " ", text)
