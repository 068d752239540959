"""What a run's files hold, by name: the columns of ``epochs.csv`` and ``window.csv``, the training key,
the kinds of model. Imports neither torch nor the rest of bench: the report and any other reader use it as is.

``epochs.csv`` is read and written by header name. Its header is fixed when the file is made:
the base columns (snnbench 0.1 wrote only these), the optional ones (the optimizer, since there is a
choice; the scale and validation columns where a run has them), then the activity and cost columns of the run's
layers (bench/metrics.py fills them; a model with more layers adds ``layer3_*`` and so on). A file
with any header made of known columns, and holding every base column, can be read and resumed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

BASE_COLUMNS = [
    "run_id", "dataset", "model", "device", "seed", "epoch", "lr",
    "train_loss", "train_accuracy", "test_loss", "test_accuracy",
    "train_seconds", "eval_seconds", "train_samples_per_second",
    "train_samples", "test_samples",
]  # fmt: skip
LAYER_METRICS = ("firing_rate", "silent_share", "mean_when_firing", "sparsity")
DEFAULT_LAYERS = ("layer1", "layer2")  # the built-in models' layers, and the columns every run has had since 0.2
NETWORK_METRICS_0_2 = ("activation_sparsity", "dense_ops", "effective_macs", "effective_acs")  # what 0.2 to 0.5 wrote
NETWORK_METRICS = (*NETWORK_METRICS_0_2,
                   # since 0.6 (bench/metrics.py): effective operations as NeuroBench counts them (an input that is the
                   # same at every step counted at every step), and the 32-bit memory accesses per sample
                   "neurobench_ops", "memory_reads", "memory_writes")  # fmt: skip
_LAYER_COLUMN = re.compile(r"(layer\d+)_(" + "|".join(LAYER_METRICS) + r")")


def layer_columns(layers: Iterable[str]) -> list[str]:
    return [f"{layer}_{metric}" for layer in layers for metric in LAYER_METRICS]


def metric_columns(layers: Iterable[str] = DEFAULT_LAYERS) -> list[str]:
    """The activity and cost columns for these layers, in the order epochs.csv has them."""
    return ["metrics_seconds", *layer_columns(layers), *NETWORK_METRICS]


METRIC_COLUMNS = metric_columns()
# the header 0.2 and 0.3 wrote for two-layer models (without 0.6's network columns); a new run's: header()
COLUMNS = BASE_COLUMNS + ["metrics_seconds", *layer_columns(DEFAULT_LAYERS), *NETWORK_METRICS_0_2]
INT_COLUMNS = {"seed", "epoch", "train_samples", "test_samples"}
STR_COLUMNS = {"run_id", "dataset", "model", "device", "optimizer", "precision"}


# After the base columns: the optimizer (--optimizer) in every new run's file; a grid over learning-rate scales and a
# validation split add theirs only to the runs that use them. snnbench 0.2 and 0.3 wrote none of them (COLUMNS).
# Absent: sgd (every run before there was a choice), scale 1, no validation.
# Since 0.4 also the precision (--precision) and the epoch's peak memory (absent: fp32, not measured).
OPTIMIZER_COLUMNS = ["optimizer", "precision", "peak_memory_mib"]  # sgd or adam; fp32, bf16 or fp16; MiB (NaN: unknown)
# Since 0.5 every new run's file: the segment of the training that trained the row (run.json's trainings[i]["segments"]:
# one per stretch between resumes, with where it trained). Absent or empty: not recorded (a file or a checkpoint's row
# from before segments).
SEGMENT_COLUMNS = ["segment"]
GRID_COLUMNS = ["lr_scale"]  # what the training's --lr schedule was multiplied by
VALIDATION_COLUMNS = ["val_loss", "val_accuracy"]  # on the held-out training samples (--validation), after each epoch
# Since 0.6, in a tuning run's file (--tune): the Optuna trial a row's training is (bench/tune.py); empty for the
# trainings of the picked configurations, which alone are scored on the test set
TRIAL_COLUMNS = ["trial"]
# Every new run's file since bench/energy.py: the device's own energy counter over the spans of train_seconds and eval_seconds, in
# joules (bench/energy.py: NVML on NVIDIA GPUs); empty where none was read (run.json's provenance says why). Absent: a
# file from before, or a run resumed into one (its header is kept, so the joules are not written).
ENERGY_COLUMNS = ["train_joules", "eval_joules"]
OPTIONAL_COLUMNS = OPTIMIZER_COLUMNS + ENERGY_COLUMNS + SEGMENT_COLUMNS + GRID_COLUMNS + TRIAL_COLUMNS + VALIDATION_COLUMNS
NUMERIC_OPTIONAL_COLUMNS = (["peak_memory_mib"] + ENERGY_COLUMNS + SEGMENT_COLUMNS + GRID_COLUMNS + TRIAL_COLUMNS +
                            VALIDATION_COLUMNS)  # fmt: skip
DEFAULT_OPTIMIZER = "sgd"  # of a row or a run.json without one
DEFAULT_PRECISION = "fp32"  # of a row or a run.json without one: every run before --precision


def is_measured(column: str) -> bool:
    """Seconds, rates, memory and energy: measured by the clock, the memory counter or the energy counter, so they
    differ between two runs of one deterministic training (every other column repeats)."""
    return column.endswith(("_seconds", "_per_second", "_joules")) or column == "peak_memory_mib"


def header(layers: Iterable[str] = DEFAULT_LAYERS, grid: bool = False, validation: bool = False,
           trial: bool = False) -> list[str]:  # fmt: skip
    """The header of a new epochs.csv whose models have these layers (at least the default two, in order): the
    optimizer's columns, the segment's, ``lr_scale`` when the run has several scales (or one other than 1), ``trial``
    in a tuning run and ``val_*`` with a validation split."""
    names = list(dict.fromkeys([*DEFAULT_LAYERS, *layers]))
    extra = (GRID_COLUMNS if grid else []) + (TRIAL_COLUMNS if trial else []) + (VALIDATION_COLUMNS if validation else [])
    return (BASE_COLUMNS + OPTIMIZER_COLUMNS + ENERGY_COLUMNS + SEGMENT_COLUMNS + extra +
            metric_columns(sorted(names, key=_layer_number)))  # fmt: skip


def _layer_number(name: str) -> tuple[int, str]:
    digits = re.sub(r"\D", "", name)
    return (int(digits) if digits else 0, name)


def is_metric(column: str) -> bool:
    """A column of the activity and cost metrics: empty (NaN) where they were not counted."""
    return column == "metrics_seconds" or column in NETWORK_METRICS or _LAYER_COLUMN.fullmatch(column) is not None


def metric_layers(columns: Iterable[str]) -> list[str]:
    """The layers that have metric columns among ``columns``, in order."""
    found = [m.group(1) for c in columns if (m := _LAYER_COLUMN.fullmatch(c))]
    return sorted(dict.fromkeys(found), key=_layer_number)


def header_problem(columns: list[str] | None) -> str | None:
    """Why a header is not one this version can read and append to (None when it can)."""
    if columns is None:
        return "no whole header line"
    missing = [c for c in BASE_COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in BASE_COLUMNS and c not in OPTIONAL_COLUMNS and not is_metric(c)]
    if missing:
        return f"lacks the column(s) {', '.join(missing)}"
    if unknown:
        return f"has column(s) this version does not know: {', '.join(unknown)}"
    if len(set(columns)) != len(columns):
        return "names a column twice"
    return None


class TrainingKey(NamedTuple):
    """One training of a run: the unit run.json's ``trainings``, checkpoints and analysis files are kept by."""

    model: str  # the canonical spec (models.registry.ModelSpec.label)
    device: str
    seed: int
    lr_scale: float = 1.0  # the factor on the --lr schedule (--lr-scale); 1 where a file does not say
    trial: int | None = None  # a tuning run's trial number (--tune); None for every other training

    @classmethod
    def of(cls, row: dict[str, Any]) -> TrainingKey:
        """The key of a CSV row or of a run.json training."""
        scale, trial = row.get("lr_scale", 1.0), row.get("trial")
        scale = 1.0 if scale in ("", None) or scale != scale else float(scale)  # empty or NaN: not recorded
        trial = None if trial in ("", None) or trial != trial else int(trial)
        return cls(str(row["model"]), str(row["device"]), int(row["seed"]), scale, trial)

    def describe(self) -> str:
        return (f"{self.model} {self.device}" + (f" trial {self.trial}" if self.trial is not None else "")
                + f" seed {self.seed}" + (f" lr x{self.lr_scale:g}" if self.lr_scale != 1 else ""))  # fmt: skip

    def file_stem(self) -> str:
        """A portable file name for the training's checkpoint and activity file; the hash keeps two labels
        that slug alike apart. Scale 1 keeps the name it had before there were scales."""
        scaled = f"_lr{self.lr_scale!r}" if self.lr_scale != 1 else ""
        tried = f"_trial{self.trial}" if self.trial is not None else ""
        slug = re.sub(r"[^A-Za-z0-9.=-]+", "_", f"{self.model}_{self.device}{tried}_seed{self.seed}{scaled}")
        text = (
            f"{self.model}\0{self.device}\0{self.seed}"
            + (f"\0{self.lr_scale!r}" if scaled else "")
            + (f"\0trial{self.trial}" if tried else "")
        )
        return f"{slug}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"

    def record(self) -> dict[str, Any]:
        """As run.json's trainings and the CSV rows name it."""
        return {
            "model": self.model,
            "device": self.device,
            "seed": self.seed,
            "lr_scale": self.lr_scale,
            **({"trial": self.trial} if self.trial is not None else {}),
        }


def describe_params(params: dict[str, Any]) -> str:
    """A tuning trial's hyperparameters as run.json records them (bench/tune.py), in words: ``adam, lr 0.00123, batch
    128, weight decay 0, centered inputs`` (SGD's momentum after its learning rate; None or NaN: none)."""
    parts = [str(params["optimizer"]), f"lr {float(params['lr']):.3g}"]
    momentum = params.get("momentum")
    if momentum is not None and momentum == momentum:
        parts.append(f"momentum {float(momentum):.3g}")
    parts += [f"batch {int(params['batch_size'])}", f"weight decay {float(params['weight_decay']):g}",
              f"{params['input_scaling']} inputs"]  # fmt: skip
    return ", ".join(parts)


def row_key(row: dict[str, Any]) -> tuple[str, str, int, float, int]:
    """What makes a row unique in one run: (model, device, seed, lr_scale, epoch)."""
    return (*TrainingKey.of(row), int(row["epoch"]))


class PartialLineWarning(UserWarning):
    """The last line of a CSV has no newline: it was cut off mid-write and is not data."""


def csv_columns(path: str | Path) -> list[str] | None:
    """The header of a CSV file, or None when it has no whole first line."""
    with open(path, newline="", errors="replace") as f:
        first = f.readline()
    return next(csv.reader([first])) if first.endswith("\n") else None


def read_epochs(path: str | Path) -> list[dict[str, Any]]:
    """The rows of an ``epochs.csv``, typed by column name (ints, floats, strings), in file order.

    A last line without its newline was cut off mid-write (power loss, a killed machine):
    it is dropped with a PartialLineWarning, never parsed as data. A line that does not parse is a ValueError
    naming the file, the line and, for a cell, its column and value.
    """
    rows, partial = epoch_lines(path)
    if partial:
        warnings.warn(f"{path}: ignoring a partial last line ({len(partial)} bytes, no newline)", PartialLineWarning, 2)
    return [row for _, row in rows]


def epoch_lines(path: str | Path) -> tuple[list[tuple[int, dict[str, Any]]], str]:
    """``read_epochs`` with each row's line number (the header is line 1), and the cut-off last line ("" if none)."""
    with open(path, newline="", errors="replace") as f:
        text = f.read()
    end = text.rfind("\n") + 1
    reader = csv.reader(io.StringIO(text[:end], newline=""))
    columns = next(reader, None)
    rows = []
    for cells in reader if columns is not None else ():
        if not cells:  # a blank line
            continue
        line = reader.line_num
        if len(cells) != len(columns):
            shown = ",".join(cells)
            cells_of = f"{len(cells)} cell{'s' * (len(cells) != 1)}"
            raise ValueError(f"{path}, line {line} has {cells_of}, not the {len(columns)} of its header "
                             f"({shown[:60]!r}{'...' if len(shown) > 60 else ''})")  # fmt: skip
        row = {}
        for column, cell in zip(columns, cells):
            try:
                row[column] = typed(column, cell)
            except ValueError:
                kind = "a whole number" if column in INT_COLUMNS else "a number"
                raise ValueError(f"{path}, line {line}, column {column}: {cell[:60]!r} is not {kind}") from None
        rows.append((line, row))
    return rows, text[end:]


def typed(column: str, text: str) -> str | int | float:
    """One CSV cell as its column's type; an empty metric cell (not counted) is NaN."""
    if column in STR_COLUMNS:
        return text
    if column in INT_COLUMNS or (column in SEGMENT_COLUMNS and text != ""):
        return int(text)
    return float(text) if text != "" or not (is_metric(column) or column in OPTIONAL_COLUMNS) else math.nan


# The STDP-like gradient window (bench/analysis.py): one row per training and dt.
WINDOW_COLUMNS = [
    "run_id", "dataset", "model", "device", "seed", "epoch", "reset", "decay", "dt",
    "mean_abs_grad", "relative", "pairs",  # every neuron-step that fired at t
    "isolated_mean_abs_grad", "isolated_relative", "isolated_pairs",  # those that did not fire in t-dt .. t-1 as well
]  # fmt: skip

# What a model is, as run.json records it under models[label]["kind"] (from the model registry).
SPIKING, BASELINE = "spiking", "baseline"
# Runs made before run.json recorded the kind: the built-in models by name.
RECORDED_BEFORE_0_3 = {"ffn": BASELINE, "snn": SPIKING, "snn-reference": SPIKING}


def model_kind(label: str, recorded: dict[str, Any] | None = None) -> str | None:
    """``spiking``, ``baseline`` or None (unknown) for a model label, from its run.json record when there is one."""
    if recorded and recorded.get("kind") in (SPIKING, BASELINE):
        return recorded["kind"]
    return RECORDED_BEFORE_0_3.get(label.partition(":")[0])


SCHEDULE_SINCE_0_6 = {"weight_decay": 0.0, "input_scaling": "centered", "patience": None}  # bench.config's defaults


def schedule(recorded: dict[str, Any] | None) -> dict[str, Any]:
    """A run.json ``"schedule"`` in today's terms (snnbench before 0.3 wrote its optimizer as one phrase)."""
    out = dict(recorded or {})
    if out.get("optimizer") == "SGD, fresh each epoch":
        out.update(optimizer="sgd", fresh_optimizer=True)
    for name, value in SCHEDULE_SINCE_0_6.items():  # a run from before these options ran as their defaults
        if out and name not in out:
            out[name] = value
    return out
