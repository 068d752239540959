"""Ctrl-C and SIGTERM as one exception, ``Interrupted``, and sections of code they cannot cut in two.

Inside ``handlers()`` both signals raise ``Interrupted`` (a KeyboardInterrupt, so code that
already handles Ctrl-C handles a ``kill`` too). Inside ``critical()`` a signal is only noted
and raised when the section ends: a checkpoint, its CSV row and run.json are written whole.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


_deferring = False
_pending: int | None = None


def _raise(signum, frame) -> None:
    global _pending
    if _deferring:
        _pending = signum
    else:
        raise Interrupted(signum)


@contextmanager
def _installed(handler) -> Iterator[None]:
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


def handlers():
    """Both signals raise Interrupted inside the block."""
    return _installed(_raise)


@contextmanager
def critical() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block is done, then raise Interrupted if one came."""
    global _deferring, _pending
    _deferring, _pending = True, None
    try:
        yield
    finally:
        _deferring = False
    if _pending is not None:
        signum, _pending = _pending, None
        raise Interrupted(signum)


def ignored():
    """Ignore further signals while a run that was interrupted records that it was (a second Ctrl-C)."""
    return _installed(signal.SIG_IGN)
