"""Activity and cost: what the neurons did on the test set, and what that costs in synaptic operations, beside the
seconds measured on the device. From the metric columns of ``epochs.csv``; no text at all when a run did not record them.

Every activity and operation count is the test pass after each training's final epoch, averaged over seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench import schema
from report import stats
from report.load import TRAINING
from report.markdown import per_epoch, table
from report.stats import number as _num

PJ_PER_MAC = 4.6  # 32-bit float multiply-accumulate, 45 nm (Horowitz, ISSCC 2014)
PJ_PER_AC = 0.9  # 32-bit float add, same source: what a binary spike's synaptic event costs
LAYER = ["firing_rate", "silent_share", "mean_when_firing"]
OPS = ["dense_ops", "effective_macs", "effective_acs"]
MEMORY = ["memory_reads", "memory_writes", "neurobench_ops"]  # since snnbench 0.6 (bench/metrics.py)
# one 32-bit word read from or written to an 8 KB SRAM, 45 nm: half of Horowitz's 10 pJ for a 64-bit access (ISSCC 2014),
# the on-chip memory figure that Lemaire et al. (2022) and Dampfhoffer et al. (2023) build their estimates on
PJ_PER_ACCESS = 5.0


def metric_columns(data: pd.DataFrame) -> list[str]:
    """The activity and cost columns of ``data``'s layers (those it has metric columns of), in bench's order."""
    return schema.metric_columns(schema.metric_layers(data.columns))


def activity_columns(data: pd.DataFrame) -> list[str]:
    """The activity columns shown, for every layer ``data`` has metric columns of (layer1, layer2, ... in order)."""
    return [f"{layer}_{m}" for layer in schema.metric_layers(data.columns) for m in LAYER] + ["activation_sparsity"]


def recorded(data: pd.DataFrame, columns: list[str]) -> bool:
    """Whether any of ``columns`` holds a value (a CSV may carry the header with empty cells)."""
    present = [c for c in columns if c in data.columns]
    return bool(present) and bool(data[present].notna().any().any())


def final_rows(data: pd.DataFrame) -> pd.DataFrame:
    """Each training's last epoch row, trainings in the order of the summary table; metric columns always present."""
    data = _with_metric_columns(data)
    last = data.sort_values("epoch").groupby(TRAINING, sort=False).tail(1)
    return stats.trainings(data)[TRAINING].merge(last, on=TRAINING, how="left")


def activity(data: pd.DataFrame) -> pd.DataFrame:
    """Per device x model: seeds and the mean over seeds of each activity column (NaN where none was recorded).

    Trainings that recorded no activity (an older run pooled with a newer one) are left out, and so are their seeds."""
    columns = activity_columns(data)
    finals = final_rows(data).dropna(subset=columns, how="all")
    grouped = finals.groupby(["device", "model"], sort=False)
    kinds = grouped["kind"].first()
    return grouped[columns].mean().assign(seeds=grouped.size(), kind=kinds).reset_index()


def cost(data: pd.DataFrame) -> pd.DataFrame:
    """Per device x model: operations and energy proxy per test sample, measured seconds, and ratios to the FFN.

    energy_pj = effective MACs x 4.6 + effective ACs x 0.9; dense_energy_pj = dense ops x 4.6. inference_ms is
    (eval_seconds - metrics_seconds) / test_samples, averaged over every epoch and seed, like train s/epoch.
    The ratios (``ops_ratio``, ``energy_ratio``, ``train_ratio``, ``inference_ratio``) of each SNN-like model are to the
    first baseline (FFN) on the same device, named in ``ffn``; ``kind`` is each model's, as load found it.
    """
    data = _with_metric_columns(data)
    counting = data["metrics_seconds"].fillna(0)  # absent: the evaluation time is all there is
    data = data.assign(inference_ms=1000 * (data["eval_seconds"] - counting) / data["test_samples"])
    per_training = stats.trainings(data).merge(data.groupby(TRAINING)["inference_ms"].mean().reset_index(), on=TRAINING)
    memory = [c for c in MEMORY if c in data.columns]
    finals = final_rows(data)[TRAINING + OPS + memory]
    per_training = per_training.merge(finals, on=TRAINING, how="left")
    grouped = per_training.groupby(["device", "model"], sort=False)
    means = grouped[[*OPS, *memory, "seconds_per_epoch", "inference_ms"]].mean()
    out = means.assign(seeds=grouped.size(), kind=grouped["kind"].first()).reset_index()
    out["effective_ops"] = out["effective_macs"] + out["effective_acs"].fillna(0)
    out["energy_pj"] = out["effective_macs"] * PJ_PER_MAC + out["effective_acs"].fillna(0) * PJ_PER_AC
    out["dense_energy_pj"] = out["dense_ops"] * PJ_PER_MAC
    if "memory_reads" in out.columns:  # the estimate that counts memory: operations plus 32-bit accesses
        out["memory_pj"] = (out["memory_reads"] + out["memory_writes"]) * PJ_PER_ACCESS
        out["total_pj"] = out["energy_pj"] + out["memory_pj"]
    out["ffn"] = None
    for column in ["ops_ratio", "energy_ratio", "train_ratio", "inference_ratio", "total_ratio"]:
        out[column] = math.nan
    for device, g in out.groupby("device", sort=False):
        ffns = stats.baselines(g)
        if not ffns:
            continue
        ref = g[g["model"] == ffns[0]].iloc[0]
        snn = (out["device"] == device) & ~out["model"].isin(ffns)
        out.loc[snn, "ffn"] = ffns[0]
        out.loc[snn, "ops_ratio"] = out.loc[snn, "effective_ops"] / ref["effective_ops"]
        out.loc[snn, "energy_ratio"] = out.loc[snn, "energy_pj"] / ref["energy_pj"]
        out.loc[snn, "train_ratio"] = out.loc[snn, "seconds_per_epoch"] / ref["seconds_per_epoch"]
        out.loc[snn, "inference_ratio"] = out.loc[snn, "inference_ms"] / ref["inference_ms"]
        if "total_pj" in out.columns:
            out.loc[snn, "total_ratio"] = out.loc[snn, "total_pj"] / ref["total_pj"]
    ratios = ["ops_ratio", "energy_ratio", "train_ratio", "inference_ratio", "total_ratio"]
    out[ratios] = out[ratios].where(np.isfinite(out[ratios].astype(float)))  # x / 0: no ratio, never "infx"
    return out


def section(data: pd.DataFrame, partial: str | None = None) -> list[str]:
    """The "Activity and cost" Markdown of one dataset; nothing when no metric column holds a value. ``partial``: the
    runs' ``report.runs.partial_epochs``, said in the header of the seconds per epoch."""
    if not recorded(data, metric_columns(data)):
        return []
    lines = ["### Activity and cost", ""]
    if recorded(data, activity_columns(data)):
        lines += [
            "Neuron activity on the test set after each training's final epoch, mean over seeds. A neuron *fires* when "
            "its output is > 0: for SNN-like models a spiking layer's output at one time step (graded in the 2018 SNN, "
            "a 0/1 spike in a LIF; rates are over neuron x sample x time step); for FFN models a hidden ReLU output > 0 "
            "(layer 1 is the hidden layer; an FFN has no second nonlinearity: -). *Silent*: share of the layer's neurons "
            "that never fired on any test sample. "
            "*Activation sparsity*: zero outputs over every nonlinearity together (NeuroBench).", "",
            activity_table(data), "",
        ]  # fmt: skip
    if recorded(data, OPS):
        costs = cost(data)
        lines += [
            "Synaptic operations per test sample (NeuroBench's definitions in snnbench's convention: a product a model "
            "computes once per sample counts once, where NeuroBench counts it at every step; docs/metrics.md; final "
            "epoch, mean over seeds): *dense* counts every input x fan-out at every time step the model computes it; "
            "*effective MACs* those whose input is non-zero and graded "
            "(a multiply-accumulate); *effective ACs* those whose input is a spike in {-1, 0, 1} (an accumulate only). "
            f"Energy proxy = effective MACs x {PJ_PER_MAC} pJ + effective ACs x {PJ_PER_AC} pJ; dense: dense ops x "
            f"{PJ_PER_MAC} pJ. Beside them, measured on the device: training seconds per epoch and inference milliseconds "
            "per test sample ((evaluation seconds - metric counting seconds) / test samples), means over every epoch and "
            "seed. Ratios are to the FFN named, on the same device.", "",
            cost_table(costs, partial), "",
            *_ratio_lines(costs),
            _assumptions(costs), "",
            *memory_section(costs),
        ]  # fmt: skip
    lines += [overhead(data), ""]
    return lines


def activity_table(data: pd.DataFrame) -> str:
    rows = []
    for r in activity(data).to_dict("records"):
        firing = "hidden ReLU output > 0" if r["kind"] == schema.BASELINE else "output > 0 at a time step"
        row = {"device": r["device"], "model": r["model"], "seeds": str(r["seeds"]), "firing means": firing}
        for layer in schema.metric_layers(data.columns):
            name = layer.replace("layer", "layer ")
            row[f"{name} firing (%)"] = _num(100 * r[f"{layer}_firing_rate"], ".2f")
            row[f"{name} silent (%)"] = _num(100 * r[f"{layer}_silent_share"], ".1f")
            row[f"{name} mean output when firing"] = _num(r[f"{layer}_mean_when_firing"], ".3g")
        row["activation sparsity (%)"] = _num(100 * r["activation_sparsity"], ".2f")
        rows.append(row)
    return table(rows)


def cost_table(costs: pd.DataFrame, partial: str | None = None) -> str:
    """The Markdown table of ``cost(data)``."""
    rows = [{
        "device": r["device"], "model": r["model"], "seeds": str(r["seeds"]),
        "dense ops/sample": _num(r["dense_ops"], ",.0f"), "effective MACs/sample": _num(r["effective_macs"], ",.0f"),
        "effective ACs/sample": _num(r["effective_acs"], ",.0f"),
        "energy proxy (µJ/sample)": _num(r["energy_pj"] / 1e6, ".3g"),
        "dense energy proxy (µJ/sample)": _num(r["dense_energy_pj"] / 1e6, ".3g"),
        per_epoch(partial): _num(r["seconds_per_epoch"], ".3g"), "inference ms/sample": _num(r["inference_ms"], ".3g"),
        "vs FFN": r["ffn"] or "-", "effective ops ratio": _ratio(r["ops_ratio"]),
        "train time ratio": _ratio(r["train_ratio"]), "inference time ratio": _ratio(r["inference_ratio"]),
    } for r in costs.to_dict("records")]  # fmt: skip
    return table(rows)


def _ratio_lines(costs: pd.DataFrame) -> list[str]:
    """One sentence per SNN-like model with an FFN beside it: operations against seconds, in the same units."""
    lines = []
    recorded_ops = dict(zip(zip(costs["device"], costs["model"]), costs["effective_ops"].notna()))
    for r in costs[costs["ffn"].notna()].to_dict("records"):
        if math.isnan(r["ops_ratio"]):
            missing = [m for m in (r["model"], r["ffn"]) if not recorded_ops[(r["device"], m)]]
            why = (f"{' and '.join(missing)} recorded no operation counts" if missing
                   else f"{r['ffn']} recorded 0 effective operations")  # fmt: skip
            lines.append(f"- {r['model']} on {r['device']}: no ratio of operations to {r['ffn']}: {why}.")
            continue
        text = (f"- {r['model']} on {r['device']}: {_ratio(r['ops_ratio'])} the effective synaptic operations of "
                f"{r['ffn']} per test sample ({_ratio(r['energy_ratio'])} its energy proxy)")  # fmt: skip
        if not math.isnan(r["inference_ratio"]):
            per_op = r["inference_ratio"] / r["ops_ratio"]
            text += (f", {_ratio(r['inference_ratio'])} its measured inference time and {_ratio(r['train_ratio'])} its "
                     f"training time per epoch: per synaptic operation, its inference takes {per_op:.2g}x the time of "
                     f"{r['ffn']}'s on this device")  # fmt: skip
        if r["dense_ops"] > 0:
            text += f"; its effective operations are {r['effective_ops'] / r['dense_ops']:.1%} of its dense count"
        lines.append(text + ".")
    return [*lines, ""] if lines else []


def _assumptions(costs: pd.DataFrame) -> str:
    text = (f"**Assumptions.** The energy figures are a proxy, not a measurement: {PJ_PER_MAC} pJ per 32-bit float MAC "
            f"and {PJ_PER_AC} pJ per 32-bit float AC, Horowitz's 45 nm figures (ISSCC 2014), times the synaptic operations "
            "of one inference. They count synaptic operations only: no neuron-state updates and no memory traffic, which "
            "dominate the energy of real hardware, and no training. ")  # fmt: skip
    snn = costs[costs["kind"] != schema.BASELINE]
    if snn.empty:
        return text
    names = ", ".join(dict.fromkeys(snn["model"]))
    acs = snn.dropna(subset=["effective_acs"])
    if acs.empty:
        return text + f"Accumulate-only operations were not recorded for {names}."
    with_acs = acs[acs["effective_acs"] > 0]
    if with_acs.empty:
        return text + (
            f"Every SNN-like model here ({names}) recorded 0 ACs: this SNN's input (random masks times analog pixels) "
            "and its graded ReLU outputs are not binary spikes, so every non-zero synaptic input needs a multiply. Its "
            "operations are MACs, not ACs: there is no spike-only saving to claim."
        )
    shares = "; ".join(f"{r['model']} on {r['device']}: {r['effective_acs']:,.0f} per sample, "
                       f"{r['effective_acs'] / r['effective_ops']:.1%} of its effective operations"
                       for r in with_acs.to_dict("records"))  # fmt: skip
    text += (f"Accumulate-only operations (inputs in {{-1, 0, 1}}) were recorded for {shares}; only those are "
             f"priced as ACs, every other synaptic operation as a MAC. ")  # fmt: skip
    return text + " ".join(_where_spikes_save(r) for r in with_acs.to_dict("records"))


def _where_spikes_save(r: dict) -> str:
    """Where a model's binary spikes save multiplies and where its graded inputs still need them."""
    head = f"Where spikes save work in {r['model']}: its layers whose inputs are spikes accumulate only"
    if not r["effective_macs"] > 0:
        return head + "; it made no multiply at all."
    encoding = dict(item.split("=", 1) for item in r["model"].partition(":")[2].split(",") if "=" in item).get("encoding")
    why = {"direct": "layer 1 under direct encoding multiplies the analog pixels (once per sample: its current is the "
                     "same at every step)",
           "masks": "layer 1 under masks encoding multiplies the random masks times analog pixels at every step"}  # fmt: skip
    return head + (f", but {r['effective_macs']:,.0f} MACs per sample remain where its inputs are graded"
                   f"{': ' + why[encoding] if encoding in why else ''}.")  # fmt: skip


def overhead(data: pd.DataFrame) -> str:
    """One line: the metric counting time as a share of the evaluation time and of the training time."""
    if not recorded(data, ["metrics_seconds"]) or "eval_seconds" not in data.columns:
        return "The metric counting time was not recorded; the inference times above include it."
    rows = data.dropna(subset=["metrics_seconds"])
    counting, evaluation, training = rows["metrics_seconds"].sum(), rows["eval_seconds"].sum(), rows["train_seconds"].sum()
    sums = rows.groupby(["device", "model"], sort=False)[["metrics_seconds", "eval_seconds"]].sum()
    shares = (sums["metrics_seconds"] / sums["eval_seconds"])[sums["eval_seconds"] > 0]
    after = ("The inference times above exclude the counting, not what recording the activity may add to the forward "
             "pass; run with --no-metrics for plain inference times.")  # fmt: skip
    if not evaluation > 0 or shares.empty:
        return (f"Metric counting overhead: counting the metrics took {counting:.3g} s in all, "
                f"{_share(counting, training)} of the training time; the evaluation time recorded is 0 s, so no share "
                f"of it can be given. {after}")  # fmt: skip
    (device, model), worst = shares.idxmax(), shares.max()
    return (f"Metric counting overhead: counting the metrics took {counting:.3g} s in all, {_share(counting, evaluation)} "
            f"of the evaluation time and {_share(counting, training)} of the training time (largest: {model} on {device}, "
            f"{worst:.1%} of its evaluation time). {after}")  # fmt: skip


def _share(part: float, whole: float) -> str:
    if not whole > 0:
        return "-"
    return f"{part / whole:.1%}" if part / whole >= 0.001 else f"{100 * part / whole:.2g}%"  # 0.0%: too coarse to read


def _with_metric_columns(data: pd.DataFrame) -> pd.DataFrame:
    """``data`` with every metric column of its layers, and the evaluation columns, present (NaN where absent)."""
    return data.reindex(columns=list(dict.fromkeys([*data.columns, *metric_columns(data), "eval_seconds",
                                                    "test_samples"])))  # fmt: skip


def _ratio(value: float) -> str:
    return "-" if value is None or math.isnan(value) else stats.ratio(value)


def memory_section(costs: pd.DataFrame) -> list[str]:
    """The estimate that counts memory beside the operation proxy, and where the two disagree about which model is
    cheaper; the operations as NeuroBench counts them where that differs from snnbench's count. Nothing for runs
    from before these columns (snnbench < 0.6)."""
    if "total_pj" not in costs.columns or costs["total_pj"].isna().all():
        return []
    rows = [{
        "device": r["device"], "model": r["model"],
        "memory reads/sample": _num(r["memory_reads"], ",.0f"), "memory writes/sample": _num(r["memory_writes"], ",.0f"),
        "operations (µJ/sample)": _num(r["energy_pj"] / 1e6, ".3g"), "memory (µJ/sample)": _num(r["memory_pj"] / 1e6, ".3g"),
        "operations + memory (µJ/sample)": _num(r["total_pj"] / 1e6, ".3g"),
        "vs FFN": r["ffn"] or "-", "operation proxy ratio": _ratio(r["energy_ratio"]),
        "with memory ratio": _ratio(r["total_ratio"]),
        "effective ops, NeuroBench's convention": _num(r["neurobench_ops"], ",.0f"),
    } for r in costs.to_dict("records")]  # fmt: skip
    lines = [
        "**Energy with memory.** Beside the operation proxy, an estimate that counts memory accesses (32-bit words, "
        f"{PJ_PER_ACCESS:g} pJ each, read or write: an 8 KB SRAM at 45 nm, Horowitz 2014, the figure Lemaire et al. 2022 "
        "and Dampfhoffer et al. 2023 use): every effective synaptic operation reads its weight (no reuse), every non-zero "
        "input is read, every non-zero output is written, and a spiking model reads and writes every neuron's membrane "
        "potential at every time step. The last column counts the effective operations as NeuroBench does: an input "
        "that a model gives once for all its steps (lif's `direct` encoding) is counted at every step, where snnbench's "
        "columns above count it once, as the model computes it. Details: docs/metrics.md.", "",
        table(rows), "",
    ]  # fmt: skip
    for r in costs[costs["ffn"].notna()].to_dict("records"):
        a, b = r["energy_ratio"], r["total_ratio"]
        if math.isnan(a) or math.isnan(b):
            continue
        if (a < 1) != (b < 1):
            lines.append(f"- **The estimates disagree** for {r['model']} on {r['device']}: {_ratio(a)} {r['ffn']}'s "
                         f"energy counting operations only, {_ratio(b)} counting memory too: "
                         f"{'cheaper' if a < 1 else 'dearer'} by the first, {'cheaper' if b < 1 else 'dearer'} by the "
                         "second.")  # fmt: skip
        else:
            lines.append(f"- {r['model']} on {r['device']}: {_ratio(a)} {r['ffn']}'s energy counting operations only, "
                         f"{_ratio(b)} counting memory too: both say {'cheaper' if b < 1 else 'dearer'}.")  # fmt: skip
    return [*lines, ""]
