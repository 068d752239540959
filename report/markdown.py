"""The Markdown text of the report: one section per dataset (and schedule), tables from ``report.stats``, figures by
relative path."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from bench import provenance as origin
from bench import schema
from report import conditions, pooling, stats
from report.load import Results
from report.runs import incomplete_trainings, partial_epochs, scales, validation, why

ENVIRONMENT = ["python", "torch", "torchvision", "cuda", "snnbench", "git_commit", "platform", "cpu_count", "torch_threads"]


NUMBER = re.compile(r"^[-+]?[\d,.]+(x| ± [\d.]+)?\*?$")  # 97.12, 1,006, +0.35, 4.56x, 97.12 ± 0.35, 4*


def table(rows: list[dict] | pd.DataFrame, numbers: bool = True) -> str:
    """A pipe table of pre-formatted strings; columns of numbers are right-aligned (not versions: ``numbers=False``)."""
    frame = pd.DataFrame(rows).astype(str)
    if frame.empty:
        return "(none)"
    align = ["right" if numbers and frame[c].str.match(NUMBER).all() else "left" for c in frame.columns]
    return frame.to_markdown(index=False, disable_numparse=True, colalign=align)


def per_epoch(partial: str | None = None) -> str:
    """The header of a column of training seconds per epoch; it says when the epochs were cut short (--max-batches)."""
    return "train s/epoch" + (f" ({partial})" if partial else "")


def report(
    results: Results,
    figures: dict[pooling.Section, list[tuple[str, str]]],
    sources: list[str],
    target: float,
    extra: dict[pooling.Section, list[str]] | None = None,
    tuned: dict[pooling.Section, list[str]] | None = None,
) -> str:
    """The whole report; ``figures``, ``extra`` (further Markdown lines, placed before the figures) and ``tuned`` (the
    tuned comparison, placed after the head-to-head) are keyed by ``pooling.sections``: one per dataset, or per dataset
    and schedule where a dataset's runs differ in schedule."""
    epochs, runs = results.epochs, results.runs
    datasets = list(dict.fromkeys(epochs["dataset"]))
    sections = pooling.sections(epochs)
    split = (" A dataset whose runs differ in schedule has one section per schedule: trainings of different schedules "
             "are never pooled either.") if len(sections) > len(datasets) else ""  # fmt: skip
    lines = [
        "# snnbench report",
        "",
        f"Built from {len(runs)} run(s) found in {', '.join(f'`{s}`' for s in sources)}; "
        f"datasets: {', '.join(datasets)}. Each dataset has its own section; runs on different datasets are never "
        f"pooled.{split}",
        "",
        "Accuracies are in percent and differences in percentage points. A *seed* is one training; its *final* accuracy "
        "is the test accuracy at the last epoch it reached. Intervals are 95% Student-t intervals over seeds (none for "
        f"one seed). {pairing(epochs)} Training time is synchronized wall-clock time of the training passes only (no "
        "evaluation).",
        "",
    ]  # fmt: skip
    dropped = results.duplicates
    empty = [m for m in runs if m["run_id"] not in {*epochs["run_id"], *dropped.get("run_id", [])}]
    if empty:
        lines += ["Runs without any result row (not used): " + ", ".join(f"`{m['run_id']}` ({_why_empty(m)})" for m in empty), ""]
    # dropped repeats still show how far their run got: a run is not incomplete because its trainings were repeats
    incomplete = incomplete_trainings(pd.concat([epochs, dropped]) if len(dropped) else epochs, runs).drop_duplicates()
    for s in sections:
        partial = partial_epochs(s.select(epochs), runs)
        notes = _schedule_note(s) + [pooling.duplicates_note(s.select(dropped)) if len(dropped) else None,
                                     _partial_note(s.select(epochs), runs, partial)]  # fmt: skip
        timing, apart = timing_notes(s.select(epochs), s.select(results.conditions), runs)
        lines += section(s, s.select(epochs), runs, incomplete, figures.get(s, []), target, (extra or {}).get(s, []),
                         [n for n in notes if n] + timing, (tuned or {}).get(s, []), partial, apart)  # fmt: skip
    return "\n".join(lines)


def no_rows(results: Results, sources: list[str], studies: list[str] | None = None) -> str:
    """The report of runs where no training finished an epoch scored on the test set: every one diverged, failed or
    was stopped in its first, or a tuning study (``studies``: its tuning sections) has not trained its picks yet. There
    is nothing to compare, and it says so, with each run's record and each training's status and why."""
    found = f"Built from {len(results.runs)} run(s) found in {', '.join(f'`{s}`' for s in sources)}."
    if studies:
        said = (f"{found} No picked configuration has been trained and scored on the test set yet (a tuning study "
                "still running or interrupted: `python -m bench.run --resume RUN` finishes it), so there is nothing to "
                "compare: no accuracy tables, no verdict and no time to accuracy. The trials so far, scored on the "
                "validation samples, and what each run recorded of its trainings follow.")  # fmt: skip
    else:
        said = (f"{found} No training finished an epoch, so there is nothing to compare: no accuracy tables, no "
                "comparison, no time to accuracy and no figures. What each run recorded of its trainings follows.")  # fmt: skip
    lines = ["# snnbench report", "", said, "", *(studies or [])]
    first: dict[str, dict] = {}
    for m in results.runs:
        first.setdefault(m["run_id"], m)
    for m in first.values():
        schedule = m.get("schedule") or {}
        trainings = [t for t in m.get("trainings") or [] if isinstance(t, dict)]
        scaled = any(t.get("lr_scale", 1.0) != 1 for t in trainings)
        rows = [{
            "run": m["run_id"], "model": str(t.get("model", "?")), "device": str(t.get("device", "?")),
            "seed": str(t.get("seed", "?")),
            **({"lr scale": pooling.scale_text(float(t.get("lr_scale", 1.0)))} if scaled else {}),
            "status": str(t.get("status", "?")), "epochs done": f"{t.get('epochs_done', 0)} of {schedule.get('epochs', '?')}",
            "why": str(t.get("detail") or "-"),
        } for t in trainings]  # fmt: skip
        lines += [
            f"## Run `{m['run_id']}`", "",
            table([{"status": _status(m), "dataset": m.get("dataset", "?"), "started": m.get("started", "?"),
                    "finished": m.get("finished") or "-", "devices": ", ".join(m.get("devices", [])),
                    "seeds": " ".join(map(str, m.get("seeds", []))), **_schedule(schedule)}]), "",
            "Command:", "", "```", m.get("command", "(unknown)"), "```", "",
            "Trainings:", "", table(rows) if rows else "(run.json lists none)", "",
        ]  # fmt: skip
        if any(t.get("status") == "failed" for t in trainings) or (Path(m.get("path", "")) / "errors.log").is_file():
            lines += [f"The tracebacks of the failed trainings are in `{Path(m.get('path', '.')) / 'errors.log'}`.", ""]
    return "\n".join(lines)


def heading(s: pooling.Section) -> str:
    if s.count == 1:
        return f"## Dataset `{s.dataset}`"
    return f"## Dataset `{s.dataset}`, schedule {s.index} of {s.count}: {s.schedule}"


def section(s: pooling.Section, data, runs, incomplete, figures, target, extra=(), notes=(), tuned=(), partial=None,
            apart=()) -> list[str]:  # fmt: skip
    ids = list(dict.fromkeys(data["run_id"]))
    first: dict[str, dict] = {}
    for m in runs:
        first.setdefault(m["run_id"], m)  # a run folder read twice (a copy) is one run
    meta = [m for m in first.values() if m["run_id"] in ids]
    marked = _incomplete_groups(data, meta, incomplete)
    return [
        heading(s), "",
        *provenance(data, meta, incomplete[incomplete["run_id"].isin(ids)], notes),
        "### Summary", "", summary_table(data, marked, partial), "",
        *(["\\* includes trainings that reached fewer epochs than asked (stopped early or incomplete: see above).", ""]
          if marked else []),
        *(["Training seconds by condition (what each segment ran on, run.json; the tables pool only one condition per "
           "model):", "", table(list(apart)), ""] if apart else []),
        *head_to_head(data),
        *tuned,
        f"### Time to {100 * target:g}% test accuracy", "",
        "Cumulative training seconds until the test accuracy after an epoch first reaches the target; the mean is over "
        "the seeds that reached it.", "",
        time_table(data, target), "",
        "### Devices", "", devices_table(data, partial), "",
        *extra,
        "### Figures", "",
        *[f"**{caption}**\n\n![{caption}]({file})\n" for caption, file in figures],
    ]  # fmt: skip


def provenance(data, meta, incomplete, notes=()) -> list[str]:
    runs = [{
        "run": m["run_id"], "status": _status(m), "started": m.get("started", "?"), "finished": m.get("finished") or "-",
        "devices": ", ".join(m.get("devices", [])), "models": ", ".join(m.get("models", {})),
        "seeds": " ".join(map(str, m.get("seeds", []))), **_schedule(m.get("schedule") or {}),
    } for m in meta]  # fmt: skip
    if any(scales(m) != [1.0] or validation(m) for m in meta):  # runs from before the grid: the columns they had
        for row, m in zip(runs, meta):
            row.update({"lr scales": " ".join(map(pooling.scale_text, scales(m))), "validation": f"{validation(m):,}"})
    env = [{"run": m["run_id"], **{k: (m.get("environment") or {}).get(k, "?") for k in ENVIRONMENT}} for m in meta]
    for row, m in zip(env, meta):  # the trainings' threads (a Dask worker's, a segment's), not the driver's
        row["torch_threads"] = conditions.threads(m) or row["torch_threads"]
    hardware = data.groupby("device", sort=False)["hardware"].first()
    segments = segments_table(meta)
    lines = [
        "### Where the numbers come from", "",
        table(runs), "",
        "Commands:", "", "```", *[m.get("command", f"(unknown: {m['run_id']} has no run.json)") for m in meta], "```", "",
        "Software and threads:", "", table(env, numbers=False), "",
        "Hardware:", "", table([{"device": d, "hardware": h} for d, h in hardware.items()]), "",
        *(["Where the trainings ran (run.json's segments: each stretch of a training between resumes, as its own process "
           "saw it; kernels: each family's backend):", "", table(segments, numbers=False), ""] if segments else []),
    ]  # fmt: skip
    if len(incomplete):
        lines += ["Trainings that reached fewer epochs than the schedule asked for (early stopping ends one on purpose, "
                  "as its *why* says; 0 = no epoch finished):", "",
                  table(incomplete.rename(columns={"run_id": "run", "epochs": "epochs reached", "expected": "epochs asked",
                                                   "why": "why (run.json)"})),
                  ""]  # fmt: skip
    elif all(m.get("status") == "complete" for m in meta):
        lines += ["Every run is complete and every training reached the epochs its schedule asked for.", ""]
    lines += [f"{note}\n" for note in notes] + _repeats(data)
    return lines


def summary_table(data: pd.DataFrame, marked: set, partial: str | None = None) -> str:
    rows = []
    for r in stats.summary(data).itertuples():
        epochs = str(r.epochs_max) if r.epochs_min == r.epochs_max else f"{r.epochs_min}-{r.epochs_max}"
        rows.append({
            "device": r.device, "model": r.model,
            "seeds": f"{r.seeds}{'*' if (r.device, r.model) in marked else ''}", "epochs": epochs,
            "final test acc. (%, mean ± 95% CI)": _pm(r.final_accuracy, r.ci_low, r.ci_high),
            "best test acc. (%)": f"{100 * r.best_accuracy:.2f}",
            per_epoch(partial): stats.number(r.seconds_per_epoch, ".3g"),
            "total train s (all seeds)": stats.number(r.train_seconds, ".1f"),
            "train samples/s": stats.number(r.samples_per_second, ",.0f"),
        })  # fmt: skip
    return table(rows)


def head_to_head(data: pd.DataFrame) -> list[str]:
    lines = ["### SNN against FFN", ""]
    h2h = stats.head_to_head(data)
    if h2h.empty:
        return lines + ["No comparison: no device here has both an SNN-like model and a baseline (FFN-like) model.", ""]
    rows = [{
        "device": r["device"], "SNN-like": r["snn"], "FFN": r["ffn"], "seeds": f"{r['seeds_snn']} / {r['seeds_ffn']}",
        "acc. difference (points)": f"{r['difference']:+.2f}",
        "95% CI (Welch)": "-" if math.isnan(r["ci_low"]) else f"{r['ci_low']:+.2f} to {r['ci_high']:+.2f}",
        "p (Welch's t-test)": "-" if math.isnan(r["p_value"]) else f"{r['p_value']:.3g}",
        "time/epoch ratio": stats.ratio(r["time_ratio"]),
    } for _, r in h2h.iterrows()]  # fmt: skip
    lines += [
        table(rows),
        "",
        *[f"- {stats.sentence(r)}" for _, r in h2h.iterrows()],
        "",
    ]
    if (h2h[["seeds_snn", "seeds_ffn"]].min(axis=1) < stats.MIN_SEEDS).any():
        lines += [f"With fewer than {stats.MIN_SEEDS} seeds on either side there is no interval and no p-value.", ""]
    return lines


def pairing(epochs: pd.DataFrame) -> str:
    """Which models meet which, in words: the runs' recorded kinds decide."""
    ffns = stats.baselines(epochs)
    return (f"Baselines (FFN-like) are the models each run.json records as such (`ffn` in runs older than that record); "
            f"here: {', '.join(f'`{m}`' for m in ffns) or 'none'}. Every other model is SNN-like and is compared with "
            f"every baseline.{_scales_note(epochs)}")  # fmt: skip


def _scales_note(epochs: pd.DataFrame) -> str:
    if "lr_scale" not in epochs.columns or (epochs["lr_scale"] == 1).all():
        return ""
    return (" A model trained at several learning-rate scales (multiples of its `--lr` schedule) is one model per scale, "
            "`snn (lr x2)`, never pooled; it meets the baselines at the same scale, and in the tuned comparison each "
            "model at its own best scale.")  # fmt: skip


def time_table(data: pd.DataFrame, target: float) -> str:
    rows = [{
        "device": r.device, "model": r.model, "seeds that reached it": f"{r.reached} of {r.seeds}",
        "mean train s to reach it": "not reached" if r.reached == 0 else stats.number(r.seconds, ".3g"),
        "mean epoch": "-" if r.reached == 0 else f"{r.epoch:.3g}",
    } for r in stats.time_to_accuracy(data, target).itertuples()]  # fmt: skip
    return table(rows)


def devices_table(data: pd.DataFrame, partial: str | None = None) -> str:
    rows = []
    for r in stats.devices(data).itertuples():
        if r.device == "cpu":
            speedup = "reference"
        elif math.isnan(r.speedup):
            speedup = "cpu not measured"
        else:
            speedup = f"{r.speedup:.3g}x" if math.isfinite(r.speedup) else "-"  # 0 s on the device: no ratio
        rows.append({"model": r.model, "device": r.device, "hardware": r.hardware,
                     per_epoch(partial): stats.number(r.seconds_per_epoch, ".3g"), "speed-up over cpu": speedup})  # fmt: skip
    return table(rows)


def _pm(mean: float, low: float, high: float) -> str:
    if math.isnan(low):
        return f"{100 * mean:.2f} (one seed)"
    return f"{100 * mean:.2f} ± {100 * (high - mean):.2f}"


def _partial_note(data: pd.DataFrame, runs: list[dict], partial: str | None) -> str | None:
    if not partial:
        return None
    samples = sorted(set(data["train_samples"].astype(int)))
    counted = " or ".join(f"{n:,}" for n in samples[:3]) + (" ..." if len(samples) > 3 else "")
    return (f"**Note:** every epoch here stopped at {partial.split(': ', 1)[1]} ({counted} training samples): training "
            "seconds per epoch are of partial epochs, and neither they nor the accuracies compare with those of runs "
            "over whole epochs.")  # fmt: skip


def _why_empty(meta: dict) -> str:
    """A run without rows: its status, and what run.json says of each training that stopped."""
    stopped = [t for t in meta.get("trainings") or [] if isinstance(t, dict) and t.get("status") != "complete"]
    told = [f"{t.get('model')} on {t.get('device')}, seed {t.get('seed')}: "
            f"{why(meta, t.get('model'), t.get('device'), t.get('seed'), t.get('lr_scale', 1.0)).replace(': ', ', ', 1)}"
            for t in stopped]  # fmt: skip
    return "; ".join([_status(meta), *told])


def _status(meta: dict) -> str:
    status = meta.get("status", "unknown (no run.json)")
    return "running, or killed" if status == "running" else status  # a killed run cannot update its run.json


def _schedule(s: dict) -> dict:
    return {"epochs": s.get("epochs", "?"), "lr": " ".join(map(str, s.get("lrs", []))), "optimizer": _optimizer(s),
            "precision": s.get("precision", schema.DEFAULT_PRECISION),
            "batch": s.get("batch_size", "?"), "max batches": s.get("max_batches") or "all"}  # fmt: skip


def _optimizer(recorded: dict) -> str:
    """``sgd, momentum 0.5, fresh each epoch``, ``adam, kept across epochs``: what run.json says (sgd where it does not,
    as every run before there was a choice); the momentum only where there is one, SGD's."""
    s = schema.schedule(recorded)
    fresh = s.get("fresh_optimizer")
    return ", ".join([s.get("optimizer", schema.DEFAULT_OPTIMIZER),
                      *([f"momentum {s['momentum']}"] if s.get("momentum") is not None else []),
                      *([] if fresh is None else ["fresh each epoch" if fresh else "kept across epochs"])])  # fmt: skip


def _incomplete_groups(data, meta, incomplete) -> set[tuple[str, str]]:
    """(device, model) groups with a training from an unfinished run or one that stopped short of its schedule."""
    short = set(zip(incomplete["run_id"], incomplete["device"], incomplete["model"], incomplete["seed"]))
    unfinished = {m["run_id"] for m in meta if m.get("status") != "complete"}
    flagged = data[[r in unfinished or (r, d, m, s) in short
                    for r, d, m, s in zip(data["run_id"], data["device_arg"], data["model"], data["seed"])]]  # fmt: skip
    return set(zip(flagged["device"], flagged["model"]))


def _schedule_note(s: pooling.Section) -> list[str]:
    if s.count == 1:
        return []
    return [f"**Note:** the runs on `{s.dataset}` differ in their schedule. Each schedule is reported in its own section "
            f"and its trainings are never pooled or compared with another's: this section holds those of schedule "
            f"{s.index} of {s.count} ({s.schedule})."]  # fmt: skip


def _repeats(data: pd.DataFrame) -> list[str]:
    """A note for each seed trained in several runs with different numbers (identical repeats were dropped on load)."""
    repeats = data.groupby(["device", "model", "seed"])["run_id"].nunique()
    return [f"**Note:** seed {seed} of {model} on {device} was trained in {n} runs; each counts as one seed below.\n"
            for (device, model, seed), n in repeats[repeats > 1].items()]  # fmt: skip


def segments_table(meta: list[dict]) -> list[dict]:
    """Where each run's trainings ran, per distinct provenance of their segments: host, hardware, threads, kernels,
    mask generator, executor, trainings in parallel, versions; and how many segments. Runs without segments: none."""
    rows: dict[tuple, dict] = {}
    for m in meta:
        for t in m.get("trainings") or []:
            for s in (t.get("segments") or []) if isinstance(t, dict) else []:
                if not isinstance(s, dict):
                    continue
                kernels = ", ".join(f"{f} {s[f]}" for f in origin.families(s)) or "-"
                row = {"run": m["run_id"], "host": s.get("host"), "hardware": s.get("hardware"),
                       "torch threads": s.get("torch_threads"), "kernels": kernels, "mask generator": s.get("mask_generator"),
                       "precision": s.get("precision"), "executor": s.get("executor"),
                       "in parallel": "?" if s.get("parallel") is None else s.get("parallel"),
                       "snnbench": s.get("snnbench"), "git commit": s.get("git_commit")}  # fmt: skip
                row = {k: "?" if v is None else str(v) for k, v in row.items()}
                rows.setdefault(tuple(row.values()), {**row, "segments": 0})["segments"] += 1
    return [{**r, "segments": str(r["segments"])} for r in rows.values()]


def timing_notes(data: pd.DataFrame, table: pd.DataFrame, runs: list[dict]) -> tuple[list[str], list[dict]]:
    """What a section says of its seconds: a note for each run whose rows' conditions cannot be told, one for models
    measured under several conditions (with the rows of the table that lists them), one for models of a device measured
    under different conditions from each other; and that table's rows."""
    lines, shown = [], []
    unknown = data[data["condition"].isna()]
    for run_id in dict.fromkeys(unknown["run_id"]):
        meta = next((m for m in runs if m["run_id"] == run_id), {})
        mine = unknown[unknown["run_id"] == run_id]
        devices = list(dict.fromkeys(mine["device_arg"]))
        ran = "; then ".join(dict.fromkeys(origin.describe(s) for d in devices for s in origin.stretches(meta, d)))
        models = ", ".join(f"`{m}`" for m in dict.fromkeys(mine["model"]))
        why = (f"it ran under other conditions after a `--resume` than before ({ran}), and its rows do not say which "
               "measured them (the run predates segment records)") if not conditions.segmented(meta) else (
               "its rows do not name the segment that trained them, and its segments ran under different conditions")  # fmt: skip
        lines.append(f"**Note:** run `{run_id}`: {why}. Its training seconds, samples per second and memory ({models}) "
                     "are left out of every table and figure; its accuracies count as usual.")  # fmt: skip
    mine = table[table.groupby(conditions.GROUP, sort=False)["condition"].transform("nunique") > 1]
    if len(mine):
        number = stats.number
        shown = [{"device": r.device, "model": r.model, "condition": r.condition, "trainings": str(r.trainings),
                  "epochs": str(r.epochs), "train s/epoch": number(r.seconds_per_epoch, ".3g"),
                  "train samples/s": number(r.samples_per_second, ",.0f"), "peak MiB": number(r.peak_memory_mib, ",.0f"),
                  "pooled above": "yes" if r.pooled else "no"} for r in mine.itertuples()]  # fmt: skip
        models = ", ".join(f"`{m}` on {d}" for d, m in dict.fromkeys(zip(mine["device"], mine["model"])))
        lines.append(f"**Note:** the seconds of {models} were measured under different conditions (segments of other "
                     "hardware, threads, trainings in parallel or kernels): every table and figure pools only those of "
                     "the condition with the most epochs; each condition's are listed apart below (Training seconds by "
                     "condition).")  # fmt: skip
    for device, g in table[table["pooled"].astype(bool)].groupby("device", sort=False):
        if g["condition"].nunique() > 1:
            each = "; ".join(f"`{m}`: {c}" for m, c in zip(g["model"], g["condition"]))
            lines.append(f"**Note:** on {device} the models' seconds were measured under different conditions ({each}): a "
                         "time ratio between them compares the conditions too.")  # fmt: skip
    return lines, shown
