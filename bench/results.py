"""Results on disk: one folder per run, a tidy ``epochs.csv`` appended per epoch, a ``run.json``.

Every row is flushed and fsync'd as soon as its epoch ends, and ``run.json`` is
replaced atomically, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.schema import COLUMNS, csv_columns, header_problem, read_epochs, row_key
from bench.schema import PartialLineWarning as PartialLineWarning  # bench.results.read_epochs is documented: both stay here

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


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


SET_ASIDE = "epochs-set-aside.csv"  # the rows of a training that had to start again (bench.run), kept out of the report


class EpochWriter:
    """Append tidy rows to ``epochs.csv``; each row is on disk when ``write`` returns.

    A row whose (model, device, seed, lr_scale, epoch) is already in the file is not written again: a resumed
    training restores its checkpoint's row, which may be there already. A training that starts again from an earlier
    epoch first ``drop``s its later rows, so that its rows stay one trajectory. Rows are written by column name: a new
    file gets ``columns`` (bench.schema.header), an existing one keeps its own.
    """

    def __init__(self, path: str | Path, columns: list[str] = COLUMNS):
        self.path = Path(path)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self.keys = set() if fresh else {row_key(r) for r in read_epochs(self.path)}
        self.columns = list(columns) if fresh else csv_columns(self.path)
        problem = header_problem(self.columns)
        if problem:
            raise ValueError(f"{self.path} {problem}")
        self.missing = [c for c in columns if c not in self.columns]  # an older run's file: these are not recorded
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

    def drop(self, key: tuple, after: int = 0, aside: str | Path | None = None) -> int:
        """Remove the rows of the training ``key`` (a bench.schema.TrainingKey) of the epochs after ``after``, the file
        replaced whole and atomically (``remove_rows``), moved to the CSV ``aside`` where given; returns how many went."""
        gone = {k for k in self.keys if k[:-1] == tuple(key) and k[-1] > after}
        if not gone:
            return 0
        self._file.close()
        try:
            remove_rows(self.path, lambda row: row_key(row) in gone, aside)
        finally:  # appends go to the file now at ``path``, never to the replaced one
            self._file = open(self.path, "a", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")
        self.keys -= gone
        return len(gone)

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
    """Append ``rows`` to the CSV ``path`` in one write (a header of ``columns`` first if the file is new; an existing
    file keeps its own header, and rows are written by its column names) and fsync.

    A cut-off last line (a write torn by a crash) is removed first, so that the new rows start on a line of their own."""
    path = Path(path)
    if path.exists():
        repair_csv(path)
    fresh = not path.exists() or path.stat().st_size == 0
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns if fresh else csv_columns(path) or columns, extrasaction="ignore")
    if fresh:
        writer.writeheader()
    writer.writerows(rows)
    with open(path, "a", newline="") as f:
        f.write(text.getvalue())
        f.flush()
        os.fsync(f.fileno())


def remove_rows(path: str | Path, drop: Callable[[dict[str, str]], bool], aside: str | Path | None = None) -> int:
    """Replace the CSV ``path``, atomically, by itself without the rows for which ``drop(row)`` (its cells as strings,
    by column name) is true; every other line is kept byte for byte. Returns how many rows went.

    With ``aside``, the rows that go are first appended to that CSV (``path``'s header line first if it is new) and
    synced, byte for byte: a crash between the two leaves a row in both files, never in neither."""
    text = Path(path).read_bytes().decode("utf-8", "surrogateescape")
    lines = io.StringIO(text, newline="").readlines()  # the physical lines, their endings untouched
    reader = csv.reader(iter(lines))
    columns = next(reader, None)
    kept, start, removed, went = lines[: reader.line_num], reader.line_num, 0, []
    for cells in reader:
        try:
            gone = len(cells) == len(columns) and drop(dict(zip(columns, cells)))
        except (KeyError, TypeError, ValueError):  # not a row of the file's kind: kept as it is
            gone = False
        removed += gone
        (went if gone else kept).extend(lines[start : reader.line_num])
        start = reader.line_num
    kept += lines[start:]
    if removed and aside is not None:
        _append_lines(Path(aside), lines[:1], went)
    if removed:
        atomic_write(path, lambda f: f.write("".join(kept).encode("utf-8", "surrogateescape")), mode="wb")
    return removed


def _append_lines(path: Path, header: list[str], lines: list[str]) -> None:
    """Append the CSV ``lines`` to ``path`` (``header`` first where it is new or empty) and sync."""
    fresh = not path.exists() or path.stat().st_size == 0
    if not fresh:
        repair_csv(path)
    text = "".join((header if fresh else []) + [line if line.endswith(("\n", "\r")) else line + "\n" for line in lines])
    with open(path, "ab") as f:
        f.write(text.encode("utf-8", "surrogateescape"))
        f.flush()
        os.fsync(f.fileno())


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
