"""Results on disk: one folder per run, a tidy ``epochs.csv`` appended per epoch, a ``run.json``.

Every row is flushed and fsync'd as soon as its epoch ends, and ``run.json`` is
replaced atomically, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

COLUMNS = [
    "run_id", "dataset", "model", "device", "seed", "epoch", "lr",
    "train_loss", "train_accuracy", "test_loss", "test_accuracy",
    "train_seconds", "eval_seconds", "train_samples_per_second",
    "train_samples", "test_samples",
]  # fmt: skip


def new_run_dir(parent: str | Path) -> tuple[str, Path]:
    """Create ``parent/<run-id>``; ``os.mkdir`` is atomic, so two runs never get the same folder."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    while True:
        run_id = f"{stamp}-{secrets.token_hex(3)}"
        try:
            (parent / run_id).mkdir()
            return run_id, parent / run_id
        except FileExistsError:
            continue


class EpochWriter:
    """Append tidy rows to ``epochs.csv``; each row is on disk when ``write`` returns."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS)
        if fresh:
            self._writer.writeheader()
            self._sync()

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow(row)
        self._sync()

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> EpochWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON atomically: a temporary file in the same folder, fsync'd, then renamed over."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def environment() -> dict[str, Any]:
    """Software versions and hardware, for run.json and the report's provenance section."""
    import torch
    import torchvision

    import bench
    from bench.devices import available_devices, cpu_model, device_name

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
