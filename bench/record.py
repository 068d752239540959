"""run.json and ``--resume RUN``: what a run records, which arguments may change, reopening its folder.

run.json keeps the parsed arguments under ``"args"``; ``to_argv`` turns them back into a
command line, so a resumed run goes through the very same parser and checks as a new one.
The training config is recorded from its dataclass (``"schedule"``), each model with its registry
facts (``"models"``), and the ``"trainings"`` list holds each training's key (model, device, seed, lr scale),
status (pending, running, complete, diverged, oom, interrupted, failed), epochs done and segments (one per stretch
between resumes, with the provenance taken where it trained: ``provenance``; bench/provenance.py reads them). Only
bench.run's process writes it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import config as train_config
from bench import events
from bench import provenance as origin
from bench.checkpoint import CheckpointError, Checkpoints
from bench.data import VALIDATION_SEED
from bench.results import lock_run_dir, repair_csv, write_json
from bench.schema import TrainingKey, csv_columns, epoch_lines, header_problem

# Only these options may be given with --resume; repeating any other option with its recorded value is harmless, a
# different value is an error. --threads, --executor, --workers and --scheduler decide the threads and the trainings run
# in parallel, which change the seconds: ``check_segments`` refuses a change of what a training trained with unless
# --new-segment (the resumed stretch is a segment of its own either way).
MAY_CHANGE = ("no_report", "keep_checkpoints", "threads", "executor", "workers", "scheduler", "new_segment", "download")
# Never run again on --resume; "oom" and "failed" are tried again (memory may be free, the plug-in fixed by then).
FINISHED = ("complete", "diverged", "pruned")  # pruned: a tuning run's trial that successive halving ended


class ResumeError(ValueError):
    """A folder that cannot be resumed, or arguments that contradict it; one line, exit status 2."""


TUNING_ARGS = ("tune", "budget_seconds", "sampler", "tune_seed", "pruner", "min_epochs", "reduction_factor", "search_space")


def recorded_args(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed arguments as run.json keeps them: canonical model labels, resolved devices, absolute paths."""
    return {
        "models": [s.label for s in args.specs], "device": list(args.devices), "dataset": args.dataset,
        "data_dir": os.path.abspath(args.data_dir), **train_config.recorded_args(args.config), "seeds": list(args.seeds),
        "lr_scale": list(args.lr_scale), "threads": args.threads, "executor": args.executor, "workers": args.workers,
        "scheduler": args.scheduler,
        "out": os.path.abspath(args.out), "no_report": args.no_report, "keep_checkpoints": args.keep_checkpoints,
        "no_metrics": args.no_metrics,
        **({k: getattr(args, k) for k in TUNING_ARGS} if getattr(args, "tune", None) is not None or
           getattr(args, "budget_seconds", None) is not None else {}),  # a tuning run's (bench/tune.py)
    }  # fmt: skip


def new_record(args: argparse.Namespace, run_id: str) -> dict[str, Any]:
    """The run.json of a new run: provenance, every hyperparameter, the arguments, each training pending."""
    return {
        "run_id": run_id,
        "command": command_line(),
        "status": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "finished": None,
        "dataset": args.dataset,
        "devices": args.devices,
        "seeds": args.seeds,
        "schedule": args.config.record(),
        "models": {s.label: s.record() for s in args.specs},
        "environment": environment(),
        "args": recorded_args(args),
        "validation_seed": VALIDATION_SEED,  # the held-out split (--validation) is drawn from it alone
        **({"event_data": events.record(args.dataset, args.data_dir)} if events.is_event(args.dataset) else {}),
        # a tuning run enters its trainings as it asks for them (bench/tune.py): trials, then the picks' seeds
        "trainings": [] if "tune" in recorded_args(args) else
                     [{**TrainingKey(s.label, d, seed, scale).record(), "status": "pending", "epochs_done": 0}
                      for d in args.devices for s in args.specs for scale in args.lr_scale for seed in args.seeds],
    }  # fmt: skip


def to_argv(recorded: dict[str, Any]) -> list[str]:
    """``{"epochs": 3, "lr": [0.1], "no_report": True}`` -> ``["--epochs", "3", "--lr", "0.1", "--no-report"]``."""
    argv: list[str] = []
    for key, value in recorded.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag] if value else []
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def check_unchanged(recorded: dict[str, Any], wanted: dict[str, Any], run_dir: str | Path) -> None:
    """ResumeError naming the first option whose value differs from the recorded one."""
    for key, value in recorded.items():
        if key not in MAY_CHANGE and wanted.get(key) != value:
            flags = ["--" + k.replace("_", "-") for k in MAY_CHANGE]
            flag, allowed = "--" + key.replace("_", "-"), ", ".join(flags[:-1]) + " and " + flags[-1]
            raise ResumeError(
                f"{flag} {_show(wanted.get(key))} contradicts the recorded {flag} {_show(value)} of {run_dir}; "
                f"with --resume only {allowed} may be given"
            )


def _show(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The run.json of a folder that can be resumed; ResumeError otherwise. Changes nothing on disk."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResumeError(f"--resume {run_dir}: no such folder")
    try:
        meta = json.loads((run_dir / "run.json").read_text())
    except FileNotFoundError:
        raise ResumeError(f"--resume {run_dir}: not a run folder (no run.json)") from None
    except (OSError, ValueError) as exc:
        raise ResumeError(f"--resume {run_dir}: cannot read run.json ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("args"), dict) or not isinstance(meta.get("trainings"), list):
        raise ResumeError(f"--resume {run_dir}: run.json has no recorded arguments or trainings; it cannot be resumed")
    csv_path = run_dir / "epochs.csv"
    columns = csv_columns(csv_path) if csv_path.exists() else None  # None: no file, or a cut-off header (repaired later)
    if columns is not None and header_problem(columns):
        raise ResumeError(f"--resume {run_dir}: epochs.csv {header_problem(columns)}")
    return meta


def take(run_dir: Path) -> None:
    """Lock the run folder for this process; ResumeError when another process holds it."""
    try:
        lock_run_dir(run_dir)
    except BlockingIOError:
        raise ResumeError(f"--resume {run_dir}: another bench.run process is writing this run") from None


@dataclass
class Rows:
    """What ``check_rows`` found in epochs.csv that ``open_run`` repairs."""

    restored: dict[TrainingKey, int] = field(default_factory=dict)  # a training's missing last row: its checkpoint's epoch


def check_rows(run_dir: Path, meta: dict[str, Any], epochs: int) -> Rows:
    """Check epochs.csv against run.json before --resume changes anything; ResumeError (one line) for what cannot go on.

    Every row must be of this run (its run_id), of a training run.json lists, and there once. A finished training
    (complete, diverged) must have the rows of epochs 1 to its ``epochs_done`` (a complete one: all ``epochs``), no
    more and no fewer. An unfinished one goes on from its checkpoint of epoch ``epochs_done`` (or one more: a crash
    between its row and run.json) and must have the rows up to it; the last may be missing (a crash between the
    checkpoint and its row, or a cut-off last line): its checkpoint holds it, and it is restored. Without a checkpoint
    it is trained again from epoch 1, its rows removed first (bench.run's Recorder): one training, one trajectory."""
    path = run_dir / "epochs.csv"
    try:
        lines, cut = epoch_lines(path) if path.exists() else ([], "")
    except ValueError as exc:
        raise ResumeError(f"--resume {run_dir}: {exc}; mend that line to resume the run") from None
    except OSError as exc:
        raise ResumeError(f"--resume {run_dir}: cannot read {path} ({exc.strerror})") from None
    run_id, trainings = meta.get("run_id"), {TrainingKey.of(t): t for t in meta["trainings"]}
    found: dict[TrainingKey, dict[int, int]] = {key: {} for key in trainings}  # epoch -> line
    for line, row in lines:
        key, epoch, at = TrainingKey.of(row), row["epoch"], f"--resume {run_dir}: epochs.csv, line {line} is"
        if row["run_id"] != run_id:
            raise ResumeError(f"{at} a row of run {row['run_id']}, not of this run ({run_id}, run.json): the file is "
                              "another run's; put back this run's own epochs.csv, or start a new run")  # fmt: skip
        if key not in found:
            raise ResumeError(f"{at} a row of {key.describe()}, a training run.json does not list; remove that line to "
                              "resume the run")  # fmt: skip
        if epoch in found[key]:
            raise ResumeError(f"{at} a second row of epoch {epoch} of {key.describe()} (line {found[key][epoch]} is the "
                              "first); remove the one that does not belong to resume the run")  # fmt: skip
        found[key][epoch] = line
    rows, cut_off = Rows(), " (its last line is cut off mid-write)" if cut else ""
    checkpoints = Checkpoints(run_dir / "checkpoints")
    for key, training in trainings.items():
        have, done, status = set(found[key]), int(training.get("epochs_done") or 0), training.get("status")
        recorded = f"run.json records {key.describe()} {status} after {done} epoch(s)"
        if status in FINISHED:
            short = status == "complete" and done != epochs and training.get("stopped_early") != done  # early stopping
            wrong = _rows_wrong(have, done) or (f"the run has {epochs} epochs" if short else "")
            if wrong:
                raise ResumeError(f"--resume {run_dir}: {recorded}, but {wrong}{cut_off}; put back a whole copy of this "
                                  "run's epochs.csv, or start a new run")  # fmt: skip
            continue
        try:
            held = checkpoints.peek(key)
        except CheckpointError as exc:
            raise ResumeError(f"{exc}; delete it to train that model again from epoch 1") from None
        if held is None:
            continue  # trained again from epoch 1, its rows removed first
        epoch, row = held
        if row is not None and row.get("run_id") != run_id:
            wrong = f"its checkpoint holds epoch {epoch} of run {row.get('run_id')}"
        elif not done <= epoch <= done + 1:
            wrong = f"its checkpoint holds epoch {epoch}"
        else:  # its rows up to the checkpoint's epoch, that one's maybe missing: the checkpoint holds it
            wrong = _rows_wrong(have, epoch if epoch in have or row is None else epoch - 1)
            wrong = wrong and f"its checkpoint holds epoch {epoch}, but {wrong}"
            if not wrong and epoch not in have:
                rows.restored[key] = epoch
        if wrong:
            raise ResumeError(f"--resume {run_dir}: {recorded} and {wrong}{cut_off}; delete its checkpoint "
                              f"{checkpoints.path(key)} to train it again from epoch 1 (its rows are moved to "
                              "epochs-set-aside.csv then), or put back a whole copy of this run's epochs.csv")  # fmt: skip
    return rows


def _rows_wrong(have: set[int], last: int) -> str:
    """Why a training's rows are not exactly those of epochs 1 to ``last`` ("" when they are)."""
    missing, beyond = sorted(set(range(1, last + 1)) - have), sorted(have - set(range(1, last + 1)))
    if not have and missing:
        return "epochs.csv has no row of it"
    wrong = [f"lacks the row(s) of epoch(s) {_epochs(missing)}"] if missing else []
    wrong += [f"has the row(s) of epoch(s) {_epochs(beyond)}, beyond epoch {last}"] if beyond else []
    return "epochs.csv " + " and ".join(wrong) if wrong else ""


def _epochs(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5"."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans)


def open_run(run_dir: Path, meta: dict[str, Any], rows: Rows) -> None:
    """Make a taken run folder whose rows ``check_rows`` passed ready to append: remove a cut-off last line of the CSV,
    say which rows the checkpoints restore, note the resume in run.json."""
    path = run_dir / "epochs.csv"
    cut = repair_csv(path) if path.exists() else b""
    if cut:
        print(f"bench.run: warning: {path}: removed a partial last line ({len(cut)} bytes, cut off mid-write)", file=sys.stderr)
    for key, epoch in rows.restored.items():  # bench.train yields it (Epoch restored=True) before its next epoch
        print(f"bench.run: warning: {path} lacks the row of epoch {epoch} of {key.describe()}: it is restored from its "
              "checkpoint", file=sys.stderr)  # fmt: skip
    meta["status"] = "running"
    meta.setdefault("resumes", []).append({"command": command_line(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    write_json(run_dir / "run.json", meta)


def check_segments(run_dir: Path, meta: dict[str, Any], expected: Callable[[str], dict[str, Any]], new_segment: bool) -> None:
    """Before --resume changes anything: ResumeError (one line) when an unfinished training would go on with another
    hardware, other torch threads, other trainings in parallel, another kernel backend or mask generator than its last
    segment (a run from before segments: than its run.json's arguments and environment say), unless ``new_segment``.
    ``expected(device)``: the provenance a training on ``device`` gets now (its keys that are not known: absent)."""
    changed: list[tuple[str, str, str]] = []  # training, what names its last stretch, what changes
    for training in meta["trainings"]:
        if training.get("status") in FINISHED or not int(training.get("epochs_done") or 0):
            continue  # nothing to go on from: it is trained from epoch 1, a trajectory of its own
        before, name = origin.last(meta, training)
        if words := origin.said(before, expected(str(training["device"]))):
            changed.append((TrainingKey.of(training).describe(), name, words))
    if changed and not new_segment:
        training, name, words = changed[0]
        more = f", and {len(changed) - 1} more training(s)" if len(changed) > 1 else ""
        raise ResumeError(f"--resume {run_dir}: {training} would go on with {words} against its {name}{more}, which "
                          "changes what its numbers mean; resume it as it ran, or give --new-segment to go on as a new "
                          "segment (the report keeps its seconds apart)")  # fmt: skip


def resume_command(run_dir: str | Path) -> str:
    return f"{Path(sys.executable).name} -m bench.run --resume {shlex.quote(str(run_dir))}"


def environment() -> dict[str, Any]:
    """Software versions and hardware, for run.json and the report's provenance section."""
    import torch
    import torchvision

    from bench.devices import available_devices, cpu_model, device_name
    from models.masks import generator_name

    return {
        "python": platform.python_version(),
        **versions(),
        "torchvision": torchvision.__version__,
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_mask_generator": generator_name("cpu"),
        "devices": {d: device_name(d) for d in available_devices()},
        "cuda": torch.version.cuda,
    }


def versions() -> dict[str, Any]:
    """torch's and snnbench's versions and the git commit of this code (``-dirty``: with changes not committed)."""
    import torch

    import bench

    return {"torch": torch.__version__, "snnbench": bench.__version__, "git_commit": _git_commit()}


def provenance(device: str, precision: str, executor: str, parallel: int | None, threads: int | None = None) -> dict[str, Any]:
    """What a training on ``device`` runs with, taken in the process that trains it (bench.train, after its threads are
    set): host, hardware, torch threads (``threads``: what it will have, where that is not this process's now), each
    kernel family's backend and the mask generator (models.dispatch.provenance), precision, versions, the executor
    and the trainings it runs at once on that device (``parallel``; None: unknown), which only the driver knows, and
    the allocator's settings (bench.timing.steady_allocator)."""
    import torch

    from bench.devices import device_name
    from bench.timing import steady_allocator
    from models import dispatch

    return {
        "host": socket.gethostname(), "hardware": device_name(device),
        "torch_threads": threads if threads is not None else torch.get_num_threads(), **dispatch.provenance(device),
        "precision": precision, **versions(), "executor": executor, "parallel": parallel,
        "allocator": steady_allocator(),
    }  # fmt: skip


@functools.cache  # this process's code: what it imported, once
def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()  # fmt: skip
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def command_line() -> str:
    return " ".join([Path(sys.executable).name, "-m", "bench.run", *sys.argv[1:]])
