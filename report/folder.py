"""The report folder, written whole or not at all: the report is built in a temporary folder beside ``--out`` and
swapped in at the end. Ctrl-C, SIGTERM or an error on the way leave the previous report as it was.

A folder is replaced only when it looks like a report (nothing in it but ``report.md`` and PNGs), so a user's folder
given as ``--out`` by mistake is refused, never deleted. Imports nothing heavy: ``python -m report`` sets its signal
handlers up before pandas and matplotlib load.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.interrupt import Interrupted, installed


class ReportError(Exception):
    """Input the report cannot use, or an ``--out`` it must not replace: printed as one line, exit status 2."""


class _Signals:
    """While ``held`` is false a signal raises Interrupted; while it is true (the swap, the clean-up) it is dropped.

    A flag rather than a new handler: setting it is one store, with no point in between where a signal could raise."""

    held = False

    def __call__(self, signum, frame) -> None:
        if not self.held:
            raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[_Signals]:
    """SIGINT and SIGTERM raise Interrupted inside the block (in the main thread; elsewhere they are left alone)."""
    handler = _Signals()
    with installed(handler):
        yield handler


def is_report(path: Path) -> bool:
    """Whether ``path`` holds nothing but a report's files: ``report.md`` and PNGs (an empty folder counts)."""
    return all(p.is_file() and (p.name == "report.md" or p.suffix == ".png") for p in path.iterdir())


def check(out: Path) -> None:
    """Refuse an ``out`` that the report must not replace: a file, or a folder with anything but a report in it."""
    if out.is_dir():
        if not is_report(out):
            raise ReportError(f"{out} holds files that are not a report's (report.md and PNGs): not replacing it; "
                              "choose another --out")  # fmt: skip
    elif out.exists() or out.is_symlink():
        raise ReportError(f"{out} is not a folder: not replacing it; choose another --out")


def prepare(out: Path) -> Path:
    """``out`` resolved (a symlinked folder: what it points to), after putting back a previous report that a killed
    build left aside; ReportError when ``out`` is something the report must not replace, or cannot be written."""
    out = out.resolve()
    writable(out)
    if out.parent.is_dir():
        recover(out)
    check(out)
    return out


def writable(out: Path) -> None:
    """ReportError unless the report can be written to ``out``: the nearest folder of its path that exists (its parent,
    once made) must be a folder this process may write in, and so must ``out`` itself when it is one (its old report
    is removed). Checked before any work, so that nothing is written."""
    existing = out.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ReportError(f"cannot write the report to {out}: {existing} is not a folder")
    for folder in [existing, *([out] if out.is_dir() else [])]:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ReportError(f"cannot write the report to {out}: {folder} is not writable")


def recover(out: Path) -> None:
    """Tidy what a killed build of ``out`` left beside it (see ``_swap``): put the previous report back where ``out``
    is missing, and remove the temporary and set-aside folders of processes that are gone."""
    prefix = f".{out.name}."
    for stale in sorted(p for p in out.parent.iterdir() if p.name.startswith(prefix)):
        kind, _, pid = stale.name[len(prefix) :].partition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        if kind == "old" and not out.exists():
            stale.rename(out)
            print(f"report: warning: put back the previous report in {out}, left aside by a build that was killed",
                  file=sys.stderr)  # fmt: skip
        else:
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours from an earlier call in this process: that call is over
    if os.name != "posix":
        return True  # no portable check: leave it be
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True


@contextmanager
def replacing(out: Path, signals: _Signals) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; when the block ends normally, it becomes ``out`` (the previous
    ``out`` is removed), else it is removed and ``out`` is left as it was. ``signals`` (from ``interruptible``) are held
    while the folders are swapped or cleaned up."""
    out = prepare(out)
    new = out.parent / f".{out.name}.tmp-{os.getpid()}"
    done = False
    try:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            new.mkdir()
        except OSError as exc:  # what ``writable`` cannot foresee (a read-only file system, as root)
            raise ReportError(f"cannot write the report to {out}: {exc.strerror}") from None
        yield new
        done = True
    finally:
        signals.held = True  # first: nothing may cut the swap or the clean-up
        try:
            if done:
                check(out)  # again: a file may have been added while the report was drawn
                _swap(new, out)
        finally:
            shutil.rmtree(new, ignore_errors=True)  # gone already after a swap
            # signals stay held: after a swap the report is written, and "interrupted, unchanged" would be untrue


def _swap(new: Path, out: Path) -> None:
    """Rename ``out`` aside, rename ``new`` to ``out``, then delete the old one.

    If the process dies between the two renames (SIGKILL, a power cut), ``out`` is missing, the previous report lies
    whole in ``.OUT.old-PID`` and the new one in ``.OUT.tmp-PID``: the next report into ``out`` puts the old one back
    first (``recover``), and anyone can by hand with ``mv``."""
    if not out.exists():
        new.rename(out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    out.rename(old)
    try:
        new.rename(out)
    except OSError:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)
