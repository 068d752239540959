"""Ctrl-C (SIGINT) and ``kill`` (SIGTERM): before a run exists they raise; while it runs they ask it to stop.

- ``handlers()``: both signals raise ``Interrupted`` (a KeyboardInterrupt, so code that already
  handles Ctrl-C handles a ``kill`` too). bench.run uses it until its run folder exists.
- ``stopping()``: a signal only sets a ``Stop``. The trainings check it before every batch and
  return (bench/train.py); the run records them as interrupted. No exception ever crosses a
  training or cuts a file that is being written.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_status(signum: int) -> int:
    return 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return exit_status(self.signum)


class Stop:
    """Set by the first signal: ``bool(stop)``, ``stop.signum`` and its name."""

    def __init__(self):
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    def set(self, signum: int = signal.SIGINT) -> None:
        if self.signum is None:
            self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


@contextmanager
def installed(handler) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM during the block (main thread only; elsewhere a no-op), then the old ones."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def _raise(signum, frame) -> None:
    raise Interrupted(signum)


def handlers():
    """Both signals raise Interrupted inside the block."""
    return installed(_raise)


@contextmanager
def stopping() -> Iterator[Stop]:
    """Inside the block, a signal sets the yielded Stop instead of raising."""
    stop = Stop()
    with installed(lambda signum, frame: stop.set(signum)):
        yield stop


def ignored():
    """Ignore further signals while a run that was interrupted records that it was."""
    return installed(signal.SIG_IGN)
