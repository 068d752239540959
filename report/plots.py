"""The report's figures: one set of PNGs per dataset, drawn with seaborn from the tidy epoch rows.

Bands and error bars are the same Student-t 95% intervals over seeds as the tables (seaborn's
default bootstrap would be random, and a report should be a pure function of its data).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from report.load import TRAINING  # noqa: E402
from report.stats import cumulative, mean_ci, model_order, trainings  # noqa: E402

DPI = 110
HEIGHT = 3.6  # inches per panel: legible at normal size, and a few panels fit a page


def t_interval(lowest: float = -math.inf, highest: float = math.inf):
    """A seaborn ``errorbar=`` callable: the Student-t 95% interval of the mean, clipped to what the quantity allows
    (an accuracy band below 0% says nothing); just the mean for one seed."""

    def interval(values) -> tuple[float, float]:
        mean, low, high = mean_ci(values)
        return (mean, mean) if math.isnan(low) else (max(low, lowest), min(high, highest))

    return interval


def colors(models) -> dict:
    """One color per model, in order of appearance: colorblind-safe for up to 10 (a grid of learning-rate scales can
    have more, which then get evenly spaced hues rather than a repeated color)."""
    names = list(dict.fromkeys(models))
    return dict(zip(names, sns.color_palette("colorblind" if len(names) <= 10 else "husl", len(names))))


def label_order(data: pd.DataFrame) -> list[str]:
    """The model labels of ``data`` as the tables list them: models as the runs gave them, each model's learning-rate
    scales together and ascending (``snn (lr x0.5)``, ``snn``, ``snn (lr x2)``)."""
    order = model_order(data)
    return sorted(order, key=order.__getitem__)


def grid_colors(data: pd.DataFrame) -> dict:
    """``colors`` for a grid of learning-rate scales: one colorblind-safe hue per model, its scales in shades of it
    from light (smallest) to dark (largest), so that a legend of 20 lines still reads as 4 models."""
    order = label_order(data)
    if not {"spec", "lr_scale"} <= set(data.columns) or data.groupby("spec")["lr_scale"].nunique().max() < 2:
        return colors(order)
    spec_of = dict(zip(data["model"], data["spec"]))
    bases = colors(list(dict.fromkeys(spec_of[m] for m in order)))
    out = {}
    for spec, base in bases.items():
        mine = [m for m in order if spec_of[m] == spec]
        light, dark = (tuple(c + (end - c) * w for c in base) for end, w in ((1.0, 0.6), (0.0, 0.45)))
        out.update(zip(mine, sns.blend_palette([light, base, dark], n_colors=len(mine))))
    return out


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "dataset"


def draw_all(epochs: pd.DataFrame, dataset: str, out_dir: Path, target: float, prefix: str | None = None,
             partial: str | None = None):  # fmt: skip
    """Write the figures of one dataset into ``out_dir``, files named ``PREFIX-*.png`` (default: the dataset's slug);
    return (caption, file name) pairs. ``partial``: ``report.runs.partial_epochs`` of the runs, said in the titles of
    the figures of time per epoch."""
    data = epochs[epochs["dataset"] == dataset].copy()
    data["test_accuracy_pct"] = 100 * data["test_accuracy"]
    palette = grid_colors(data)  # in the tables' order: the legends list the models as the tables do
    per_epoch = "Training seconds per epoch" + (f" ({partial})" if partial else "")
    timed = bool(data["train_seconds"].notna().any())  # else every second here is left out (report.conditions)
    figures = [
        ("Test accuracy by epoch", "accuracy-by-epoch", accuracy_by_epoch(data, dataset, palette)),
        *([("Test accuracy against training time", "accuracy-by-time", accuracy_by_time(data, dataset, palette, target)),
           (per_epoch, "seconds-per-epoch", seconds_per_epoch(data, dataset, partial))] if timed else []),
        ("Training loss by epoch", "loss-by-epoch", loss_by_epoch(data, dataset, palette)),
    ]  # fmt: skip
    out = []
    for caption, name, fig in figures:
        file = f"{prefix or slug(dataset)}-{name}.png"
        fig.savefig(out_dir / file, dpi=DPI, bbox_inches="tight")
        plt.close(fig)
        out.append((caption, file))
    return out


def _by_epoch(data: pd.DataFrame, y: str, ylabel: str, title: str, palette: dict, highest: float) -> plt.Figure:
    devices = list(dict.fromkeys(data["device"]))
    g = sns.relplot(
        data=data, x="epoch", y=y, hue="model", hue_order=list(palette), col="device", col_order=devices,
        col_wrap=min(len(devices), 3), kind="line", errorbar=t_interval(0, highest), marker="o", palette=palette,
        height=max(HEIGHT, 0.25 * len(palette)), aspect=1.3,
    )  # fmt: skip
    hardware = data.groupby("device")["hardware"].first()
    for device, ax in g.axes_dict.items():
        ax.set_title(f"{device} ({_short(hardware[device])})", fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    g.set_axis_labels("epoch", ylabel)
    g.figure.suptitle(title)
    g.tight_layout()
    return g.figure


def accuracy_by_epoch(data: pd.DataFrame, dataset: str, palette: dict) -> plt.Figure:
    title = f"{dataset}: test accuracy by epoch (mean and 95% CI over seeds)"
    return _by_epoch(data, "test_accuracy_pct", "test accuracy (%)", title, palette, 100)


def loss_by_epoch(data: pd.DataFrame, dataset: str, palette: dict) -> plt.Figure:
    title = f"{dataset}: training loss by epoch (mean and 95% CI over seeds)"
    return _by_epoch(data, "train_loss", "training loss (cross-entropy per sample)", title, palette, math.inf)


def accuracy_by_time(data: pd.DataFrame, dataset: str, palette: dict, target: float) -> plt.Figure:
    """Mean over seeds of (cumulative training seconds, test accuracy) after each epoch; devices by line style."""
    data = data.sort_values("epoch").copy()
    data["cumulative_seconds"] = cumulative(data, TRAINING)
    data = data[data["cumulative_seconds"].notna()]  # seconds left out (report.conditions): no point in time
    means = data.groupby(["device", "model", "epoch"], sort=False)[["cumulative_seconds", "test_accuracy_pct"]].mean()
    means = means.reset_index()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    several = means["device"].nunique() > 1
    sns.lineplot(
        data=means, x="cumulative_seconds", y="test_accuracy_pct", hue="model", style="device" if several else None,
        units=None, estimator=None, sort=True, markers=True if several else None, marker=None if several else "o",
        palette=palette, hue_order=list(palette), ax=ax,
    )  # fmt: skip
    ax.axhline(100 * target, color="grey", linestyle=":", linewidth=1, label=f"target {100 * target:g}%")
    ax.set_xscale("log")
    ax.set(xlabel="cumulative training time (s, log scale)", ylabel="test accuracy (%)",
           title=f"{dataset}: test accuracy against training time (mean over seeds, one point per epoch)")  # fmt: skip
    return finish(fig, ax)


def finish(fig: plt.Figure, ax: plt.Axes) -> plt.Figure:
    """The house look of a line figure: a small title, a light grid, the legend outside (never over a line)."""
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)
    fig.tight_layout()
    return fig


def seconds_per_epoch(data: pd.DataFrame, dataset: str, partial: str | None = None) -> plt.Figure:
    """Bars: mean over seeds of each training's mean seconds per epoch, whiskers from the fastest to the slowest seed
    (always positive, so a log axis works); log y when the bars span more than 10x (and none is 0, which a log axis
    cannot show). ``partial``: what the title says of epochs cut short by --max-batches."""
    per_training = trainings(data)
    per_training = per_training[per_training["seconds_per_epoch"].notna()]  # seconds left out (report.conditions)
    means = per_training.groupby(["model", "device"])["seconds_per_epoch"].mean()
    log = bool(means.min() > 0 and means.max() / means.min() > 10)  # numpy bools would pass as a log base
    models, devices = label_order(data), list(dict.fromkeys(data["device"]))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(models) * max(1, len(devices) / 2) + 2), 4.5))
    sns.barplot(
        data=per_training, x="model", y="seconds_per_epoch", hue="device", order=models, hue_order=devices,
        errorbar=("pi", 100), capsize=0.1, err_kws={"linewidth": 1.2}, palette="muted", ax=ax,
    )  # fmt: skip
    if log:  # after drawing: barplot(log_scale=True) would average in log space (a geometric mean) and lose the bars
        ax.set_yscale("log")
    if missing := set(models) - set(per_training["model"]):
        ax.set_xticks(range(len(models)), [m + ("\n(seconds left out)" if m in missing else "") for m in models])
    for bar in ax.patches:  # the value right of the whisker, at the bar's top
        if bar.get_height() > 0:
            ax.annotate(f"{bar.get_height():.3g}", (bar.get_x() + 0.78 * bar.get_width(), bar.get_height()),
                        xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=8)  # fmt: skip
    cut = f"({partial})\n" if partial else ""  # epochs cut short by --max-batches: said first, on a line of its own
    ax.set(xlabel="model", ylabel="training time per epoch (s" + (", log scale)" if log else ")"),
           title=f"{dataset}: training seconds per epoch {cut}(mean over seeds; whiskers: fastest to slowest seed)")  # fmt: skip
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(title="device", fontsize=9)
    ax.margins(y=0.15)
    fig.tight_layout()
    return fig


def _short(name: str, width: int = 40) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"
