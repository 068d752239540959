"""run.json and ``--resume RUN``: what a run records, which arguments may change, reopening its folder.

run.json keeps the parsed arguments under ``"args"``; ``to_argv`` turns them back into a
command line, so a resumed run goes through the very same parser and checks as a new one.
The training config is recorded from its dataclass (``"schedule"``), each model with its registry
facts (``"models"``), and the ``"trainings"`` list holds each training's key (model, device, seed),
status (pending, running, complete, diverged, oom, interrupted) and epochs done. Only bench.run's
process writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import config as train_config
from bench.data import VALIDATION_SEED
from bench.results import lock_run_dir, repair_csv, write_json
from bench.schema import TrainingKey, csv_columns, header_problem

# Only options that change no number in the results may be given with --resume; repeating
# any other option with its recorded value is harmless, a different value is an error.
MAY_CHANGE = ("no_report", "keep_checkpoints", "executor", "workers", "scheduler")


class ResumeError(ValueError):
    """A folder that cannot be resumed, or arguments that contradict it; one line, exit status 2."""


def recorded_args(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed arguments as run.json keeps them: canonical model labels, resolved devices, absolute paths."""
    return {
        "models": [s.label for s in args.specs], "device": list(args.devices), "dataset": args.dataset,
        "data_dir": os.path.abspath(args.data_dir), **train_config.recorded_args(args.config), "seeds": list(args.seeds),
        "lr_scale": list(args.lr_scale), "threads": args.threads, "executor": args.executor, "workers": args.workers,
        "scheduler": args.scheduler,
        "out": os.path.abspath(args.out), "no_report": args.no_report, "keep_checkpoints": args.keep_checkpoints,
        "no_metrics": args.no_metrics,
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
        "trainings": [{**TrainingKey(s.label, d, seed, scale).record(), "status": "pending", "epochs_done": 0}
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


def open_run(run_dir: Path, meta: dict[str, Any]) -> None:
    """Make a taken run folder ready to append: repair the CSV, note the resume in run.json."""
    cut = repair_csv(run_dir / "epochs.csv") if (run_dir / "epochs.csv").exists() else b""
    if cut:
        print(f"bench.run: warning: {run_dir / 'epochs.csv'}: removed a partial last line ({len(cut)} bytes, "
              "cut off mid-write); its epoch is redone or restored from its checkpoint", file=sys.stderr)  # fmt: skip
    meta["status"] = "running"
    meta.setdefault("resumes", []).append({"command": command_line(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    write_json(run_dir / "run.json", meta)


def resume_command(run_dir: str | Path) -> str:
    return f"{Path(sys.executable).name} -m bench.run --resume {shlex.quote(str(run_dir))}"


def environment() -> dict[str, Any]:
    """Software versions and hardware, for run.json and the report's provenance section."""
    import torch
    import torchvision

    import bench
    from bench.devices import available_devices, cpu_model, device_name
    from models.masks import generator_name

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "snnbench": bench.__version__,
        "git_commit": _git_commit(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_mask_generator": generator_name("cpu"),
        "devices": {d: device_name(d) for d in available_devices()},
        "cuda": torch.version.cuda,
    }


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
