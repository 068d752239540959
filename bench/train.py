"""One training as a pure function: ``train(task, checkpoint_dir)`` yields what happened, and writes
nothing but its own checkpoint.

A ``Task`` (frozen, picklable) says everything a training depends on. ``train`` loads the data,
seeds the generators, restores the task's checkpoint if there is one, and then yields events:

- ``Started``: where it begins (0 epochs done, or those of the checkpoint), and its provenance, taken here, in the
  process that trains it (bench.record.provenance: host, hardware, torch threads, kernel backends, ...);
- ``Epoch``: after every epoch, once its checkpoint (weights, optimizer, RNGs, row) is on disk;
  first, when restoring, the checkpoint's own epoch again (``restored``: its row may be missing
  from the CSV if a crash came between the two);
- ``Analysis``: for a spiking model with ``trace``, after the last epoch, its neuron activity and
  gradient window (bench/analysis.py), unless ``analysed`` says they were recorded already;
- ``Finished``: the training ran to its end.

It raises ``Diverged`` (a NaN or infinite loss) and ``torch.cuda.OutOfMemoryError``; when ``stop()``
turns true it abandons the epoch at the next batch and returns without ``Finished``. Whoever calls
it (bench/run.py) is the only writer of epochs.csv and run.json.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import analysis, energy, record, timing
from bench import data as datasets
from bench import precision as amp
from bench.checkpoint import Checkpoints
from bench.config import TrainConfig
from bench.loop import Diverged, EpochStats, Stopped, evaluate, seed_everything, train_epoch
from bench.schema import TrainingKey
from models import ModelSpec


@dataclass(frozen=True)
class Task:
    """One training: everything its numbers depend on."""

    run_id: str
    dataset: str
    data_dir: str
    model: ModelSpec
    device: str
    seed: int
    config: TrainConfig = field(default_factory=TrainConfig)
    metrics: bool = True  # count activity and operations in every evaluation; analyse a spiking model at the end
    lr_scale: float = 1.0  # multiplies every learning rate of config's schedule (--lr-scale)
    threads: int | None = None  # torch threads while it trains (--threads); None: as the process has them
    # where it trains, as the driver knows it (run.json's segments; none of it changes what is trained): the executor, how many
    # trainings it runs at once on this device, this one included (None: unknown), and the number of this stretch of the
    # training (its rows' ``segment``: one more than run.json records for it; bench.provenance.next_segment)
    executor: str = "local"
    parallel: int | None = 1
    segment: int = 0
    trial: int | None = None  # a tuning run's trial (bench/tune.py): its key and rows carry the number
    # stop after this epoch without finishing (a tuning run's rung: bench/tune.py); the checkpoint stays, and a later
    # task of the same key goes on from it. None: train to config.epochs
    until: int | None = None
    test: bool = True  # score each epoch on the test set; False for a tuning run's trials, which the test set never sees

    @property
    def key(self) -> TrainingKey:
        return TrainingKey(self.model.label, self.device, self.seed, self.lr_scale, self.trial)


@dataclass(frozen=True)
class Started:
    key: TrainingKey
    epochs_done: int  # restored from the checkpoint; 0 for a training from scratch
    provenance: dict[str, Any] = field(default_factory=dict)  # bench.record.provenance, in the training's own process


@dataclass(frozen=True)
class Epoch:
    key: TrainingKey
    epoch: int
    row: dict[str, Any]  # the epochs.csv row, by column name (bench.schema)
    restored: bool = False  # the checkpoint's epoch, trained before this call


@dataclass(frozen=True)
class Analysis:
    key: TrainingKey
    epoch: int
    activity: dict[str, np.ndarray]  # one test digit's neuron activity (analysis.neuron_activity)
    window: list[dict[str, Any]]  # the gradient window's rows (analysis.window), without the training's labels


@dataclass(frozen=True)
class Finished:
    key: TrainingKey
    stopped_early: int | None = None  # the epoch after which early stopping (--patience) ended it; None: it ran them all
    detail: str = ""  # why it stopped early


Event = Started | Epoch | Analysis | Finished
UNTESTED = EpochStats(math.nan, math.nan, 0, 0.0)  # a trial's test pass, not made: its row's test columns are empty


def train(
    task: Task, checkpoint_dir: str | Path, analysed: bool = False, stop: Callable[[], bool] | None = None
) -> Iterator[Event]:
    """Train ``task`` from scratch or from its checkpoint in ``checkpoint_dir``; see the module's doc."""
    key, config, info = task.key, task.config.scaled(task.lr_scale), task.model.info
    timing.steady_allocator()  # its epochs' times independent of what the process ran before (bench/timing.py)
    data = datasets.load(task.dataset, task.data_dir, task.device)
    training, held_out = datasets.training_splits(task.dataset, task.data_dir, task.device, config.validation)
    test = data.test
    if config.input_scaling != "centered":  # (preflight refuses it for event data and models that encode intensities)
        scale, shift = datasets.scaling(config.input_scaling, training)
        training, held_out, test = (datasets.scaled(s, scale, shift) for s in (training, held_out, test))
    checkpoints = Checkpoints(checkpoint_dir)
    shuffle = seed_everything(task.seed, task.device)
    model = optimizer = None
    try:
        model = task.model.build().to(task.device)
        if hasattr(model, "calibrate"):  # what a model measures once per machine and kind of input, before the clock runs
            model.calibrate(training.images[: config.batch_size])
        done, row, optimizer_state = checkpoints.restore(key, model, shuffle)
        meter = energy.counter(task.device, task.parallel)  # the device's energy counter, or why none (bench/energy.py)
        joules = meter.read if meter.available else None
        yield Started(key, done, {**record.provenance(task.device, config.precision, task.executor, task.parallel),
                                  "energy_counter": meter.description})  # fmt: skip
        if row is not None:
            yield Epoch(key, done, row, restored=True)
        if optimizer_state is not None and not config.fresh_optimizer:
            optimizer = config.optimizer_for(done + 1, model.parameters(), None)
            optimizer.load_state_dict(optimizer_state)
        scaler, precision = amp.scaler(config.precision), config.precision
        best = (math.inf, 0)  # (the best validation loss, its epoch): early stopping's, carried in the checkpoint
        if done and config.patience:
            best = checkpoints.extra(key).get("best", best)
        stopped = None
        for epoch in range(done + 1, config.epochs + 1):
            if task.until is not None and epoch > task.until:
                return  # paused at its rung: bench.executors.guarded says so
            optimizer = config.optimizer_for(epoch, model.parameters(), optimizer)
            tag = f"{key.describe()} epoch {epoch}/{config.epochs}"
            with amp.PeakMemory(task.device) as peak:  # the epoch's training and test passes
                train_stats = train_epoch(model, training, optimizer, config.batch_size, shuffle, config.max_batches, tag,
                                          stop, precision, scaler, joules)  # fmt: skip
                if not math.isfinite(train_stats.loss):
                    raise Diverged(f"train loss {train_stats.loss} in epoch {epoch} (lr {config.lr(epoch)})")
                test_stats = (evaluate(model, test, config.batch_size, config.max_batches, tag + " test",
                                      task.metrics, info.layers, stop, precision, info.kind == "spiking", joules)
                              if task.test else UNTESTED)  # fmt: skip
            if task.test and not math.isfinite(test_stats.loss):
                raise Diverged(f"test loss {test_stats.loss} after epoch {epoch} (lr {config.lr(epoch)})")
            row = _row(task, epoch, config.lr(epoch), train_stats, test_stats)
            row["peak_memory_mib"] = peak.mib
            if held_out is not None:  # never trained on; no metrics, and not in eval_seconds (the test pass's time)
                val = evaluate(model, held_out, config.batch_size, config.max_batches, tag + " validation", stop=stop,
                               precision=precision)  # fmt: skip
                row.update(val_loss=val.loss, val_accuracy=val.accuracy)
                if val.loss < best[0]:
                    best = (val.loss, epoch)
            checkpoints.save(key, epoch, row, model, optimizer, shuffle, {"best": best} if config.patience else None)
            yield Epoch(key, epoch, row)  # (the checkpoint first, the row after: see bench/run.py)
            done = epoch
            if config.patience and epoch - best[1] >= config.patience and epoch < config.epochs:
                stopped = epoch
                break
        if task.metrics and task.test and analysis.supports(model) and not analysed:
            if stop is not None and stop():
                return
            arrays = analysis.neuron_activity(model, test, data.info.input_shape)
            window = analysis.window(model, test, info.delay) if analysis.has_window(model) else []
            yield Analysis(key, done, arrays, window)
        why = (
            f"stopped early after epoch {stopped}: validation loss {best[0]:.4f} at epoch {best[1]}, not bettered in "
            f"{config.patience} epoch(s)"
            if stopped
            else ""
        )
        yield Finished(key, stopped, why)
    except Stopped:
        return
    finally:
        del model, optimizer  # so that after an out-of-memory error the next training gets the memory back
        if task.device.startswith("cuda"):
            torch.cuda.empty_cache()


def _row(task: Task, epoch: int, lr: float, tr, te) -> dict[str, Any]:
    return {
        "run_id": task.run_id, "dataset": task.dataset, "model": task.model.label, "device": task.device,
        "seed": task.seed, "optimizer": task.config.optimizer,
        "precision": task.config.precision, "segment": task.segment, "lr_scale": task.lr_scale, "epoch": epoch, "lr": lr,
        "train_loss": tr.loss, "train_accuracy": tr.accuracy, "test_loss": te.loss, "test_accuracy": te.accuracy,
        "train_seconds": tr.seconds, "eval_seconds": te.seconds, "train_samples_per_second": tr.samples / tr.seconds,
        "train_joules": tr.joules, "eval_joules": te.joules,
        "train_samples": tr.samples, "test_samples": te.samples, **te.metrics,
        **({"trial": task.trial} if task.trial is not None else {}),
    }  # fmt: skip
