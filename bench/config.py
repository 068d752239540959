"""How one model is trained: ``TrainConfig``, the schedule and the optimizer it builds, in one frozen dataclass.

Each field that a user may set carries its command-line flag in its metadata (``option``). The
parser (``add_options``), the checks, run.json (``dataclasses.asdict``, under ``"schedule"``) and
``--resume`` all read the fields, so a new hyperparameter is one field here and nothing else.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.cli import fraction_below_one, nonnegative_float, nonnegative_int, one_of, positive
from bench.precision import PRECISIONS

OPTIMIZERS = ("sgd", "adam")
# how static images reach a model (bench.data.scaled): centered = pixel / 255 - 0.5 in [-0.5, 0.5] (SPEC.md, 2018);
# unit = pixel / 255 in [0, 1]; standard = (pixel - mean) / std over the pixels a training trains on
INPUT_SCALINGS = ("centered", "unit", "standard")
SGD_MOMENTUM = 0.5  # the 2018 notebook's


def option(default: Any, flag: str, help: str, parse=None, nargs: str | None = None, shown: str | None = None):
    """A field that ``--flag`` sets; ``parse`` is its argparse type and also checks values given in Python."""
    meta = {"flag": flag, "help": help, "parse": parse, "nargs": nargs, "shown": shown}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TrainConfig:
    """The 2018 schedule by default: 3 epochs at lr 0.1, 0.05, 0.01, SGD with momentum 0.5 made fresh each epoch,
    batches of 1000. ``optimizer="adam"``: torch's Adam, its state kept across epochs (``fresh_optimizer`` False), no
    momentum (None: SGD's alone)."""

    epochs: int = option(3, "--epochs", "epochs per training", positive(int))
    lrs: tuple[float, ...] = option(
        (0.1, 0.05, 0.01), "--lr", "learning rate of each epoch; the last repeats", positive(float), "+", "0.1 0.05 0.01"
    )
    optimizer: str = option("sgd", "--optimizer", "sgd: SGD with --momentum, made fresh each epoch (2018); adam: "
                            "torch's Adam (default betas and eps), its state kept across epochs and in the checkpoints; "
                            "each epoch at its --lr", one_of(*OPTIMIZERS))  # fmt: skip
    # None: 0.5 with sgd (2018); always None with adam, whose moments are its betas (torch's defaults)
    momentum: float | None = option(None, "--momentum", "SGD momentum; sgd only", fraction_below_one, shown="0.5")
    batch_size: int = option(1000, "--batch-size", "training and test batch size", positive(int))
    max_batches: int | None = option(None, "--max-batches", "cap on training and test batches per epoch", positive(int),
                                     shown="no cap")  # fmt: skip
    validation: int = option(0, "--validation", "training samples held out, stratified by class, evaluated after "
                             "every epoch and never trained on (0: none, the 2018 protocol)", nonnegative_int)  # fmt: skip
    weight_decay: float = option(0.0, "--weight-decay", "L2 penalty on every parameter (the optimizer's weight_decay; "
                                 "Adam's coupled one, as torch.optim.Adam)", nonnegative_float)  # fmt: skip
    input_scaling: str = option("centered", "--input-scaling", "static images as pixel / 255 - 0.5 in [-0.5, 0.5] "
                                "(centered, 2018), pixel / 255 in [0, 1] (unit), or standardised over the training "
                                "pixels (standard); not for models that encode intensities themselves, nor event "
                                "data", one_of(*INPUT_SCALINGS))  # fmt: skip
    patience: int | None = option(None, "--patience", "early stopping: end a training once its validation loss has not "
                                  "improved for this many epochs (--epochs the ceiling); needs --validation",
                                  positive(int), shown="none")  # fmt: skip
    precision: str = option("fp32", "--precision", "fp32; bf16: the synaptic matmuls in bfloat16 (autocast), neuron "
                            "state and weights in float32; fp16: float16 matmuls with a gradient scaler, CUDA only",
                            one_of(*PRECISIONS))  # fmt: skip
    # The 2018 notebook made a new optimizer each epoch: SGD's momentum buffer starts at zero again. Otherwise the
    # optimizer's state goes on, and checkpoints carry it. None: the optimizer's own way (sgd fresh, adam kept).
    fresh_optimizer: bool | None = None

    def __post_init__(self):
        object.__setattr__(self, "lrs", tuple(self.lrs))  # a list from JSON or argparse
        for f in dataclasses.fields(self):
            parse, value = f.metadata.get("parse"), getattr(self, f.name)
            for v in (value if isinstance(value, tuple) else (value,)) if parse and value is not None else ():
                try:
                    parse(v if isinstance(v, str) else repr(v))
                except argparse.ArgumentTypeError as exc:
                    raise ValueError(f"{f.metadata['flag']}: {exc}") from None
        if self.optimizer != "sgd" and self.momentum is not None:
            raise ValueError(f"--momentum is SGD's: --optimizer {self.optimizer} has none (Adam's betas are torch's "
                             "defaults, 0.9 and 0.999)")  # fmt: skip
        if self.optimizer == "sgd" and self.momentum is None:
            object.__setattr__(self, "momentum", SGD_MOMENTUM)
        if self.patience is not None and not self.validation:
            raise ValueError("--patience stops on the validation loss: give --validation N too")
        if self.fresh_optimizer is None:
            object.__setattr__(self, "fresh_optimizer", self.optimizer == "sgd")

    def scaled(self, factor: float) -> TrainConfig:
        """The same schedule with every learning rate times ``factor`` (``--lr-scale``)."""
        return self if factor == 1 else dataclasses.replace(self, lrs=tuple(lr * factor for lr in self.lrs))

    def lr(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (counted from 1)."""
        return self.lrs[min(epoch, len(self.lrs)) - 1]

    def make_optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=lr, momentum=self.momentum, weight_decay=self.weight_decay)

    def optimizer_for(self, epoch: int, params, previous: torch.optim.Optimizer | None) -> torch.optim.Optimizer:
        """The optimizer of ``epoch``: a new one when the schedule wants it fresh (or there is none yet), else
        ``previous`` with the epoch's learning rate."""
        lr = self.lr(epoch)
        if previous is None or self.fresh_optimizer:
            return self.make_optimizer(params, lr)
        for group in previous.param_groups:
            group["lr"] = lr
        return previous

    def record(self) -> dict[str, Any]:
        """As run.json keeps it (``"schedule"``)."""
        return {**dataclasses.asdict(self), "lrs": list(self.lrs)}


def _flagged() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(TrainConfig) if "flag" in f.metadata]


def dest(f: dataclasses.Field) -> str:
    """The argparse destination of a field's flag (``--lr`` -> ``lr``): the key of run.json's ``"args"``."""
    return f.metadata["flag"].lstrip("-").replace("-", "_")


def add_options(parser: argparse.ArgumentParser) -> None:
    """One option per flagged field of TrainConfig, its default shown in the help."""
    for f in _flagged():
        m = f.metadata
        shown = m["shown"] or f.default
        kwargs = {"nargs": m["nargs"]} if m["nargs"] else {}
        kwargs |= {"metavar": m["parse"].metavar} if hasattr(m["parse"], "metavar") else {}
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        parser.add_argument(m["flag"], type=m["parse"], default=default, help=f"{m['help']} (default: {shown})", **kwargs)


def from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**{f.name: getattr(args, dest(f)) for f in _flagged()})


def recorded_args(config: TrainConfig) -> dict[str, Any]:
    """The config's options as run.json's ``"args"`` keeps them (lists, not tuples)."""
    return {dest(f): list(v) if isinstance(v := getattr(config, f.name), tuple) else v for f in _flagged()}
