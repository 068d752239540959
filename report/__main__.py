"""``python -m report [PATH ...] [--out DIR] [--target ACC]``: result folders -> ``DIR/report.md`` and its figures.

python -m report results/20260101-120000-abc123
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import cli
from report import activity, markdown, neurons, plots, sweep, window
from report.load import ReportError, Results, load

DEFAULT_TARGET = 0.85


def build_report(paths: list[str | Path], out_dir: str | Path, target: float = DEFAULT_TARGET) -> Path:
    """Load every run below ``paths``, write ``out_dir/report.md`` and its PNGs, return the Markdown's path.

    Raises ReportError for input it cannot use (a missing folder, no results, a CSV without the needed columns).
    """
    results = load(paths)  # load
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    datasets = list(dict.fromkeys(results.epochs["dataset"]))
    figures = {d: plots.draw_all(results.epochs, d, out_dir, target) for d in datasets}
    extra = {d: spiking_sections(results, d, out_dir) for d in datasets}
    text = markdown.report(results, figures, [str(p) for p in paths], target, extra)  # summarise
    path = out_dir / "report.md"
    path.write_text(text)
    return path


def spiking_sections(results: Results, dataset: str, out_dir: Path) -> list[str]:
    """Activity and cost, neuron activity, the gradient window and the time-step sweep of one dataset, with their PNGs;
    each part only where its data exist, so reports of runs that recorded none of it read exactly as before."""
    data = results.epochs[results.epochs["dataset"] == dataset]
    return [
        *activity.section(data),
        *neurons.section(results, dataset, out_dir),
        *window.section(results.windows, dataset, results.runs, out_dir),
        *sweep.section(data, results.runs, dataset, out_dir),
    ]


class Parser(cli.Parser):
    error_class = ReportError  # one line, exit status 2


def target(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1] (0.85 for 85%), got {text!r}")
    return value


def build_parser() -> Parser:
    p = Parser(prog="python -m report", description="Write a Markdown report with figures from snnbench results.")
    p.add_argument("paths", nargs="*", default=["results"], metavar="PATH",
                   help="results folders or run folders; every epochs.csv below them is read (default: results)")  # fmt: skip
    p.add_argument("--out", metavar="DIR", default=None,
                   help="where report.md and its PNGs go (default: PATH/report for one PATH; required for several)")  # fmt: skip
    p.add_argument("--target", type=target, default=DEFAULT_TARGET,
                   help="test accuracy for the time-to-accuracy table, a fraction (default: %(default)s)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.out is None and len(args.paths) > 1:
            raise ReportError("several PATHs need --out DIR")
        out = Path(args.out) if args.out is not None else Path(args.paths[0]) / "report"
        path = build_report(args.paths, out, args.target)
    except ReportError as exc:
        print(f"report: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"report: error: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
