"""Neuron activity pictures: one test digit through a trained SNN, from the run's ``activity/*.npz``.

Per SNN-like model, one PNG: heatmaps (neuron x time step) of the inner state v and the output o of both layers, the
input digit, the trace of one moderately active layer-1 neuron, and layer 2's neuron of the true label.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize

from bench.schema import BASELINE
from report.load import Results
from report.plots import DPI, slug
from report.runs import model_info


def pick(results: Results, dataset: str) -> dict[str, dict]:
    """SNN-like model -> its activity record of ``dataset`` with the lowest seed; on a tie the first found (runs in load
    order, files by name), so the choice depends on the files only. A baseline (as its run records it) has none."""
    chosen: dict[str, dict] = {}
    for record in results.activity:
        model = record["model"]
        if record["dataset"] != dataset or results.kind(model, record["run_id"]) == BASELINE:
            continue
        if model not in chosen or record["seed"] < chosen[model]["seed"]:
            chosen[model] = record
    return chosen


def traced(o1: np.ndarray) -> int:
    """The layer-1 neuron to trace: of those that fire at all, the one whose count of steps with o > 0 is closest to a
    quarter of the steps (the lowest index on a tie; neuron 0 when none fires). It shows integration, firing and reset:
    after training the busiest neurons fire at every step and their v sits at the reset value."""
    fired = (o1 > 0).sum(axis=0)
    distance = np.where(fired > 0, np.abs(fired - o1.shape[0] / 4), np.inf)
    return int(np.argmin(distance)) if np.isfinite(distance).any() else 0


def predicted(record: dict) -> int | None:
    """The class the logits pick; None when they are not all finite (a NaN would pick class 0 with nothing behind it)."""
    logits = record["logits"]
    return int(np.argmax(logits)) if np.isfinite(logits).all() else None


def prediction(record: dict) -> str:
    """``predicted 3``, or why there is no prediction."""
    guess = predicted(record)
    return "no prediction (its logits are not finite)" if guess is None else f"predicted {guess}"


def oddities(record: dict) -> list[str]:
    """What the pictures cannot show by themselves: a layer 1 that never fired on the digit, values that are not
    finite (left blank in the heatmaps)."""
    found = []
    if not (record["layer1_o"] > 0).any():
        found.append("its layer 1 never fired on this digit (no output > 0 at any step: the traced neuron is silent)")
    for layer in (1, 2):
        for key, name in (("v", "inner state"), ("o", "output")):
            bad = int((~np.isfinite(record[f"layer{layer}_{key}"])).sum())
            if bad:
                found.append(f"its layer {layer} {name} holds {bad} value{'s' if bad != 1 else ''} that "
                             f"{'are' if bad != 1 else 'is'} not finite (left blank in the heatmap)")  # fmt: skip
    return found


def threshold(results: Results, record: dict) -> float | None:
    """The firing threshold of the record's model as its run records it (run.json's config, else its spec); None
    when neither says: the report draws no threshold rather than guess one."""
    runs = [m for m in results.runs if m["run_id"] == record["run_id"]]
    value = model_info(runs, [record["model"]])[record["model"]]["config"].get("threshold")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def figure(record: dict, threshold: float | None = None) -> plt.Figure:
    """The PNG's figure; the firing threshold dashed on the traces where it is known."""
    steps, hidden = record["layer1_v"].shape
    neuron, label = traced(record["layer1_o"]), int(record["label"])
    fig = plt.figure(figsize=(13, 10.5))
    grid = fig.add_gridspec(3, 3, width_ratios=[0.6, 1, 1], height_ratios=[1.4, 0.8, 1], hspace=0.45, wspace=0.3)
    image = fig.add_subplot(grid[0, 0])
    image.imshow(record["image"], cmap="gray")
    image.set_title(f"input: test index {record['index']}", fontsize=10)
    image.axis("off")
    for row, layer in [(0, 1), (1, 2)]:
        _heatmap(fig, fig.add_subplot(grid[row, 1]), record[f"layer{layer}_v"], f"layer {layer}: inner state v", diverging=True)
        _heatmap(fig, fig.add_subplot(grid[row, 2]), record[f"layer{layer}_o"], f"layer {layer}: output o", diverging=False)
    notes = fig.add_subplot(grid[1, 0])
    notes.axis("off")
    fired = int((record["layer1_o"][:, neuron] > 0).sum())
    facts = [f"true label {label}", prediction(record), f"T = {steps} time steps", f"{hidden} hidden neurons",
             f"traced: layer-1 neuron {neuron}", f"(output > 0 at {fired} of {steps} steps)"]  # fmt: skip
    notes.text(0, 0.5, "\n".join(facts), va="center", fontsize=9)
    _trace(fig.add_subplot(grid[2, 0:2]), record["layer1_v"][:, neuron], record["layer1_o"][:, neuron], threshold,
           f"layer 1, neuron {neuron}: output > 0 at {fired} of {steps} steps")  # fmt: skip
    ax = fig.add_subplot(grid[2, 2])
    _trace(ax, record["layer2_v"][:, label], record["layer2_o"][:, label], threshold,
           f"layer 2, output neuron {label} (the true label)")  # fmt: skip
    # one legend for both traces (the same lines), under them: never over a trace
    fig.legend(*ax.get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.045), ncol=3, fontsize=9,
               frameon=False)  # fmt: skip
    fig.suptitle(f"{record['model']}, seed {record['seed']}: test index {record['index']}, true label {label}, "
                 f"{prediction(record)}", fontsize=12)  # fmt: skip
    return fig


def _heatmap(fig: plt.Figure, ax: plt.Axes, values: np.ndarray, title: str, diverging: bool) -> None:
    """Neurons down, time steps across (values is (T, n)); v on a diverging map centred at 0, o on a sequential one."""
    steps, n = values.shape
    finite = values[np.isfinite(values)]  # the scale from the finite values; the others are left blank
    top = float(np.abs(finite).max()) if finite.size else 0.0
    top = top or 1.0  # all zero: any scale shows it
    peak = float(finite.max()) if finite.size else 0.0
    norm = Normalize(-top, top) if diverging else Normalize(0, peak if peak > 0 else 1.0)  # nothing fired: 0 to 1
    values = np.where(np.isfinite(values), values, np.nan)  # NaN draws as blank, where an infinity would saturate
    shown = ax.imshow(values.T, aspect="auto", interpolation="nearest", cmap="RdBu_r" if diverging else "viridis",
                      norm=norm, extent=(0.5, steps + 0.5, n - 0.5, -0.5))  # fmt: skip
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    ax.set(xlabel="time step", ylabel="neuron", title=title)
    ax.title.set_fontsize(10)
    if n <= 20:
        ax.set_yticks(range(n))


def _trace(ax: plt.Axes, v: np.ndarray, o: np.ndarray, threshold: float | None, title: str) -> None:
    t = np.arange(1, len(v) + 1)
    v, o = (np.where(np.isfinite(x), x, np.nan) for x in (v, o))  # a gap where a value is not finite
    ax.plot(t, v, label="inner state v", linewidth=1.2)
    ax.plot(t, o, label="output o", linewidth=1.2)
    if threshold is not None:
        ax.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set(xlabel="time step", title=title)
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)


def section(results: Results, dataset: str, out_dir: Path, prefix: str | None = None) -> list[str]:
    """The "Neuron activity" Markdown of one dataset and its PNGs; nothing when no SNN-like model left an activity file."""
    chosen = pick(results, dataset)
    if not chosen:
        return []
    thresholds = {model: threshold(results, record) for model, record in chosen.items()}
    unknown = [model for model, value in thresholds.items() if value is None]
    dashed = ", with the firing threshold dashed" if len(unknown) < len(chosen) else ""
    traces = f"{dashed}, and layer 2's neuron of the true label."
    if unknown:  # never a made-up threshold: say whose traces have none
        whose = "its run does" if len(unknown) == 1 else "their runs do"
        traces += f" No threshold is drawn for {', '.join(unknown)}: {whose} not record one."
    lines = [
        "### Neuron activity", "",
        "One test digit through each SNN-like model after training (the lowest seed with an activity file). Heatmaps: "
        "each neuron's inner state v (blue below 0, red above) and output o (graded in the 2018 SNN, 0/1 spikes in a "
        "LIF) at every time step, for layer 1 (hidden) and layer 2 (output). Traces: of the layer-1 neurons that fire, "
        "the one whose count of steps with "
        "output > 0 is closest to a quarter of the steps (it integrates, fires and resets; the busiest fire at every "
        f"step){traces}", "",
    ]  # fmt: skip
    for model, record in chosen.items():
        file = f"{prefix or slug(dataset)}-neurons-{slug(model)}.png"
        fig = figure(record, thresholds[model])
        fig.savefig(out_dir / file, dpi=DPI, bbox_inches="tight")
        plt.close(fig)
        caption = (f"Neuron activity of {model} (seed {record['seed']}, {record['device']}, run {record['run_id']}) on "
                   f"test index {record['index']}: true label {record['label']}, {prediction(record)}")  # fmt: skip
        notes = oddities(record)
        lines.append(f"**{caption}**\n\n![{caption}]({file})\n")
        if notes:
            lines.append(f"Note on {model}: {'; '.join(notes)}.\n")
    return lines
