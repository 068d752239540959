"""The model registry: one name -> one model class with a typed config.

Each entry also says what the harness needs to know about the model (``ModelInfo``): whether it
is a spiking model or a non-spiking baseline, the names of its weight layers (the metrics' columns),
and how many steps its input needs to reach the logits (the gradient window skips the rest).

Models come from three places (models/plugins.py): the built-ins registered with ``@register``,
installed distributions through the entry-point group ``snnbench.models``, and a class named on the
command line as ``package.module:ClassName``. A plug-in class says what it is with class attributes
``kind`` ("spiking" or "baseline"), ``layers`` and ``delay`` (the fields of ``ModelInfo``).

A model on the command line is a *spec*: ``NAME[:key=value,...]``, for example
``snn:reset=proportional,time_steps=32`` or ``mypackage.nets:ConvNet:channels=8``. Keys are the fields of that model's
``Config`` dataclass. The canonical spec (only non-default keys, sorted) is the
model's label everywhere: CSV, console table, report.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

MODELS: dict[str, type[nn.Module]] = {}
INFO: dict[str, ModelInfo] = {}
ORIGIN: dict[str, str] = {}  # name -> "built-in", "entry point (DIST VERSION)" or "module path"
UNAVAILABLE: dict[str, str] = {}  # built-in name -> why it is not registered here (a library it needs is missing)
NOTES: dict[str, str] = {}  # name -> what a user must know about it, shown by --list whether it is available or not


@dataclass(frozen=True)
class ModelInfo:
    """What the harness knows of a registered model, beyond its config."""

    kind: Literal["spiking", "baseline"]  # the report pairs every spiking model with every baseline
    layers: tuple[str, ...] = ("layer1", "layer2")  # weight layers, as ``activity`` names them: layer1_* columns, ...
    delay: int = 0  # steps from an input step to the logits: the last ``delay`` input steps never reach them
    # it turns static images into its own code from the intensities x + 0.5 (lif's rate and direct encodings): it needs
    # them as SPEC.md gives them, so --input-scaling other than centered is refused for it
    intensities: bool = False

    def __post_init__(self):
        if self.kind not in ("spiking", "baseline"):
            raise ValueError(f"kind must be spiking or baseline, got {self.kind!r}")
        if not isinstance(self.delay, int) or self.delay < 0:
            raise ValueError(f"delay must be a whole number of steps >= 0, got {self.delay!r}")

    @property
    def min_time_steps(self) -> int:
        """The smallest T at which some input step reaches the logits."""
        return self.delay + 1


class SpecError(ValueError):
    """A model spec that cannot be built: unknown name, unknown key or bad value."""


def register(name: str, kind: Literal["spiking", "baseline"], layers: tuple[str, ...] = ("layer1", "layer2"), delay: int = 0,
             intensities: bool = False):  # fmt: skip
    """Class decorator: ``@register("snn", kind="spiking", delay=2)`` on an ``nn.Module`` with a ``Config`` dataclass."""
    info = ModelInfo(kind, tuple(layers), delay, intensities)

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        add(name, cls, info, "built-in")
        return cls

    return deco


def add(name: str, cls: type, info: ModelInfo, origin: str) -> None:
    """Enter ``cls`` under ``name``; ValueError for a name taken, TypeError for a class that breaks the contract."""
    if name in MODELS:
        raise ValueError(f"model {name!r} is already registered")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"{getattr(cls, '__name__', cls)!s} is not a torch.nn.Module class")
    config = getattr(cls, "Config", None)
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"{cls.__name__} needs a dataclass attribute 'Config'")
    try:
        config()
    except TypeError:
        raise TypeError(f"{cls.__name__}.Config needs a default for every field") from None
    MODELS[name], INFO[name], ORIGIN[name] = cls, info, origin


def unavailable(name: str, reason: str) -> None:
    """A built-in model that this installation cannot offer: ``--list`` shows it with ``reason``, asking for it is an error."""
    UNAVAILABLE[name] = reason


def check_positive(config: Any, *names: str) -> None:
    """For a Config's ``__post_init__``: each named field must be > 0."""
    for name in names:
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")


def available() -> list[str]:
    """Every model name: the built-ins and those of installed plug-in distributions (entry points)."""
    from models import plugins

    named = {n for n in MODELS if ORIGIN[n] != "module path"}  # a package.module:Class is not a name to offer
    return sorted({*named, *plugins.entry_point_names()})


def model_class(name: str) -> type[nn.Module]:
    if name in UNAVAILABLE:
        raise SpecError(f"model {name} is not available here: it {UNAVAILABLE[name]}")
    if name not in MODELS:
        from models import plugins

        plugins.load(name)  # an entry point or package.module:Class; SpecError when it is neither
    return MODELS[name]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config: Any  # an instance of MODELS[name].Config
    derived: tuple[str, ...] = dataclasses.field(default=(), compare=False)  # keys set from the data, not the spec

    @property
    def label(self) -> str:
        """Canonical spec: the name, then the non-default keys in sorted order, but those the data set (``derived``: an
        event dataset's ``sequence``, bins and image size; the dataset's label says them; ``n_in`` and ``n_out`` are
        shown as ever)."""
        default = type(self.config)()
        changed = [
            f"{f.name}={_format(getattr(self.config, f.name))}"
            for f in sorted(dataclasses.fields(self.config), key=lambda f: f.name)
            if getattr(self.config, f.name) != getattr(default, f.name) and f.name not in self.derived
        ]
        return self.name + (":" + ",".join(changed) if changed else "")

    @property
    def info(self) -> ModelInfo:
        model_class(self.name)  # a plug-in's spec unpickled in another process (a Dask worker): register it there too
        return INFO[self.name]

    def record(self) -> dict[str, Any]:
        """What run.json keeps of the model: its name, full config and registry facts."""
        info = self.info
        return {"name": self.name, "config": vars(self.config), "kind": info.kind, "layers": list(info.layers),
                "delay": info.delay}  # fmt: skip

    def build(self) -> nn.Module:
        return model_class(self.name)(self.config)


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
            value = float(text)
            if not math.isfinite(value):  # no constant of a model means anything at nan or inf
                raise ValueError("not a finite number")
            return value
        return kind(text)
    except ValueError as exc:
        raise SpecError(f"bad value {text!r} for {field.name} ({exc})") from None


def split_spec(text: str) -> tuple[str, str]:
    """``"snn:time_steps=4"`` -> ("snn", "time_steps=4"); ``"pkg.mod:Net:width=8"`` -> ("pkg.mod:Net", "width=8")."""
    parts = text.strip().split(":", 2)
    if len(parts) >= 2 and parts[1].strip().isidentifier() and parts[0].strip() not in available():
        # package.module:ClassName (a registered name first is NAME:key..., even with a key missing its value)
        return f"{parts[0].strip()}:{parts[1].strip()}", parts[2] if len(parts) == 3 else ""
    name, _, rest = text.strip().partition(":")
    return name, rest


def parse_spec(text: str, defaults: dict[str, Any] | None = None) -> ModelSpec:
    """``"snn:reset=proportional,time_steps=32"`` -> ModelSpec; SpecError when it is wrong.

    ``defaults`` replace the Config's defaults of the fields they name (those it has) that the spec does not set:
    the harness sizes ``n_in`` and ``n_out`` from the dataset this way."""
    name, rest = split_spec(text)
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
        if key in values:
            raise SpecError(f"{text!r}: {key} is given twice")
        values[key] = _parse_value(cls.Config, fields[key], raw.strip())
    # n_in and n_out stay in the label as they always were (a recorded run's trainings are keyed by it)
    derived = tuple(k for k in (defaults or {}) if k in fields and k not in values and k not in ("n_in", "n_out"))
    values = {**{k: v for k, v in (defaults or {}).items() if k in fields}, **values}
    try:
        config = cls.Config(**values)
    except (ValueError, TypeError) as exc:
        raise SpecError(f"{text!r}: {exc}") from None
    return ModelSpec(name, config, derived)


def build(spec: str | ModelSpec) -> nn.Module:
    """Build a model from a spec string or a parsed ModelSpec."""
    return (parse_spec(spec) if isinstance(spec, str) else spec).build()
