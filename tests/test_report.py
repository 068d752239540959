"""The report generator on CSVs with known numbers: statistics against independent formulas, files, bad input."""

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as st

from bench.schema import COLUMNS
from report import plots, stats
from report.__main__ import build_report, main
from report.load import load

SNN = [0.90, 0.92, 0.91, 0.93, 0.94]  # final test accuracy per seed
FFN = [0.88, 0.89, 0.87, 0.90, 0.88]


def rows(model, seeds_accuracies, seconds, dataset="mnist-mini", device="cpu", run_id="run-a", epochs=3):
    """Epoch rows whose test accuracy climbs to the given final value; ``seconds`` of training per epoch."""
    out = []
    for seed, final in enumerate(seeds_accuracies):
        for epoch in range(1, epochs + 1):
            acc = final - 0.1 * (epochs - epoch)  # e.g. 0.70, 0.80, 0.90
            out.append({
                "run_id": run_id, "dataset": dataset, "model": model, "device": device, "seed": seed, "epoch": epoch,
                "lr": 0.1, "train_loss": 2.0 / epoch, "train_accuracy": acc, "test_loss": 1.0 / epoch, "test_accuracy": acc,
                "train_seconds": seconds, "eval_seconds": 0.1, "train_samples_per_second": 1000 / seconds,
                "train_samples": 1000, "test_samples": 500,
            })  # fmt: skip
    return out


def write_run(folder: Path, epoch_rows, status="complete", epochs=3, **meta):
    folder.mkdir(parents=True)
    with open(folder / "epochs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(epoch_rows)
    first = epoch_rows[0]
    labels = list(dict.fromkeys(r["model"] for r in epoch_rows))
    run = {
        "run_id": first["run_id"], "command": f"python -m bench.run --out {folder.parent}", "status": status,
        "started": "2026-01-01T10:00:00+0000", "finished": "2026-01-01T10:05:00+0000", "dataset": first["dataset"],
        "devices": sorted({r["device"] for r in epoch_rows}), "seeds": sorted({r["seed"] for r in epoch_rows}),
        "schedule": {"epochs": epochs, "lrs": [0.1], "momentum": 0.5, "batch_size": 100, "max_batches": None},
        "models": {m: {"name": m.split(":")[0], "config": {}} for m in labels},
        "environment": {"python": "3.11", "torch": "2.9", "torch_threads": 4, "cpu_count": 8,
                        "devices": {"cpu": "Test CPU 9000", "cuda:0": "Test GPU X1"}},
        **meta,
    }  # fmt: skip
    (folder / "run.json").write_text(json.dumps(run))
    return folder


@pytest.fixture
def one_run(tmp_path):
    return write_run(tmp_path / "results" / "run-a", rows("snn", SNN, 2.0) + rows("ffn", FFN, 0.0125))


def t_interval_by_hand(values):
    x = np.asarray(values)
    half = st.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean() - half, x.mean() + half


def test_summary_means_and_intervals_match_the_t_formula(one_run):
    table = stats.summary(load([one_run]).epochs).set_index("model")
    for model, finals, seconds in [("snn", SNN, 2.0), ("ffn", FFN, 0.0125)]:
        r = table.loc[model]
        low, high = t_interval_by_hand(finals)
        assert r["seeds"] == 5 and r["final_accuracy"] == pytest.approx(np.mean(finals))
        assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high))
        assert r["best_accuracy"] == pytest.approx(max(finals))
        assert r["seconds_per_epoch"] == pytest.approx(seconds) and r["train_seconds"] == pytest.approx(5 * 3 * seconds)
        assert r["samples_per_second"] == pytest.approx(1000 / seconds)


def test_one_seed_has_no_interval(tmp_path):
    run = write_run(tmp_path / "r", rows("snn", [0.9], 1.0) + rows("ffn", [0.8], 1.0))
    table = stats.summary(load([run]).epochs)
    assert table["ci_low"].isna().all() and "(one seed)" in build_report([run], tmp_path / "out").read_text()


def test_head_to_head_matches_welch_by_hand(one_run):
    (r,) = stats.head_to_head(load([one_run]).epochs).to_dict("records")
    x, y = np.array(SNN), np.array(FFN)
    vx, vy = x.var(ddof=1) / 5, y.var(ddof=1) / 5
    df = (vx + vy) ** 2 / (vx**2 / 4 + vy**2 / 4)  # Welch-Satterthwaite
    diff, se = x.mean() - y.mean(), math.sqrt(vx + vy)
    half = st.t.ppf(0.975, df) * se
    p = 2 * st.t.sf(abs(diff / se), df)
    assert r["difference"] == pytest.approx(100 * diff)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((100 * (diff - half), 100 * (diff + half)))
    assert r["p_value"] == pytest.approx(p) and r["time_ratio"] == pytest.approx(160)
    expected = (f"snn is {100 * diff:.1f} points more accurate than ffn (95% CI {100 * (diff - half):.1f} to "
                f"{100 * (diff + half):.1f}, p = {p:.2g}, 5 seeds), at 160x the training time per epoch on cpu.")  # fmt: skip
    assert stats.sentence(r) == expected


def test_overlapping_accuracies_are_not_significant(tmp_path):
    run = write_run(tmp_path / "r", rows("snn", [0.90, 0.80, 0.85], 1.0) + rows("ffn", [0.86, 0.83, 0.84], 0.5))
    (r,) = stats.head_to_head(load([run]).epochs).to_dict("records")
    assert r["ci_low"] < 0 < r["ci_high"]
    text = stats.sentence(r)
    assert "is not significant" in text and "more accurate" not in text and "2x the training time" in text
    assert f"p = {r['p_value']:.2g}" in text


def test_fewer_than_three_seeds_draw_no_conclusion(tmp_path):
    run = write_run(tmp_path / "r", rows("snn", [0.95, 0.93], 3.0) + rows("ffn", [0.90, 0.91, 0.92], 1.0))
    (r,) = stats.head_to_head(load([run]).epochs).to_dict("records")
    assert math.isnan(r["p_value"]) and math.isnan(r["ci_low"])
    text = stats.sentence(r)
    assert text == ("snn averages 3.0 points higher test accuracy than ffn (2 and 3 seeds), but with fewer than 3 seeds "
                    "per model no conclusion can be drawn; snn takes 3x the training time per epoch on cpu.")  # fmt: skip
    assert "p =" not in build_report([run], tmp_path / "out").read_text()


def test_one_seed_each_is_singular(tmp_path):
    run = write_run(tmp_path / "r", rows("snn", [0.95], 3.0) + rows("ffn", [0.90], 1.0))
    (r,) = stats.head_to_head(load([run]).epochs).to_dict("records")
    assert "than ffn (1 seed), but" in stats.sentence(r)


def test_every_snn_like_model_meets_every_ffn(tmp_path):
    epoch_rows = rows("snn", SNN, 1.0) + rows("snn:reset=proportional", SNN, 1.0) + rows("ffn", FFN, 1.0)
    pairs = stats.head_to_head(load([write_run(tmp_path / "r", epoch_rows)]).epochs)[["snn", "ffn"]]
    assert pairs.values.tolist() == [["snn", "ffn"], ["snn:reset=proportional", "ffn"]]


def test_the_recorded_kind_decides_the_baseline_not_the_label(tmp_path):
    models = {"snn": {"name": "snn", "kind": "spiking", "config": {}}, "mlp": {"name": "mlp", "kind": "baseline", "config": {}}}
    run = write_run(tmp_path / "r", rows("snn", SNN, 2.0) + rows("mlp", FFN, 0.0125), models=models)
    results = load([run])
    assert results.epochs.groupby("model")["kind"].first().to_dict() == {"mlp": "baseline", "snn": "spiking"}
    assert results.kind("mlp") == "baseline" and results.kind("snn", "run-a") == "spiking" and results.kind("x") is None
    (r,) = stats.head_to_head(results.epochs).to_dict("records")
    assert (r["snn"], r["ffn"], r["time_ratio"]) == ("snn", "mlp", pytest.approx(160))
    text = build_report([run], tmp_path / "out").read_text()
    assert "Baselines (FFN-like) are the models each run.json records as such" in text and "here: `mlp`." in text
    assert "snn is 3.6 points more accurate than mlp" in text and "does not start with `ffn`" not in text


def test_runs_without_recorded_kinds_pair_against_ffn_and_the_rest_is_snn_like(tmp_path):
    """run.json before 0.3: no kinds; the built-in ffn is the baseline, a model of unknown kind is SNN-like."""
    epoch_rows = rows("snn", SNN, 2.0) + rows("mlp", SNN, 1.0) + rows("ffn:hidden=200", FFN, 0.0125)
    results = load([write_run(tmp_path / "r", epoch_rows)])
    kinds = results.epochs.drop_duplicates("model").set_index("model")["kind"].fillna("unknown")
    assert kinds.to_dict() == {"snn": "spiking", "mlp": "unknown", "ffn:hidden=200": "baseline"}
    pairs = stats.head_to_head(results.epochs)[["snn", "ffn"]].values.tolist()
    assert pairs == [["snn", "ffn:hidden=200"], ["mlp", "ffn:hidden=200"]]
    text = build_report([tmp_path / "r"], tmp_path / "out").read_text()
    assert "here: `ffn:hidden=200`. Every other model is SNN-like" in text


def test_the_report_imports_no_torch_and_nothing_of_bench_but_its_schema_provenance_parser_and_signals():
    code = ("import report.__main__, report.readme, sys; assert 'torch' not in sys.modules, 'torch imported'; "
            "allowed = ('bench', 'bench.schema', 'bench.provenance', 'bench.cli', 'bench.interrupt'); "
            "extra = sorted(m for m in sys.modules if m.partition('.')[0] == 'bench' and m not in allowed); "
            "assert not extra, extra")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr


def test_time_to_accuracy_and_not_reached(one_run):
    # test accuracy per epoch is final - 0.2, final - 0.1, final: 0.85 is first reached at epoch 2 by seeds
    # whose final accuracy is >= 0.95 (none), else at epoch 3 for finals >= 0.85 (all): 3 epochs x 2 s
    table = stats.time_to_accuracy(load([one_run]).epochs, 0.85).set_index("model")
    assert table.loc["snn", "reached"] == 5 and table.loc["snn", "seconds"] == pytest.approx(6.0)
    assert table.loc["snn", "epoch"] == 3
    table = stats.time_to_accuracy(load([one_run]).epochs, 0.815).set_index("model")
    # epoch 2 accuracies: snn 0.80 0.82 0.81 0.83 0.84 -> seeds 1, 3, 4 reach 0.815 after 4 s; 0, 2 after 6 s
    assert table.loc["snn", "reached"] == 5 and table.loc["snn", "seconds"] == pytest.approx((3 * 4 + 2 * 6) / 5)
    table = stats.time_to_accuracy(load([one_run]).epochs, 0.895).set_index("model")  # ffn seed 3 only
    assert table.loc["ffn", "reached"] == 1 and table.loc["ffn", "seconds"] == pytest.approx(3 * 0.0125)
    text = build_report([one_run], one_run / "report", target=0.99).read_text()
    assert "### Time to 99% test accuracy" in text and text.count("not reached") == 2


def test_devices_speedup_over_cpu(tmp_path):
    run = write_run(tmp_path / "r", rows("snn", SNN, 8.0) + rows("snn", SNN, 0.5, device="cuda:0"))
    table = stats.devices(load([run]).epochs).set_index("device")
    assert table.loc["cuda:0", "speedup"] == pytest.approx(16) and table.loc["cuda:0", "hardware"] == "Test GPU X1"


def png_ok(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < path.stat().st_size < 1_000_000


def test_two_datasets_two_sections_and_every_image_is_a_png(tmp_path):
    write_run(tmp_path / "res" / "a", rows("snn", SNN, 2.0) + rows("ffn", FFN, 0.01))
    write_run(tmp_path / "res" / "b", rows("snn", [0.7, 0.75], 2.0, dataset="fashion-mnist", run_id="run-b")
              + rows("ffn", [0.72, 0.74], 0.02, dataset="fashion-mnist", run_id="run-b"))  # fmt: skip
    text = build_report([tmp_path / "res"], tmp_path / "out").read_text()
    sections = re.split(r"^## Dataset ", text, flags=re.M)[1:]
    assert [s.split("\n")[0] for s in sections] == ["`mnist-mini`", "`fashion-mnist`"]
    for section, run_id, finals in [(sections[0], "run-a", SNN), (sections[1], "run-b", [0.7, 0.75])]:
        other = "run-b" if run_id == "run-a" else "run-a"
        assert run_id in section and other not in section
        summary = section.split("### Summary")[1].split("###")[0]
        assert f" {100 * np.mean(finals):.2f} ± " in summary and summary.count("| cpu ") == 2
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert len(images) == 8 and len(set(images)) == 8
    for image in images:
        assert png_ok(tmp_path / "out" / image), image


def test_incomplete_runs_are_included_and_marked(tmp_path):
    epoch_rows = [r for r in rows("snn", SNN, 1.0) + rows("ffn", FFN, 1.0) if not (r["model"] == "ffn" and r["seed"] == 4)]
    epoch_rows = [r for r in epoch_rows if not (r["model"] == "ffn" and r["seed"] == 3 and r["epoch"] == 3)]
    run = write_run(tmp_path / "r", epoch_rows, status="interrupted", seeds=[0, 1, 2, 3, 4])
    text = build_report([run], tmp_path / "out").read_text()
    assert "| interrupted " in text and "Trainings that reached fewer epochs than the schedule asked for" in text
    assert "\\* includes trainings that reached fewer epochs than asked (stopped early or incomplete: see above)." in text
    assert re.search(r"\| cpu +\| ffn +\| +4 \| +0 \| +3 \|", text)  # seed 4: no epoch finished
    assert re.search(r"\| cpu +\| ffn +\| +3 \| +2 \| +3 \|", text)
    assert re.search(r"\| cpu +\| ffn +\| +4\* \| 2-3 +\|", text)
    # seed 3 of ffn counts with its accuracy after epoch 2
    table = stats.summary(load([run]).epochs).set_index("model")
    assert table.loc["ffn", "final_accuracy"] == pytest.approx(np.mean([0.88, 0.89, 0.87, 0.90 - 0.1]))


def test_truncated_last_line_is_skipped_with_a_warning(one_run, capsys):
    csv_path = one_run / "epochs.csv"
    csv_path.write_text(csv_path.read_text() + "run-a,mnist-mini,snn,cpu,9,1,0.1,2.3")
    epochs = load([one_run]).epochs
    assert 9 not in set(epochs["seed"]) and len(epochs) == 30
    assert "skipped 1 unparsable row(s)" in capsys.readouterr().err


def test_several_paths_need_out(tmp_path, capsys):
    assert main([str(tmp_path), str(tmp_path)]) == 2
    assert capsys.readouterr().err == "report: error: several PATHs need --out DIR\n"


def report_cli(*args):
    return subprocess.run([sys.executable, "-m", "report", *args], capture_output=True, text=True)


def missing_columns(folder: Path) -> list[str]:
    (folder / "run1").mkdir()
    (folder / "run1" / "epochs.csv").write_text("dataset,model,device,seed,epoch,train_loss,train_samples\nm,snn,cpu,0,1,2,10\n")
    return [str(folder)]


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda folder: [str(folder)], "no epochs.csv in"),
        (lambda folder: [str(folder / "nope")], "does not exist"),
        (missing_columns, "lacks the column(s) test_accuracy, train_seconds"),
        (lambda folder: [str(folder), "--target", "85"], "expected a fraction in (0, 1]"),
    ],
    ids=["empty folder", "no such folder", "missing columns", "bad target"],
)
def test_bad_input_is_one_line_exit_2(tmp_path, make_args, message):
    folder = tmp_path / "res"
    folder.mkdir()
    proc = report_cli(*make_args(folder))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("report: error: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (folder / "report").exists()


@pytest.mark.slow
def test_bench_run_builds_its_report(tmp_path):
    out = tmp_path / "res"
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--models", "snn:time_steps=4", "ffn", "--device", "cpu",
                           "--max-batches", "2", "--batch-size", "100", "--seeds", "0", "1", "--out", str(out)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = out.iterdir()
    report = run_dir / "report" / "report.md"
    assert f"report: {report}" in proc.stdout
    text = report.read_text()
    assert "snn:time_steps=4" in text and "no conclusion can be drawn" in text
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    # the four figures of every report, and the SNN's neuron activity and gradient window that bench.run recorded
    names = ["accuracy-by-epoch", "accuracy-by-time", "seconds-per-epoch", "loss-by-epoch", "neurons-snn-time_steps-4",
             "gradient-window"]  # fmt: skip
    assert sorted(images) == sorted(f"mnist-mini-{name}.png" for name in names)
    assert all(png_ok(report.parent / image) for image in images)


def test_seconds_bars_are_the_table_means_on_a_log_axis(tmp_path):
    # seeds at 1 s and 9 s per epoch: arithmetic mean 5, geometric mean 3; 100x apart from ffn -> log axis
    # (their accuracies differ: two trainings, not one found twice, which would count once)
    run = write_run(tmp_path / "r", rows("snn", [0.9], 1.0) + rows("snn", [0.91], 9.0, run_id="run-b") + rows("ffn", [0.8], 0.05))
    epochs = load([run]).epochs.assign(test_accuracy_pct=lambda d: 100 * d["test_accuracy"])
    fig = plots.seconds_per_epoch(epochs, "mnist-mini")
    (ax,) = fig.axes
    heights = [bar.get_height() for bar in ax.patches if bar.get_height() > 0]
    assert ax.get_yscale() == "log" and heights == pytest.approx([5.0, 0.05])
