"""The tuned comparison (issue 13): runs over learning-rate scales with a validation split, hand-made as in
test_report.py. Each model picks its scale on validation accuracy, the picks meet on the test set, and different scales
of one model are never pooled anywhere in the report. Nothing is trained."""

import csv
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from test_report import FFN, SNN, png_ok, rows, write_run

from bench import schema
from report import pooling, stats, tuned
from report.__main__ import build_report
from report.load import load
from report.runs import incomplete_trainings

SCALES = [1.0, 2.0, 4.0]
# final test and validation accuracy per seed, by model and scale: the test set prefers another scale than validation
TEST = {
    "snn": {1.0: [0.90, 0.91, 0.92], 2.0: [0.93, 0.94, 0.935], 4.0: [0.95, 0.96, 0.955]},  # test: x4
    "ffn": {1.0: [0.92, 0.925, 0.93], 2.0: [0.90, 0.905, 0.91], 4.0: [0.91, 0.915, 0.905]},  # test: x1
}
VAL = {
    "snn": {1.0: [0.89, 0.90, 0.91], 2.0: [0.95, 0.96, 0.955], 4.0: [0.92, 0.93, 0.925]},  # validation: x2
    "ffn": {1.0: [0.90, 0.91, 0.90], 2.0: [0.91, 0.90, 0.92], 4.0: [0.94, 0.935, 0.93]},  # validation: x4
}
SECONDS = {"snn": 2.0, "ffn": 0.02}
KINDS = {"snn": schema.SPIKING, "ffn": schema.BASELINE}


def grid_rows(model, scale, tests, vals=None, run_id="grid", epochs=2, seconds=None):
    """Epoch rows of one model at one scale, a training per seed, climbing to the given final accuracies."""
    out = []
    for seed, final in enumerate(tests):
        for epoch in range(1, epochs + 1):
            row = rows(model, [final], seconds or SECONDS[model], run_id=run_id, epochs=epochs)[epoch - 1]
            row.update(seed=seed, lr=0.1 * scale, lr_scale=scale)
            if vals is not None:
                row.update(val_loss=1.0 / epoch, val_accuracy=vals[seed] - 0.05 * (epochs - epoch))
            out.append(row)
    return out


def write_grid(folder: Path, epoch_rows, validation=1000, epochs=2, scales=SCALES):
    """A run folder as bench.run writes one with --lr-scale and --validation (none when ``validation`` is 0)."""
    folder.mkdir(parents=True)
    header = schema.header(grid=True, validation=validation > 0)
    with open(folder / "epochs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(epoch_rows)
    labels = list(dict.fromkeys(r["model"] for r in epoch_rows))
    schedule = {"epochs": epochs, "lrs": [0.1], "momentum": 0.5, "batch_size": 100, "max_batches": None,
                "validation": validation}  # fmt: skip
    run = {
        "run_id": epoch_rows[0]["run_id"], "command": "python -m bench.run --lr-scale 1 2 4", "status": "complete",
        "dataset": "mnist-mini", "devices": ["cpu"], "seeds": sorted({r["seed"] for r in epoch_rows}),
        "schedule": schedule, "validation_seed": 0,
        "args": {"lr_scale": scales, "validation": validation},
        "models": {m: {"name": m, "kind": KINDS[m], "config": {}} for m in labels},
        "environment": {"devices": {"cpu": "Test CPU 9000"}},
    }  # fmt: skip
    (folder / "run.json").write_text(json.dumps(run))
    return folder


def grid_run(folder: Path, validation=1000) -> Path:
    epoch_rows = []
    for model in ("snn", "ffn"):
        for scale in SCALES:
            epoch_rows += grid_rows(model, scale, TEST[model][scale], VAL[model][scale] if validation else None)
    return write_grid(folder, epoch_rows, validation)


def picks(data) -> dict:
    trainings = tuned.per_training(data)
    scores = tuned.scores(trainings, bool(trainings["final_val"].notna().all()))
    return dict(zip(scores.loc[scores["picked"], "model"], scores.loc[scores["picked"], "lr_scale"]))


def test_each_model_picks_the_scale_of_its_best_validation_accuracy(tmp_path):
    data = load([grid_run(tmp_path / "grid")]).epochs
    assert picks(data) == {"snn": 2.0, "ffn": 4.0}  # the test set would pick x4 and x1
    text = build_report([tmp_path / "grid"], tmp_path / "out").read_text()
    part = text.split("### Tuned comparison")[1].split("### Time to")[0]
    assert text.index("### SNN against FFN") < text.index("### Tuned comparison") < text.index("### Time to")
    assert "1,000 held-out training samples" in part and "optimistic" not in part
    assert re.search(r"\| cpu +\| snn +\| +2 \| +3 \| +95\.50 ± [\d.]+ \| +93\.50 \| yes +\|", part)
    assert re.search(r"\| cpu +\| snn +\| +4 \| +3 \| +92\.50 ± [\d.]+ \| +95\.50 \| -", part)
    assert re.search(r"\| cpu +\| ffn +\| +4 \| .*\| yes +\|", part) and "snn at x2" in part and "ffn at x4" in part
    (image,) = re.findall(r"!\[[^]]*\]\(([^)]+)\)", part)
    assert image == "mnist-mini-lr-scales.png" and png_ok(tmp_path / "out" / image)


def test_a_tie_goes_to_the_scale_nearest_one(tmp_path):
    same = [0.9, 0.91, 0.92]
    epoch_rows = [r for s in SCALES for r in grid_rows("snn", s, same, same)]
    assert picks(load([write_grid(tmp_path / "g", epoch_rows)]).epochs) == {"snn": 1.0}


def test_the_sentence_states_the_budget_and_the_test_difference_by_hand(tmp_path):
    data = load([grid_run(tmp_path / "grid")]).epochs
    trainings = tuned.per_training(data)
    (row,) = tuned.comparisons(trainings, tuned.scores(trainings, True)).to_dict("records")
    x, y = np.array(TEST["snn"][2.0]), np.array(TEST["ffn"][4.0])  # each at its picked scale, on the TEST set
    vx, vy = x.var(ddof=1) / 3, y.var(ddof=1) / 3
    df = (vx + vy) ** 2 / (vx**2 / 2 + vy**2 / 2)  # Welch-Satterthwaite
    diff, se = x.mean() - y.mean(), math.sqrt(vx + vy)
    half = st.t.ppf(0.975, df) * se
    p = 2 * st.t.sf(abs(diff / se), df)
    assert row["difference"] == pytest.approx(100 * diff) == pytest.approx(2.5)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((100 * (diff - half), 100 * (diff + half)))
    assert row["p_value"] == pytest.approx(p) and row["time_ratio"] == pytest.approx(100)
    expected = (f"Each model tried 3 learning-rate scales (1, 2, 4 x the schedule), chosen on 1,000 held-out training "
                f"samples; snn at x2 is {100 * diff:.1f} points more accurate than ffn at x4 (95% CI "
                f"{100 * (diff - half):.1f} to {100 * (diff + half):.1f}, p = {p:.2g}, 3 seeds), at 100x the training "
                f"time per epoch on cpu.")  # fmt: skip
    assert tuned.sentence(row, "1,000 held-out training samples") == expected
    assert f"- {expected}" in build_report([tmp_path / "grid"], tmp_path / "out").read_text()


def test_fewer_than_three_seeds_draw_no_conclusion(tmp_path):
    epoch_rows = [r for m in ("snn", "ffn") for s in SCALES for r in grid_rows(m, s, TEST[m][s][:2], VAL[m][s][:2])]
    text = build_report([write_grid(tmp_path / "g", epoch_rows)], tmp_path / "out").read_text()
    part = text.split("### Tuned comparison")[1].split("### Time to")[0]
    assert "snn at x2 averages" in part and "no conclusion can be drawn" in part and "p = " not in part


def test_without_validation_the_test_set_picks_and_the_report_says_it_is_optimistic(tmp_path):
    data = load([grid_run(tmp_path / "grid", validation=0)]).epochs
    assert data["val_accuracy"].isna().all()
    assert picks(data) == {"snn": 4.0, "ffn": 1.0}  # the test accuracy's favourites
    text = build_report([tmp_path / "grid"], tmp_path / "out").read_text()
    part = text.split("### Tuned comparison")[1].split("### Time to")[0]
    assert "**No validation split:**" in part and "optimistic because the test set chose it" in part
    assert "chosen on the test set itself (optimistic); snn at x4" in part and "ffn at x1" in part
    assert "final val. acc." not in part and "picked (by test acc.)" in part


def test_scales_of_one_model_are_never_pooled(tmp_path):
    data = load([grid_run(tmp_path / "grid")]).epochs
    summary = stats.summary(data).set_index("model")
    labels = ["snn", "snn (lr x2)", "snn (lr x4)", "ffn", "ffn (lr x2)", "ffn (lr x4)"]
    assert summary.index.tolist() == labels and summary["seeds"].tolist() == [3] * 6
    assert summary.loc["snn (lr x2)", "final_accuracy"] == pytest.approx(np.mean(TEST["snn"][2.0]))
    h2h = stats.head_to_head(data)  # each scale against the baseline at the same scale, never pooled seeds
    assert list(zip(h2h["snn"], h2h["ffn"])) == [(a, b) for a, b in zip(labels[:3], labels[3:])]
    assert set(h2h["seeds_snn"]) == {3}
    assert stats.time_to_accuracy(data, 0.85)["seeds"].tolist() == [3] * 6 and len(stats.devices(data)) == 6
    text = build_report([tmp_path / "grid"], tmp_path / "out").read_text()
    assert re.search(r"\| cpu +\| snn \(lr x2\) +\| +3 \|", text) and "| 9 |" not in text


def test_identical_scales_are_two_trainings_and_a_copied_grid_counts_once(tmp_path):
    same = [0.9, 0.91, 0.92]
    epoch_rows = [r for s in (1.0, 2.0) for r in grid_rows("snn", s, same, same)]
    for row in epoch_rows:
        row["lr"] = 0.1  # every number alike but the scale: still two trainings
    run = write_grid(tmp_path / "res" / "a", epoch_rows, scales=[1.0, 2.0])
    shutil.copytree(run, tmp_path / "res" / "copy")
    results = load([tmp_path / "res"])
    assert stats.summary(results.epochs)["seeds"].tolist() == [3, 3] and len(results.duplicates) == 12


def test_incomplete_trainings_name_their_scale(tmp_path):
    epoch_rows = [r for r in grid_rows("snn", 1.0, [0.9]) + grid_rows("snn", 2.0, [0.9]) if r["epoch"] == 1 or
                  r["lr_scale"] == 1.0]  # fmt: skip
    results = load([write_grid(tmp_path / "g", epoch_rows, scales=[1.0, 2.0, 4.0])])
    missing = incomplete_trainings(results.epochs, results.runs)
    assert list(zip(missing["model"], missing["epochs"])) == [("snn (lr x2)", 1), ("snn (lr x4)", 0)]


def test_a_run_without_scales_reads_exactly_as_before(tmp_path):
    plain = write_run(tmp_path / "plain" / "run-a", rows("snn", SNN, 2.0) + rows("ffn", FFN, 0.0125))
    text = build_report([plain], tmp_path / "out1").read_text()
    assert "Tuned comparison" not in text and "lr x" not in text and "lr scales" not in text
    assert not list((tmp_path / "out1").glob("*lr-scales*"))
    # the same run written by a version with the lr_scale column, at scale 1 only: the same report, byte for byte
    scaled = [{**r, "lr_scale": 1.0} for r in rows("snn", SNN, 2.0) + rows("ffn", FFN, 0.0125)]
    meta = json.loads((plain / "run.json").read_text())
    folder = tmp_path / "scaled" / "run-a"
    folder.mkdir(parents=True)
    with open(folder / "epochs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=schema.header(grid=True), restval="")
        writer.writeheader()
        writer.writerows(scaled)
    (folder / "run.json").write_text(json.dumps({**meta, "args": {"lr_scale": [1.0], "validation": 0},
                                                 "schedule": {**meta["schedule"], "validation": 0}}))  # fmt: skip
    again = build_report([folder], tmp_path / "out2").read_text()
    assert again.replace(str(folder.parent), str(plain.parent)) == text


def test_a_validation_split_is_part_of_the_schedule_and_none_is_no_split():
    base = {"epochs": 3, "lrs": [0.1], "momentum": 0.5, "batch_size": 100, "max_batches": None}
    assert pooling.schedule_label({**base, "validation": 0}) == pooling.schedule_label(base)
    assert pooling.schedule_label({**base, "validation": 1000}).endswith(", 1,000 training samples held out for validation")


@pytest.mark.parametrize("scale, label", [(1.0, "snn"), (2.0, "snn (lr x2)"), (0.5, "snn (lr x0.5)"),
                                          (1.0000001, "snn (lr x1.0000001)")])  # fmt: skip
def test_labels_name_the_scale_and_read_back(scale, label):
    assert pooling.label("snn", scale) == label and pooling.spec_of(label) == "snn"


def test_results_readme_block_of_a_grid_shows_the_tuned_comparison_not_one_per_scale(tmp_path):
    from report.readme import run_block

    run = grid_run(tmp_path / "results" / "reference" / "grid")
    text = "\n".join(run_block(run, tmp_path / "results"))
    assert "#### Tuned comparison: each model at its own learning-rate scale" in text
    assert re.search(r"\| cpu +\| snn +\| +2 \| +3 \| .*\| yes", text)  # snn picks x2 on validation
    assert re.search(r"\| cpu +\| ffn +\| +4 \| +3 \| .*\| yes", text)  # ffn picks x4
    assert "snn at x2" in text and "ffn at x4" in text
    assert text.count("- Each model tried 3 learning-rate scales") == 1  # one sentence, not a head-to-head per scale
    assert "](reference/grid/report/report.md)" in text


def test_the_scales_of_a_model_are_listed_together_and_ascending_whatever_order_a_cluster_wrote(tmp_path):
    """A Dask run writes its trainings' rows as they finish: the summary still lists snn's scales, then ffn's."""
    epoch_rows = []
    for model, scale in [("snn", 4.0), ("ffn", 2.0), ("snn", 1.0), ("ffn", 1.0), ("snn", 2.0), ("ffn", 4.0)]:
        epoch_rows += grid_rows(model, scale, TEST[model][scale], VAL[model][scale])
    text = build_report([write_grid(tmp_path / "run", epoch_rows)], tmp_path / "out").read_text()
    summary = text[text.index("### Summary") : text.index("### SNN against FFN")]
    listed = re.findall(r"^\| cpu +\| (\w+(?: \(lr x\d+\))?) +\|", summary, flags=re.M)
    assert listed == ["snn", "snn (lr x2)", "snn (lr x4)", "ffn", "ffn (lr x2)", "ffn (lr x4)"]


def test_figures_list_a_grid_as_the_tables_do_in_shades_of_one_hue_per_model():
    from report import plots

    epoch_rows = []
    for model, scale in [("snn", 4.0), ("ffn", 2.0), ("snn", 1.0), ("ffn", 1.0), ("snn", 2.0), ("ffn", 4.0)]:
        epoch_rows += grid_rows(model, scale, TEST[model][scale], VAL[model][scale])
    data = pd.DataFrame(epoch_rows)
    data["spec"], data["model"] = data["model"], pooling.labels(data["model"], data["lr_scale"])
    assert plots.label_order(data) == ["snn", "snn (lr x2)", "snn (lr x4)", "ffn", "ffn (lr x2)", "ffn (lr x4)"]
    palette = plots.grid_colors(data)
    assert list(palette) == plots.label_order(data)
    base = plots.colors(["snn", "ffn"])
    assert palette["snn (lr x2)"] == pytest.approx(base["snn"], abs=0.01)  # the middle scale: the model's own hue
    assert palette["ffn (lr x2)"] == pytest.approx(base["ffn"], abs=0.01)
    assert sum(palette["snn"]) > sum(palette["snn (lr x2)"]) > sum(palette["snn (lr x4)"])  # light to dark
