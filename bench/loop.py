"""The one training loop every model shares: ``train_epoch``, ``evaluate`` and the ``epochs`` generator.

The loss, the optimizer and the timing live here, never in a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bench.data import Dataset, Split, batches, num_batches
from bench.metrics import Counter, TimedCounter
from bench.timing import Stopwatch, synchronizer


@dataclass
class Schedule:
    """The 2018 schedule by default: 3 epochs, lr 0.1, 0.05, 0.01, SGD momentum 0.5, batch 1000."""

    epochs: int = 3
    lrs: tuple[float, ...] = (0.1, 0.05, 0.01)  # the last one repeats for later epochs
    momentum: float = 0.5
    batch_size: int = 1000
    max_batches: int | None = None  # cap on training and test batches per epoch (smoke runs)

    def lr(self, epoch: int) -> float:
        return self.lrs[min(epoch, len(self.lrs)) - 1]


class Diverged(ArithmeticError):
    """A NaN or infinite loss: that training cannot go on."""


@dataclass
class EpochStats:
    loss: float  # mean per sample
    accuracy: float
    samples: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)  # bench.metrics.COLUMNS of an evaluation, when counted


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor):
    """One optimizer step on the batch mean of the cross-entropy. Returns (summed loss, logits), detached."""
    logits = model(x)
    loss = F.cross_entropy(logits, y, reduction="sum")
    optimizer.zero_grad(set_to_none=True)
    (loss / len(y)).backward()
    optimizer.step()
    return loss.detach(), logits.detach()


def inference_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, counter: Counter | None = None):
    """Forward only. Returns (summed loss, logits). With a ``counter``, the model's ``activity`` pass (the same
    logits and random draws) feeds it the batch's firing and synaptic operations."""
    if counter is None:
        logits = model(x)
    else:
        activity = model.activity(x)
        counter.add(activity)
        logits = activity.logits
    return F.cross_entropy(logits, y, reduction="sum"), logits


def _sums(pairs: Iterator[tuple[torch.Tensor, torch.Tensor]], step: Callable):
    """Sum of losses and of correct predictions, kept on the device: no sync per batch."""
    loss_sum = correct = None
    samples = 0
    for x, y in pairs:
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
) -> EpochStats:
    """One pass over shuffled ``split``; the clock runs from the first batch to the last step, device synced."""
    model.train()
    pairs = _progress(batches(split, batch_size, generator, max_batches), num_batches(len(split), batch_size, max_batches), desc)
    with Stopwatch(synchronizer(split.labels.device)) as sw:
        loss_sum, correct, n = _sums(pairs, lambda x, y: training_step(model, optimizer, x, y))
    return EpochStats(loss_sum / n, correct / n, n, sw.seconds)


@torch.no_grad()
def evaluate(
    model: nn.Module, split: Split, batch_size: int, max_batches: int | None = None, desc: str = "test", metrics: bool = False
) -> EpochStats:
    """Mean loss per sample and accuracy over ``split`` in order; with ``metrics`` (and a model that has
    ``activity``), the activity and cost columns of bench.metrics too. Their counting is in ``seconds``."""
    model.eval()
    pairs = _progress(batches(split, batch_size, None, max_batches), num_batches(len(split), batch_size, max_batches), desc)
    counter = TimedCounter(split.labels.device) if metrics and hasattr(model, "activity") else None
    with Stopwatch(synchronizer(split.labels.device)) as sw:
        loss_sum, correct, n = _sums(pairs, lambda x, y: inference_step(model, x, y, counter))
        values = counter.values() if counter else {}
    return EpochStats(loss_sum / n, correct / n, n, sw.seconds, values)


def seed_everything(seed: int, device: str) -> torch.Generator:
    """Seed the global generators (init, masks) and return the CPU generator that shuffles the data."""
    torch.manual_seed(seed)  # also seeds every CUDA device
    if device == "mps":
        torch.mps.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def epochs(
    model: nn.Module,
    data: Dataset,
    shuffle: torch.Generator,
    schedule: Schedule,
    first: int = 1,
    desc: str = "",
    metrics: bool = True,
) -> Iterator[tuple[int, float, EpochStats, EpochStats]]:
    """Train ``model`` from epoch ``first`` on; yield ``(epoch, lr, train_stats, test_stats)`` after each.

    ``metrics``: count activity and synaptic operations during each evaluation (bench.metrics).
    Between two yields the only state is the model, ``shuffle`` and the global RNGs: a caller
    that saves them at a yield can continue later from ``first = epoch + 1`` and get the same numbers.
    Raises Diverged when an epoch's mean loss is NaN or infinite (checked once per epoch, no extra sync).
    """
    for epoch in range(first, schedule.epochs + 1):
        lr = schedule.lr(epoch)
        # a fresh optimizer each epoch, as in 2018: the momentum buffer starts at zero again
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=schedule.momentum)
        tag = f"{desc} epoch {epoch}/{schedule.epochs}"
        train_stats = train_epoch(model, data.train, optimizer, schedule.batch_size, shuffle, schedule.max_batches, tag)
        if not math.isfinite(train_stats.loss):
            raise Diverged(f"train loss {train_stats.loss} in epoch {epoch} (lr {lr})")
        test_stats = evaluate(model, data.test, schedule.batch_size, schedule.max_batches, tag + " test", metrics)
        if not math.isfinite(test_stats.loss):
            raise Diverged(f"test loss {test_stats.loss} after epoch {epoch} (lr {lr})")
        yield epoch, lr, train_stats, test_stats
