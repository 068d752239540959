"""Measured energy: what the device's own energy counter read over each epoch's training and test passes
(``train_joules``, ``eval_joules``: bench/energy.py, NVML on NVIDIA GPUs), beside the seconds and the estimates.

Nothing for runs from before these columns; one sentence saying why where a run has them but they are empty (no
counter on its device, as run.json's provenance records it).
"""

from __future__ import annotations

import math

import pandas as pd

from bench.energy import NONE
from bench.schema import ENERGY_COLUMNS as COLUMNS
from report import stats
from report.load import TRAINING
from report.markdown import table
from report.stats import number as _num


def reasons(runs: list[dict], devices: list[str]) -> dict[str, list[str]]:
    """Per device, the distinct ``energy_counter`` descriptions its trainings' segments recorded (run.json)."""
    found: dict[str, list[str]] = {d: [] for d in devices}
    for meta in runs:
        for t in meta.get("trainings") or []:
            if not isinstance(t, dict) or t.get("device") not in found:
                continue
            for s in t.get("segments") or []:
                said = s.get("energy_counter") if isinstance(s, dict) else None
                if said and said not in found[t["device"]]:
                    found[t["device"]].append(said)
    return found


def measured(data: pd.DataFrame) -> pd.DataFrame:
    """Per device x model: seeds, mean training joules per epoch, mean training power (joules over seconds of the
    epochs measured), joules per test sample (the test pass's joules over its samples, mean over epochs; its share of
    metric counting left out in proportion to its seconds, as report.activity.cost leaves it out of the inference
    milliseconds) and the ratios of the first and last to the first baseline's on the same device."""
    rows = data.dropna(subset=["train_joules"])
    counting = rows["metrics_seconds"].fillna(0) if "metrics_seconds" in rows.columns else 0
    inference = (rows["eval_seconds"] - counting) / rows["eval_seconds"] if "eval_seconds" in rows.columns else 1
    rows = rows.assign(eval_per_sample=rows["eval_joules"] * inference / rows["test_samples"].where(rows["test_samples"] > 0))
    out = []
    for (device, model), g in rows.groupby(["device", "model"], sort=False):
        out.append({
            "device": device, "model": model, "kind": g["kind"].iloc[0], "seeds": g.groupby(TRAINING).ngroups,
            "train_j_per_epoch": float(g["train_joules"].mean()),
            "watts": float(g["train_joules"].sum() / g["train_seconds"].sum()),
            "j_per_test_sample": float(g["eval_per_sample"].mean()),
            "seconds_per_epoch": float(g["train_seconds"].mean()),
        })  # fmt: skip
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    frame["ffn"], frame["energy_ratio"], frame["sample_ratio"] = None, math.nan, math.nan
    for device, g in frame.groupby("device", sort=False):
        ffns = stats.baselines(data[data["device"] == device])
        ref = g[g["model"] == ffns[0]] if ffns else g.iloc[:0]
        if ref.empty:
            continue
        snn = (frame["device"] == device) & ~frame["model"].isin(ffns)
        frame.loc[snn, "ffn"] = ffns[0]
        frame.loc[snn, "energy_ratio"] = frame.loc[snn, "train_j_per_epoch"] / ref["train_j_per_epoch"].iloc[0]
        frame.loc[snn, "sample_ratio"] = frame.loc[snn, "j_per_test_sample"] / ref["j_per_test_sample"].iloc[0]
    return frame


def section(data: pd.DataFrame, runs: list[dict]) -> list[str]:
    """The "Measured energy" Markdown of one dataset, with report.activity.cost's per-sample estimate beside the
    measured joules where a run counted operations. Where no joules were measured, one sentence with
    the reasons run.json records, and nothing where it records none."""
    if not all(c in data.columns for c in COLUMNS):
        return []  # a run from before the energy counter
    from report import activity

    counted = activity.recorded(data, activity.OPS)
    head = ["### Measured energy", ""]
    frame = measured(data)
    if frame.empty:
        said = reasons(runs, list(dict.fromkeys(data["device"])))
        if not any(said.values()):
            return []  # a file with the columns but no run.json that says anything of a counter: nothing to tell
        why = "; ".join(f"{d}: {', '.join(x.removeprefix(NONE + ': ') for x in r) if r else 'no reason recorded'}"
                        for d, r in said.items())  # fmt: skip
        also = " The operation and memory estimates above are estimates, not measurements." if counted else ""
        return [*head, f"No energy was measured: no training read an energy counter ({why}). The `train_joules` and "
                       f"`eval_joules` columns are empty.{also}", ""]  # fmt: skip
    estimates = activity.cost(data) if counted else None  # (computed only where there are joules to set it beside)
    with_estimate = estimates is not None and "total_pj" in estimates.columns
    est = estimates.set_index(["device", "model"]) if with_estimate else None
    rows = []
    for r in frame.to_dict("records"):
        row = {
            "device": r["device"], "model": r["model"], "seeds": r["seeds"],
            "train J/epoch": _num(r["train_j_per_epoch"], ".4g"), "train s/epoch": _num(r["seconds_per_epoch"], ".3g"),
            "mean power (W)": _num(r["watts"], ".4g"), "J per test sample": _num(r["j_per_test_sample"], ".3g"),
            "vs FFN": r["ffn"] or "-", "train J ratio": stats.ratio(r["energy_ratio"]),
            "J/sample ratio": stats.ratio(r["sample_ratio"]),
        }  # fmt: skip
        if with_estimate:
            key = (r["device"], r["model"])
            total = est["total_pj"].get(key, math.nan) if key in est.index else math.nan
            row["estimate, ops + memory (µJ/sample)"] = _num(total / 1e6, ".3g")
        rows.append(row)
    return [
        *head,
        "Read from the device's own energy counter (run.json's provenance names it: `energy_counter`) after "
        "synchronizing it, over the same spans as the seconds: each epoch's training pass, and its test pass (per test "
        "sample: the pass's joules times the share of its seconds not spent counting metrics). It measures the whole "
        "board, idle and static power included; trainings that shared a device record none. Means over every measured "
        "epoch and seed; ratios to the FFN named, on the same device. The estimate beside it (where counted) is the "
        "45 nm accelerator model of docs/metrics.md, not this device: the two answer different questions.",
        "",
        table(rows, numbers=False),
        "",
    ]  # fmt: skip
