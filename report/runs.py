"""What the runs' run.json files say beyond the rows: each model's registry name and config, and the trainings a run
asked for that did not reach the end of its schedule."""

from __future__ import annotations

import pandas as pd


def model_info(runs: list[dict], labels) -> dict[str, dict]:
    """Each label -> {"name": registry name, "config": {...}}: from run.json (the first run that has the label), and
    what the canonical spec says by itself where run.json is missing (``snn:time_steps=32``: name snn, time_steps 32)."""
    known: dict[str, dict] = {}
    for meta in runs:
        for label, info in (meta.get("models") or {}).items():
            if isinstance(info, dict):
                known.setdefault(label, info)
    out = {}
    for label in labels:
        name, _, rest = label.partition(":")
        parsed = dict(item.partition("=")[::2] for item in rest.split(",") if item)
        info = known.get(label, {})
        config = {**{k: _number(v) for k, v in parsed.items()}, **(info.get("config") or {})}
        out[label] = {"name": info.get("name") or name, "config": config}
    return out


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


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
