"""The STDP-like gradient window: how the gradient that reaches layer 1's input current falls with the time dt before a
spike, from each run's ``window.csv``. Fitted per training, tabulated, drawn, and put in words that follow the numbers.

The seed text predicts relative = d**dt (d: the leak's decay). The fit: least squares of ln(relative) on dt over
dt = 1..20 where relative > 0, intercept free; fitted decay per step = exp(slope).

Two selections of (spike, earlier input) pairs, when window.csv has both: *all* the neuron-steps that fired, as the
issue defines the window, and the pairs where the neuron did not fire again in between (``isolated_*`` columns), whose
gradient can only have come back through that one spike.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy import stats as st

from report.markdown import table
from report.plots import DPI, finish, slug, t_interval
from report.runs import model_info
from report.stats import mean_ci

MAX_DT = 20
TOLERANCE = 0.01  # a fitted decay this close to d reads as "the leak's exponential"
GOOD_FIT = 0.95  # R^2 from here: ln(relative) is close to a straight line in dt
KEY = ["device", "model", "run_id", "seed"]  # one training
ALL, ISOLATED = "all spikes", "no spike between"
SELECTIONS = {ALL: ("relative", "pairs"), ISOLATED: ("isolated_relative", "isolated_pairs")}


def long_form(windows: pd.DataFrame) -> pd.DataFrame:
    """One row per training x dt x selection (``selection``: ALL, and ISOLATED where the file has its columns)."""
    base = [c for c in windows.columns if c not in ("relative", "pairs", "mean_abs_grad") and not c.startswith("isolated_")]
    parts = [
        windows[base].assign(relative=windows[relative], pairs=windows.get(pairs, math.nan), selection=name)
        for name, (relative, pairs) in SELECTIONS.items()
        if relative in windows.columns and windows[relative].notna().any()
    ]
    if not parts:  # no training with a gradient to show (see ``usable``): no rows, the columns still there
        return pd.DataFrame(columns=[*base, "relative", "pairs", "selection"])
    return pd.concat(parts, ignore_index=True)


def usable(windows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``windows`` split into the rows of the trainings whose window can be computed (a relative gradient at some dt,
    over all spikes), and one row per training whose window cannot: KEY, ``reset`` and ``why``.

    A layer 1 that never fired has no (spike, input) pair at all; spikes whose gradient is 0 give nothing to be relative
    to. Either way ``relative`` is NaN at every dt, and the training says nothing of the window's shape."""
    if windows.empty:
        return windows, pd.DataFrame(columns=[*KEY, "why"])
    known = windows.groupby(KEY, sort=False)["relative"].transform(lambda r: r.notna().any()).astype(bool)
    rows = []
    for key, g in windows[~known].groupby(KEY, sort=False):
        fired = g.loc[g["dt"] == 0, "pairs"].sum() > 0
        why = ("no gradient reached its spikes (the gradient at dt = 0 is 0, so nothing is relative to it)" if fired
               else "it never fired (0 spike pairs)")  # fmt: skip
        rows.append({**dict(zip(KEY, key)), "why": why})
    return windows[known], pd.DataFrame(rows, columns=[*KEY, "why"])


def not_computed(left_out: pd.DataFrame, windows: pd.DataFrame) -> list[str]:
    """Sentences naming the trainings ``usable`` left out, and why: per device x model when none of its trainings has
    a window, else per training."""
    if left_out.empty:
        return []
    kept = set(zip(windows["device"], windows["model"])) if len(windows) else set()
    whole, single = [], []
    for (device, model, why), g in left_out.groupby(["device", "model", "why"], sort=False):
        seeds = ", ".join(map(str, sorted(g["seed"])))
        if (device, model) in kept:
            single += [f"seed {r.seed} of {model} on {device} (run {r.run_id}): {why}" for r in g.itertuples()]
        else:
            count = f"{len(g)} trainings (seeds {seeds})" if len(g) > 1 else f"1 training (seed {seeds})"
            its = "any of its" if len(g) > 1 else "its"
            whole.append(f"The gradient window of {model} on {device} could not be computed: {why} in {its} {count}.")
    lines = [*whole]
    if single:
        lines.append("Left out of the window: " + "; ".join(single) + ".")
    return [" ".join(lines), ""]


def fits(windows: pd.DataFrame) -> pd.DataFrame:
    """One row per training: reset, decay d, fitted decay per step, R^2 of the fit and pairs at dt = 0.

    The fitted decay is NaN where fewer than two dt in 1..20 have relative > 0 (nothing to fit).
    """
    rows = []
    for (device, model, run_id, seed, selection), g in long_form(usable(windows)[0]).groupby(KEY + ["selection"], sort=False):
        points = g[(g["dt"] >= 1) & (g["dt"] <= MAX_DT) & (g["relative"] > 0)]
        fitted = r2 = math.nan
        if points["dt"].nunique() >= 2:
            fit = st.linregress(points["dt"], np.log(points["relative"]))
            fitted, r2 = math.exp(fit.slope), fit.rvalue**2
        rows.append({
            "device": device, "model": model, "run_id": run_id, "seed": seed, "selection": selection, "reset": g["reset"].iloc[0],
            "decay": float(g["decay"].iloc[0]), "fitted_decay": fitted, "r2": r2,
            "pairs_dt0": g.loc[g["dt"] == 0, "pairs"].sum(),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=[*KEY, "selection", "reset", "decay", "fitted_decay", "r2", "pairs_dt0"])


def summary(windows: pd.DataFrame) -> pd.DataFrame:
    """Per device x model x selection: seeds, reset, d, fitted decay per step (mean, 95% CI over seeds), mean R^2,
    mean pairs at dt = 0."""
    rows = []
    fitted_rows = fits(windows)
    order = {m: i for i, m in enumerate(dict.fromkeys(fitted_rows["model"]))}  # each model's selections side by side
    fitted_rows = fitted_rows.sort_values(["device", "model"], key=lambda c: c.map(order) if c.name == "model" else c,
                                          kind="stable")  # fmt: skip
    for (device, model, selection), g in fitted_rows.groupby(["device", "model", "selection"], sort=False):
        fitted = g["fitted_decay"].dropna()
        mean, low, high = mean_ci(fitted) if len(fitted) else (math.nan,) * 3
        rows.append({
            "device": device, "model": model, "selection": selection, "seeds": len(g), "fitted_seeds": len(fitted),
            "reset": g["reset"].iloc[0],
            "decay": g["decay"].iloc[0], "fitted_decay": mean, "ci_low": low, "ci_high": high, "r2": g["r2"].mean(),
            "pairs_dt0": g["pairs_dt0"].mean(),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=["device", "model", "selection", "seeds", "fitted_seeds", "reset", "decay",
                                       "fitted_decay", "ci_low", "ci_high", "r2", "pairs_dt0"])  # fmt: skip


def verdict(r: dict) -> str:
    """What one device x model's fit supports, in words generated from its numbers.

    The fitted decay agrees with d when its 95% interval over seeds holds d (with one seed: when it is within
    TOLERANCE); it is close to d when it is within TOLERANCE but the interval excludes d. Values are compared as
    printed (3 decimals), so the words never contradict the numbers beside them.
    """
    head = f"- {r['model']} on {r['device']}, {r['selection']} (reset {r['reset']}, d = {r['decay']:g}): "
    if math.isnan(r["fitted_decay"]):
        return head + "too few dt with a gradient (at least two dt from 1 on) to fit a decay."
    f, d = round(r["fitted_decay"], 3), r["decay"]
    near = abs(f - d) <= TOLERANCE + 1e-9
    text = head + f"the fitted decay per step {f:.3f}"
    text += f" is within {TOLERANCE:g} of d = {d:g}" if near else f" differs from d = {d:g} by {f - d:+.3f}"
    has_ci = not math.isnan(r["ci_low"])
    inside = has_ci and round(r["ci_low"], 3) <= d <= round(r["ci_high"], 3)
    if has_ci:
        text += (f" (95% CI {r['ci_low']:.3f} to {r['ci_high']:.3f} over {r['fitted_seeds']} seeds, which "
                 f"{'includes' if inside else 'excludes'} d)")  # fmt: skip
    straight = r["r2"] >= GOOD_FIT
    shape = "close to a straight line in dt" if straight else "not a straight line in dt, so one decay rate does not describe it"
    text += f"; R² {r['r2']:.3f}: ln(relative) is {shape}"
    if straight and (inside or (near and not has_ci)):
        return text + f". The window falls as {d:g}**dt, the leak's exponential, as the seed text predicts."
    if straight and near:
        return text + f". The window falls nearly as {d:g}**dt, with a small, consistent drift from it."
    return text + ". The leak's exponential alone does not describe this window."


def mechanism(windows: pd.DataFrame, runs: list[dict]) -> str:
    """The fixed explanation of what the window is and is not, with the proportional reset's factor 1 - p/θ where the
    runs record penalty p and threshold θ: of the proportional models, else of the models measured (their neurons'
    factor, had they that reset). Without them no number is given."""
    proportional = sorted(set(windows.loc[windows["reset"] == "proportional", "model"]))
    configs = [c["config"] for c in model_info(runs, proportional or sorted(set(windows["model"]))).values()]
    factors = sorted({1 - c["penalty"] / c["threshold"] for c in configs if _numbers(c.get("penalty"), c.get("threshold"))})
    factor = " = " + " or ".join(f"{x:g}" for x in factors) if factors else ""
    return (
        'With reset "subtract" the backward pass through a neuron that fired is cut (dv/dh = 0), so between spikes the '
        "gradient that reaches the input current dt steps earlier is exactly d**dt times the gradient at the spike: the "
        "window is the leak's exponential, a causal (pre-before-post) eligibility trace, as the seed text argues. With "
        f'reset "proportional" the path through a spike is multiplied by (1 - p/θ){factor} instead of 0, so earlier '
        "spikes let gradient of alternating sign through. The window does not show an anti-causal (post-before-pre) "
        "depression lobe as in biological STDP (a current after a spike cannot change that spike, so backpropagation "
        "gives it no gradient through it), nor a local learning rule: it is the credit assignment of backpropagation "
        "through time, and the weight gradients also scale with the analog input, which this window leaves out."
    )


def figure(windows: pd.DataFrame, dataset: str) -> plt.Figure:
    """relative against dt per model and selection (mean and 95% band over seeds, log y), and d**dt dashed for each d."""
    data = long_form(windows[windows["dt"] <= MAX_DT])
    if data["device"].nunique() > 1:
        data = data.assign(model=data["model"] + " (" + data["device"] + ")")
    positive = data.loc[data["relative"] > 0, "relative"]
    floor = 0.5 * positive.min() if len(positive) else 1e-6  # a band below 0 cannot be drawn on a log axis
    several = data["selection"].nunique() > 1
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    sns.lineplot(data=data, x="dt", y="relative", hue="model", style="selection" if several else None,
                 style_order=list(SELECTIONS) if several else None, errorbar=t_interval(floor), marker="o", ax=ax)  # fmt: skip
    dts = np.arange(0, MAX_DT + 1)
    for decay, dashes in zip(sorted(set(data["decay"])), [":", "-.", (0, (5, 1, 1, 1))] * 4):
        ax.plot(dts, decay**dts, color="black", linestyle=dashes, linewidth=1.2, label=f"prediction {decay:g}**dt")
    ax.set_yscale("log")
    ax.set_xticks(range(0, MAX_DT + 1, 5))
    ax.set(xlabel="dt (steps before the layer-1 spike)", ylabel="mean |dL/dI| relative to dt = 0 (log scale)",
           title=f"{dataset}: gradient reaching layer 1's input current dt steps before a spike (mean and 95% CI)")  # fmt: skip
    return finish(fig, ax)


def contrast(windows: pd.DataFrame, rows: list[dict]) -> list[str]:
    """Where both selections were measured: why the window over all spikes and over lone spikes differ, in numbers."""
    lines = []
    by = {(r["device"], r["model"], r["selection"]): r for r in rows}
    data = long_form(windows)
    for (device, model, selection), r in by.items():
        other = by.get((device, model, ISOLATED))
        if selection != ALL or other is None:
            continue
        curve = data[(data["device"] == device) & (data["model"] == model) & (data["selection"] == ALL)]
        curve = curve.groupby("dt")["relative"].mean().dropna()
        if len(curve) < 3:  # dt = 0 and fewer than two more: nothing to describe
            continue
        lowest, last, end = int(curve.idxmin()), curve.iloc[-1], int(curve.index[-1])
        if lowest == end:
            shape = f"falls to {last:.2f} at dt = {end}"
        elif last <= 1.05 * curve.min():
            shape = f"falls to {curve.min():.2f} by dt = {lowest} and stays within 5% of that (to {last:.2f} at dt = {end})"
        else:
            shape = f"falls to {curve.min():.2f} by dt = {lowest}, then rises again (to {last:.2f} at dt = {end})"
        lines.append(
            f"- {model} on {device}: over all spikes the window {shape}; fitted {_fmt(r['fitted_decay'])}. Over the pairs "
            f"with no spike between it falls to {_isolated_at(data, device, model, end):.2f} at dt = {end} "
            f"(fitted {_fmt(other['fitted_decay'])}, d = {r['decay']:g}; {end} steps of d give {r['decay'] ** end:.2f})."
        )
    if not lines:
        return []
    return [
        "**Why the two selections differ.** With reset \"subtract\" the gradient at the input current of step s is "
        "d**k times the gradient at the neuron's first spike k steps after s, and no other spike's. A neuron that fires "
        "often fires again within a few steps, so an input dt steps before one of its spikes usually lies just before a "
        "nearer spike of the same neuron and gets that spike's gradient: over all spikes the window follows d**dt only "
        "over the gap between a neuron's spikes, and beyond it reflects which spikes and steps are averaged. The pairs "
        "with no spike between keep only the gradients that came back through the one spike: for each such pair the "
        "ratio to the gradient at the spike is d**dt exactly (for either reset, as nothing fires in between). Their mean "
        "need not fall at exactly d per step: at each dt a different set of spikes qualifies (those after dt silent steps, "
        "later in the sequence on average), and the gradient at a spike depends on its step (a spike near the end reaches "
        "fewer of the layer-2 states that the logits average).", "",
        *lines, "",
    ]  # fmt: skip


def _isolated_at(data: pd.DataFrame, device: str, model: str, dt: int) -> float:
    g = data[(data["device"] == device) & (data["model"] == model) & (data["selection"] == ISOLATED) & (data["dt"] == dt)]
    return float(g["relative"].mean()) if len(g) else math.nan


def _numbers(penalty, threshold) -> bool:
    """Whether a config's penalty and threshold give a factor 1 - p/θ: both numbers, θ not 0."""
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (penalty, threshold)) and threshold != 0


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def section(windows: pd.DataFrame, dataset: str, runs: list[dict], out_dir: Path, prefix: str | None = None,
            spiking: list[str] = ()) -> list[str]:  # fmt: skip
    """The Markdown of one dataset's gradient window, and its PNG; nothing when no run wrote a window.csv. ``spiking``:
    the section's spiking models; those without a window are named, with why."""
    windows = windows[windows["dataset"] == dataset] if len(windows) else windows
    if windows.empty:
        return []
    unmeasured = [m for m in spiking if m not in set(windows["model"])]
    windows, left_out = usable(windows)
    unusable = not_computed(left_out, windows)
    missing = [] if not unmeasured else [
        f"Not measured for {', '.join(unmeasured)}. The window is defined for the 2018 design, whose gradient flows back "
        "only through the steps where a neuron fired (its graded output) and is cut by its reset; a surrogate-gradient "
        "LIF passes gradient through every step, firing or not (and lif's subtractive reset does not cut it), so the "
        "gradient dt steps before a spike is not that spike's. Models without a `trace` (the library adapters) are not "
        "measured either.", ""]  # fmt: skip
    if windows.empty:  # every training left out: say why, draw nothing
        return ["### STDP-like gradient window", "", *unusable, *missing]
    file = f"{prefix or slug(dataset)}-gradient-window.png"
    fig = figure(windows, dataset)
    fig.savefig(out_dir / file, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    caption = "STDP-like window: gradient against time before a spike"
    rows = summary(windows).to_dict("records")
    return [
        "### STDP-like gradient window", "",
        "After each training's final epoch: the mean |dL/dI| of layer 1's input current I = W x + b at dt steps before "
        "a layer-1 neuron fired, over the neuron-steps that fired (*all spikes*) and over those where the neuron did not "
        "fire again between the input and the spike (*no spike between*), relative to dt = 0. The seed text predicts relative "
        f"= d**dt. Fit per training: ln(relative) against dt over dt = 1..{MAX_DT} "
        "where relative > 0 (least squares, "
        "intercept free), fitted decay per step = exp(slope); mean and 95% CI over seeds.", "",
        summary_table(rows), "",
        *unusable,
        *missing,
        "**What the measurement supports.**", "",
        *[verdict(r) for r in rows], "",
        *contrast(windows, rows),
        "**What it is, and what it does not show.** " + mechanism(windows, runs), "",
        f"**{caption}**\n\n![{caption}]({file})\n",
    ]  # fmt: skip


def summary_table(rows: list[dict]) -> str:
    """The Markdown table of ``summary(...).to_dict("records")``."""
    return table([{
        "device": r["device"], "model": r["model"], "pairs": r["selection"], "reset": r["reset"],
        "decay d": f"{r['decay']:g}", "seeds": str(r["seeds"]), "fitted decay per step": _pm(r),
        "R²": _num(r["r2"], ".3f"), "pairs at dt=0": _num(r["pairs_dt0"], ",.0f"),
    } for r in rows])  # fmt: skip


def _pm(r: dict) -> str:
    if math.isnan(r["fitted_decay"]):
        return "-"
    if math.isnan(r["ci_low"]):
        return f"{r['fitted_decay']:.3f} (one seed)"
    return f"{r['fitted_decay']:.3f} ± {r['ci_high'] - r['fitted_decay']:.3f}"


def _num(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)
