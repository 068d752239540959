"""The tuned comparison: each model at the learning-rate scale that suits it, against the others at theirs.

A run with ``--lr-scale 0.5 1 2 4`` trains every model at each multiple of its ``--lr`` schedule. One schedule can suit
one model and starve another, so a comparison at scale 1 only can favour whichever model the schedule was tuned for.
Here each model picks the scale with the best mean over seeds of its *final validation accuracy* (on the training
samples ``--validation`` held out, after its last epoch); the picks then meet on the test set, which chose nothing.
Without a validation split the test accuracy picks, and the section says that the result is optimistic.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from report import stats
from report.load import TRAINING
from report.markdown import table
from report.plots import DPI, colors, finish, slug, t_interval
from report.pooling import scale_text
from report.runs import validation


def has_grid(data: pd.DataFrame) -> bool:
    """Whether ``data`` (one section's epoch rows) holds more than one learning-rate scale."""
    return "lr_scale" in data.columns and data["lr_scale"].nunique() > 1


def per_training(data: pd.DataFrame) -> pd.DataFrame:
    """One row per training: ``stats.trainings``' columns with ``model`` its spec (``snn``, not ``snn (lr x2)``), and
    ``final_val``: its validation accuracy at the last epoch it reached (NaN without a validation split)."""
    keys = stats.by(data, *TRAINING)
    last = data.sort_values("epoch", kind="stable").groupby(keys, sort=False).tail(1)
    out = stats.trainings(data).merge(last[[*keys, "spec", "val_accuracy"]], on=keys, how="left")
    return out.rename(columns={"model": "label", "spec": "model", "val_accuracy": "final_val"})


def scores(trainings: pd.DataFrame, validated: bool) -> pd.DataFrame:
    """Per device x model x scale: seeds, final validation accuracy (mean and 95% CI), final test accuracy (mean), and
    ``picked``: the scale of each device x model with the best mean final validation accuracy (test accuracy when not
    ``validated``); on a tie the scale nearest 1, the schedule as given."""
    rows = []
    for (device, model, scale), g in trainings.groupby(["device", "model", "lr_scale"], sort=False):
        val = g["final_val"].dropna()
        mean, low, high = stats.mean_ci(val) if len(val) else (math.nan,) * 3
        rows.append({"device": device, "model": model, "lr_scale": scale, "kind": g["kind"].iloc[0], "seeds": len(g),
                     "val": mean, "val_low": low, "val_high": high, "test": g["final_accuracy"].mean()})  # fmt: skip
    out = pd.DataFrame(rows)
    out["score"] = out["val" if validated else "test"]
    ranked = out.assign(_near=(out["lr_scale"].map(math.log)).abs()).sort_values(["score", "_near"], ascending=[False, True])
    best = ranked.groupby(["device", "model"], sort=False).head(1).index
    out["picked"] = out.index.isin(best)
    order = {m: i for i, m in enumerate(dict.fromkeys(out["model"]))}
    return out.sort_values(["device", "model", "lr_scale"], key=lambda c: c.map(order) if c.name == "model" else c,
                           kind="stable").reset_index(drop=True)  # fmt: skip


def comparisons(trainings: pd.DataFrame, picked: pd.DataFrame) -> pd.DataFrame:
    """From ``scores``' rows (``picked``): every SNN-like model at its picked scale against every baseline at its own,
    on the same device: test accuracy (``stats.compare``: Welch over seeds) and training time per epoch;
    ``tried_snn``/``tried_ffn``: the scales each had."""
    rows = []
    for device, g in picked[picked["picked"]].groupby("device", sort=False):
        ffns = stats.baselines(g)
        best = dict(zip(g["model"], g["lr_scale"]))
        mine = trainings[trainings["device"] == device]
        tried = mine.groupby("model")["lr_scale"].unique().map(sorted)
        for snn in (m for m in best if m not in ffns):
            for ffn in ffns:
                a = mine[(mine["model"] == snn) & (mine["lr_scale"] == best[snn])]
                b = mine[(mine["model"] == ffn) & (mine["lr_scale"] == best[ffn])]
                rows.append({"device": device, "snn": f"{snn} at x{scale_text(best[snn])}",
                             "ffn": f"{ffn} at x{scale_text(best[ffn])}", "tried_snn": tried[snn],
                             "tried_ffn": tried[ffn], **stats.compare(a, b)})  # fmt: skip
    return pd.DataFrame(rows)


def sentence(row, chosen_on: str) -> str:
    """The budget (the scales each model tried and what chose among them), then ``stats.sentence`` on the test set."""
    listed = [", ".join(map(scale_text, row[side])) for side in ("tried_snn", "tried_ffn")]
    if listed[0] == listed[1]:
        n = len(row["tried_snn"])
        budget = f"Each model tried {n} learning-rate scale{'s' if n != 1 else ''} ({listed[0]} x the schedule)"
    else:
        budget = f"{row['snn'].rsplit(' at ', 1)[0]} tried the scales {listed[0]} and {row['ffn'].rsplit(' at ', 1)[0]} " \
                 f"the scales {listed[1]} (x the schedule)"  # fmt: skip
    verdict = stats.sentence(row)
    if verdict.startswith("The accuracy difference"):
        verdict = "t" + verdict[1:]
    return f"{budget}, chosen on {chosen_on}; {verdict}"


def figure(trainings: pd.DataFrame, picked: pd.DataFrame, validated: bool, dataset: str) -> plt.Figure:
    """Final validation accuracy (test accuracy without a split) against the scale, log x: mean and 95% band over
    seeds per model, the picked scale circled."""
    column, name = ("final_val", "validation") if validated else ("final_accuracy", "test")
    data = trainings.assign(pct=100 * trainings[column])
    several = data["device"].nunique() > 1
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    sns.lineplot(data=data, x="lr_scale", y="pct", hue="model", style="device" if several else None, marker="o",
                 errorbar=t_interval(0, 100), palette=colors(data["model"]), ax=ax)  # fmt: skip
    chosen = picked[picked["picked"]]
    ax.scatter(chosen["lr_scale"], 100 * chosen["score"], s=220, facecolors="none", edgecolors="black", linewidths=1.5,
               zorder=5, label="picked")  # fmt: skip
    ax.set_xscale("log")
    ticks = sorted(set(data["lr_scale"]))
    ax.set_xticks(ticks, [scale_text(t) for t in ticks])
    ax.minorticks_off()
    ax.set(xlabel="learning-rate scale (x the --lr schedule, log scale)", ylabel=f"final {name} accuracy (%)",
           title=f"{dataset}: final {name} accuracy against the learning-rate scale (mean and 95% CI over seeds)")  # fmt: skip
    return finish(fig, ax)


def scores_table(picked: pd.DataFrame, validated: bool) -> str:
    rows = []
    for r in picked.to_dict("records"):
        row = {"device": r["device"], "model": r["model"], "lr scale": scale_text(r["lr_scale"]), "seeds": str(r["seeds"])}
        if validated:
            row["final val. acc. (%, mean ± 95% CI)"] = _pm(r["val"], r["val_low"], r["val_high"])
        row["final test acc. (%, mean)"] = f"{100 * r['test']:.2f}"
        row["picked" if validated else "picked (by test acc.)"] = "yes" if r["picked"] else "-"
        rows.append(row)
    return table(rows)


def section(data: pd.DataFrame, runs: list[dict], dataset: str, out_dir: Path, prefix: str | None = None) -> list[str]:
    """The "Tuned comparison" Markdown of one section and its PNG; nothing unless the section has several scales."""
    if not has_grid(data):
        return []
    lines, validated, trainings, picked = text(data, runs)
    file = f"{prefix or slug(dataset)}-lr-scales.png"
    fig = figure(trainings, picked, validated, dataset)
    fig.savefig(out_dir / file, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    caption = "Tuned comparison: final " + ("validation" if validated else "test") + " accuracy against the scale"
    return [*lines, f"**{caption}** (circled: the scale each model picks)\n\n![{caption}]({file})\n"]


def text(data: pd.DataFrame, runs: list[dict]) -> tuple[list[str], bool, pd.DataFrame, pd.DataFrame]:
    """The tuned comparison's Markdown without its figure (heading, how the scales were picked, the scores table, a
    sentence per comparison), whether a validation split picked, and ``per_training``'s and ``scores``' frames."""
    trainings = per_training(data)
    validated = bool(trainings["final_val"].notna().all())
    picked = scores(trainings, validated)
    held = {validation(m) for m in runs if m["run_id"] in set(data["run_id"])} - {0}
    if validated:
        chosen_on = f"{held.pop():,} held-out training samples" if len(held) == 1 else "held-out training samples"
        how = (f"Each model picks the scale with the best mean final validation accuracy: the accuracy, after its last "
               f"epoch, on the {chosen_on} (`--validation`) that it never trained on. The picks then meet on the test "
               "set, which played no part in the choice.")  # fmt: skip
    else:
        chosen_on = "the test set itself (optimistic)"
        how = ("**No validation split:** " + ("these runs held out no training samples (`--validation 0`)" if not held
               else "not every training recorded a validation accuracy") + ", so each model's scale is picked by its "
               "final test accuracy, the same accuracy then compared. The choice is optimistic because the test set "
               "chose it; rerun with `--validation N` for a fair verdict.")  # fmt: skip
    rows = comparisons(trainings, picked)
    lines = [
        "### Tuned comparison: each model at its own learning-rate scale", "",
        "Every model here was trained at several multiples (scales) of the `--lr` schedule; the tables above list "
        f"each scale as a model of its own (`snn (lr x2)`). {how} On a tie the scale nearest 1 is picked.", "",
        scores_table(picked, validated), "",
    ]  # fmt: skip
    if rows.empty:
        lines += ["No comparison: no device here has both an SNN-like model and a baseline (FFN-like) model.", ""]
    else:
        lines += [*[f"- {sentence(r, chosen_on)}" for _, r in rows.iterrows()], ""]
        if (rows[["seeds_snn", "seeds_ffn"]].min(axis=1) < stats.MIN_SEEDS).any():
            lines += [f"With fewer than {stats.MIN_SEEDS} seeds on either side there is no interval and no p-value.", ""]
    return lines, validated, trainings, picked


def _pm(mean: float, low: float, high: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{100 * mean:.2f} (one seed)" if math.isnan(low) else f"{100 * mean:.2f} ± {100 * (high - mean):.2f}"
