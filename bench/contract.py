"""The contract check every model of a run passes before anything is written (built-in or plug-in).

On a small batch of the chosen dataset (its first training samples, on the CPU, with the random
generators forked so that no training's numbers change): the model builds from its config, its
forward pass gives finite logits of shape (B, classes), a backward pass reaches every trainable
parameter, and an ``activity`` pass, where the model has one, names only the layers its registry
entry declares. A failure is one line that names the model and what failed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.cli import one_line
from bench.data import Dataset
from models import ModelSpec

BATCH = 2


class ContractError(ValueError):
    """A model that cannot be benchmarked; one line for the user."""


def check(spec: ModelSpec, data: Dataset) -> None:
    """ContractError naming ``spec``'s model and the first thing about it that breaks the contract."""
    label, classes = spec.label, data.info.n_classes
    x = data.train.inputs(slice(0, BATCH)).detach().cpu()
    y = data.train.labels[:BATCH].detach().cpu()

    def fail(what: str) -> ContractError:
        return ContractError(f"model {label} fails the contract check on {data.name}: {what}")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            model = spec.build()
        except Exception as exc:
            raise fail(f"it cannot be built from its config ({one_line(exc, 200)})") from None
        try:
            logits = model(x)
        except Exception as exc:
            raise fail(f"forward raised {one_line(exc, 200)}") from None
        if not isinstance(logits, torch.Tensor):
            raise fail(f"forward returned a {type(logits).__name__}, not a tensor of logits")
        if tuple(logits.shape) != (len(x), classes):
            raise fail(f"forward gave logits of shape {tuple(logits.shape)} for a batch of {len(x)}; expected "
                       f"{(len(x), classes)} ({classes} classes)")  # fmt: skip
        if not bool(torch.isfinite(logits).all()):
            raise fail("forward gave NaN or infinite logits")
        try:
            F.cross_entropy(logits, y).backward()
        except Exception as exc:
            raise fail(f"backward raised {one_line(exc, 200)}") from None
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        if missing:
            raise fail(f"no gradient reaches {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if callable(getattr(model, "activity", None)):
            _check_activity(model, x, spec, fail)


def _check_activity(model, x: torch.Tensor, spec: ModelSpec, fail) -> None:
    try:
        with torch.no_grad():
            act = model.activity(x)
    except Exception as exc:
        raise fail(f"activity raised {one_line(exc, 200)}") from None
    names = {s.name for s in getattr(act, "synapses", [])} | set(getattr(act, "outputs", {}))
    undeclared = sorted(names - set(spec.info.layers))
    if undeclared:
        raise fail(f"activity names layer(s) {', '.join(undeclared)} that its layers {spec.info.layers} do not declare")
