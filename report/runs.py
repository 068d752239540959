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
    (epochs asked for), why (``why``). A run asked for each model x device x seed at each of its ``args.lr_scale``
    (absent: 1).
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
                why_ = why(meta, model, device, seed, scale)
                rows.append((run_id, dataset, device, pooling.label(model, scale), seed, int(last), expected, why_))
        for device in meta.get("devices", []):
            for model in meta.get("models", {}):
                for seed in meta.get("seeds", []):
                    for scale in scales(meta):
                        if (meta["run_id"], device, model, seed, scale) not in ran.index:
                            rows.append((meta["run_id"], dataset, device, pooling.label(model, scale), seed, 0, expected,
                                         why(meta, model, device, seed, scale)))  # fmt: skip
    columns = ["run_id", "dataset", "device", "model", "seed", "epochs", "expected", "why"]
    return pd.DataFrame(rows, columns=columns)


def training(meta: dict, model: str, device: str, seed, scale: float = 1.0) -> dict:
    """run.json's entry of one training (status, epochs_done, detail), or {} where the run does not record it."""
    for t in meta.get("trainings") or []:
        if not isinstance(t, dict):
            continue
        recorded = t.get("lr_scale", 1.0)
        if (t.get("model"), t.get("device"), t.get("seed")) == (model, device, seed) and recorded in (scale, None):
            return t
    return {}


STOPPED = {  # a training's status in run.json, when it stopped short, in words
    "diverged": "diverged",
    "failed": "failed (its traceback is in the run's errors.log)",
    "oom": "out of memory",
    "interrupted": "interrupted",
    "running": "still running, or killed",
    "pending": "never started",
}


def why(meta: dict, model: str, device: str, seed, scale: float = 1.0) -> str:
    """Why a training stopped short, as its run.json says: its status and detail, else the run's status."""
    entry = training(meta, model, device, seed, scale)
    status = entry.get("status")
    if status is None:
        run = meta.get("status")
        return f"run {'running, or killed' if run == 'running' else run}" if run else "not recorded"
    text = STOPPED.get(status, status)
    return f"{text}: {entry['detail']}" if entry.get("detail") else text


def partial_epochs(epochs: pd.DataFrame, runs: list[dict]) -> str | None:
    """``partial epochs: --max-batches 10`` when the runs of ``epochs`` capped their epochs with --max-batches and a
    training reached the cap (its ``train_samples`` of an epoch are max_batches x batch size: less than the data when
    the cap cut it), else None: a cap the data never reached left the epochs whole."""
    ids = set(epochs["run_id"]) if len(epochs) else set()
    caps = set()
    for meta in runs:
        schedule = meta.get("schedule") or {}
        cap, batch = schedule.get("max_batches"), schedule.get("batch_size")
        if meta.get("run_id") not in ids or not isinstance(cap, int) or cap <= 0:
            continue
        samples = epochs.loc[epochs["run_id"] == meta["run_id"], "train_samples"]
        if not isinstance(batch, int) or (samples >= cap * batch).any():
            caps.add(cap)
    return f"partial epochs: --max-batches {', '.join(map(str, sorted(caps)))}" if caps else None


def scales(meta: dict) -> list[float]:
    """The learning-rate scales a run asked for (``args.lr_scale``); [1.0] for runs from before there were scales."""
    asked = (meta.get("args") or {}).get("lr_scale") or [1.0]
    return [float(s) for s in (asked if isinstance(asked, list) else [asked])]


def validation(meta: dict) -> int:
    """How many training samples a run held out for validation (run.json's schedule, else its args; absent: 0)."""
    held = (meta.get("schedule") or {}).get("validation", (meta.get("args") or {}).get("validation"))
    return held if isinstance(held, int) and held > 0 else 0
