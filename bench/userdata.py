"""Datasets from outside the package: installed distributions' entry points and ``package.module:function``.

A distribution adds datasets in its ``pyproject.toml``::

    [project.entry-points."snnbench.datasets"]
    blobs = "snnbench_example.blobs:load"

and a one-off function is named as ``--dataset mypackage.data:load``. The function takes the
``--data-dir`` folder (or no argument) and returns::

    (train_inputs, train_labels), (test_inputs, test_labels), class_names

inputs as tensors or arrays of shape (N, ...) (uint8 images are scaled to [-0.5, 0.5] as MNIST
is; float inputs are used as they are), labels as integers 0 .. len(class_names) - 1. Everything
is checked here, once, before any training: a mistake is one line, exit status 2.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib import metadata

import numpy as np
import torch

from models import plugins

GROUP = "snnbench.datasets"


def entry_points() -> dict[str, metadata.EntryPoint]:
    return plugins.entry_points(GROUP)


def origin(name: str) -> str:
    """Where the dataset ``name`` comes from, without importing it ("" when it is not a plug-in)."""
    ep = entry_points().get(name)
    return plugins.origin(ep) if ep is not None else "module path" if ":" in name else ""


def find(name: str, error: type[Exception]) -> Callable | None:
    """The loading function of ``name`` (None when it is no plug-in); ``error`` (one line) when it cannot be loaded.
    The same rules as plug-in models (models/plugins.py)."""
    try:
        return plugins.resolve(name, GROUP, "dataset")[0]
    except plugins.SpecError as exc:
        raise error(str(exc)) from None


def call(function: Callable, name: str, data_dir: str, error: type[Exception]):
    """(raw splits, input shape, class names) from the user's function, checked."""
    try:
        takes_dir = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                        for p in inspect.signature(function).parameters.values())  # fmt: skip
    except (TypeError, ValueError):
        takes_dir = True
    try:
        out = function(data_dir) if takes_dir else function()
    except Exception as exc:  # the user's code: its error in one line
        raise error(f"dataset {name!r} raised {type(exc).__name__}: {exc}") from None
    try:
        return _checked(out, name)
    except ValueError as exc:
        raise error(f"dataset {name!r}: {exc}") from None


def _checked(out, name: str):
    if not (isinstance(out, tuple | list) and len(out) == 3):
        raise ValueError("expected (train_inputs, train_labels), (test_inputs, test_labels), class_names")
    train, test, names = out
    if isinstance(names, str) or not all(isinstance(n, str) for n in names) or len(names) < 2:
        raise ValueError("class_names must be a list of at least two strings")
    raw = {"train": _split(train, "train", len(names)), "test": _split(test, "test", len(names))}
    if raw["train"][0].shape[1:] != raw["test"][0].shape[1:]:
        raise ValueError(f"train inputs are {tuple(raw['train'][0].shape[1:])} per sample, test inputs "
                         f"{tuple(raw['test'][0].shape[1:])}")  # fmt: skip
    return raw, tuple(raw["train"][0].shape[1:]), tuple(names)


def _split(pair, split: str, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(pair, tuple | list) and len(pair) == 2):
        raise ValueError(f"{split} must be a pair (inputs, labels)")
    x, y = (torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v for v in pair)
    if x.dim() < 2 or len(x) == 0:
        raise ValueError(f"{split} inputs must be (N, ...) with N > 0, got shape {tuple(x.shape)}")
    if not (x.dtype == torch.uint8 or x.is_floating_point()):
        raise ValueError(f"{split} inputs must be uint8 or floating point, got {x.dtype}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{split} inputs hold NaN or infinite values")
    if y.dim() != 1 or len(y) != len(x):
        raise ValueError(f"{split} labels must be (N,) with N = {len(x)} inputs, got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"{split} labels must be integers, got {y.dtype}")
    if int(y.min()) < 0 or int(y.max()) >= classes:
        raise ValueError(f"{split} labels must be 0 .. {classes - 1} (one per class name), got {int(y.min())} .. "
                         f"{int(y.max())}")  # fmt: skip
    return x.detach().cpu(), y.detach().cpu().to(torch.int64)
