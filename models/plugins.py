"""Models from outside the package: installed distributions' entry points and ``package.module:ClassName``.

A distribution adds models in its ``pyproject.toml``::

    [project.entry-points."snnbench.models"]
    conv-snn = "snnbench_example.conv:ConvSNN"

and a one-off class is named on the command line as ``mypackage.nets:ConvNet[:key=value,...]``,
imported from the current directory or ``PYTHONPATH``. Either class follows the registry's
contract (models/registry.py) and says what it is with class attributes::

    kind = "spiking"             # or "baseline": the report compares every spiking model with every baseline
    layers = ("layer1", ...)     # the weight layers its optional activity(x) names (metric columns)
    delay = 0                    # input steps at the end that never reach the logits

Nothing is imported until a model is asked for by name.
"""

from __future__ import annotations

import importlib
import os
import sys
from importlib import metadata

from models.registry import ModelInfo, SpecError, add

GROUP = "snnbench.models"


def entry_points(group: str = GROUP) -> dict[str, metadata.EntryPoint]:
    """The installed distributions' entry points of ``group``, by name (the first one of a name wins)."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=group):
        found.setdefault(ep.name, ep)
    return found


def entry_point_names() -> list[str]:
    return list(entry_points())


def origin(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"entry point ({dist.name} {dist.version})" if dist is not None else "entry point"


def resolve(name: str, group: str, what: str):
    """(the object named ``name``, where it comes from): an entry point of ``group``, else ``package.module:Name``;
    (None, "") when it is neither; SpecError when it cannot be loaded. ``what`` ("model", "dataset") names it."""
    eps = entry_points(group)
    if name in eps:
        where = origin(eps[name])
        try:
            return eps[name].load(), where
        except Exception as exc:  # whatever the distribution's module raised while it was imported
            raise SpecError(f"{what} {name!r} of {where} cannot be loaded ({type(exc).__name__}: {exc})") from None
    if ":" in name:
        return import_object(name, what), "module path"
    return None, ""


def import_object(path: str, what: str):
    """``package.module:Name`` -> the object, imported from the current directory or PYTHONPATH; SpecError otherwise."""
    module_name, _, attr = path.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as ``python -m`` does: the user's own modules are found here
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an ImportError, or whatever the user's module raised while it was imported
        raise SpecError(f"cannot import {module_name!r} for {what} {path!r} ({type(exc).__name__}: {exc}); "
                        "it is imported from the current directory or PYTHONPATH") from None  # fmt: skip
    try:
        return getattr(module, attr)
    except AttributeError:
        raise SpecError(f"module {module_name!r} has no {attr!r} (for {what} {path!r})") from None


def info_of(cls, name: str) -> ModelInfo:
    """A plug-in class's ModelInfo from its class attributes ``kind`` (required), ``layers`` and ``delay``."""
    kind = getattr(cls, "kind", None)
    if kind is None:
        raise SpecError(f"model {name!r}: its class needs a class attribute kind = 'spiking' or 'baseline'")
    try:
        return ModelInfo(kind, tuple(getattr(cls, "layers", ())), getattr(cls, "delay", 0))
    except (TypeError, ValueError) as exc:
        raise SpecError(f"model {name!r}: {exc}") from None


def load(name: str) -> None:
    """Register the model ``name`` from an entry point or a ``package.module:ClassName``; SpecError when neither works."""
    cls, where = resolve(name, GROUP, "model")
    if cls is None:
        from models.registry import available

        raise SpecError(f"unknown model {name!r}; known: {', '.join(available())} (or package.module:ClassName)")
    info = info_of(cls, name)
    try:
        add(name, cls, info, where)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"model {name!r} ({where}): {exc}") from None
