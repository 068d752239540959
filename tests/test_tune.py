"""bench.run --tune (bench/tune.py): Optuna studies whose trials are trainings, picks scored on the test set only,
successive halving, budgets, resume; and the report's tuning section (report/tuning.py)."""

import csv
import json
import math
import re
import signal
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from bench import tune
from report import tuning

SMALL = ["--device", "cpu", "--dataset", "mnist-mini", "--max-batches", "2", "--batch-size", "100", "--validation", "300"]


def bench_run(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "bench.run", *args], capture_output=True, text=True, **kwargs)


def the_run(out):
    (run_dir,) = out.iterdir()
    return run_dir, json.loads((run_dir / "run.json").read_text())


def rows_of(run_dir):
    with open(run_dir / "epochs.csv") as f:
        return list(csv.DictReader(f))


def study_states(run_dir, name):
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'study.db'}")
    return {t.number: (t.state.name, t.value) for t in study.get_trials(deepcopy=False)}


# ---- the pieces ----


def test_expected_max_is_dodge_et_al_s_estimator():
    v = [3.0, 1.0, 2.0]
    assert tuning.expected_max(v, 1) == pytest.approx(2.0)  # the mean
    assert tuning.expected_max(v, 2) == pytest.approx(1 / 9 + 2 * 3 / 9 + 3 * 5 / 9)  # P(max = v_i) = (i/N)^2 - ((i-1)/N)^2
    assert tuning.expected_max(v, 200) == pytest.approx(3.0, abs=1e-9)
    rows = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    assert tuning.expected_max(rows, 2, axis=-1) == pytest.approx([22 / 9, 5.0])  # vectorised, as bootstrap calls it


def test_the_tuning_curve_rises_with_a_band_around_it():
    c = tuning.curve([0.5, 0.7, 0.9, 0.6, 0.8])
    assert list(c["n"]) == [1, 2, 3, 4, 5]
    assert c["expected_best"].is_monotonic_increasing and c["expected_best"].iloc[0] == pytest.approx(0.7)
    assert (c["low"] <= c["expected_best"] + 1e-12).all() and (c["high"] >= c["expected_best"] - 1e-12).all()
    assert math.isnan(tuning.curve([0.5])["low"].iloc[0])  # one trial: no band


def test_the_pareto_front_keeps_only_points_nothing_beats():
    points = pd.DataFrame({"seconds": [1, 2, 3, 4, 2.5], "final_val": [0.5, 0.4, 0.7, 0.6, 0.7]})
    front = tuning.pareto_front(points)
    assert list(zip(front["seconds"], front["final_val"])) == [(1, 0.5), (2.5, 0.7)]


def test_successive_halving_rungs():
    assert tune.rungs(9, 1, 3) == [1, 3, 9]
    assert tune.rungs(10, 1, 3) == [1, 3, 9, 10]
    assert tune.rungs(4, 1, 2) == [1, 2, 4]
    assert tune.rungs(5, 2, 3) == [2, 5]


def test_the_space_contains_the_defaults_and_fixes_the_inputs_of_models_that_encode_them():
    spec = SimpleNamespace(name="lif", info=SimpleNamespace(kind="spiking"))
    space = tune.space_for(spec, {}, fixed_inputs=True)
    assert space["input_scaling"] == "centered"
    assert space["lr_sgd"]["low"] <= 0.1 <= space["lr_sgd"]["high"]
    assert space["lr_adam"]["low"] <= 1e-3 <= space["lr_adam"]["high"]
    assert 1000 in space["batch_size"]["choices"] and 0.0 in space["weight_decay"]["choices"]
    assert space["momentum"]["low"] <= 0.5 <= space["momentum"]["high"] and "sgd" in space["optimizer"]["choices"]
    over = {"spiking": {"batch_size": {"choices": [100]}}, "lif": {"optimizer": "adam"}}
    space = tune.space_for(spec, over, fixed_inputs=False)
    assert space["batch_size"] == {"choices": [100]} and space["optimizer"] == "adam"
    assert isinstance(space["input_scaling"], dict)


def test_a_trial_config_is_the_run_schedule_with_the_trial_s_values():
    from bench.config import TrainConfig

    base = TrainConfig(epochs=7, validation=100, patience=2)
    c = tune.trial_config(base, {"optimizer": "adam", "lr": 0.002, "batch_size": 64, "weight_decay": 1e-4,
                                 "input_scaling": "unit"})  # fmt: skip
    assert (c.epochs, c.validation, c.patience) == (7, 100, 2) and c.lrs == (0.002,) and c.momentum is None
    assert (c.optimizer, c.batch_size, c.weight_decay, c.input_scaling, c.fresh_optimizer) == ("adam", 64, 1e-4, "unit", False)
    c = tune.trial_config(base, {"optimizer": "sgd", "lr": 0.3, "momentum": 0.9, "batch_size": 1000, "weight_decay": 0.0,
                                 "input_scaling": "centered"})  # fmt: skip
    assert c.momentum == 0.9 and c.fresh_optimizer is True


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tune", "3"], "--tune picks on the validation split, never on the test set: give --validation N too"),
        (["--sampler", "tpe", "--validation", "300"], "--sampler is for a tuning run"),
        (["--tune", "3", "--validation", "300", "--seeds", "10000"], "--seeds 10000: the picks' seeds must be below 10000"),
        (["--tune", "3", "--validation", "300", "--lr-scale", "1", "2"], "--lr-scale is for a grid run without --tune"),
        (["--budget-seconds", "5", "--validation", "300", "--pruner", "halving"], "--pruner halving needs a fixed number"),
        (["--tune", "3", "--validation", "300", "--pruner", "halving", "--epochs", "2", "--min-epochs", "2"],
         "--min-epochs 2 leaves successive halving no rung below --epochs 2"),
        (["--tune", "3", "--validation", "300", "--pruner", "halving", "--reduction-factor", "1"],
         "--reduction-factor 1: successive halving needs 2 or more"),
        (["--tune", "3", "--validation", "300", "--search-space", "/nonexistent.json"],
         "--search-space /nonexistent.json: cannot read it"),
    ],
)  # fmt: skip
def test_bad_tuning_input_is_one_line_exit_2(tmp_path, args, message):
    proc = bench_run("--models", "ffn", "--device", "cpu", *args, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("{", "not JSON"),
        ('{"ffn": {"colour": {"choices": [1]}}}', "unknown hyperparameter 'colour'"),
        ('{"ffn": {"lr_adam": {"low": 0, "high": 1, "log": true}}}', 'give {"low": L, "high": H}'),
        ('["ffn"]', "must map model kinds or names"),
    ],
)
def test_a_bad_search_space_file_is_refused(tmp_path, content, message):
    path = tmp_path / "space.json"
    path.write_text(content)
    proc = bench_run("--models", "ffn", "--tune", "2", *SMALL, "--search-space", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


# ---- a tuning run, end to end ----


def test_a_tuning_run_scores_its_trials_on_validation_and_only_its_picks_on_test(tmp_path):
    out = tmp_path / "out"
    proc = bench_run("--models", "ffn", "lif:time_steps=4", "--tune", "3", "--epochs", "2", "--seeds", "0", "1", *SMALL,
                     "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run_dir, meta = the_run(out)
    assert meta["status"] == "complete" and meta["args"]["tune"] == 3
    trials = [t for t in meta["trainings"] if t.get("trial") is not None]
    picks = [t for t in meta["trainings"] if t.get("picked_trial") is not None]
    assert len(trials) == 6 and len(picks) == 4 and len(meta["trainings"]) == 10
    assert {t["seed"] for t in trials} == {10_000, 10_001, 10_002} and {t["seed"] for t in picks} == {0, 1}
    assert all(t["params"]["input_scaling"] == "centered" for t in trials if t["model"] == "lif:time_steps=4")
    rows = rows_of(run_dir)
    trial_rows = [r for r in rows if r["trial"] != ""]
    assert len(trial_rows) == 12 and all(r["test_accuracy"] == "nan" and r["val_accuracy"] != "" for r in trial_rows)
    pick_rows = [r for r in rows if r["trial"] == ""]
    assert len(pick_rows) == 8 and all(0 <= float(r["test_accuracy"]) <= 1 for r in pick_rows)
    for name, study in meta["tuning"]["studies"].items():
        model = study["model"]
        finals = {int(r["trial"]): float(r["val_accuracy"]) for r in trial_rows if r["model"] == model and r["epoch"] == "2"}
        best = max(finals, key=lambda k: (finals[k], -k))
        assert study["picked"] == best  # by validation accuracy, the test set unseen
        states = study_states(run_dir, name)
        assert {n: s for n, (s, _) in states.items()} == {0: "COMPLETE", 1: "COMPLETE", 2: "COMPLETE"}
        assert {n: v for n, (_, v) in states.items()} == pytest.approx(finals)
        mine = [p for p in picks if p["model"] == model]
        assert len(mine) == 2 and all(p["picked_trial"] == best for p in mine)
        picked = next(t for t in trials if t["model"] == model and t["trial"] == best)
        assert all(p["config"] == picked["config"] for p in mine)
    # the pick's trainings train with the trial's configuration: same batch size, optimizer and learning rate
    assert "picked trial" in proc.stderr and "validation accuracy" in proc.stderr
    assert "study" in proc.stdout and "ffn on cpu" in proc.stdout
    report = (run_dir / "report" / "report.md").read_text()
    assert "### Tuning" in report and "(3 trials per model and device, random sampler, seed 0)" in report
    assert (run_dir / "report" / "mnist-mini-cpu-tuning-curve.png").stat().st_size > 1000
    assert (run_dir / "report" / "mnist-mini-cpu-accuracy-cost.png").stat().st_size > 1000
    assert "### SNN against FFN" in report  # the picks meet head to head, one section though their schedules differ
    # results/README.md's block of such a run: what each study spent and picked, the verdict, the figures linked
    from report.readme import run_block

    block = "\n".join(run_block(run_dir, tmp_path))
    assert "#### Tuning" in block and "train s (budget used)" in block and "**Verdict at equal budget**" in block
    assert f"[tuning curves on cpu](out/{run_dir.name}/report/mnist-mini-cpu-tuning-curve.png)" in block
    assert f"[accuracy against training cost on cpu](out/{run_dir.name}/report/mnist-mini-cpu-accuracy-cost.png)" in block


def test_successive_halving_prunes_at_each_rung_and_keeps_the_pruned_rows(tmp_path):
    out = tmp_path / "out"
    proc = bench_run("--models", "ffn", "--tune", "4", "--pruner", "halving", "--reduction-factor", "2", "--epochs", "3",
                     *SMALL, "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run_dir, meta = the_run(out)
    trials = {t["trial"]: t for t in meta["trainings"] if t.get("trial") is not None}
    assert sorted(t["status"] for t in trials.values()) == ["complete", "pruned", "pruned", "pruned"]
    assert sorted(t["epochs_done"] for t in trials.values()) == [1, 1, 2, 3]  # rungs 1, 2 and 3
    assert meta["tuning"]["studies"]["ffn on cpu"]["promoted"] == [1, 2]
    rows = [r for r in rows_of(run_dir) if r["trial"] != ""]
    assert len(rows) == 1 + 1 + 2 + 3  # a pruned trial's rows are kept
    # at rung 1 the two best by validation accuracy went on
    at1 = sorted(((float(r["val_accuracy"]), -int(r["trial"])) for r in rows if r["epoch"] == "1"), reverse=True)
    on = {-k for _, k in at1[:2]}
    assert {n for n, t in trials.items() if t["epochs_done"] >= 2} == on
    states = study_states(run_dir, "ffn on cpu")
    assert sorted(s for s, _ in states.values()) == ["COMPLETE", "PRUNED", "PRUNED", "PRUNED"]
    assert "pruned at epoch 1: validation accuracy" in proc.stderr
    report = (run_dir / "report" / "report.md").read_text()
    assert "Successive halving pruned the trials" in report and "pruned trials never reached the last epoch" in report


def test_a_seconds_budget_stops_asking_for_trials(tmp_path):
    """A budget smaller than one trial: the first wave (one trial: the local executor runs one at a time) is all."""
    out = tmp_path / "out"
    proc = bench_run("--models", "ffn", "--budget-seconds", "0.000001", "--epochs", "1", *SMALL, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    run_dir, meta = the_run(out)
    trials = [t for t in meta["trainings"] if t.get("trial") is not None]
    assert len(trials) == 1 and meta["tuning"]["budget_seconds"] == pytest.approx(1e-6)
    assert [t["seed"] for t in meta["trainings"] if t.get("picked_trial") == 0] == [0]


def test_an_interrupted_tuning_run_resumes_the_same_study(tmp_path):
    """Ctrl-C during the trials, then --resume: the trials it had asked are finished, none asked twice, the study in
    study.db goes on (the same numbers), and the rows are one per epoch."""
    out = tmp_path / "out"
    args = [sys.executable, "-m", "bench.run", "--models", "ffn", "--tune", "4", "--epochs", "3", *SMALL,
            "--max-batches", "30", "--out", str(out), "--no-report"]  # fmt: skip
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "trial 1 seed 10001 epoch 1/3" in line:
            proc.send_signal(signal.SIGINT)
            break
    proc.stderr.read()
    assert proc.wait() == 130
    run_dir, meta = the_run(out)
    assert meta["status"] == "interrupted" and len([t for t in meta["trainings"] if t.get("trial") is not None]) == 4
    # a report of the study so far: its trials' tuning section, not "no training finished an epoch"
    report = subprocess.run([sys.executable, "-m", "report", str(run_dir), "--out", str(tmp_path / "so-far")],
                            capture_output=True, text=True)  # fmt: skip
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "so-far" / "report.md").read_text()
    assert "No training finished an epoch" not in text and "### Tuning" in text
    assert "No picked configuration has been trained and scored on the test set yet" in text
    assert (tmp_path / "so-far" / "mnist-mini-cpu-tuning-curve.png").is_file()
    again = bench_run("--resume", str(run_dir))
    assert again.returncode == 0, again.stderr
    _, meta = the_run(out)
    trials = [t for t in meta["trainings"] if t.get("trial") is not None]
    assert len(trials) == 4 and all(t["status"] == "complete" for t in trials) and meta["status"] == "complete"
    rows = rows_of(run_dir)
    keys = [(r["trial"], r["seed"], r["epoch"]) for r in rows]
    assert len(keys) == len(set(keys)) == 4 * 3 + 3  # the picks' one seed: 3 epochs
    states = study_states(run_dir, "ffn on cpu")
    assert sorted(states) == [0, 1, 2, 3] and all(s == "COMPLETE" for s, _ in states.values())


@pytest.mark.slow
def test_a_tuning_run_on_a_dask_cluster_draws_the_same_trials(tmp_path):
    pytest.importorskip("distributed")
    params = []
    for executor in ("local", "dask"):
        out = tmp_path / executor
        extra = ["--executor", "dask", "--workers", "2"] if executor == "dask" else ["--threads", "1"]
        proc = bench_run("--models", "ffn", "--tune", "2", "--epochs", "1", *SMALL, *extra, "--out", str(out), "--no-report")
        assert proc.returncode == 0, proc.stderr
        run_dir, meta = the_run(out)
        params.append([t["params"] for t in meta["trainings"] if t.get("trial") is not None])
        finals = [r for r in rows_of(run_dir) if r["trial"] != "" and r["epoch"] == "1"]
        params[-1].append(sorted(round(float(r["val_accuracy"]), 6) for r in finals))
    assert params[0] == params[1]  # the same draws, the same one-thread trainings


def test_tpe_a_search_space_file_and_the_tune_seed_steer_the_draws(tmp_path):
    """TPE runs its study to the end; a search-space file fixes what it names; another --tune-seed draws otherwise."""
    space = tmp_path / "space.json"
    space.write_text('{"baseline": {"optimizer": "adam", "batch_size": {"choices": [100, 200]}}}')
    drawn = {}
    for seed in (0, 1):
        out = tmp_path / f"seed{seed}"
        proc = bench_run("--models", "ffn", "--tune", "3", "--sampler", "tpe", "--tune-seed", str(seed), "--search-space",
                         str(space), "--epochs", "1", *SMALL, "--out", str(out), "--no-report")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        run_dir, meta = the_run(out)
        assert meta["tuning"]["sampler"] == "tpe" and meta["tuning"]["tune_seed"] == seed
        trials = [t for t in meta["trainings"] if t.get("trial") is not None]
        assert len(trials) == 3 and all(t["status"] == "complete" for t in trials)
        assert all(t["params"]["optimizer"] == "adam" and t["params"]["batch_size"] in (100, 200) for t in trials)
        assert meta["tuning"]["studies"]["ffn on cpu"]["space"]["optimizer"] == "adam"
        drawn[seed] = [t["params"]["lr"] for t in trials]
    assert drawn[0] != drawn[1]


def test_a_seconds_budget_balances_each_batch_across_models():
    """Random search on a seconds budget: each study asks as many trials as take about the seconds of the slowest
    study's batch (never fewer than the slots, never more than its budget's rest), so a cheap model's budget drains at
    the same pace as an expensive one's; TPE and a trial count keep the slots."""

    def trial(model, number, status="complete"):
        return {"model": model, "device": "cpu", "seed": tune.TRIAL_SEED + number, "lr_scale": 1.0, "trial": number,
                "status": status}  # fmt: skip

    seconds_of = {"ffn": 3.0, "snn": 300.0, "lif": 60.0}
    meta = {"trainings": [trial(m, k) for m in seconds_of for k in range(2)],
            "tuning": {"studies": {f"{m} on cpu": {"model": m, "device": "cpu"} for m in seconds_of}}}  # fmt: skip
    tuner = object.__new__(tune.Tuner)
    tuner.meta, tuner.studies = meta, dict.fromkeys(meta["tuning"]["studies"])
    tuner.args = SimpleNamespace(budget_seconds=7200.0, sampler="random", pruner="none", tune=None)

    def seconds(key):
        return seconds_of[key.model]

    counts = tuner._balanced(seconds, 2)
    assert counts == {"ffn on cpu": 200, "snn on cpu": 2, "lif on cpu": 10}  # 2 x 300 s of each
    tuner.args.budget_seconds = 500.0  # snn's budget spent, but a batch still lasts its trials' time; ffn's rest: 494 s
    assert tuner._balanced(seconds, 2) == {"ffn on cpu": 165, "snn on cpu": 2, "lif on cpu": 7}
    tuner.args.sampler = "tpe"
    assert set(tuner._balanced(seconds, 2).values()) == {2}


# ---- the verdict and the early-stopping line, on picks made by hand ----


def picks_frame(curves: dict) -> pd.DataFrame:
    """Epoch rows of the picks: {model: [per seed: [(test accuracy, train seconds[, validation loss]) per epoch]]};
    `ffn` the baseline."""
    from bench import schema

    rows = []
    for model, seeds in curves.items():
        kind = schema.BASELINE if model == "ffn" else "spiking"
        for seed, epochs in enumerate(seeds):
            for epoch, (acc, sec, *loss) in enumerate(epochs, start=1):
                rows.append({"dataset": "mnist", "device": "cpu", "model": model, "run_id": "r", "seed": seed,
                             "lr_scale": 1.0, "kind": kind, "epoch": epoch, "test_accuracy": acc, "train_seconds": sec,
                             "train_samples": 100, "val_loss": loss[0] if loss else math.nan})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_verdict_names_whose_seeds_reached_the_target_and_prices_the_highest_target_both_reached():
    ffn = [[(0.91, 1.0), (0.96, 1.0), (0.975, 1.0), (0.976, 1.0)]] * 3  # mean final 97.6%
    snn = [[(0.90, 10.0), (0.955, 10.0), (0.971, 10.0), (0.972, 10.0)]] * 3  # never 97.6%, 97% after 30 s
    (head, _, line, _) = tuning.verdict(picks_frame({"ffn": ffn, "snn": snn}))
    assert head == "**Verdict at equal budget**"
    assert "snn never reached ffn's mean final accuracy (97.60%) in any of its 3 seed(s)" in line
    # the cost still gets a ratio: at 97%, the highest of the targets every seed of both reached, 30 s against 3 s
    assert "to reach 97% (the highest of 90, 95, 97% that every seed of both reached) snn needs 10x ffn's training " \
           "seconds (30 s against 3 s)" in line  # fmt: skip


def test_the_verdict_says_which_model_s_seeds_reached_the_baseline_s_accuracy():
    ffn = [[(0.95, 1.0), (0.97, 1.0)], [(0.95, 1.0), (0.95, 1.0)]]  # mean final 96%: seed 0 reaches it at 2 s
    snn = [[(0.96, 5.0), (0.96, 5.0)], [(0.89, 5.0), (0.89, 5.0)]]  # seed 0 reaches it at 5 s
    line = tuning.verdict(picks_frame({"ffn": ffn, "snn": snn}))[2]
    assert "snn needs 2.5x ffn's training seconds (5 s against 2 s; snn: 1 of 2 seeds reached it, ffn: 1 of 2)" in line
    assert "90%" not in line  # no common target: seed 1 of snn never reached 95%, nor 90%


def test_early_stopping_is_counted_per_epoch_not_listed_per_training():
    runs = [{"run_id": "r", "schedule": {"epochs": 10, "patience": 2},
             "trainings": [*({"status": "complete", "trial": i, "stopped_early": 3 + i % 2} for i in range(7)),
                           {"status": "complete", "trial": 7}, {"status": "pruned", "trial": 8},
                           {"status": "complete", "trial": None, "stopped_early": 8}]}]  # fmt: skip
    lines = tuning.stopped_early(runs, {"r"})
    assert lines[0] == ("Early stopping (patience 2, run r): 7 of 9 trials stopped before epoch 10 "
                        "(after epoch 3: 4, after epoch 4: 3).")  # fmt: skip
    assert lines[1] == "Early stopping (patience 2, run r): 1 of 1 picks' trainings stopped before epoch 10 (after epoch 8: 1)."


def test_the_picks_are_also_compared_at_their_epoch_of_lowest_validation_loss():
    # ffn's seeds end 2 epochs past their best validation loss, lower than they were there; snn's end at their best
    ffn = [[(0.95, 1.0, 0.30), (0.98, 1.0, 0.10), (0.97, 1.0, 0.12), (0.96, 1.0, 0.15)],
           [(0.95, 1.0, 0.30), (0.97, 1.0, 0.11), (0.96, 1.0, 0.13), (0.95, 1.0, 0.14)],
           [(0.95, 1.0, 0.30), (0.98, 1.0, 0.09), (0.98, 1.0, 0.12), (0.97, 1.0, 0.13)]]  # fmt: skip
    snn = [[(0.96, 5.0, 0.2), (0.97, 5.0, 0.1)], [(0.96, 5.0, 0.2), (0.965, 5.0, 0.1)], [(0.96, 5.0, 0.2), (0.975, 5.0, 0.1)]]
    frame = picks_frame({"ffn": ffn, "snn": snn})
    lines = tuning.best_epoch(frame)
    assert tuning.best_epoch(frame.set_axis([0] * len(frame))) == lines  # rows pooled from several runs: labels repeat
    text = "\n".join(lines)
    assert text.startswith("**At the epoch of lowest validation loss**")
    # ffn: 98, 97, 98 there (mean 97.67) against 96, 95, 97 at the end; snn 97, 96.5, 97.5 either way (mean 97.0)
    assert re.search(r"\| cpu +\| ffn +\| 3 +\| 96\.00 ± 2\.48 +\| 97\.67 ± 1\.43 +\| 2, 2, 2 +\|", text), text
    assert re.search(r"\| cpu +\| snn +\| 3 +\| 97\.00 ± 1\.24 +\| 97\.00 ± 1\.24 +\| 2, 2, 2 +\|", text), text
    assert "- snn against ffn on cpu at that epoch: -0.67 points (95% CI" in text
    assert tuning.best_epoch(picks_frame({"ffn": [[(0.9, 1.0)]] * 3, "snn": [[(0.9, 1.0)]] * 3})) == []  # no val loss
