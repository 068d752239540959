"""The report's spiking parts (issue 7) on hand-made files: activity and cost, neuron pictures, the gradient window and
the time-step sweep. The numbers are chosen so every expected value can be worked out by hand; nothing is trained."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench import schema
from report import activity, neurons, sweep, window
from report.__main__ import build_report, main
from report.load import load

HEADER = schema.COLUMNS  # a run of two-layer models
COLUMNS = schema.BASE_COLUMNS  # what bench.run wrote before the metric columns
WINDOW = schema.WINDOW_COLUMNS  # isolated_* left empty unless a test gives them
SNN = {"hidden": 100, "time_steps": 128, "decay": 0.9, "threshold": 1.0, "penalty": 1.5, "reset": "subtract"}

# final-epoch metrics per seed (two seeds); epoch 1 has other values, so a mean over epochs would show
SNN_FINAL = [
    {"layer1_firing_rate": 0.20, "layer1_silent_share": 0.10, "layer1_mean_when_firing": 0.5, "layer1_sparsity": 0.80,
     "layer2_firing_rate": 0.05, "layer2_silent_share": 0.0, "layer2_mean_when_firing": 1.2, "layer2_sparsity": 0.95,
     "activation_sparsity": 0.81, "dense_ops": 10_005_400, "effective_macs": 9_000_000, "effective_acs": 0},
    {"layer1_firing_rate": 0.30, "layer1_silent_share": 0.20, "layer1_mean_when_firing": 0.7, "layer1_sparsity": 0.70,
     "layer2_firing_rate": 0.15, "layer2_silent_share": 0.1, "layer2_mean_when_firing": 1.4, "layer2_sparsity": 0.85,
     "activation_sparsity": 0.71, "dense_ops": 10_005_400, "effective_macs": 10_000_000, "effective_acs": 0},
]  # fmt: skip
FFN_FINAL = [
    {"layer1_firing_rate": 0.5, "layer1_silent_share": 0.02, "layer1_mean_when_firing": 2.0, "layer1_sparsity": 0.5,
     "activation_sparsity": 0.5, "dense_ops": 79_400, "effective_macs": 78_900, "effective_acs": 0},
    {"layer1_firing_rate": 0.6, "layer1_silent_share": 0.04, "layer1_mean_when_firing": 3.0, "layer1_sparsity": 0.4,
     "activation_sparsity": 0.4, "dense_ops": 79_400, "effective_macs": 78_950, "effective_acs": 0},
]  # fmt: skip


def epoch_rows(model, finals, train_s, eval_s, metrics_s, run_id="run-a", dataset="mnist-mini", accuracy=0.9):
    """Two epochs per seed; the metrics of ``finals`` at epoch 2, every rate 0.9 and every count doubled at epoch 1."""
    out = []
    for seed, final in enumerate(finals):
        for epoch in (1, 2):
            metrics = final if epoch == 2 else {k: (0.9 if k.startswith("layer") else 2 * v) for k, v in final.items()}
            out.append({
                "run_id": run_id, "dataset": dataset, "model": model, "device": "cpu", "seed": seed, "epoch": epoch,
                "lr": 0.1, "train_loss": 1.0, "train_accuracy": accuracy, "test_loss": 1.0,
                "test_accuracy": accuracy - 0.1 * (2 - epoch) + 0.01 * seed, "train_seconds": train_s, "eval_seconds": eval_s,
                "train_samples_per_second": 1000 / train_s, "train_samples": 1000, "test_samples": 1000,
                "metrics_seconds": metrics_s, **metrics,
            })  # fmt: skip
    return out


def write_run(folder: Path, rows, header=HEADER, models=None, windows=(), npz=None, run_json=True):
    """A run folder as bench.run leaves it: epochs.csv, run.json and, when given, window.csv and activity/*.npz."""
    folder.mkdir(parents=True)
    with open(folder / "epochs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    labels = list(dict.fromkeys(r["model"] for r in rows))
    models = models or {m: {"name": m.split(":")[0], "config": {} if m.startswith("ffn") else SNN} for m in labels}
    if run_json:
        (folder / "run.json").write_text(json.dumps({
            "run_id": rows[0]["run_id"], "command": "python -m bench.run", "status": "complete", "dataset": rows[0]["dataset"],
            "devices": ["cpu"], "seeds": sorted({r["seed"] for r in rows}), "models": models,
            "schedule": {"epochs": 2, "lrs": [0.1], "batch_size": 100, "max_batches": None},
            "environment": {"devices": {"cpu": "Test CPU"}},
        }))  # fmt: skip
    if windows:
        with open(folder / "window.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=WINDOW)
            writer.writeheader()
            writer.writerows(windows)
    for name, arrays in (npz or {}).items():
        (folder / "activity").mkdir(exist_ok=True)
        np.savez(folder / "activity" / name, **arrays)
    return folder


@pytest.fixture
def metrics_run(tmp_path):
    return write_run(
        tmp_path / "run-a", epoch_rows("snn", SNN_FINAL, 10.0, 2.5, 0.5) + epoch_rows("ffn", FFN_FINAL, 0.1, 0.03, 0.01)
    )


def test_activity_table_is_the_final_epoch_mean_over_seeds(metrics_run):
    table = activity.activity(load([metrics_run]).epochs).set_index("model")
    assert table.loc["snn", "seeds"] == 2
    assert table.loc["snn", ["layer1_firing_rate", "layer1_silent_share", "layer1_mean_when_firing"]].tolist() == pytest.approx(
        [0.25, 0.15, 0.6]
    )
    assert table.loc["snn", ["layer2_firing_rate", "layer2_mean_when_firing", "activation_sparsity"]].tolist() == pytest.approx(
        [0.10, 1.3, 0.76]
    )
    assert table.loc["ffn", "layer1_firing_rate"] == pytest.approx(0.55) and math.isnan(table.loc["ffn", "layer2_firing_rate"])
    text = build_report([metrics_run], metrics_run / "report").read_text()
    activity_part = text.split("### Activity and cost")[1].split("Synaptic operations")[0]
    assert row(activity_part, "cpu", "snn") == ["cpu", "snn", "2", "output > 0 at a time step", "25.00", "15.0", "0.6",
                                                "10.00", "5.0", "1.3", "76.00"]  # fmt: skip
    assert row(activity_part, "cpu", "ffn") == ["cpu", "ffn", "2", "hidden ReLU output > 0", "55.00", "3.0", "2.5",
                                                "-", "-", "-", "45.00"]  # fmt: skip


def test_cost_table_energy_proxy_and_ratios_by_hand(metrics_run):
    table = activity.cost(load([metrics_run]).epochs).set_index("model")
    snn, ffn = table.loc["snn"], table.loc["ffn"]
    assert snn["effective_macs"] == 9_500_000 and ffn["effective_macs"] == 78_925
    assert snn["energy_pj"] == pytest.approx(9_500_000 * 4.6) and ffn["energy_pj"] == pytest.approx(78_925 * 4.6)
    assert snn["dense_energy_pj"] == pytest.approx(10_005_400 * 4.6)
    assert snn["inference_ms"] == pytest.approx(1000 * (2.5 - 0.5) / 1000) and ffn["inference_ms"] == pytest.approx(0.02)
    assert snn["ffn"] == "ffn" and ffn["ffn"] is None
    assert snn["ops_ratio"] == pytest.approx(9_500_000 / 78_925)
    assert (snn["train_ratio"], snn["inference_ratio"]) == pytest.approx((100, 100))
    text = build_report([metrics_run], metrics_run / "report").read_text()
    assert "### Activity and cost" in text
    # 43.7 µJ = 9.5e6 MACs x 4.6 pJ; 46.0 µJ = 10,005,400 x 4.6 pJ; 0.363 µJ = 78,925 x 4.6 pJ
    cost_part = text.split("Synaptic operations")[1]
    assert row(cost_part, "cpu", "snn")[2:] == ["2", "10,005,400", "9,500,000", "0", "43.7", "46", "10", "2", "ffn",
                                                "120x", "100x", "100x"]  # fmt: skip
    assert row(cost_part, "cpu", "ffn")[2:] == ["2", "79,400", "78,925", "0", "0.363", "0.365", "0.1", "0.02", "-",
                                                "-", "-", "-"]  # fmt: skip
    assert "Every SNN-like model here (snn) recorded 0 ACs" in text and "MACs, not ACs" in text and "Horowitz" in text
    # metric counting: 4 x 0.5 + 4 x 0.01 = 2.04 s of 4 x 2.5 + 4 x 0.03 = 10.12 s evaluation and 40.4 s training;
    # as a share of its own evaluation time ffn's is the larger: 0.01 / 0.03
    assert "took 2.04 s in all, 20.2% of the evaluation time and 5.0% of the training time (largest: ffn on cpu, 33.3%" in text


def test_accumulate_only_operations_are_named(tmp_path):
    spiking = [dict(f, effective_macs=1_000_000, effective_acs=3_000_000) for f in SNN_FINAL]
    run = write_run(tmp_path / "r", epoch_rows("snn", spiking, 1.0, 1.0, 0.1) + epoch_rows("ffn", FFN_FINAL, 0.1, 0.03, 0.01))
    (snn,) = activity.cost(load([run]).epochs).query("model == 'snn'").to_dict("records")
    assert snn["energy_pj"] == pytest.approx(1_000_000 * 4.6 + 3_000_000 * 0.9)
    text = build_report([run], tmp_path / "out").read_text()
    assert "were recorded for snn on cpu: 3,000,000 per sample, 75.0% of its effective operations" in text
    assert "recorded 0 ACs" not in text


def test_every_metric_column_is_read_as_a_number_and_an_empty_cell_as_nan(tmp_path):
    rows = epoch_rows("snn", SNN_FINAL, 1.0, 0.5, 0.1)
    rows[0] = {k: "" if schema.is_metric(k) else v for k, v in rows[0].items()}  # a test pass without the metrics
    epochs = load([write_run(tmp_path / "r", rows)]).epochs
    metrics = [c for c in epochs.columns if schema.is_metric(c)]
    # the file's header is 0.3's (schema.COLUMNS): every metric column of it, none of 0.6's memory columns
    assert metrics == [c for c in schema.COLUMNS if schema.is_metric(c)] and all(epochs[c].dtype == float for c in metrics)
    assert epochs[metrics].iloc[0].isna().all() and epochs[metrics].iloc[1:].notna().all().all()


THREE_LAYERS = schema.BASE_COLUMNS + schema.metric_columns(["layer1", "layer2", "layer3"])


def test_a_three_layer_run_loads_and_its_third_layer_is_its_own(tmp_path):
    deep = [dict(f, layer3_firing_rate=0.4, layer3_silent_share=0.0, layer3_mean_when_firing=0.8, layer3_sparsity=0.6)
            for f in SNN_FINAL]  # fmt: skip
    models = {"snn3": {"name": "snn3", "kind": "spiking", "layers": ["layer1", "layer2", "layer3"], "config": {}}}
    write_run(tmp_path / "res" / "deep", epoch_rows("snn3", deep, 1.0, 0.5, 0.1, run_id="run-b"), THREE_LAYERS, models)
    write_run(tmp_path / "res" / "two", epoch_rows("snn", SNN_FINAL, 1.0, 0.5, 0.1) + epoch_rows("ffn", FFN_FINAL, 0.1, 0.1, 0))
    epochs = load([tmp_path / "res"]).epochs
    assert epochs["layer3_firing_rate"].dtype == float
    assert epochs.loc[epochs["model"] != "snn3", "layer3_firing_rate"].isna().all()  # not the other run's layer 2
    text = build_report([tmp_path / "res"], tmp_path / "out").read_text()
    part = text.split("### Activity and cost")[1].split("Synaptic operations")[0]
    assert "layer 3 firing (%)" in part
    assert row(part, "cpu", "snn3")[4:] == ["25.00", "15.0", "0.6", "10.00", "5.0", "1.3", "40.00", "0.0", "0.8", "76.00"]
    assert row(part, "cpu", "snn")[4:] == ["25.00", "15.0", "0.6", "10.00", "5.0", "1.3", "-", "-", "-", "76.00"]
    assert row(part, "cpu", "ffn")[4:] == ["55.00", "3.0", "2.5", "-", "-", "-", "-", "-", "-", "45.00"]


def test_a_plug_in_baseline_is_the_reference_of_activity_cost_and_neurons(tmp_path):
    models = {"snn": {"name": "snn", "kind": "spiking", "config": SNN}, "mlp": {"name": "mlp", "kind": "baseline", "config": {}}}
    rows = epoch_rows("snn", SNN_FINAL, 10.0, 2.5, 0.5) + epoch_rows("mlp", FFN_FINAL, 0.1, 0.03, 0.01)
    npz = {"mlp.npz": dict(activity_arrays(), model=np.str_("mlp")), "snn.npz": activity_arrays()}
    run = write_run(tmp_path / "r", rows, models=models, npz=npz)
    results = load([run])
    costs = activity.cost(results.epochs).set_index("model")
    assert costs.loc["snn", "ffn"] == "mlp" and costs.loc["mlp", "ffn"] is None
    assert costs.loc["snn", "ops_ratio"] == pytest.approx(9_500_000 / 78_925)
    assert list(neurons.pick(results, "mnist-mini")) == ["snn"]  # a baseline's activity file draws no picture
    text = build_report([run], tmp_path / "out").read_text()
    part = text.split("### Activity and cost")[1]
    assert row(part, "cpu", "mlp")[3] == "hidden ReLU output > 0" and row(part, "cpu", "snn")[3] == "output > 0 at a time step"
    assert row(part.split("Synaptic operations")[1], "cpu", "snn")[10:] == ["mlp", "120x", "100x", "100x"]
    assert "Every SNN-like model here (snn) recorded 0 ACs" in text and "neurons-mlp" not in text
    assert row(text, "cpu", "snn", "mlp")  # the head-to-head


def test_without_recorded_configs_no_threshold_or_factor_is_made_up(tmp_path):
    models = {"snn": {"name": "snn", "kind": "spiking"}, "snn:reset=proportional": {"name": "snn", "kind": "spiking"}}
    rows = epoch_rows("snn", SNN_FINAL, 1, 1, 0.1) + epoch_rows("snn:reset=proportional", SNN_FINAL, 1, 1, 0.1)
    windows = window_rows("snn", [0.85, 0.85]) + window_rows("snn:reset=proportional", [0.7, 0.7], "proportional", 0.9)
    run = write_run(tmp_path / "r", rows, models=models, windows=windows, npz={"a.npz": activity_arrays()})
    results = load([run])
    (record,) = results.activity
    assert neurons.threshold(results, record) is None
    fig = neurons.figure(record)
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]  # the traces': one, under them
    labels = [t.get_text() for legend in legends for t in legend.texts]
    assert "inner state v" in labels and not any("threshold" in label for label in labels)
    text = build_report([run], tmp_path / "out").read_text()
    traces = "at every step), and layer 2's neuron of the true label. No threshold is drawn for snn: its run does not record one."
    assert traces in text
    assert "threshold dashed" not in text and "p/θ) instead of 0" in text and "p/θ) =" not in text
    assert png_ok(tmp_path / "out" / "mnist-mini-neurons-snn.png")


@pytest.mark.parametrize("header", [COLUMNS, HEADER], ids=["old columns", "new columns, empty cells"])
def test_without_metrics_the_report_has_no_new_text(tmp_path, header):
    rows = [{k: v for k, v in r.items() if k in COLUMNS} for r in epoch_rows("snn", SNN_FINAL, 1.0, 0.5, 0.1)]
    rows += [{k: v for k, v in r.items() if k in COLUMNS} for r in epoch_rows("ffn", FFN_FINAL, 0.1, 0.1, 0.0)]
    run = write_run(tmp_path / "r", rows, header=header)
    text = build_report([run], tmp_path / "out").read_text()
    for heading in ["Activity and cost", "Neuron activity", "gradient window", "Time-step sweep", "Metric counting"]:
        assert heading not in text
    assert text.count("![") == 4 and sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [
        f"mnist-mini-{name}.png" for name in ["accuracy-by-epoch", "accuracy-by-time", "loss-by-epoch", "seconds-per-epoch"]
    ]


def test_a_row_cut_off_in_its_metric_fields_is_skipped(metrics_run, capsys):
    path = metrics_run / "epochs.csv"
    whole = path.read_text().splitlines()[1].split(",")
    path.write_text(path.read_text() + ",".join(whole[:18]).replace("run-a,mnist-mini,snn,cpu,0", "run-a,mnist-mini,snn,cpu,7"))
    epochs = load([metrics_run]).epochs
    assert 7 not in set(epochs["seed"]) and "skipped 1 unparsable row(s)" in capsys.readouterr().err


def window_rows(model, decays, reset="subtract", decay=0.85, run_id="run-a"):
    """Exact exponentials: relative = decays[seed] ** dt, dt = 0..20; pairs fall with dt."""
    return [{"run_id": run_id, "dataset": "mnist-mini", "model": model, "device": "cpu", "seed": seed, "epoch": 2,
             "reset": reset, "decay": decay, "dt": dt, "mean_abs_grad": 1e-3 * rate**dt, "relative": rate**dt,
             "pairs": 1000 - 10 * dt}
            for seed, rate in enumerate(decays) for dt in range(21)]  # fmt: skip


def test_window_fit_recovers_a_known_decay_and_says_so(tmp_path):
    windows = window_rows("snn", [0.85, 0.85]) + window_rows("snn:reset=proportional", [0.69, 0.71], "proportional", 0.9)
    models = {"snn": {"name": "snn", "config": SNN}, "ffn": {"name": "ffn", "config": {}},
              "snn:reset=proportional": {"name": "snn", "config": dict(SNN, reset="proportional")}}  # fmt: skip
    rows = epoch_rows("snn", SNN_FINAL, 1, 1, 0.1) + epoch_rows("snn:reset=proportional", SNN_FINAL, 1, 1, 0.1)
    run = write_run(tmp_path / "r", rows + epoch_rows("ffn", FFN_FINAL, 0.1, 0.1, 0.0), models=models, windows=windows)
    table = window.summary(load([run]).windows).set_index("model")
    assert table.loc["snn", "fitted_decay"] == pytest.approx(0.85) and table.loc["snn", "r2"] == pytest.approx(1)
    assert table.loc["snn", "pairs_dt0"] == 1000
    assert table.loc["snn:reset=proportional", "fitted_decay"] == pytest.approx(0.70)
    text = build_report([run], tmp_path / "out").read_text()
    assert "### STDP-like gradient window" in text
    assert row(text, "cpu", "snn", "all spikes") == ["cpu", "snn", "all spikes", "subtract", "0.85", "2", "0.850 ± 0.000",
                                                     "1.000", "1,000"]  # fmt: skip
    with pytest.raises(AssertionError, match="no table row"):  # this window.csv has no isolated_* values
        row(text, "cpu", "snn", "no spike between")
    assert "the fitted decay per step 0.850 is within 0.01 of d = 0.85" in text
    assert "The window falls as 0.85**dt, the leak's exponential" in text
    assert "0.700 differs from d = 0.9 by -0.200 (95% CI 0.573 to 0.827 over 2 seeds, which excludes d)" in text
    assert "(1 - p/θ) = -0.5 instead of 0" in text and "anti-causal (post-before-pre)" in text
    assert png_ok(tmp_path / "out" / "mnist-mini-gradient-window.png")


def test_window_over_all_spikes_and_over_lone_spikes(tmp_path):
    """All spikes: 0.9**dt until it meets a plateau of 0.8 at dt = 3 (other spikes nearer); lone spikes: 0.9**dt."""
    windows = [dict(r, relative=max(r["relative"], 0.8), isolated_relative=r["relative"], isolated_pairs=r["pairs"] // 2)
               for r in window_rows("snn", [0.9, 0.9], decay=0.9)]  # fmt: skip
    run = write_run(tmp_path / "r", epoch_rows("snn", SNN_FINAL, 1, 1, 0.1), windows=windows)
    table = window.summary(load([run]).windows).set_index("selection")
    assert table.loc["no spike between", "fitted_decay"] == pytest.approx(0.9)
    assert table.loc["all spikes", "fitted_decay"] > 0.97 and table.loc["all spikes", "r2"] < 0.95
    text = build_report([run], tmp_path / "out").read_text()
    assert row(text, "cpu", "snn", "no spike between")[6:] == ["0.900 ± 0.000", "1.000", "500"]
    assert ("snn on cpu: over all spikes the window falls to 0.80 by dt = 3 and stays within 5% of that (to 0.80 at "
            "dt = 20); fitted 0.998. Over the pairs with no spike between it falls to 0.12 at dt = 20 (fitted 0.900, "
            "d = 0.9; 20 steps of d give 0.12).") in text  # fmt: skip
    assert "**Why the two selections differ.**" in text


def test_window_text_follows_a_curve_that_rises_again_and_says_nothing_of_one_dt(tmp_path):
    rising = [dict(r, relative=max(0.9 ** r["dt"], 0.8) * (1 + 0.02 * max(r["dt"] - 3, 0)), isolated_relative=r["relative"],
                   isolated_pairs=r["pairs"]) for r in window_rows("snn", [0.9, 0.9], decay=0.9)]  # fmt: skip
    text = build_report([write_run(tmp_path / "a", epoch_rows("snn", SNN_FINAL, 1, 1, 0.1), windows=rising)], tmp_path / "o")
    assert "falls to 0.80 by dt = 3, then rises again (to 1.07 at dt = 20)" in text.read_text()
    short = [dict(r, isolated_relative=r["relative"], isolated_pairs=r["pairs"]) for r in window_rows("snn", [0.9])[:2]]
    text = build_report([write_run(tmp_path / "b", epoch_rows("snn", SNN_FINAL, 1, 1, 0.1), windows=short)], tmp_path / "p")
    assert "over all spikes the window" not in text.read_text()  # dt = 0 and 1 only: no curve to describe


@pytest.mark.parametrize(
    "fitted, ci, words",
    [
        (0.899, (0.893, 0.905), "The window falls as 0.9**dt, the leak's exponential, as the seed text predicts."),
        (0.890, (0.880, 0.899), "The window falls nearly as 0.9**dt, with a small, consistent drift from it."),
        (0.909, (0.9004, 0.917), "The window falls as 0.9**dt"),  # the interval prints as 0.900: it includes d
        (0.850, (0.840, 0.860), "The leak's exponential alone does not describe this window."),
    ],
)
def test_window_verdict_follows_the_interval(fitted, ci, words):
    r = {"model": "snn", "device": "cpu", "selection": "no spike between", "reset": "subtract", "decay": 0.9,
         "fitted_decay": fitted, "ci_low": ci[0], "ci_high": ci[1], "fitted_seeds": 3, "r2": 0.99}  # fmt: skip
    assert window.verdict(r).endswith(words) or words in window.verdict(r)


def test_window_rows_without_pairs_are_kept_quietly(tmp_path, capsys):
    rows = [dict(r, relative=float("nan"), pairs=0) if r["dt"] >= 18 else r for r in window_rows("snn", [0.9], decay=0.9)]
    run = write_run(tmp_path / "r", epoch_rows("snn", SNN_FINAL, 1, 1, 0.1), windows=rows)
    windows = load([run]).windows
    assert len(windows) == 21 and "unparsable" not in capsys.readouterr().err
    assert window.summary(windows)["fitted_decay"].iloc[0] == pytest.approx(0.9)


def row(text: str, *first: str) -> list[str]:
    """The cells of the first Markdown table row of ``text`` that starts with the cells ``first``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[: len(first)] == list(first):
            return cells
    raise AssertionError(f"no table row starting {first}")


def png_ok(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < path.stat().st_size < 2_000_000


@pytest.mark.parametrize("labels, swept", [(["snn:time_steps=8", "snn:time_steps=16"], True), (["snn:time_steps=8"], False)])
def test_time_step_sweep_needs_two_T_of_one_family(tmp_path, labels, swept):
    rows = [
        r for i, label in enumerate(labels) for r in epoch_rows(label, SNN_FINAL, 2.0 * (i + 1), 1, 0.1, accuracy=0.8 + i / 10)
    ]
    models = {label: {"name": "snn", "config": dict(SNN, time_steps=int(label.split("=")[1]))} for label in labels}
    rows += epoch_rows("ffn", FFN_FINAL, 0.1, 0.1, 0.0)
    run = write_run(tmp_path / "r", rows, models={**models, "ffn": {"name": "ffn", "config": {}}})
    text = build_report([run], tmp_path / "out").read_text()
    assert ("### Time-step sweep" in text) is swept
    assert (tmp_path / "out" / "mnist-mini-time-step-sweep.png").exists() is swept
    if swept:  # final accuracies 0.80 and 0.81 (T = 8), 0.90 and 0.91 (T = 16): half-width t(0.975, 1) x 0.005
        assert row(text, "snn", "cpu", "8") == ["snn", "cpu", "8", "2", "80.50 ± 6.35", "2", "10,005,400"]
        assert row(text, "snn", "cpu", "16") == ["snn", "cpu", "16", "2", "90.50 ± 6.35", "4", "10,005,400"]
        assert png_ok(tmp_path / "out" / "mnist-mini-time-step-sweep.png")


def test_sweep_without_run_json_reads_T_from_the_label(tmp_path):
    rows = epoch_rows("snn:time_steps=4", SNN_FINAL, 1, 1, 0.1) + epoch_rows("snn:time_steps=32", SNN_FINAL, 3, 1, 0.1)
    run = write_run(tmp_path / "r", rows + epoch_rows("snn", SNN_FINAL, 9, 1, 0.1), run_json=False)
    families = sweep.families(load([run]).epochs, [])
    assert families.values.tolist() == [["snn:time_steps=4", "snn", 4], ["snn:time_steps=32", "snn", 32]]  # snn: T unknown


def activity_arrays(seed=0, steps=12, hidden=6, label=2):
    """One digit: hidden neurons 3 and 4 fire at 5 steps, neuron 0 at 2 (the closest to 12 / 4 = 3), output neuron 2 at 4."""
    o1 = np.zeros((steps, hidden), np.float32)
    o1[:5, 3] = o1[2:7, 4] = 0.4
    o1[:2, 0] = 0.1
    v2, o2 = np.full((steps, 3), -0.2, np.float32), np.zeros((steps, 3), np.float32)
    o2[4:8, label] = 0.3
    return {"layer1_v": np.linspace(-1, 1.5, steps * hidden, dtype=np.float32).reshape(steps, hidden), "layer1_o": o1,
            "layer2_v": v2, "layer2_o": o2, "image": np.full((28, 28), -0.5, np.float32), "label": np.int64(label),
            "index": np.int64(7), "logits": np.array([0.1, 0.5, 0.2], np.float32), "run_id": np.str_("run-a"),
            "dataset": np.str_("mnist-mini"), "model": np.str_("snn"), "device": np.str_("cpu"), "seed": np.int64(seed),
            "epoch": np.int64(2)}  # fmt: skip


def test_neuron_heatmaps_png_for_the_lowest_seed(tmp_path):
    npz = {"b-seed1.npz": activity_arrays(seed=1), "a-seed0.npz": activity_arrays(seed=0)}
    run = write_run(tmp_path / "r", epoch_rows("snn", SNN_FINAL, 1, 1, 0.1) + epoch_rows("ffn", FFN_FINAL, 0.1, 0.1, 0), npz=npz)
    results = load([run])
    (record,) = neurons.pick(results, "mnist-mini").values()
    assert record["seed"] == 0 and neurons.traced(record["layer1_o"]) == 0 and neurons.predicted(record) == 1
    text = build_report([run], tmp_path / "out").read_text()
    assert "### Neuron activity" in text
    assert "Neuron activity of snn (seed 0, cpu, run run-a) on test index 7: true label 2, predicted 1" in text
    assert "(mnist-mini-neurons-snn.png)" in text and png_ok(tmp_path / "out" / "mnist-mini-neurons-snn.png")


def test_corrupt_window_and_npz_warn_and_the_report_is_still_written(tmp_path, capsys):
    broken = activity_arrays()
    del broken["layer2_o"]
    npz = {"good.npz": activity_arrays(), "no-layer2.npz": broken}
    run = write_run(tmp_path / "r", epoch_rows("snn", SNN_FINAL, 1, 1, 0.1), npz=npz)
    (run / "activity" / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip file")
    (run / "activity" / "text.npz").write_text("hello")
    (run / "window.csv").write_text("nothing,useful\n1,2\n")
    assert main([str(run), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "window.csv lacks the column(s) model, device" in err
    assert "no-layer2.npz: no 'layer2_o' array" in err and "garbage.npz" in err and "text.npz" in err
    assert "Traceback" not in err and "Traceback" not in capsys.readouterr().out
    text = (tmp_path / "out" / "report.md").read_text()
    assert "### Neuron activity" in text and "gradient window" not in text  # the good npz is still drawn


def test_window_rows_that_do_not_parse_are_skipped(tmp_path, capsys):
    run = write_run(tmp_path / "r", epoch_rows("snn", SNN_FINAL, 1, 1, 0.1), windows=window_rows("snn", [0.85]))
    with open(run / "window.csv", "a") as f:
        f.write("run-a,mnist-mini,snn,cpu,0,2,subtract,0.85,oops,1,1,1\nrun-a,mnist-mini,snn,cpu,1,2,subtr")
    windows = load([run]).windows
    assert len(windows) == 21 and "window.csv: skipped 2 unparsable row(s)" in capsys.readouterr().err
