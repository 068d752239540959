"""The numbers of the report, from the tidy epoch rows; every statistic comes from scipy.stats.

Accuracies stay fractions here (0.97); the Markdown shows them in percent and differences in points.
A seed is one training (``load.TRAINING``): final accuracy is its test accuracy at the last epoch it reached.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from bench.schema import BASELINE
from report.load import TRAINING

CONFIDENCE = 0.95
MIN_SEEDS = 3  # fewer seeds than this on either side: no test, no conclusion


def baselines(frame: pd.DataFrame) -> list[str]:
    """The labels of ``frame`` (epoch rows or trainings, with load's ``kind`` column) that run.json records as baselines
    (FFN-like), in order of appearance. Every other model, spiking or of unknown kind, is SNN-like."""
    return list(dict.fromkeys(frame.loc[frame["kind"] == BASELINE, "model"]))


def mean_ci(values) -> tuple[float, float, float]:
    """Mean and Student-t 95% interval over seeds; no interval (NaN) for one seed, a point for no spread."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    sem = float(stats.sem(values))
    if sem == 0:
        return mean, mean, mean
    low, high = stats.t.interval(CONFIDENCE, len(values) - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def by(frame: pd.DataFrame, *columns: str) -> list[str]:
    """Group keys: ``columns``, with the schedule after the dataset where ``frame`` has one, so that trainings of
    different schedules are never pooled or compared (report.pooling)."""
    keys = list(columns)
    if "schedule" in frame.columns and "schedule" not in keys:
        keys.insert(keys.index("dataset") + 1 if "dataset" in keys else 0, "schedule")
    return keys


def trainings(epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per training: its kind, epochs reached, final and best test accuracy, training seconds and samples.

    Seconds left out (NaN: measured under another condition than the pooled one, report.conditions) count nowhere:
    ``seconds_per_epoch`` is the mean of the training's pooled epochs, ``train_seconds`` its total only where every
    epoch is pooled (else NaN), and ``timed_seconds``/``timed_samples`` the sums over its pooled epochs."""
    ordered = epochs.assign(timed_samples=epochs["train_samples"].where(epochs["train_seconds"].notna())).sort_values("epoch")
    grouped = ordered.groupby(by(epochs, *TRAINING), sort=False)
    out = grouped.agg(
        kind=("kind", "first"),
        epochs=("epoch", "max"),
        final_accuracy=("test_accuracy", "last"),
        best_accuracy=("test_accuracy", "max"),
        timed_seconds=("train_seconds", "sum"),
        seconds_per_epoch=("train_seconds", "mean"),
        train_samples=("train_samples", "sum"),
        timed_samples=("timed_samples", "sum"),
    )
    whole = grouped["train_seconds"].count() == grouped["epoch"].size()
    out.insert(out.columns.get_loc("seconds_per_epoch"), "train_seconds", out["timed_seconds"].where(whole))
    return _in_order_of_appearance(out.reset_index(), epochs)


def summary(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset (x schedule) x device x model: seeds, final accuracy with its 95% CI, best accuracy, training cost."""
    rows = []
    keys = by(epochs, "dataset", "device", "model")
    for values, g in trainings(epochs).groupby(keys, sort=False):
        mean, low, high = mean_ci(g["final_accuracy"])
        rows.append({
            **dict(zip(keys, values)), "seeds": len(g),
            "epochs_min": int(g["epochs"].min()), "epochs_max": int(g["epochs"].max()),
            "final_accuracy": mean, "ci_low": low, "ci_high": high,
            "best_accuracy": g["best_accuracy"].max(),
            "seconds_per_epoch": g["seconds_per_epoch"].mean(),
            "train_seconds": g["train_seconds"].sum(min_count=len(g)),  # NaN unless every training's every epoch counts
            "samples_per_second": _rate(g["timed_samples"].sum(), g["timed_seconds"].sum()),
        })  # fmt: skip
    return pd.DataFrame(rows)


def _rate(samples: float, seconds: float) -> float:
    """Samples per second; NaN where no second was pooled (or none passed)."""
    return samples / seconds if seconds > 0 else math.nan


def head_to_head(epochs: pd.DataFrame) -> pd.DataFrame:
    """Every SNN-like model against every baseline (FFN) on the same dataset, schedule, device and learning-rate scale:
    Welch's t-test over seeds. (Each model at its best scale against the others at theirs: report.tuned.)"""
    per_training = trainings(epochs)
    rows = []
    keys = by(epochs, "dataset", "device", "lr_scale")
    for values, g in per_training.groupby(keys, sort=False):
        ffns = baselines(g)
        for snn in (m for m in dict.fromkeys(g["model"]) if m not in ffns):
            for ffn in ffns:
                a, b = g[g["model"] == snn], g[g["model"] == ffn]
                rows.append({**dict(zip(keys, values)), "snn": snn, "ffn": ffn, **compare(a, b)})
    return pd.DataFrame(rows)


def compare(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """``a`` minus ``b`` in final accuracy (points) with Welch's 95% CI and p-value, and the time ratio per epoch."""
    x, y = a["final_accuracy"].to_numpy(float), b["final_accuracy"].to_numpy(float)
    diff = 100 * (x.mean() - y.mean())
    low = high = p = math.nan
    if len(x) >= MIN_SEEDS and len(y) >= MIN_SEEDS:
        if x.var(ddof=1) + y.var(ddof=1) == 0:  # no spread at all: the t statistic is undefined
            low = high = diff
        else:
            test = stats.ttest_ind(x, y, equal_var=False)
            ci = test.confidence_interval(CONFIDENCE)  # Welch-Satterthwaite degrees of freedom
            low, high, p = 100 * ci.low, 100 * ci.high, float(test.pvalue)
    return {
        "seeds_snn": len(x), "seeds_ffn": len(y), "difference": diff, "ci_low": low, "ci_high": high, "p_value": p,
        "time_ratio": a["seconds_per_epoch"].mean() / b["seconds_per_epoch"].mean(),
    }  # fmt: skip


def sentence(row) -> str:
    """The head-to-head result in plain words, with its numbers."""
    snn, ffn, diff = row["snn"], row["ffn"], row["difference"]
    digits = 1 if abs(diff) >= 1 else 2
    seeds = (
        f"{row['seeds_snn']} seed{'s' if row['seeds_snn'] != 1 else ''}"
        if row["seeds_snn"] == row["seeds_ffn"]
        else f"{row['seeds_snn']} and {row['seeds_ffn']} seeds"
    )
    cost = f"{ratio(row['time_ratio'])} the training time per epoch on {row['device']}"
    takes = f"{snn} takes {cost}"
    if math.isnan(row["time_ratio"]):  # the seconds of one of them are left out (report.conditions)
        takes = f"their training times are not compared (seconds left out on {row['device']}: see the notes)"
    if math.isnan(row["ci_low"]):
        return (f"{snn} averages {abs(diff):.{digits}f} points {'higher' if diff >= 0 else 'lower'} test accuracy than {ffn} "
                f"({seeds}), but with fewer than {MIN_SEEDS} seeds per model no conclusion can be drawn; {takes}.")  # fmt: skip
    p = row["p_value"]
    p_text = "p not defined: no spread across seeds" if math.isnan(p) else ("p < 0.001" if p < 0.001 else f"p = {p:.2g}")
    ci = f"95% CI {row['ci_low']:.{digits}f} to {row['ci_high']:.{digits}f}, {p_text}, {seeds}"
    if row["ci_low"] <= 0 <= row["ci_high"]:
        return (f"The accuracy difference between {snn} and {ffn} ({diff:+.{digits}f} points, {ci}) is not significant; "
                f"{takes}.")  # fmt: skip
    word = "more" if diff > 0 else "less"
    at = f"and {takes}" if math.isnan(row["time_ratio"]) else f"at {cost}"
    return f"{snn} is {abs(diff):.{digits}f} points {word} accurate than {ffn} ({ci}), {at}."


def time_to_accuracy(epochs: pd.DataFrame, target: float) -> pd.DataFrame:
    """Cumulative training seconds until test accuracy first reaches ``target``, per dataset (x schedule) x device x
    model: the mean over the seeds that reached it, with its 95% t-interval (``low``, ``high``)."""
    training, keys = by(epochs, *TRAINING), by(epochs, "dataset", "device", "model")
    ordered = epochs.sort_values("epoch").copy()
    ordered["cumulative_seconds"] = cumulative(ordered, training)
    hits = ordered[ordered["test_accuracy"] >= target].groupby(training).first()
    rows = []
    for values, g in trainings(epochs).groupby(keys, sort=False):
        reached = hits.reindex(pd.MultiIndex.from_frame(g[training])).dropna(subset=["epoch"])
        seconds = reached["cumulative_seconds"].dropna()
        mean, low, high = mean_ci(seconds) if len(seconds) else (math.nan,) * 3
        rows.append({
            **dict(zip(keys, values)), "seeds": len(g), "reached": len(reached), "seconds": mean, "low": low,
            "high": high, "epoch": reached["epoch"].mean() if len(reached) else math.nan,
        })  # fmt: skip
    return pd.DataFrame(rows)


def cumulative(ordered: pd.DataFrame, training: list[str]) -> pd.Series:
    """Each row's training seconds up to and including its epoch (rows ordered by epoch); NaN from an epoch whose seconds
    are left out on (report.conditions): a sum without it would be too small."""
    return ordered.groupby(training, sort=False)["train_seconds"].transform(lambda s: s.cumsum(skipna=False))


def devices(epochs: pd.DataFrame) -> pd.DataFrame:
    """Seconds per epoch of each model on each device, and the speed-up over cpu where cpu was measured (per schedule)."""
    per_training = trainings(epochs)
    hardware = epochs.groupby("device")["hardware"].first()
    rows = []
    keys = by(epochs, "dataset", "model")
    for values, g in per_training.groupby(keys, sort=False):
        per_device = g.groupby("device", sort=False)["seconds_per_epoch"].mean()
        cpu = per_device.get("cpu", math.nan)
        for device, seconds in per_device.items():
            rows.append({**dict(zip(keys, values)), "device": device, "hardware": hardware[device],
                         "seconds_per_epoch": seconds, "speedup": cpu / seconds})  # fmt: skip
    return pd.DataFrame(rows)


def number(value: float | None, spec: str) -> str:
    """``value`` formatted, or "-" where there is none (NaN: not measured, or left out: report.conditions)."""
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def ratio(r: float) -> str:
    if not math.isfinite(r):
        return "-"
    return f"{r:.0f}x" if r >= 10 else f"{r:.2g}x"


def model_order(epochs: pd.DataFrame) -> dict:
    """A sort key per model label: models in the order the runs wrote them, the scales of one model (``snn``,
    ``snn (lr x2)``, ...) together and ascending, whatever order a cluster finished them in."""
    if not {"spec", "lr_scale"} <= set(epochs.columns):
        return {v: i for i, v in enumerate(dict.fromkeys(epochs["model"]))}
    specs = {v: i for i, v in enumerate(dict.fromkeys(epochs["spec"]))}
    labels = epochs.drop_duplicates("model")
    return dict(zip(labels["model"], zip(labels["spec"].map(specs), labels["lr_scale"])))


def _in_order_of_appearance(frame: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Rows in the order the runs wrote them (devices, then models as given), not alphabetical; the scales of one
    model (``snn``, ``snn (lr x2)``, ...) together and ascending, whatever order a cluster finished them in."""
    order = {column: {v: i for i, v in enumerate(dict.fromkeys(epochs[column]))} for column in ["dataset", "device"]}
    order["model"] = model_order(epochs)
    key = frame[["dataset", "device", "model"]].apply(lambda col: col.map(order[col.name]))
    return (
        frame.assign(_k0=key["dataset"], _k1=key["device"], _k2=key["model"])
        .sort_values(["_k0", "_k1", "_k2", "run_id", "seed"], kind="stable")
        .drop(columns=["_k0", "_k1", "_k2"])
        .reset_index(drop=True)
    )
