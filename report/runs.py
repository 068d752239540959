"""What the runs' run.json files say beyond the rows: each model's registry name and config, and the trainings a run
asked for that did not reach the end of its schedule."""

from __future__ import annotations

import pandas as pd

from report import pooling


def model_info(runs: list[dict], labels) -> dict[str, dict]:
    """Each label -> {"name": registry name, "config": {...}}: from run.json (the first run that has the label), and
    what the canonical spec says by itself where run.json is missing (``snn:time_steps=32``: name snn, time_steps 32).
    A label with a learning-rate scale (``snn (lr x2)``) is its model's."""
    known: dict[str, dict] = {}
    for meta in runs:
        for label, info in (meta.get("models") or {}).items():
            if isinstance(info, dict):
                known.setdefault(label, info)
    out = {}
    for label in labels:
        spec = pooling.spec_of(label)
        name, _, rest = spec.partition(":")
        parsed = dict(item.partition("=")[::2] for item in rest.split(",") if item)
        info = known.get(spec, {})
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

    Columns: run_id, dataset, device, model (its label, with the learning-rate scale), seed, epochs (reached), expected
    (epochs asked for). A run asked for each model x device x seed at each of its ``args.lr_scale`` (absent: 1).
    """
    rows = []
    reached = epochs.groupby(["run_id", "device_arg", "spec", "seed", "lr_scale"])["epoch"].max()
    for meta in runs:
        expected = (meta.get("schedule") or {}).get("epochs")
        if expected is None:
            continue
        dataset = meta.get("dataset", "?")
        ran = reached[reached.index.get_level_values("run_id") == meta["run_id"]]
        for (run_id, device, model, seed, scale), last in ran.items():
            if last < expected:
                rows.append((run_id, dataset, device, pooling.label(model, scale), seed, int(last), expected))
        for device in meta.get("devices", []):
            for model in meta.get("models", {}):
                for seed in meta.get("seeds", []):
                    for scale in scales(meta):
                        if (meta["run_id"], device, model, seed, scale) not in ran.index:
                            rows.append((meta["run_id"], dataset, device, pooling.label(model, scale), seed, 0, expected))
    columns = ["run_id", "dataset", "device", "model", "seed", "epochs", "expected"]
    return pd.DataFrame(rows, columns=columns)


def scales(meta: dict) -> list[float]:
    """The learning-rate scales a run asked for (``args.lr_scale``); [1.0] for runs from before there were scales."""
    asked = (meta.get("args") or {}).get("lr_scale") or [1.0]
    return [float(s) for s in (asked if isinstance(asked, list) else [asked])]


def validation(meta: dict) -> int:
    """How many training samples a run held out for validation (run.json's schedule, else its args; absent: 0)."""
    held = (meta.get("schedule") or {}).get("validation", (meta.get("args") or {}).get("validation"))
    return held if isinstance(held, int) and held > 0 else 0
