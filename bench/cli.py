"""The one argument parser of snnbench's commands: a user's mistake is one line and exit status 2.

Imports no torch, so ``python -m report`` can use it too.
"""

from __future__ import annotations

import argparse
import math
import textwrap


class UsageError(Exception):
    """A user's mistake: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, whose errors raise ``error_class`` (one line) instead of printing usage and exiting."""

    error_class: type[Exception] = UsageError

    def error(self, message: str):
        raise self.error_class(message)


def positive(kind):
    """An argparse type: a finite number of ``kind`` above zero."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0 or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def nonnegative_int(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a finite number >= 0")
    return value


def fraction_below_one(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def one_of(*names: str):
    """An argparse type: one of ``names``, exactly as written."""

    listed = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]

    def parse(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"expected {listed}, got {text!r}")
        return text

    parse.__name__, parse.metavar = listed, "{" + ",".join(names) + "}"  # the metavar: for the usage line
    return parse


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one line for a user or run.json: ``Type: message``, whitespace folded, at most ``limit`` chars
    (shortened between words)."""
    text = " ".join(str(exc).split())
    return shorten(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, limit)


def shorten(text: str, limit: int) -> str:
    """``text`` with its whitespace folded, cut between words to at most ``limit`` characters, ending `` [...]``
    where it was cut (a single word longer than that is cut inside it)."""
    folded = " ".join(text.split())
    return textwrap.shorten(folded, limit) if " " in folded[:limit] else folded[:limit]
