"""The time-step sweep: SNN-like models that differ only in ``time_steps`` (T), their accuracy and training time
against T, with the baselines (FFNs) of the same dataset as reference lines.

A *family* is one registry name with one config apart from time_steps (``snn:time_steps=32`` and ``snn`` with T = 128
are one family, ``snn:reset=proportional`` another; each learning-rate scale is a family of its own: ``snn (lr x2)``). T
comes from run.json, else from the label; a model whose T is unknown is left out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from report import pooling, stats
from report.activity import final_rows, recorded
from report.load import TRAINING
from report.markdown import per_epoch, table
from report.plots import DPI, HEIGHT, slug, t_interval
from report.runs import model_info, partial_epochs


def families(data: pd.DataFrame, runs: list[dict]) -> pd.DataFrame:
    """One row per SNN-like label with a known T: model, family (the label without ``time_steps``), T.

    Only families with at least two distinct T are kept: one T is not a sweep.
    """
    ffns = stats.baselines(data)
    labels = [m for m in dict.fromkeys(data["model"]) if m not in ffns]
    scale = dict(zip(data["model"], data["lr_scale"]))
    rows = []
    for label, info in model_info(runs, labels).items():
        config = dict(info["config"])
        steps = config.pop("time_steps", None)
        if not isinstance(steps, int) or steps <= 0:
            continue
        name, _, rest = pooling.spec_of(label).partition(":")
        keys = [item for item in rest.split(",") if item and not item.startswith("time_steps=")]
        family = pooling.label(name + (":" + ",".join(keys) if keys else ""), scale[label])
        rows.append({"model": label, "family": family, "T": steps,
                     "key": json.dumps([info["name"], config, scale[label]], sort_keys=True, default=str)})  # fmt: skip
    found = pd.DataFrame(rows, columns=["model", "family", "T", "key"])
    sizes = found.groupby("key")["T"].transform("nunique")
    found = found[sizes >= 2]
    # one display name per family: the first label's, so two spellings of one config cannot split it
    found["family"] = found.groupby("key")["family"].transform("first")
    return found.drop(columns="key").reset_index(drop=True)


def per_training(data: pd.DataFrame, runs: list[dict]) -> pd.DataFrame:
    """Each training of a swept model: family, T, final accuracy (%), seconds per epoch and dense ops per sample."""
    swept = families(data, runs)
    if swept.empty:
        return pd.DataFrame()
    out = stats.trainings(data).merge(swept, on="model")
    out = out.merge(final_rows(data)[TRAINING + ["dense_ops"]], on=TRAINING, how="left")
    return out.assign(final_accuracy_pct=100 * out["final_accuracy"]).sort_values(["family", "device", "T"], kind="stable")


def sweep_table(swept: pd.DataFrame, with_ops: bool, partial: str | None = None) -> str:
    rows = []
    for (family, device, steps), g in swept.groupby(["family", "device", "T"], sort=False):
        mean, low, high = stats.mean_ci(g["final_accuracy"])
        row = {
            "family": family, "device": device, "T": str(steps), "seeds": str(len(g)),
            "final test acc. (%, mean ± 95% CI)": f"{100 * mean:.2f} (one seed)" if math.isnan(low)
            else f"{100 * mean:.2f} ± {100 * (high - mean):.2f}",
            per_epoch(partial): stats.number(g["seconds_per_epoch"].mean(), ".3g"),
        }  # fmt: skip
        if with_ops:
            ops = g["dense_ops"].mean()
            row["dense ops/sample"] = "-" if math.isnan(ops) else f"{ops:,.0f}"
        rows.append(row)
    return table(rows)


def figure(swept: pd.DataFrame, ffns: pd.DataFrame, dataset: str, partial: str | None = None) -> plt.Figure:
    """Accuracy and seconds per epoch against T (log2), one line per family; the FFNs dashed and labelled."""
    fig, axes = plt.subplots(1, 2, figsize=(2 * HEIGHT * 1.5, HEIGHT * 1.2), sharex=True)
    several = swept["device"].nunique() > 1
    style = {"hue": "family", "style": "device" if several else None, "marker": "o"}
    sns.lineplot(data=swept, x="T", y="final_accuracy_pct", errorbar=t_interval(0, 100), ax=axes[0], **style)
    sns.lineplot(data=swept, x="T", y="seconds_per_epoch", errorbar=t_interval(0), ax=axes[1], legend=False, **style)
    seconds = pd.concat([swept["seconds_per_epoch"], ffns["seconds_per_epoch"]])
    if seconds.min() > 0 and seconds.max() / seconds.min() > 10:  # (a log axis cannot show 0)
        axes[1].set_yscale("log")
    # the FFNs in the legend rather than written on the lines: on several devices their accuracies can coincide
    legend = axes[0].get_legend()
    handles, labels = list(legend.legend_handles), [text.get_text() for text in legend.texts]
    shades = ["dimgrey", "darkgrey", "black", "silver"]
    for i, ((ffn, device), g) in enumerate(ffns.groupby(["model", "device"], sort=False)):
        kind = {"color": shades[i % len(shades)], "linestyle": "--", "linewidth": 1}
        axes[0].axhline(100 * g["final_accuracy"].mean(), **kind)
        handles.append(axes[1].axhline(g["seconds_per_epoch"].mean(), **kind))
        labels.append(f"{ffn} ({device})" if several else ffn)
    axes[0].legend(handles, labels, fontsize=8)
    steps = sorted(set(swept["T"]))
    for ax, ylabel in [(axes[0], "final test accuracy (%)"), (axes[1], "training time per epoch (s)")]:
        ax.set_xscale("log", base=2)
        ax.set_xticks(steps, [str(t) for t in steps])
        ax.minorticks_off()
        ax.set(xlabel="time steps T (log2 scale)", ylabel=ylabel)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_title("final test accuracy (mean and 95% CI over seeds)", fontsize=10)
    axes[1].set_title(f"training seconds per epoch ({partial + '; ' if partial else ''}mean and 95% CI)", fontsize=10)
    fig.suptitle(f"{dataset}: time-step sweep")
    fig.tight_layout()
    return fig


def section(data: pd.DataFrame, runs: list[dict], dataset: str, out_dir: Path, prefix: str | None = None) -> list[str]:
    """The "Time-step sweep" Markdown of one dataset and its PNG; nothing without two T of one family."""
    swept = per_training(data, runs)
    if swept.empty:
        return []
    everyone = stats.trainings(data)
    ffns = everyone[everyone["model"].isin(stats.baselines(everyone))]
    partial = partial_epochs(data, runs)
    file = f"{prefix or slug(dataset)}-time-step-sweep.png"
    fig = figure(swept, ffns, dataset, partial)
    fig.savefig(out_dir / file, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    caption = "Time-step sweep: accuracy and training time against T"
    ffn_note = f" The FFNs ({', '.join(dict.fromkeys(ffns['model']))}) are the dashed reference lines." if len(ffns) else ""
    return [
        "### Time-step sweep", "",
        "SNN-like models that differ only in the number of time steps T, one line per family (same model and config "
        f"apart from T); final test accuracy over seeds and training seconds per epoch.{ffn_note}", "",
        sweep_table(swept, recorded(swept, ["dense_ops"]), partial), "",
        f"**{caption}**\n\n![{caption}]({file})\n",
    ]  # fmt: skip
