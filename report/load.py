"""Find and read results: every ``epochs.csv`` below the given folders, with its ``run.json``.

One tidy DataFrame of epoch rows comes back, plus one dict per run. Nothing is summarised here.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

# what the report needs from each row; run_id falls back to the folder name when absent
REQUIRED = ["dataset", "model", "device", "seed", "epoch", "train_loss", "test_accuracy", "train_seconds", "train_samples"]
NUMERIC = ["seed", "epoch", "train_loss", "test_accuracy", "train_seconds", "train_samples"]
TRAINING = ["dataset", "device", "model", "run_id", "seed"]  # one seeded training: the unit of replication


class ReportError(Exception):
    """Input the report cannot use: printed as one line, exit status 2."""


@dataclass
class Results:
    epochs: pd.DataFrame  # one row per training x epoch, columns of bench.results.COLUMNS plus "hardware"
    runs: list[dict]  # run.json of each run (or {} when missing), with "run_id" and "path" filled in


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
    csvs: dict[Path, None] = {}  # an ordered set: a run named twice (folder and its parent) is read once
    for path in map(Path, paths):
        found = find_csvs(path)
        if not found:
            raise ReportError(f"no epochs.csv in {path}")
        csvs.update(dict.fromkeys(p.resolve() for p in found))

    frames, runs = [], []
    for csv in csvs:
        frame = read_csv(csv)  # first: a CSV the report cannot use stops it before any warning
        meta = read_run_json(csv.parent / "run.json")
        run_id = meta.get("run_id") or csv.parent.name
        meta.update(run_id=run_id, path=str(csv.parent))
        frame["run_id"] = frame["run_id"].fillna(run_id)
        hardware = (meta.get("environment") or {}).get("devices") or {}
        frame["hardware"] = frame["device"].map(lambda d, hw=hardware: hw.get(d, "unknown hardware"))
        runs.append(meta)
        if not frame.empty:
            frames.append(frame)
    if not frames:
        raise ReportError(f"no result rows in {', '.join(map(str, paths))}")
    return Results(_split_mixed_hardware(pd.concat(frames, ignore_index=True)), runs)


def read_csv(path: Path) -> pd.DataFrame:
    """Read one ``epochs.csv``; rows that do not parse (a truncated last line) are skipped with a warning."""
    bad: list[list[str]] = []
    try:
        # the python engine lets a callable collect lines with too many fields; it returns None: skip
        frame = pd.read_csv(path, engine="python", on_bad_lines=bad.append, dtype={"run_id": str, "model": str})
    except pd.errors.EmptyDataError:
        warn(f"{path} is empty")
        return pd.DataFrame(columns=REQUIRED + ["run_id"])
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ReportError(f"cannot read {path}: {exc}") from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ReportError(f"{path} lacks the column(s) {', '.join(missing)}")
    if "run_id" not in frame.columns:
        frame["run_id"] = None  # filled in from run.json or the folder name
    for column in NUMERIC:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    # a line cut short parses with NaN in its last fields
    broken = frame[NUMERIC + ["dataset", "model", "device"]].isna().any(axis=1)
    if bad or broken.any():
        warn(f"{path}: skipped {len(bad) + int(broken.sum())} unparsable row(s)")
    frame = frame[~broken].copy()
    frame[["seed", "epoch"]] = frame[["seed", "epoch"]].astype(int)
    duplicated = frame.duplicated(TRAINING + ["epoch"], keep="last")
    if duplicated.any():
        warn(f"{path}: {int(duplicated.sum())} epoch row(s) appear twice; the last one of each is used")
        frame = frame[~duplicated]
    return frame


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


def _split_mixed_hardware(epochs: pd.DataFrame) -> pd.DataFrame:
    """Two machines' ``cpu`` are not one device: where a device name covers several hardware names, add the hardware."""
    epochs["device_arg"] = epochs["device"]  # as bench.run named it, to match run.json
    kinds = epochs.groupby(["dataset", "device"])["hardware"].transform("nunique")
    mixed = kinds > 1
    epochs.loc[mixed, "device"] = epochs.loc[mixed, "device"] + " (" + epochs.loc[mixed, "hardware"] + ")"
    return epochs


def incomplete_trainings(epochs: pd.DataFrame, runs: list[dict]) -> pd.DataFrame:
    """Trainings that stopped short of the schedule, and trainings run.json asked for that have no row at all.

    Columns: run_id, dataset, device, model, seed, epochs (reached), expected (epochs asked for).
    """
    rows = []
    reached = epochs.groupby(["run_id", "device_arg", "model", "seed"])["epoch"].max()
    for meta in runs:
        expected = (meta.get("schedule") or {}).get("epochs")
        if expected is None:
            continue
        ran = reached[reached.index.get_level_values("run_id") == meta["run_id"]]
        for (run_id, device, model, seed), last in ran.items():
            if last < expected:
                rows.append((run_id, meta.get("dataset", "?"), device, model, seed, int(last), expected))
        for device in meta.get("devices", []):
            for model in meta.get("models", {}):
                for seed in meta.get("seeds", []):
                    if (meta["run_id"], device, model, seed) not in ran.index:
                        rows.append((meta["run_id"], meta.get("dataset", "?"), device, model, seed, 0, expected))
    columns = ["run_id", "dataset", "device", "model", "seed", "epochs", "expected"]
    return pd.DataFrame(rows, columns=columns)
