"""Where trainings run: one interface for the driver, whatever runs them.

An executor takes the run's pending tasks and yields, as they happen, the events of
``bench.train.train`` and one ``Ended`` per training (its final status). The driver
(bench/run.py) records them; it never sees an exception of a training. ``run_local`` runs the
tasks one after the other in this process; ``bench/dask_executor.py`` runs each as a task on a
Dask cluster and yields the same events.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.checkpoint import CheckpointError
from bench.cli import one_line
from bench.loop import Diverged
from bench.schema import TrainingKey
from bench.train import Epoch, Event, Finished, Task, train


@dataclass(frozen=True)
class Ended:
    """A training's last word: ``complete``, ``interrupted``, ``diverged``, ``oom``, ``failed``, or ``paused`` (at the
    epoch its task's ``until`` set: a tuning run's rung)."""

    key: TrainingKey
    status: str
    detail: str = ""  # one line for run.json
    traceback: str = ""  # for ``failed``: what goes to the run's errors.log
    stopped_early: int | None = None  # for ``complete``: the epoch after which early stopping ended it


def guarded(
    task: Task, checkpoint_dir: str | Path, analysed: bool = False, stop: Callable[[], bool] | None = None
) -> Iterator[Event | Ended]:
    """``train``'s events, then its Ended: what went wrong becomes a status, never an exception (but a checkpoint
    that cannot be read, which stops the run: CheckpointError)."""
    key, status, finished, last = task.key, "interrupted", None, 0  # unless it reaches its end or fails
    threads = torch.get_num_threads()
    if task.threads:
        torch.set_num_threads(task.threads)
    try:
        for event in train(task, checkpoint_dir, analysed, stop):
            yield event
            if isinstance(event, Finished):
                status, finished = "complete", event
            elif isinstance(event, Epoch):
                last = max(last, event.epoch)
    except Diverged as exc:
        yield Ended(key, "diverged", str(exc))
        return
    except torch.cuda.OutOfMemoryError:
        yield Ended(key, "oom", f"out of memory on {task.device} with --batch-size {task.config.batch_size}")
        return
    except CheckpointError:
        raise
    except Exception as exc:  # a bug, most likely in a plug-in model: that training fails, the others go on
        yield Ended(key, "failed", one_line(exc), traceback.format_exc())
        return
    finally:
        torch.set_num_threads(threads)
    if finished is None and task.until is not None and last >= task.until:
        status = "paused"
    if finished is not None and finished.stopped_early:
        yield Ended(key, status, finished.detail, stopped_early=finished.stopped_early)
    else:
        yield Ended(key, status)


def run_local(
    tasks: list[Task], checkpoint_dir: str | Path, analysed: dict[TrainingKey, bool], stop: Callable[[], bool]
) -> Iterator[Event | Ended]:
    """The tasks one after the other, in this process; none starts once ``stop()`` is true."""
    for task in tasks:
        if stop():
            return
        yield from guarded(task, checkpoint_dir, analysed.get(task.key, False), stop)
