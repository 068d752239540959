"""The tuning section of a tuning run (``bench.run --tune``): what each model's study spent and picked, its tuning
curve and every trial's accuracy against its training cost.

- **Tuning curve** (Dodge et al., "Show your work", EMNLP 2019): the expected best validation accuracy after n trials
  drawn at random from the search space, for n = 1 .. N, from the N trials' final validation accuracies v_(1) <= ... <=
  v_(N): E[max of n] = sum_i v_(i) [(i/N)^n - ((i-1)/N)^n] (draws with replacement from the empirical distribution),
  with a 95% percentile band from scipy.stats.bootstrap over the trials. Against training seconds, n trials cost n
  times the study's mean seconds per trial. Pruned trials have no final accuracy at ``--epochs``: a curve over a
  pruned study is of the trials that reached the end only, and says so. Valid for the random sampler (independent
  draws); for TPE the trials are not independent and the section says the curve is indicative.
- **Accuracy against training cost**: every trial a point (its training seconds, its final validation accuracy); each
  model's Pareto front (the best accuracy reached for at most that many seconds) a step line.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy import stats as sps

from bench import schema
from report.markdown import table
from report.plots import DPI, colors, finish, slug


def expected_max(values, n: int, axis: int = -1) -> np.ndarray:
    """Dodge et al.'s expected maximum of ``n`` draws (with replacement) from the empirical distribution of ``values``
    (along ``axis``; vectorised for scipy.stats.bootstrap)."""
    v = np.sort(np.asarray(values, dtype=float), axis=axis)
    big = v.shape[axis]
    i = np.arange(1, big + 1, dtype=float)
    weights = (i / big) ** n - ((i - 1) / big) ** n
    return np.sum(np.moveaxis(v, axis, -1) * weights, axis=-1)


def curve(values, seed: int = 0) -> pd.DataFrame:
    """The tuning curve of one study: n, expected best, and its 95% bootstrap band (NaN for fewer than 2 trials)."""
    values = np.asarray(values, dtype=float)
    rows = []
    for n in range(1, len(values) + 1):
        mean = float(expected_max(values, n))
        low = high = math.nan
        if len(values) > 1 and np.ptp(values) > 0:
            ci = sps.bootstrap((values,), lambda x, axis, n=n: expected_max(x, n, axis), vectorized=True, n_resamples=2000,
                               method="percentile", random_state=np.random.default_rng(seed)).confidence_interval  # fmt: skip
            low, high = float(ci.low), float(ci.high)
        elif len(values) > 1:
            low = high = mean
        rows.append({"n": n, "expected_best": mean, "low": low, "high": high})
    return pd.DataFrame(rows)


def per_trial(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: model, device, trial, status, epochs reached, training seconds, final validation accuracy
    (at its last epoch), whether it reached ``--epochs`` (not pruned) and whether it was picked."""
    last = trials.sort_values("epoch").groupby(["run_id", "spec", "device", "trial"], sort=False).tail(1)
    seconds = trials.groupby(["run_id", "spec", "device", "trial"], sort=False)["train_seconds"].sum()
    out = last.set_index(["run_id", "spec", "device", "trial"])
    out = out.assign(seconds=seconds, epochs=out["epoch"]).reset_index()
    return out.drop(columns="model").rename(columns={"spec": "model", "val_accuracy": "final_val"})


def section(trials: pd.DataFrame, runs: list[dict], dataset: str, out_dir: Path, prefix: str | None = None,
            picks: pd.DataFrame | None = None) -> list[str]:  # fmt: skip
    """The "Tuning" Markdown of one dataset's tuning runs (``picks``: the section's epoch rows, the picks' trainings),
    and its two figures per device."""
    lines, one = summary(trials, runs, dataset, picks)
    for device, g in one.groupby("device", sort=False):
        for file, caption in figure_files(prefix or slug(dataset), device):
            fig = tuning_figure(g, dataset) if file.endswith("tuning-curve.png") else pareto_figure(g, dataset)
            fig.savefig(out_dir / file, dpi=DPI, bbox_inches="tight")
            plt.close(fig)
            lines += [f"**{caption}**\n\n![{caption}]({file})\n"]
    return lines


def figure_files(prefix: str, device: str) -> list[tuple[str, str]]:
    """The tuning section's two figures on ``device``: file name and caption."""
    stem = f"{prefix}-{slug(device)}"
    return [(f"{stem}-tuning-curve.png", f"Tuning curves on {device}"),
            (f"{stem}-accuracy-cost.png", f"Accuracy against training cost on {device}")]  # fmt: skip


def summary(trials: pd.DataFrame, runs: list[dict], dataset: str,
            picks: pd.DataFrame | None = None) -> tuple[list[str], pd.DataFrame]:  # fmt: skip
    """The tuning section's text without its figures (what each study spent and picked; with ``picks``, the verdict at
    equal budget, early stopping and time to accuracy), and the per-trial table it is built from."""
    if trials is None or trials.empty:
        return [], pd.DataFrame(columns=["device"])
    mine = {m["run_id"]: m for m in runs if m.get("tuning")}
    trials = trials[(trials["dataset"] == dataset) & trials["run_id"].isin(mine)]
    if trials.empty:
        return [], pd.DataFrame(columns=["device"])
    one = per_trial(trials)
    settings = [mine[r]["tuning"] for r in dict.fromkeys(one["run_id"])]
    samplers = {s.get("sampler") for s in settings}
    lines = ["### Tuning", "", _how(settings, mine, one), ""]
    rows = []
    for (model, device), g in one.groupby(["model", "device"], sort=False):
        done = g[g["status"] == "complete"]
        pick = g[g["picked"] == True]  # noqa: E712  (a column of objects: True, False or NaN)
        rows.append({
            "model": model, "device": device, "trials": len(g), "complete": len(done),
            "pruned": int((g["status"] == "pruned").sum()), "failed": int(g["status"].isin(["diverged", "failed", "oom"]).sum()),
            "epochs trained": int(g["epochs"].sum()), "train s (budget used)": round(float(g["seconds"].sum()), 2),
            "best validation (%)": round(100 * float(done["final_val"].max()), 2) if len(done) else math.nan,
            "picked": _params(pick.iloc[0]) if len(pick) else "none",
        })  # fmt: skip
    lines += [table(pd.DataFrame(rows)), ""]
    note = ("The curves assume independent draws (the random sampler)" if samplers == {"random"} else
            "**TPE chose these trials from the earlier ones: they are not independent draws, so the tuning curve is "
            "indicative only** (Dodge et al.'s estimator assumes random search)")  # fmt: skip
    if (one["status"] == "pruned").any():
        note += "; pruned trials never reached the last epoch, so the curves use the trials that did"
    lines += [note + ".", ""]
    if picks is not None and len(picks):
        picks = picks[picks["run_id"].isin(mine)]
        lines += verdict(picks) + best_epoch(picks) + stopped_early(runs, set(mine)) + time_to(picks)
    return lines, one


def _how(settings: list[dict], runs: dict, one: pd.DataFrame) -> str:
    s = settings[0]
    budget = [f"{s['trials']} trials" if s.get("trials") else None,
              f"{s['budget_seconds']:g} s of training" if s.get("budget_seconds") else None]  # fmt: skip
    pruned = (f" Successive halving pruned the trials: rungs from {s['min_epochs']} epoch(s), the best 1/"
              f"{s['reduction_factor']} going on at each." if s.get("pruner") == "halving" else "")  # fmt: skip
    return (f"Each model had its own study ({' and at most '.join(b for b in budget if b)} per model and device, "
            f"{s['sampler']} sampler, seed {s['tune_seed']}). Every trial is a training scored on the held-out "
            "validation samples only; the best one's configuration is then trained with fresh seeds, and only those "
            f"trainings are scored on the test set.{pruned} Budget used: the training seconds of "
            "all of a study's trials, on its device.")  # fmt: skip


def _params(row) -> str:
    """A trial's hyperparameters (its ``param_*`` columns, report.load) in bench.schema.describe_params' words, and
    its number."""
    params = {k.removeprefix("param_"): v for k, v in row.items() if k.startswith("param_")}
    return f"{schema.describe_params(params)}, trial {int(row['trial'])}"


ZOOM = {"tuning": 2.0, "pareto": 3.0}  # the lower panels show the top this many points: where the models differ


def tuning_figure(one: pd.DataFrame, dataset: str) -> plt.Figure:
    """Expected best validation accuracy against trials and against training seconds, a band per model; below, the
    same curves over the top ZOOM["tuning"] points, where the tuned models differ by tenths."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex="col")
    palette = colors(list(dict.fromkeys(one["model"])))
    top = -math.inf
    for model, g in one.groupby("model", sort=False):
        done = g[g["status"] == "complete"]
        if done.empty:
            continue
        c = curve(100 * done["final_val"].to_numpy())
        top = max(top, float(c["high"].max()))
        per = float(done["seconds"].mean())
        for row in axes:
            for ax, x in ((row[0], c["n"]), (row[1], c["n"] * per)):
                ax.plot(x, c["expected_best"], marker="o", ms=3, color=palette[model], label=model)
                ax.fill_between(x, c["low"], c["high"], color=palette[model], alpha=0.2, lw=0)
    for row in axes:
        row[0].set(ylabel="expected best validation accuracy (%)")
        row[1].set_xscale("log")
        row[1].sharey(row[0])
    axes[1, 0].set(xlabel="trials")
    axes[1, 1].set(xlabel="training seconds (trials x mean seconds per trial)")
    if math.isfinite(top):
        axes[1, 0].set_ylim(top - ZOOM["tuning"], top + 0.1)
        axes[1, 0].set_title(f"the top {ZOOM['tuning']:g} points", fontsize=9)
        axes[1, 1].set_title(f"the top {ZOOM['tuning']:g} points", fontsize=9)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{dataset}: tuning curves (Dodge et al. 2019), 95% bootstrap bands", fontsize=10)
    for ax in axes.flat:
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def pareto_front(points: pd.DataFrame) -> pd.DataFrame:
    """The points no other beats in both cost (``seconds``, lower) and accuracy (``final_val``, higher), by cost."""
    ordered = points.sort_values(["seconds", "final_val"], ascending=[True, False])
    best, keep = -math.inf, []
    for index, value in zip(ordered.index, ordered["final_val"]):
        if value > best:
            keep.append(index)
            best = value
    return ordered.loc[keep]


def pareto_figure(one: pd.DataFrame, dataset: str) -> plt.Figure:
    """Every trial a point (training seconds, final validation accuracy), each model's Pareto front a step line; on the
    right the same over the top ZOOM["pareto"] points, where the fronts of well-tuned models part."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    palette = colors(list(dict.fromkeys(one["model"])))
    data = one.assign(accuracy=100 * one["final_val"], ended=one["status"].where(one["status"] == "pruned", "trained"))
    styles = [s for s in ("trained", "pruned") if s in set(data["ended"])]
    for ax in axes:
        sns.scatterplot(data=data, x="seconds", y="accuracy", hue="model", style="ended", palette=palette, ax=ax, s=30,
                        style_order=styles, legend=ax is axes[1])  # fmt: skip
        for model, g in data.groupby("model", sort=False):
            front = pareto_front(g.dropna(subset=["final_val"]))
            if len(front):
                ax.step(front["seconds"], 100 * front["final_val"], where="post", color=palette[model], lw=1.5)
        ax.set(xscale="log", xlabel="training seconds of the trial", ylabel="final validation accuracy (%)")
    axes[0].set_title(f"{dataset}: every trial, and each model's Pareto front")
    top = data["accuracy"].max()
    if math.isfinite(top):
        axes[1].set_ylim(top - ZOOM["pareto"], top + 0.15)
        axes[1].set_title(f"the top {ZOOM['pareto']:g} points")
    axes[0].title.set_fontsize(10)
    axes[0].grid(alpha=0.3, which="both")
    return finish(fig, axes[1])


TARGETS = (0.90, 0.95, 0.97)  # time to these test accuracies (MLPerf's time to train, at several targets)


def verdict(picks: pd.DataFrame) -> list[str]:
    """One sentence per SNN pick against each baseline pick on a device: at equal tuning budget, the difference in
    final test accuracy with Welch's 95% CI (report.stats), and the ratio of the training seconds each needs to reach
    the baseline's mean final accuracy (MLPerf's time to target, the baseline's own accuracy the target)."""
    from report import stats

    per = stats.trainings(picks)
    lines = []
    for device, g in per.groupby("device", sort=False):
        ffns = stats.baselines(g)
        for snn in (m for m in dict.fromkeys(g["model"]) if m not in ffns):
            for ffn in ffns:
                a, b = g[g["model"] == snn], g[g["model"] == ffn]
                row = {"device": device, "snn": snn, "ffn": ffn, **stats.compare(a, b)}
                target = float(b["final_accuracy"].mean())
                reach = stats.time_to_accuracy(picks[picks["device"] == device], target).set_index("model")
                s_snn, s_ffn = (reach.loc[m] if m in reach.index else None for m in (snn, ffn))
                if s_snn is None or s_ffn is None or s_ffn["reached"] == 0:
                    cost = "the time to reach the baseline's accuracy is not measured"
                elif s_snn["reached"] == 0:
                    cost = (f"{snn} never reached {ffn}'s mean final accuracy ({100 * target:.2f}%) in any of its "
                            f"{int(s_snn['seeds'])} seed(s)")  # fmt: skip
                else:
                    cost = (f"to reach {ffn}'s mean final accuracy ({100 * target:.2f}%) {snn} needs "
                            f"{stats.ratio(s_snn['seconds'] / s_ffn['seconds'])} {ffn}'s training seconds "
                            f"({s_snn['seconds']:.3g} s against {s_ffn['seconds']:.3g} s; {snn}: {int(s_snn['reached'])} "
                            f"of {int(s_snn['seeds'])} seeds reached it, {ffn}: {int(s_ffn['reached'])} of "
                            f"{int(s_ffn['seeds'])})")  # fmt: skip
                common = _common_target(picks[picks["device"] == device], snn, ffn)
                if common:
                    cost += common
                said = stats.sentence(row)[:-1]
                said = "t" + said[1:] if said.startswith("The ") else said
                lines.append(f"- At equal tuning budget, {said}; {cost}.")
    return ["**Verdict at equal budget**", "", *lines, ""] if lines else []


def best_epoch(picks: pd.DataFrame) -> list[str]:
    """The picks' test accuracy at each training's epoch of lowest validation loss (what early stopping that restores
    the best weights would keep; chosen on validation only) beside the final one, and each SNN against each baseline
    there (Welch's 95% CI): the verdict should not hang on scoring the last epoch. The picks are cut after that epoch
    and read by report.stats as any other trainings. Nothing without validation losses."""
    from report import stats
    from report.load import TRAINING
    from report.markdown import _pm

    if "val_loss" not in picks.columns or picks["val_loss"].isna().all():
        return []
    keys = stats.by(picks, *TRAINING)
    ordered = picks.sort_values("epoch").reset_index(drop=True)  # idxmin's labels must name one row each
    best = ordered.loc[ordered.dropna(subset=["val_loss"]).groupby(keys, sort=False)["val_loss"].idxmin(), [*keys, "epoch"]]
    cut = ordered.merge(best.rename(columns={"epoch": "best_epoch"}), on=keys)
    cut = cut[cut["epoch"] <= cut["best_epoch"]]
    row_keys = stats.by(picks, "dataset", "device", "model")
    last = stats.summary(picks)[[*row_keys, "final_accuracy", "ci_low", "ci_high"]]
    both = stats.summary(cut).merge(last, on=row_keys, suffixes=("", "_last"))
    epochs = best.sort_values("seed").groupby(["device", "model"], sort=False)["epoch"].agg(lambda e: ", ".join(map(str, e)))
    rows = [{
        "device": r["device"], "model": r["model"], "seeds": r["seeds"],
        "final test acc. (%, mean ± 95% CI)": _pm(r["final_accuracy_last"], r["ci_low_last"], r["ci_high_last"]),
        "at lowest val. loss (%)": _pm(r["final_accuracy"], r["ci_low"], r["ci_high"]),
        "its epochs": epochs[(r["device"], r["model"])],
    } for r in both.to_dict("records")]  # fmt: skip
    lines = []
    for c in stats.head_to_head(cut).to_dict("records"):
        ci = (f"95% CI {c['ci_low']:+.2f} to {c['ci_high']:+.2f}, p = {c['p_value']:.2g}"
              if not math.isnan(c["p_value"]) else "too few seeds for an interval")  # fmt: skip
        lines.append(f"- {c['snn']} against {c['ffn']} on {c['device']} at that epoch: {c['difference']:+.2f} points ({ci}).")
    head = ("**At the epoch of lowest validation loss** (each pick's training scored at the epoch early stopping would "
            "restore, chosen on validation only, beside its last epoch)")  # fmt: skip
    return [head, "", table(rows, numbers=False), "", *lines, ""] if rows else []


def _common_target(picks: pd.DataFrame, snn: str, ffn: str, targets=TARGETS) -> str:
    """The cost ratio at the highest of ``targets`` that every seed of both models reached (the baseline's own mean
    accuracy, the verdict's first target, may be out of reach for an equally accurate model), as a clause; '' if none."""
    from report import stats

    for target in sorted(targets, reverse=True):
        reach = stats.time_to_accuracy(picks, target).set_index("model")
        everyone = snn in reach.index and ffn in reach.index
        if everyone and all(reach.loc[m, "reached"] == reach.loc[m, "seeds"] for m in (snn, ffn)):
            a, b = reach.loc[snn, "seconds"], reach.loc[ffn, "seconds"]
            shown = ", ".join(f"{100 * t:g}" for t in targets)
            return (f"; to reach {100 * target:g}% (the highest of {shown}% that every seed of both reached) {snn} needs "
                    f"{stats.ratio(a / b)} {ffn}'s training seconds ({a:.3g} s against {b:.3g} s)")  # fmt: skip
    return ""


def time_to(picks: pd.DataFrame, targets=TARGETS) -> list[str]:
    """The picks' training seconds to reach each target test accuracy (report.stats.time_to_accuracy): mean and 95%
    t-interval over the seeds that reached it, and how many did."""
    from report import stats

    rows: dict[tuple, dict] = {}
    for target in targets:
        for r in stats.time_to_accuracy(picks, target).itertuples():
            row = rows.setdefault((r.device, r.model), {"device": r.device, "model": r.model})
            interval = f" [{r.low:.3g}, {r.high:.3g}]" if not math.isnan(r.low) else ""
            row[f"{100 * target:g}%"] = (f"not reached (0 of {r.seeds})" if r.reached == 0 else
                                         f"{r.seconds:.3g} s{interval} ({r.reached} of {r.seeds})")  # fmt: skip
    head = ("**Time to accuracy** (training seconds until the test accuracy after an epoch first reaches the target; "
            "mean over the seeds that reached it, 95% t-interval)")  # fmt: skip
    return [head, "", table(list(rows.values()), numbers=False), ""]


def stopped_early(runs: list[dict], run_ids: set) -> list[str]:
    """How many trainings early stopping (--patience) ended, and at which epochs."""
    lines = []
    for m in runs:
        patience = (m.get("schedule") or {}).get("patience")
        if m["run_id"] not in run_ids or not patience:
            continue
        trainings = [t for t in m.get("trainings") or [] if t.get("status") in ("complete", "pruned")]
        early = [t for t in trainings if t.get("stopped_early")]
        for kind, group in (("trials", [t for t in early if t.get("trial") is not None]),
                            ("picks' trainings", [t for t in early if t.get("trial") is None])):  # fmt: skip
            total = sum((t.get("trial") is not None) == (kind == "trials") for t in trainings)
            counts = pd.Series([t["stopped_early"] for t in group], dtype=int).value_counts().sort_index()
            epochs = " (" + ", ".join(f"after epoch {e}: {n}" for e, n in counts.items()) + ")" if len(counts) else ""
            lines.append(f"Early stopping (patience {patience}, run {m['run_id']}): {len(group)} of {total} {kind} "
                         f"stopped before epoch {m['schedule'].get('epochs')}{epochs}.")  # fmt: skip
    return [*lines, ""] if lines else []
