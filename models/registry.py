"""The model registry: one name -> one model class with a typed config.

Each entry also says what the harness needs to know about the model (``ModelInfo``): whether it
is a spiking model or a non-spiking baseline, the names of its weight layers (the metrics' columns),
and how many steps its input needs to reach the logits (the gradient window skips the rest).

A model on the command line is a *spec*: ``NAME[:key=value,...]``, for example
``snn:reset=proportional,time_steps=32``. Keys are the fields of that model's
``Config`` dataclass. The canonical spec (only non-default keys, sorted) is the
model's label everywhere: CSV, console table, report.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

MODELS: dict[str, type[nn.Module]] = {}
INFO: dict[str, ModelInfo] = {}


@dataclass(frozen=True)
class ModelInfo:
    """What the harness knows of a registered model, beyond its config."""

    kind: Literal["spiking", "baseline"]  # the report pairs every spiking model with every baseline
    layers: tuple[str, ...] = ("layer1", "layer2")  # weight layers, as ``activity`` names them: layer1_* columns, ...
    delay: int = 0  # steps from an input step to the logits: the last ``delay`` input steps never reach them


class SpecError(ValueError):
    """A model spec that cannot be built: unknown name, unknown key or bad value."""


def register(name: str, kind: Literal["spiking", "baseline"], layers: tuple[str, ...] = ("layer1", "layer2"), delay: int = 0):
    """Class decorator: ``@register("snn", kind="spiking", delay=2)`` on an ``nn.Module`` with a ``Config`` dataclass."""
    info = ModelInfo(kind, tuple(layers), delay)
    if kind not in ("spiking", "baseline"):
        raise ValueError(f"kind must be spiking or baseline, got {kind!r}")

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered")
        if not dataclasses.is_dataclass(getattr(cls, "Config", None)):
            raise TypeError(f"{cls.__name__} needs a dataclass attribute 'Config'")
        MODELS[name], INFO[name] = cls, info
        return cls

    return deco


def check_positive(config: Any, *names: str) -> None:
    """For a Config's ``__post_init__``: each named field must be > 0."""
    for name in names:
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")


def available() -> list[str]:
    return sorted(MODELS)


def model_class(name: str) -> type[nn.Module]:
    try:
        return MODELS[name]
    except KeyError:
        raise SpecError(f"unknown model {name!r}; known: {', '.join(available())}") from None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config: Any  # an instance of MODELS[name].Config

    @property
    def label(self) -> str:
        """Canonical spec: the name, then the non-default keys in sorted order."""
        default = type(self.config)()
        changed = [
            f"{f.name}={_format(getattr(self.config, f.name))}"
            for f in sorted(dataclasses.fields(self.config), key=lambda f: f.name)
            if getattr(self.config, f.name) != getattr(default, f.name)
        ]
        return self.name + (":" + ",".join(changed) if changed else "")

    @property
    def info(self) -> ModelInfo:
        return INFO[self.name]

    def record(self) -> dict[str, Any]:
        """What run.json keeps of the model: its name, full config and registry facts."""
        info = self.info
        return {"name": self.name, "config": vars(self.config), "kind": info.kind, "layers": list(info.layers),
                "delay": info.delay}  # fmt: skip

    def build(self) -> nn.Module:
        return MODELS[self.name](self.config)


def _format(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _parse_value(cls: type, field: dataclasses.Field, text: str) -> Any:
    kind = typing.get_type_hints(cls)[field.name]
    choices = typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else None
    try:
        if choices is not None:
            if text not in choices:
                raise ValueError(f"choose from {', '.join(choices)}")
            return text
        if kind is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError("expected true or false")
            return lowered in ("true", "1")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        return kind(text)
    except ValueError as exc:
        raise SpecError(f"bad value {text!r} for {field.name} ({exc})") from None


def parse_spec(text: str) -> ModelSpec:
    """``"snn:reset=proportional,time_steps=32"`` -> ModelSpec; SpecError when it is wrong."""
    name, _, rest = text.strip().partition(":")
    cls = model_class(name)
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise SpecError(f"{text!r}: expected key=value, got {item!r}; keys of {name}: {', '.join(fields)}")
        if key not in fields:
            raise SpecError(f"unknown key {key!r} for model {name}; valid keys: {', '.join(fields)}")
        values[key] = _parse_value(cls.Config, fields[key], raw.strip())
    try:
        config = cls.Config(**values)
    except ValueError as exc:
        raise SpecError(f"{text!r}: {exc}") from None
    return ModelSpec(name, config)


def build(spec: str | ModelSpec) -> nn.Module:
    """Build a model from a spec string or a parsed ModelSpec."""
    return (parse_spec(spec) if isinstance(spec, str) else spec).build()
