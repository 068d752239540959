"""Which trainings may be pooled into one statistic: never two schedules, and never the same training twice.

- *Schedules.* Every epoch row carries its run's schedule as a short label (``schedule_label``), the optimizer of the
  row included; a dataset whose runs differ in schedule gets one report section per schedule (``sections``), and the
  statistics group by it too. So sgd and adam are never pooled.
- *Duplicates.* A training found twice with identical rows in every column but the timings (the same deterministic
  training run twice, a run folder copied) counts once: the first one read is kept (``drop_duplicates``). The same seed
  trained twice with different numbers (another device, a non-deterministic one) is two trainings, as before.
- *Learning-rate scales.* One model trained at several scales of its schedule (``--lr-scale``) is several models: its
  rows at a scale other than 1 carry the label ``snn (lr x2)`` (``label``), so every table keeps them apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench import schema

UNKNOWN = "schedule not recorded"  # a CSV without run.json: all of them are one group
SAME = ["source", "run_id", "device", "model", "seed", "lr_scale"]  # one training of one file (source: the file's place)
# where a training was found and how it ran (its segments: report.conditions), not what it did
IGNORED = {"run_id", "source", "hardware", "kind", "device_arg", "segment", "condition", "stream"}
_SCALED = re.compile(r"(.*) \(lr x([^()]+)\)")
_SHOWN = {  # run.json's schedule keys, in this order, as the label says them; other keys follow as "key value"
    "epochs": lambda v: f"{v} epoch{'' if v == 1 else 's'}",
    "lrs": lambda v: "lr " + " ".join(map(str, v if isinstance(v, list) else [v])),
    "momentum": lambda v: None if v is None else f"momentum {v}",  # None: SGD's alone, and this is not SGD
    "batch_size": lambda v: f"batch {v}",
    "max_batches": lambda v: "all batches" if v is None else f"at most {v} batches",
    "optimizer": str,
    "fresh_optimizer": lambda v: "fresh optimizer each epoch" if v else "optimizer kept across epochs",
    "validation": lambda v: f"{v:,} training samples held out for validation",
    "weight_decay": lambda v: None if not v else f"weight decay {v:g}",
    "input_scaling": lambda v: {"centered": None, "unit": "inputs in [0, 1]", "standard": "standardised inputs"}.get(v, v),
    "patience": lambda v: None if v is None else f"early stopping (patience {v})",
    "precision": lambda v: None if v == schema.DEFAULT_PRECISION else f"{v} matmuls",  # fp32: as before there was a choice
}


def scale_text(scale: float) -> str:
    """``2``, ``0.5``: short, and never the same for two different scales."""
    short = f"{scale:g}"
    return short if float(short) == scale else repr(scale)


def label(spec: str, scale: float) -> str:
    """A model's label in the tables: its spec at scale 1 (as before there were scales), else ``snn (lr x2)``."""
    return spec if scale == 1 else f"{spec} (lr x{scale_text(scale)})"


def labels(specs: pd.Series, scales: pd.Series) -> pd.Series:
    return pd.Series([label(m, s) for m, s in zip(specs, scales)], index=specs.index, dtype=object)


def spec_of(text: str) -> str:
    """The model of a label: ``snn (lr x2)`` -> ``snn``; a label without a scale is its spec."""
    found = _SCALED.fullmatch(text)
    return found.group(1) if found else text


def schedule_label(recorded, optimizer: str | None = None, precision: str | None = None) -> str:
    """run.json's ``"schedule"`` as a short label that names every value, so two schedules share a label only when they
    agree: ``3 epochs, lr 0.1 0.05 0.01, momentum 0.5, batch 1000, all batches, sgd, fresh optimizer each epoch``.

    ``optimizer``: the one the rows name (epochs.csv has it since ``--optimizer``; sgd before). Where it is not the
    recorded one (sgd where run.json does not say, or has no schedule) the label names it, so that rows of two optimizers
    never share a label, with or without run.json. ``precision`` likewise (fp32 before ``--precision``; the label names
    only another one)."""
    values = schema.schedule(recorded) if isinstance(recorded, dict) else {}
    if optimizer is not None and optimizer != values.get("optimizer", schema.DEFAULT_OPTIMIZER):
        values["optimizer"] = optimizer
    if precision is not None and precision != values.get("precision", schema.DEFAULT_PRECISION):
        values["precision"] = precision
    if values.get("precision") == schema.DEFAULT_PRECISION:
        values.pop("precision")
    if not values.keys() - {"optimizer", "precision"}:
        return ", ".join([UNKNOWN, *values.values()])
    if not values.get("validation"):  # 0: no split, as in runs from before there was one
        values.pop("validation", None)
    parts = [show(values.pop(key)) for key, show in _SHOWN.items() if key in values]
    return ", ".join([p for p in parts if p is not None] + [f"{key} {values[key]}" for key in sorted(values)])


def tuning_label(meta: dict[str, Any]) -> str:
    """The schedule of a tuning run's picks: each model at the configuration its study picked, within a budget."""
    t, epochs = meta["tuning"], (meta.get("schedule") or {}).get("epochs")
    budget = " and ".join(
        b
        for b in (
            f"{t['trials']} trials" if t.get("trials") else "",
            f"{t['budget_seconds']:g} training seconds" if t.get("budget_seconds") else "",
        )
        if b
    )
    return f"tuned: each model at its pick of {budget} ({t.get('sampler')} search), at most {epochs} epochs"


def is_timing(column: str) -> bool:
    """Measured by the clock or the memory counter (bench.schema.is_measured): they differ between two runs of one
    deterministic training."""
    return schema.is_measured(column)


def drop_duplicates(epochs: pd.DataFrame, windows: pd.DataFrame, activity: list[dict]):
    """``epochs``, ``windows`` and ``activity`` without the trainings that repeat an earlier one, and the dropped epoch
    rows with ``same_as``: the run_id of the training kept in their place.

    Two trainings are the same when their rows (ordered by epoch) agree in every column but the timings and where they
    were found: dataset, model, device (with its hardware), schedule, seed, epochs, losses, accuracies, metrics."""
    values = [c for c in epochs.columns if c not in IGNORED and not is_timing(c)]
    ordered = epochs.sort_values("epoch", kind="stable")  # stable: trainings keep the order they were read in
    lines = pd.Series(["\x1f".join(map(str, row)) for row in ordered[values].itertuples(index=False)], index=ordered.index)
    fingerprints = lines.groupby([ordered[c] for c in SAME], sort=False).agg("\n".join)
    kept: dict[str, str] = {}  # fingerprint -> run_id of the first training with it
    same_as = {}
    for key, fingerprint in fingerprints.items():
        if fingerprint in kept:
            same_as[key] = kept[fingerprint]
        else:
            kept[fingerprint] = key[1]
    if not same_as:
        return epochs, windows, activity, epochs.iloc[:0].assign(same_as=pd.Series(dtype=str))
    keys = list(zip(*(epochs[c] for c in SAME)))
    dropped = epochs.assign(same_as=[same_as.get(k) for k in keys])
    is_dropped = dropped["same_as"].notna().to_numpy()
    if len(windows):
        window_keys = zip(*(windows[c] for c in SAME))
        windows = windows[[k not in same_as for k in window_keys]]
    activity = [r for r in activity if tuple(r[c] for c in SAME) not in same_as]
    return epochs[~is_dropped], windows, activity, dropped[is_dropped]


@dataclass(frozen=True)
class Section:
    """One section of the report: a dataset, and one of its schedules (``index`` of ``count``, from 1)."""

    dataset: str
    schedule: str
    index: int = 1
    count: int = 1

    def select(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``frame`` (epochs or windows) in this section."""
        if frame.empty:
            return frame
        return frame[(frame["dataset"] == self.dataset) & (frame["schedule"] == self.schedule)]

    def holds(self, record: dict) -> bool:
        return record.get("dataset") == self.dataset and record.get("schedule") == self.schedule


def sections(epochs: pd.DataFrame) -> list[Section]:
    """Each dataset in order of appearance, and within it each schedule: one section each."""
    found = list(dict.fromkeys(zip(epochs["dataset"], epochs["schedule"])))
    out = []
    for dataset in dict.fromkeys(d for d, _ in found):
        schedules = [s for d, s in found if d == dataset]
        out += [Section(dataset, s, i, len(schedules)) for i, s in enumerate(schedules, start=1)]
    return out


def duplicates_note(dropped: pd.DataFrame) -> str | None:
    """One line naming the duplicate trainings dropped from a section and the runs they repeat; None when none were."""
    if dropped.empty:
        return None
    counts = dropped.drop_duplicates(SAME).groupby(["run_id", "same_as"], sort=False).size()
    total = int(counts.sum())
    parts = [f"{n} of run `{run}` " + ("(a second copy of that run)" if run == same else f"(identical to run `{same}`)")
             for (run, same), n in counts.items()]  # fmt: skip
    return (f"**Note:** {total} duplicate training{'s' if total != 1 else ''} dropped, each identical to a training "
            f"already read in every value but the timings (the same deterministic training run again, or a run folder "
            f"copied): {'; '.join(parts)}. Each counts once below, with the timings of the first.")  # fmt: skip
