"""Results on disk: one folder per run, a tidy ``epochs.csv`` appended per epoch, a ``run.json``.

Every row is flushed and fsync'd as soon as its epoch ends, and ``run.json`` is
replaced atomically, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import secrets
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.metrics import COLUMNS as METRIC_COLUMNS

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

COLUMNS = [
    "run_id", "dataset", "model", "device", "seed", "epoch", "lr",
    "train_loss", "train_accuracy", "test_loss", "test_accuracy",
    "train_seconds", "eval_seconds", "train_samples_per_second",
    "train_samples", "test_samples",
    *METRIC_COLUMNS,  # the test set's activity and synaptic operations (bench/metrics.py); empty where not counted
]  # fmt: skip
OLD_COLUMNS = [c for c in COLUMNS if c not in METRIC_COLUMNS]  # what snnbench 0.1 wrote; such runs can still be resumed
INT_COLUMNS = {"seed", "epoch", "train_samples", "test_samples"}
STR_COLUMNS = {"run_id", "dataset", "model", "device"}


class PartialLineWarning(UserWarning):
    """The last line of a CSV has no newline: it was cut off mid-write and is not data."""


def check_writable(parent: str | Path) -> None:
    """Raise OSError unless ``parent`` is, or could be created as, a writable folder; creates nothing."""
    path = Path(parent).absolute()
    while not path.exists():
        if path.is_symlink() or path.parent == path:
            raise FileNotFoundError(2, "No such file or directory", str(path))
        path = path.parent
    if not path.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(path))
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(13, "Permission denied", str(path))


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


_locks: list[int] = []  # open descriptors of the run folders this process holds


def lock_run_dir(run_dir: str | Path) -> None:
    """Hold an exclusive lock on ``run_dir`` until this process ends; BlockingIOError if another one holds it."""
    if fcntl is None:  # Windows: no advisory locks; atomic mkdir still keeps new runs apart
        return
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    _locks.append(fd)


@contextmanager
def holding_locks() -> Iterator[None]:
    """Release, on leaving the block, every run-folder lock taken inside it (the CLI holds them for one run)."""
    held = len(_locks)
    try:
        yield
    finally:
        while len(_locks) > held:
            os.close(_locks.pop())


def row_key(row: dict[str, Any]) -> tuple[str, str, int, int]:
    """What makes a row unique in one run: (model, device, seed, epoch)."""
    return str(row["model"]), str(row["device"]), int(row["seed"]), int(row["epoch"])


class EpochWriter:
    """Append tidy rows to ``epochs.csv``; each row is on disk when ``write`` returns.

    A row whose (model, device, seed, epoch) is already in the file is not written again
    (a resumed run may redo an epoch whose row survived: the CSV is trusted).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self.keys = set() if fresh else {row_key(r) for r in read_epochs(self.path)}
        self.columns = COLUMNS if fresh else csv_columns(self.path)
        if self.columns not in (COLUMNS, OLD_COLUMNS):
            raise ValueError(f"{self.path} has other columns than this version writes")
        self.missing = [c for c in COLUMNS if c not in self.columns]  # an older run's file: these are not recorded
        self._file = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")
        if fresh:
            self._writer.writeheader()
            self._sync()

    def write(self, row: dict[str, Any]) -> bool:
        """Append ``row``; False (and nothing written) when its epoch is already in the file."""
        key = row_key(row)
        if key in self.keys:
            return False
        self._writer.writerow(row)
        self._sync()
        self.keys.add(key)
        return True

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> EpochWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def append_rows(path: str | Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Append ``rows`` to the CSV ``path`` in one write (a header first if the file is new) and fsync.

    A cut-off last line (a write torn by a crash) is removed first, so that the new rows start on a line of their own."""
    path = Path(path)
    if path.exists():
        repair_csv(path)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    if not path.exists() or path.stat().st_size == 0:
        writer.writeheader()
    writer.writerows(rows)
    with open(path, "a", newline="") as f:
        f.write(text.getvalue())
        f.flush()
        os.fsync(f.fileno())


def csv_columns(path: str | Path) -> list[str] | None:
    """The header of a CSV file, or None when it has no whole first line."""
    with open(path, newline="", errors="replace") as f:
        first = f.readline()
    return next(csv.reader([first])) if first.endswith("\n") else None


def _split_partial(text: str) -> tuple[str, str]:
    """(complete lines, the cut-off tail after the last newline)."""
    end = text.rfind("\n") + 1
    return text[:end], text[end:]


def read_epochs(path: str | Path) -> list[dict[str, Any]]:
    """The rows of an ``epochs.csv``, typed (ints, floats, strings), in file order.

    A last line without its newline was cut off mid-write (power loss, a killed machine):
    it is dropped with a PartialLineWarning, never parsed as data.
    """
    with open(path, newline="", errors="replace") as f:
        complete, partial = _split_partial(f.read())
    if partial:
        warnings.warn(f"{path}: ignoring a partial last line ({len(partial)} bytes, no newline)", PartialLineWarning, 2)
    rows = []
    for line_no, raw in enumerate(csv.DictReader(io.StringIO(complete, newline="")), start=2):
        try:
            rows.append({k: _typed(k, v) for k, v in raw.items()})
        except (TypeError, ValueError):
            raise ValueError(f"{path}, line {line_no}: not a complete row of its {len(raw)} columns") from None
    return rows


def _typed(column: str, text: str) -> str | int | float:
    if column in STR_COLUMNS:
        return text
    if column in INT_COLUMNS:
        return int(text)
    return float(text) if text != "" or column not in METRIC_COLUMNS else math.nan  # empty: not counted


def repair_csv(path: str | Path) -> bytes:
    """Cut a partial last line off ``path`` so rows can be appended; returns what was cut (b"" if none)."""
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    return data[end:]


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "w") -> None:
    """Write ``path`` atomically: ``write(file)`` into a temporary file in the same folder, fsync, rename over."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (see ``atomic_write``)."""

    def dump(f) -> None:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")

    atomic_write(path, dump)


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
