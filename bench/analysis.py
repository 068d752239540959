"""After a training: what its spiking neurons do on one test digit, and the STDP-like gradient window.

Both need a model with ``trace`` (the SNNs, models/snn_reference.py); others are skipped.
Both draw their random masks from a fixed seed inside ``torch.random.fork_rng``, so they are
the same for every model and epoch and leave the training's random streams untouched.

The window tests the seed text's claim: because the inner state decays by d per step, the
gradient reaching an input dt steps before a neuron fires is d**dt times smaller ("neurons
that fire together wire together", with a causal exponential window). Measured with autograd
on the trained network: for every layer-1 neuron-step that fired at t, |dL/dI_{t-dt}|, where
I is layer 1's input current, averaged per dt and divided by its value at dt = 0. The
*isolated* variant keeps only the pairs where the neuron did not also fire between t-dt and t-1,
so that the gradient at t-dt can only have come back through the spike at t.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.data import Split
from bench.results import append_rows, atomic_write
from bench.schema import WINDOW_COLUMNS

MASK_SEED = 2018  # the masks of the pictures and of the window: fixed, the same for every model
WINDOW_SAMPLES = 100  # test samples the window averages over (the first ones, in order)
MAX_DT = 20


def supports(model: nn.Module) -> bool:
    return callable(getattr(model, "trace", None))


def has_window(model: nn.Module) -> bool:
    """Whether the window's definition applies: a model says no with ``gradient_window = False`` (the LIF models: their
    surrogate gradient passes through every step, firing or not, so the gradient before a spike is not the spike's)."""
    return supports(model) and getattr(model, "gradient_window", True)


def _fixed_masks(device: torch.device):
    """Fork the generators the masks come from (the CPU's always, the device's when it has its own)."""
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=[device.index or 0], device_type=device.type)


def neuron_activity(model: nn.Module, split: Split, input_shape: tuple[int, ...], index: int = 0) -> dict[str, np.ndarray]:
    """Inner state and output of every neuron at every step, for test sample ``index``: (T, n) arrays, and
    the sample as a picture (``input_shape`` without a channel axis of one; a flat sample as one row)."""
    model.eval()
    x, label = split.inputs(slice(index, index + 1)), split.labels[index]
    with _fixed_masks(x.device), torch.no_grad():
        torch.manual_seed(MASK_SEED)
        tr = model.trace(x)
    out = {k: tr[k][:, 0].float().cpu().numpy() for k in ("layer1_v", "layer1_o", "layer2_v", "layer2_o")}
    return {
        **out,
        "image": _picture(x[0].float().cpu(), input_shape).numpy(),
        "label": np.int64(label.item()),
        "index": np.int64(index),
        "logits": tr["logits"][0].float().cpu().numpy(),
    }


def _picture(sample: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A sample as a 2-D picture: a sequence's frames summed over time, channels (an event camera's polarities)
    summed; a flat sample as one row."""
    if sample.numel() != math.prod(shape):  # a sequence (T, *shape)
        sample = sample.reshape(-1, *shape).sum(0)
    image = sample.reshape(shape)
    while image.dim() > 2:  # (1, 28, 28) -> (28, 28); (2, 34, 34) -> (34, 34), both polarities
        image = image.sum(0)
    return image if image.dim() == 2 else image.reshape(1, -1)


def window(
    model: nn.Module, split: Split, delay: int, samples: int = WINDOW_SAMPLES, max_dt: int = MAX_DT
) -> list[dict[str, Any]]:
    """Mean |dL/dI_{t-dt}| over layer-1 neuron-steps that fired at t, for dt = 0..max_dt (see the module's doc).

    Only steps whose output reaches the logits count: the model's ``delay`` (models.ModelInfo; 2 for the
    2018 SNN's two one-step delays) hides the last steps. The loss is the summed cross-entropy, so each
    sample's gradient is its own.
    """
    model.eval()
    x, y = split.inputs(slice(0, samples)), split.labels[:samples]
    with _fixed_masks(x.device), torch.enable_grad():
        torch.manual_seed(MASK_SEED)
        tr = model.trace(x)
        current = tr["layer1_current"]  # (T, B, hidden)
        current.retain_grad()
        F.cross_entropy(tr["logits"], y, reduction="sum").backward()
    model.zero_grad(set_to_none=True)
    steps = max(current.shape[0] - delay, 0)
    fired = (tr["layer1_o"][:steps] > 0).detach()  # (T-2, B, hidden)
    grad = current.grad[:steps].abs()
    before_t = torch.cat([torch.zeros_like(fired[:1], dtype=torch.int32), fired.cumsum(0, dtype=torch.int32)])  # spikes before t
    rows = []
    for dt in range(min(max_dt, steps - 1) + 1 if steps else 0):
        at = fired[dt:]  # a neuron fired at t ...
        before = grad[: steps - dt]  # ... the gradient at its input current dt steps earlier
        alone = at & (before_t[dt:steps] == before_t[: steps - dt])  # ... and did not fire in t-dt .. t-1
        rows.append({"dt": dt, **_mean(before, at, ""), **_mean(before, alone, "isolated_")})
    for prefix in ("", "isolated_"):
        first = rows[0][f"{prefix}mean_abs_grad"] if rows else float("nan")
        for row in rows:
            row[f"{prefix}relative"] = row[f"{prefix}mean_abs_grad"] / first if first else float("nan")
    return rows


def _mean(values: torch.Tensor, where: torch.Tensor, prefix: str) -> dict[str, float]:
    pairs = int(where.sum())
    mean = float((values * where).sum(dtype=torch.float64) / pairs) if pairs else float("nan")
    return {f"{prefix}mean_abs_grad": mean, f"{prefix}pairs": pairs}


def save_window(path: Path, rows: list[dict[str, Any]], grid: bool = False) -> None:
    """Append one training's window rows to ``path`` (a CSV of WINDOW_COLUMNS, with ``lr_scale`` after ``seed`` in a
    run over several learning-rate scales) in a single fsync'd write."""
    columns = WINDOW_COLUMNS if not grid else [*WINDOW_COLUMNS[:5], "lr_scale", *WINDOW_COLUMNS[5:]]
    append_rows(path, columns, rows)


def save_activity(path: Path, arrays: dict[str, np.ndarray], **labels: Any) -> None:
    """``arrays`` and the training's labels (run_id, model, ...) into one ``.npz``, written atomically."""
    path.parent.mkdir(exist_ok=True)
    tags = {k: np.array(v) for k, v in labels.items()}
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays, **tags), mode="wb")
