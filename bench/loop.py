"""The one training loop every model shares: ``training_step``, ``train_epoch`` and ``evaluate``.

The loss and the timing live here, never in a model; bench/train.py strings the epochs together.
Both passes take ``stop``, a function checked before every batch: when it says so they raise
``Stopped`` and the epoch is abandoned (a training that resumes redoes it from its checkpoint).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bench.data import Split, batches, num_batches
from bench.metrics import Counter, TimedCounter
from bench.precision import autocast
from bench.schema import DEFAULT_LAYERS
from bench.timing import Stopwatch, synchronizer


class Diverged(ArithmeticError):
    """A NaN or infinite loss: that training cannot go on."""


class Stopped(Exception):
    """``stop()`` said so before a batch: the epoch is abandoned."""


StopCheck = Callable[[], bool] | None


@dataclass
class EpochStats:
    loss: float  # mean per sample
    accuracy: float
    samples: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)  # bench.metrics.COLUMNS of an evaluation, when counted
    joules: float = math.nan  # the device's energy counter over ``seconds`` (bench.energy; NaN: none read)


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                  precision: str = "fp32", scaler=None):  # fmt: skip
    """One optimizer step on the batch mean of the cross-entropy, the forward pass at ``precision`` (bench/precision.py;
    fp16 with its gradient ``scaler``). Returns (summed loss, logits), detached; the loss in float32."""
    with autocast(precision, x.device.type):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y, reduction="sum")
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        (loss / len(y)).backward()
        optimizer.step()
    else:
        scaler.scale(loss / len(y)).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss.detach(), logits.detach()


def inference_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, counter: Counter | None = None,
                   precision: str = "fp32"):  # fmt: skip
    """Forward only, at ``precision``. Returns (summed loss, logits). With a ``counter``, the model's ``activity`` pass
    (the same logits and random draws) feeds it the batch's firing and synaptic operations."""
    with autocast(precision, x.device.type):
        if counter is None:
            logits = model(x)
        else:
            activity = model.activity(x)
            counter.add(activity)
            logits = activity.logits
    return F.cross_entropy(logits.float(), y, reduction="sum"), logits


def _sums(pairs: Iterator[tuple[torch.Tensor, torch.Tensor]], step: Callable, stop: StopCheck = None):
    """Sum of losses and of correct predictions, kept on the device: no sync per batch."""
    loss_sum = correct = None
    samples = 0
    for x, y in pairs:
        if stop is not None and stop():
            raise Stopped
        loss, logits = step(x, y)
        batch_correct = (logits.argmax(1) == y).sum()
        loss_sum = loss if loss_sum is None else loss_sum + loss
        correct = batch_correct if correct is None else correct + batch_correct
        samples += len(y)
    return (loss_sum.item(), correct.item(), samples) if samples else (float("nan"), 0, 0)


def _progress(pairs, total: int, desc: str):
    return tqdm(pairs, total=total, desc=desc, leave=False, disable=None, unit="batch")


def train_epoch(
    model: nn.Module,
    split: Split,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator,
    max_batches: int | None = None,
    desc: str = "train",
    stop: StopCheck = None,
    precision: str = "fp32",
    scaler=None,
    energy: Callable[[], float] | None = None,
) -> EpochStats:
    """One pass over shuffled ``split``; the clock (and ``energy``, the device's energy counter) runs from the first
    batch to the last step, device synced."""
    model.train()
    pairs = _progress(batches(split, batch_size, generator, max_batches), num_batches(len(split), batch_size, max_batches), desc)
    with Stopwatch(synchronizer(split.labels.device), energy) as sw:
        loss_sum, correct, n = _sums(pairs, lambda x, y: training_step(model, optimizer, x, y, precision, scaler), stop)
    return EpochStats(loss_sum / n, correct / n, n, sw.seconds, joules=sw.joules)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: Split,
    batch_size: int,
    max_batches: int | None = None,
    desc: str = "test",
    metrics: bool = False,
    layers: tuple[str, ...] = DEFAULT_LAYERS,
    stop: StopCheck = None,
    precision: str = "fp32",
    stateful: bool = False,
    energy: Callable[[], float] | None = None,
) -> EpochStats:
    """Mean loss per sample and accuracy over ``split`` in order; with ``metrics`` (and a model that has
    ``activity``), the activity and cost columns of bench.metrics for the model's ``layers`` too (``stateful``: its
    neurons keep a membrane potential, for the memory accesses). Their counting is in ``seconds`` (and in the joules
    of ``energy``, the device's energy counter, read over the same span)."""
    model.eval()
    pairs = _progress(batches(split, batch_size, None, max_batches), num_batches(len(split), batch_size, max_batches), desc)
    counter = TimedCounter(split.labels.device, layers, stateful) if metrics and hasattr(model, "activity") else None
    with Stopwatch(synchronizer(split.labels.device), energy) as sw:
        loss_sum, correct, n = _sums(pairs, lambda x, y: inference_step(model, x, y, counter, precision), stop)
        values = counter.values() if counter else {}
    return EpochStats(loss_sum / n, correct / n, n, sw.seconds, values, sw.joules)


def seed_everything(seed: int, device: str) -> torch.Generator:
    """Seed the global generators (init, masks) and return the CPU generator that shuffles the data."""
    torch.manual_seed(seed)  # also seeds every CUDA device
    if device == "mps":
        torch.mps.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
