"""Find and read results: every ``epochs.csv`` below the given folders, with its ``run.json``, and next to it the
run's ``window.csv`` and ``activity/*.npz`` where the run wrote them.

One tidy DataFrame of epoch rows comes back, plus one dict per run, the tidy window rows and the activity records.
Nothing is summarised here.
"""

from __future__ import annotations

import json
import math
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench import schema  # column names and model kinds only: no torch, nothing else of bench
from report import conditions, pooling
from report.folder import ReportError

# what the report needs from each row; run_id falls back to the folder name when absent
STRINGS = ["run_id", "model", "optimizer", "precision"]  # read as text whatever they look like
REQUIRED = ["dataset", "model", "device", "seed", "epoch", "train_loss", "test_accuracy", "train_seconds", "train_samples"]
NUMERIC = ["seed", "epoch", "train_loss", "test_accuracy", "train_seconds", "train_samples"]
TRAINING = ["dataset", "device", "model", "run_id", "seed", "lr_scale"]  # one seeded training: the unit of replication
# bench's other numeric columns, coerced when present, never required; so are a file's metric columns (any layers)
OPTIONAL_NUMERIC = [c for c in schema.BASE_COLUMNS if c not in schema.STR_COLUMNS and c not in NUMERIC]
OPTIONAL_NUMERIC += schema.NUMERIC_OPTIONAL_COLUMNS  # lr_scale (absent: 1), val_loss and val_accuracy (absent: NaN)
WINDOW_REQUIRED = ["model", "device", "seed", "reset", "decay", "dt", "relative", "pairs"]
WINDOW_NUMERIC = ["seed", "decay", "dt", "relative", "pairs"]
# numeric when present: every other column of window.csv but its text ones (mean_abs_grad, isolated_*, epoch)
WINDOW_OPTIONAL = [c for c in schema.WINDOW_COLUMNS if c not in {"run_id", "dataset", *WINDOW_REQUIRED}]
REFERENCE = Path("results") / "reference"  # the shipped reference runs, beside a user's own in results/
EXTRA = ["hardware", "kind", "spec", "schedule", "device_arg", "condition", "stream"]  # the columns load adds to epochs.csv's
ACTIVITY_ARRAYS = {"layer1_v": 2, "layer1_o": 2, "layer2_v": 2, "layer2_o": 2, "image": 2, "logits": 1, "label": 0, "index": 0}


@dataclass
class Results:
    # one row per training x epoch: bench.schema's columns (optimizer, lr_scale, val_* always), plus "hardware", "kind",
    # "schedule" and "spec" (the model as run.json names it; "model" is its label, with the scale where not 1)
    epochs: pd.DataFrame
    runs: list[dict]  # run.json of each run (or {} when missing), with "run_id" and "path" filled in
    windows: pd.DataFrame = field(default_factory=pd.DataFrame)  # rows of every window.csv, with "run_id" and "dataset"
    activity: list[dict] = field(default_factory=list)  # one per activity/*.npz: its arrays and metadata, plus "path"
    duplicates: pd.DataFrame = field(default_factory=pd.DataFrame)  # rows of trainings dropped as repeats, "same_as"
    # per dataset, schedule, device, model and condition: its seconds (report.conditions.separate), "pooled" or not
    conditions: pd.DataFrame = field(default_factory=pd.DataFrame)
    # a tuning run's trials (bench/tune.py): their epoch rows (never tested), with "run_id", "spec" (the model),
    # "kind", "hardware" and the trial's hyperparameters and status from run.json; kept out of ``epochs``
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)

    def kind(self, model: str, run_id: str | None = None) -> str | None:
        """``spiking``, ``baseline`` or None (unknown) for a label: as run ``run_id`` records it, else as the first
        run that says; for runs older than the kinds, bench.schema's names of the built-in models."""
        runs = [m for m in self.runs if run_id is None or m["run_id"] == run_id]
        model = pooling.spec_of(model)  # "snn (lr x2)" is snn
        kinds = [kind_of(model, m) for m in runs] or [kind_of(model, {})]
        return next((k for k in kinds if k is not None), None)


def kind_of(model: str, meta: dict) -> str | None:
    """The kind of ``model`` in one run, from its run.json (``meta``)."""
    recorded = (meta.get("models") or {}).get(model)
    return schema.model_kind(model, recorded if isinstance(recorded, dict) else None)


def warn(message: str) -> None:
    print(f"report: warning: {message}", file=sys.stderr)


def find_csvs(path: Path) -> list[Path]:
    """``path/epochs.csv`` for a run folder, else every ``epochs.csv`` below ``path``."""
    if not path.exists():
        raise ReportError(f"{path} does not exist")
    if path.is_file():
        return [path] if path.name == "epochs.csv" else []
    if (path / "epochs.csv").is_file():
        return [path / "epochs.csv"]
    return sorted(path.rglob("epochs.csv"))


def load(paths: list[str | Path]) -> Results:
    """Every run below ``paths``: its rows with their schedule, duplicates of earlier trainings dropped (see pooling).

    ``results/reference`` (the shipped reference runs) is read only when a path names it or a folder inside it: a
    user's ``python -m report`` over ``results`` never mixes them into their own runs."""
    csvs: dict[Path, None] = {}  # an ordered set: a run named twice (folder and its parent) is read once
    reference = REFERENCE.resolve()
    named = any(p == reference or p.is_relative_to(reference) for p in (Path(p).resolve() for p in paths))
    left_out = False
    for path in map(Path, paths):
        found = find_csvs(path)
        kept = [p for p in found if named or not p.resolve().is_relative_to(reference)]
        left_out |= len(kept) < len(found)
        if not kept:
            hint = f" but in {REFERENCE}, which is read only when named (python -m report {REFERENCE})" if found else ""
            raise ReportError(f"no epochs.csv in {path}{hint}")
        csvs.update(dict.fromkeys(p.resolve() for p in kept))
    if left_out:
        warn(f"left out {REFERENCE} (the shipped reference runs); name it to include them")

    frames, runs, windows, activity, tried = [], [], [], [], []
    recorded = False  # whether any run.json was read: a run folder, not a stray CSV
    for source, csv in enumerate(csvs):
        frame = read_csv(csv)  # first: a CSV the report cannot use stops it before any warning
        meta = read_run_json(csv.parent / "run.json")
        recorded |= bool(meta)
        run_id = meta.get("run_id") or csv.parent.name
        meta.update(run_id=run_id, path=str(csv.parent))
        frame["run_id"] = frame["run_id"].fillna(run_id)
        hardware = (meta.get("environment") or {}).get("devices") or {}
        frame["hardware"] = frame["device"].map(lambda d, hw=hardware: hw.get(d, "unknown hardware"))
        frame["kind"] = [kind_of(model, meta) for model in frame["model"]]  # baseline, spiking or None (unknown)
        if "trial" in frame.columns and frame["trial"].notna().any():  # a tuning run: its trials apart
            tried.append(_trials(frame[frame["trial"].notna()].copy(), meta))
            frame = frame[frame["trial"].isna()].copy()
        frame = conditions.label(frame, meta)  # what each row was measured under, from run.json's segments
        frame["spec"], frame["model"] = frame["model"], pooling.labels(frame["model"], frame["lr_scale"])
        # run.json's schedule, with the optimizer each row names: two optimizers never share a label, run.json or not
        pairs = list(zip(frame["optimizer"], frame["precision"]))
        labels = {pair: pooling.schedule_label(meta.get("schedule"), *pair) for pair in dict.fromkeys(pairs)}
        frame["schedule"], frame["source"] = [labels[pair] for pair in pairs], source  # source: for drop_duplicates
        if meta.get("tuning"):  # a tuning run's picks: each model at its own configuration, compared as one section
            frame["schedule"] = pooling.tuning_label(meta)
        # the run's window and activity files: its one label (rows of several optimizers in one file are hand-made)
        schedule = next(iter(labels.values())) if len(labels) == 1 else pooling.schedule_label(meta.get("schedule"))
        runs.append(meta)
        if not frame.empty:
            frames.append(frame)
        dataset = meta.get("dataset") or (frame["dataset"].iloc[0] if len(frame) else "?")
        defaults = {"run_id": run_id, "dataset": dataset, "schedule": schedule, "source": source}
        window = read_window(csv.parent / "window.csv", defaults)
        if window is not None:
            windows.append(window)
        for npz in sorted((csv.parent / "activity").glob("*.npz")):
            record = read_activity(npz, defaults)
            if record is not None:
                activity.append(record)
    trials = pd.concat(tried, ignore_index=True) if tried else pd.DataFrame()
    if not frames:
        if not recorded:
            raise ReportError(f"no result rows in {', '.join(map(str, paths))}")
        # run folders whose trainings all failed, diverged or stopped before an epoch: the report says so (its runs)
        empty = pd.DataFrame(columns=list(dict.fromkeys([*schema.BASE_COLUMNS, *schema.OPTIONAL_COLUMNS, *EXTRA])))
        return Results(empty, runs, trials=trials)
    epochs = conditions.split_streams(_split_mixed_hardware(pd.concat(frames, ignore_index=True)))
    epochs, window_rows, activity, duplicates = pooling.drop_duplicates(epochs, *_same_device_names(epochs, windows, activity))
    epochs, timed = conditions.separate(epochs)
    return Results(epochs.drop(columns="source"), runs, window_rows, activity, duplicates, timed, trials)


def _trials(frame: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """A tuning run's trial rows with what run.json says of each trial: its status, its hyperparameters (``param_*``)
    and whether it was the pick of its study."""
    frame = frame.assign(spec=frame["model"], trial=frame["trial"].astype(int))  # (its hardware and kind: load's)
    studies = (meta.get("tuning") or {}).get("studies") or {}
    picked = {(s.get("model"), s.get("device")): s.get("picked") for s in studies.values()}
    info = {}
    for t in meta.get("trainings") or []:
        if t.get("trial") is not None:
            params = {f"param_{k}": v for k, v in (t.get("params") or {}).items()}
            info[(t["model"], t["device"], int(t["trial"]))] = {
                "status": t.get("status"),
                **params,
                "picked": picked.get((t["model"], t["device"])) == t["trial"],
            }
    extra = pd.DataFrame([info.get((m, d, n), {}) for m, d, n in zip(frame["model"], frame["device"], frame["trial"])],
                         index=frame.index)  # fmt: skip
    return pd.concat([frame, extra], axis=1)


def read_csv(path: Path) -> pd.DataFrame:
    """Read one ``epochs.csv``; rows that do not parse (a truncated last line) are skipped with a warning."""
    bad: list[list[str]] = []
    try:
        # the python engine lets a callable collect lines with too many fields; it returns None: skip
        frame = pd.read_csv(path, engine="python", on_bad_lines=bad.append, dtype={c: str for c in STRINGS})
    except pd.errors.EmptyDataError:
        warn(f"{path} is empty")
        return pd.DataFrame(columns=[*schema.BASE_COLUMNS, *schema.OPTIONAL_COLUMNS])
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ReportError(f"cannot read {path}: {exc}") from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ReportError(f"{path} lacks the column(s) {', '.join(missing)}")
    if "run_id" not in frame.columns:
        frame["run_id"] = None  # filled in from run.json or the folder name
    optional = OPTIONAL_NUMERIC + [c for c in frame.columns if schema.is_metric(c)]
    scaled = ["lr_scale"] if "lr_scale" in frame.columns else []  # an unreadable scale is no scale: never pooled with 1
    needed = NUMERIC + ["dataset", "model", "device", *scaled]
    # a tuning run's trials are never tested (bench/tune.py): their test accuracy is nan by design
    untested = [c for c in needed if c != "test_accuracy"] if "trial" in frame.columns else None
    frame = _parsable(frame, path, bad, NUMERIC, optional, needed, untested)
    frame[["seed", "epoch"]] = frame[["seed", "epoch"]].astype(int)
    frame["lr_scale"] = frame["lr_scale"].fillna(1.0) if "lr_scale" in frame.columns else 1.0
    optimizer = frame["optimizer"] if "optimizer" in frame.columns else pd.Series(index=frame.index, dtype=object)
    frame["optimizer"] = optimizer.fillna(schema.DEFAULT_OPTIMIZER).astype(str)  # absent or empty: before the choice
    precision = frame["precision"] if "precision" in frame.columns else pd.Series(index=frame.index, dtype=object)
    frame["precision"] = precision.fillna(schema.DEFAULT_PRECISION).astype(str)  # likewise
    for column in schema.VALIDATION_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
    duplicated = frame.duplicated(TRAINING + ["epoch"], keep="last")
    if duplicated.any():
        warn(f"{path}: {int(duplicated.sum())} epoch row(s) appear twice; the last one of each is used")
        frame = frame[~duplicated]
    return frame


def _parsable(frame: pd.DataFrame, path: Path, bad: list, numeric: list[str], optional: list[str], needed: list[str],
              trial_needed: list[str] | None = None):  # fmt: skip
    """``frame`` with ``numeric`` and the ``optional`` columns it has made numbers, without the rows that did not parse
    (a NaN in a ``needed`` column, or a last line cut off), with one warning counting them and pandas' ``bad`` lines.

    A line cut short parses with NaN in its last fields; with optional columns last (and allowed to be empty), a cut can
    also leave every needed field whole, so a last line without its newline is not data either."""
    for column in numeric + [c for c in optional if c in frame.columns]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    broken = frame[needed].isna().any(axis=1)
    if trial_needed is not None:  # a trial's row (``trial`` set) needs all but its test columns
        trial = frame["trial"].notna()
        broken = broken.where(~trial, frame[trial_needed].isna().any(axis=1) | frame["val_accuracy"].isna())
    if len(frame) and _cut_off(path):
        broken.iloc[-1] = True
    if bad or broken.any():
        warn(f"{path}: skipped {len(bad) + int(broken.sum())} unparsable row(s)")
    return frame[~broken].copy()


def _cut_off(path: Path) -> bool:
    """Whether the file's last line lacks its newline: bench writes whole lines, so it was cut off mid-write."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        if f.tell() == 0:
            return False
        f.seek(-1, 2)
        return f.read(1) != b"\n"


def read_run_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        warn(f"{path} is missing: that run's status and environment are unknown")
        return {}
    except (OSError, ValueError) as exc:
        warn(f"cannot read {path} ({exc}): that run's status and environment are unknown")
        return {}
    return meta if isinstance(meta, dict) else {}


def read_window(path: Path, defaults: dict) -> pd.DataFrame | None:
    """A run's ``window.csv`` (the STDP-like gradient window), or None when absent or unusable (with a warning).

    ``defaults`` fills ``run_id`` and ``dataset`` where the file lacks them. Rows that do not parse are skipped.
    """
    if not path.is_file():
        return None
    bad: list[list[str]] = []
    try:
        frame = pd.read_csv(path, engine="python", on_bad_lines=bad.append, dtype={"run_id": str, "model": str, "reset": str})
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        warn(f"cannot read {path} ({exc}): no gradient window from that run")
        return None
    missing = [c for c in WINDOW_REQUIRED if c not in frame.columns]
    if missing:
        warn(f"{path} lacks the column(s) {', '.join(missing)}: no gradient window from that run")
        return None
    for column, value in defaults.items():
        frame[column] = frame[column].fillna(value) if column in frame.columns else value
    # relative is NaN, legitimately, at a dt with no pair (short T, a layer that never fired): not a broken row
    needed = [c for c in WINDOW_NUMERIC if c != "relative"] + ["model", "device", "reset"]
    frame = _parsable(frame, path, bad, WINDOW_NUMERIC, WINDOW_OPTIONAL + schema.GRID_COLUMNS, needed)
    frame[["seed", "dt"]] = frame[["seed", "dt"]].astype(int)
    frame["lr_scale"] = frame["lr_scale"].fillna(1.0) if "lr_scale" in frame.columns else 1.0
    frame["spec"], frame["model"] = frame["model"], pooling.labels(frame["model"], frame["lr_scale"])
    # a training analysed twice (a resume after a crash between its rows and run.json): its last rows count
    frame = frame.drop_duplicates(["run_id", "model", "device", "seed", "lr_scale", "dt"], keep="last")
    return frame if len(frame) else None


def read_activity(path: Path, defaults: dict) -> dict | None:
    """One ``activity/*.npz``: its arrays as numpy, its scalars as Python values, or None (with a warning) when it is not
    a readable file with the arrays of the format (layer1/2 v and o of shape (T, n), the image, label, index, logits)."""
    try:
        npz = np.load(path, allow_pickle=False)  # never unpickle: a results folder is data, not code
        if not isinstance(npz, np.lib.npyio.NpzFile):  # a lone .npy array
            raise ValueError("not an .npz archive")
        with npz:
            record = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        warn(f"cannot read {path} ({exc}): no activity figure from it")
        return None
    problem = _activity_problem(record)
    if problem:
        warn(f"{path}: {problem}: no activity figure from it")
        return None
    for key, value in record.items():
        if value.ndim == 0:  # numpy scalars (str, int) -> Python values
            record[key] = value.item()
    if "model" not in record:
        warn(f"{path} does not say which model it is: no activity figure from it")
        return None
    record.setdefault("seed", -1)  # unknown: sorted first, shown as -1
    record.setdefault("device", "?")
    try:
        record["lr_scale"] = float(record.get("lr_scale", 1.0))  # absent: the plain schedule
    except (TypeError, ValueError):
        record["lr_scale"] = math.nan
    if not record["lr_scale"] > 0:
        warn(f"{path} has no usable lr_scale: no activity figure from it")
        return None
    record["spec"], record["model"] = record["model"], pooling.label(record["model"], record["lr_scale"])
    for key, value in defaults.items():
        record.setdefault(key, value)
    record["path"] = str(path)
    return record


def _activity_problem(record: dict) -> str | None:
    for key, ndim in ACTIVITY_ARRAYS.items():
        if key not in record:
            return f"no {key!r} array"
        if record[key].ndim != ndim or not np.issubdtype(record[key].dtype, np.number):
            return f"{key!r} is not a numeric array of {ndim} dimension(s)"
    (steps, hidden), (steps2, n_out) = record["layer1_v"].shape, record["layer2_v"].shape
    if record["layer1_o"].shape != (steps, hidden) or record["layer2_o"].shape != (steps2, n_out) or steps != steps2:
        return "the layer arrays do not share one (time steps, neurons) shape per layer"
    if steps == 0 or hidden == 0 or record["logits"].shape != (n_out,) or not 0 <= int(record["label"]) < n_out:
        return "the logits or the label do not match layer 2's outputs"
    return None


def _same_device_names(epochs: pd.DataFrame, windows: list[pd.DataFrame], activity: list[dict]):
    """The window rows and activity records with the device names of the epoch rows (hardware added where mixed) and
    their trainings' schedule labels (a mask generator added where mixed)."""
    names = dict(zip(zip(epochs["run_id"], epochs["device_arg"]), epochs["device"]))
    training = ["run_id", "device_arg", "spec", "seed", "lr_scale"]
    schedules = dict(zip(zip(*(epochs[c] for c in training)), epochs["schedule"]))
    empty = pd.DataFrame(columns=[*schema.WINDOW_COLUMNS, "lr_scale", "spec", "schedule"])
    frame = pd.concat(windows, ignore_index=True) if windows else empty
    keys = zip(*(frame[c] for c in ["run_id", "device", "spec", "seed", "lr_scale"]))  # device: as bench.run named it
    frame["schedule"] = [schedules.get(k, s) for k, s in zip(keys, frame["schedule"])]
    frame["device"] = [names.get((r, d), d) for r, d in zip(frame["run_id"], frame["device"])]
    for record in activity:
        key = tuple(record.get(c) for c in ["run_id", "device", "spec", "seed", "lr_scale"])
        record["schedule"] = schedules.get(key, record.get("schedule"))
        record["device"] = names.get((record["run_id"], record["device"]), record["device"])
    return frame, activity


def _split_mixed_hardware(epochs: pd.DataFrame) -> pd.DataFrame:
    """Two machines' ``cpu`` are not one device: where a device name covers several hardware names, add the hardware."""
    epochs["device_arg"] = epochs["device"]  # as bench.run named it, to match run.json
    kinds = epochs.groupby(["dataset", "device"])["hardware"].transform("nunique")
    mixed = kinds > 1
    epochs.loc[mixed, "device"] = epochs.loc[mixed, "device"] + " (" + epochs.loc[mixed, "hardware"] + ")"
    return epochs
