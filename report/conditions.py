"""What each row was measured under, and so what may be pooled: seconds only across one condition, accuracies only
across one random stream.

- *Condition* (``condition``): the timing provenance of the row's segment (bench.provenance: hardware, torch threads,
  trainings run in parallel, each kernel family's backend) in words; for a run from before segments, what its run.json
  says (arguments and environment). None where it cannot be told: a run from before segments resumed under other
  conditions than it started with, whose rows do not say which stretch measured them.
- *Seconds* (``separate``): per dataset, schedule, device and model, the training seconds, samples per second and memory
  of the condition with the most epochs are pooled; rows of another condition, or of none, have them blanked (NaN),
  and the report lists each condition's apart and says why (report.markdown).
- *Streams* (``stream``): the mask generator. A dataset and schedule whose trainings drew their masks from several
  generators gets a section per generator (``split_streams``): their accuracies are never pooled.
"""

from __future__ import annotations

import math

import pandas as pd

from bench import provenance, schema
from bench.schema import TrainingKey
from report import pooling

MEASURED = [c for c in [*schema.BASE_COLUMNS, *schema.OPTIONAL_COLUMNS, *schema.METRIC_COLUMNS] if schema.is_measured(c)]
GROUP = ["dataset", "schedule", "device", "model"]  # the unit whose seconds are pooled (a row of the summary)


def label(frame: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """One run's rows (``model``: the spec) with ``condition`` and ``stream`` (None where unknown)."""
    entries = {}
    for t in meta.get("trainings") or []:
        try:
            entries[TrainingKey.of(t)] = t
        except (KeyError, TypeError, ValueError):
            continue
    segment = frame["segment"] if "segment" in frame.columns else pd.Series(math.nan, index=frame.index)
    found: dict = {}
    conditions, streams = [], []
    for model, device, seed, scale, number in zip(frame["model"], frame["device"], frame["seed"], frame["lr_scale"], segment):
        key = TrainingKey(str(model), str(device), int(seed), float(scale))
        if key not in found:
            found[key] = provenance.of_rows(meta, entries.get(key), str(device))
        by_segment, unplaced = found[key]
        p = by_segment.get(int(number), unplaced) if number == number else unplaced
        conditions.append(None if p is None else provenance.describe(p))
        streams.append(None if p is None else p.get(provenance.STREAM))
    return frame.assign(condition=conditions, stream=streams)


def split_streams(epochs: pd.DataFrame) -> pd.DataFrame:
    """``epochs`` with the mask generator added to the schedule label where one dataset and schedule holds trainings
    of several (a training's: its segments', in order): their accuracies are reported apart."""
    training = epochs.groupby(pooling.SAME, sort=False)["stream"].transform(lambda s: " then ".join(dict.fromkeys(s.dropna())))
    several = training.where(training != "").groupby([epochs["dataset"], epochs["schedule"]]).transform("nunique") > 1
    if several.any():
        masks = ", masks " + training.where(training != "", "not recorded")
        epochs = epochs.assign(schedule=epochs["schedule"].where(~several, epochs["schedule"] + masks))
    return epochs


def separate(epochs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``epochs`` with the measured columns blanked where they are not pooled, and one row per dataset, schedule, device,
    model and known condition: trainings, epochs, seconds per epoch, samples per second, peak memory, ``pooled``."""
    known = epochs[epochs["condition"].notna()]
    kept = {group: g["condition"].value_counts(sort=False).idxmax() for group, g in known.groupby(GROUP, sort=False)}
    groups = zip(*(epochs[c] for c in GROUP))
    pooled = pd.Series([isinstance(c, str) and kept.get(k) == c for k, c in zip(groups, epochs["condition"])],
                       index=epochs.index, dtype=bool)  # fmt: skip
    rows = []
    for values, g in known.groupby([*GROUP, "condition"], sort=False):
        memory = g["peak_memory_mib"] if "peak_memory_mib" in g.columns else pd.Series(dtype=float)
        seconds = g["train_seconds"].sum()
        rows.append({
            **dict(zip([*GROUP, "condition"], values)), "trainings": len(g.drop_duplicates(pooling.SAME)),
            "epochs": len(g), "seconds_per_epoch": g["train_seconds"].mean(),
            "samples_per_second": g["train_samples"].sum() / seconds if seconds > 0 else math.nan,
            "peak_memory_mib": memory.max(),
            "pooled": kept[tuple(values[:-1])] == values[-1],
        })  # fmt: skip
    measured = [c for c in MEASURED if c in epochs.columns]
    epochs = epochs.copy()
    epochs.loc[~pooled, measured] = math.nan
    return epochs, pd.DataFrame(rows, columns=[*GROUP, "condition", "trainings", "epochs", "seconds_per_epoch",
                                               "samples_per_second", "peak_memory_mib", "pooled"])  # fmt: skip


def threads(meta: dict) -> str | None:
    """The torch threads a run's trainings had, ``1`` or ``1, 2``: their segments', else what its arguments give (a
    Dask worker's 1 where no --threads was given, not the driver's); None where unknown."""
    found = [s.get("torch_threads") for t in meta.get("trainings") or [] if isinstance(t, dict)
             for s in t.get("segments") or [] if isinstance(s, dict)]  # fmt: skip
    if not found:
        found = [s["torch_threads"] for s in provenance.stretches(meta, "cpu")]
    known = [str(n) for n in dict.fromkeys(found) if n is not None]
    return ", ".join(known) or None


def segmented(meta: dict) -> bool:
    """Whether a run recorded segments (snnbench 0.5 and later)."""
    return any(isinstance(t, dict) and t.get("segments") for t in meta.get("trainings") or [])
