"""``python -m report [PATH ...] [--out DIR] [--target ACC]``: result folders -> ``DIR/report.md`` and its figures.

python -m report results/20260101-120000-abc123
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bench import cli, schema
from report import folder
from report.folder import ReportError

if TYPE_CHECKING:
    from report.load import Results
    from report.pooling import Section

# pandas, scipy and matplotlib load inside build_report, a second or two: after main has set up its signal handlers,
# so that Ctrl-C at any point is the one-line message, never a traceback
DEFAULT_TARGET = 0.85


def build_report(paths: list[str | Path], out_dir: str | Path, target: float = DEFAULT_TARGET) -> Path:
    """Load every run below ``paths``, write ``out_dir/report.md`` and its PNGs, return the Markdown's path.

    The report is drawn in a temporary folder beside ``out_dir`` that then replaces it (report.folder): ``out_dir``
    holds exactly the new report, or, after an error, Ctrl-C or SIGTERM (Interrupted), whatever it held before.
    Raises ReportError for input it cannot use (a missing folder, no results, a CSV without the needed columns) and for
    an ``out_dir`` that holds anything but a report.
    """
    with folder.interruptible() as signals:
        folder.prepare(Path(out_dir))  # before any work: a user's folder is refused at once
        from report import markdown, plots, tuned, tuning
        from report.load import load
        from report.pooling import sections
        from report.runs import partial_epochs

        results = load(paths)  # load
        with folder.replacing(Path(out_dir), signals) as tmp:
            if results.epochs.empty:  # run folders without a finished epoch: a report that says so and why
                studies = []  # a tuning study still running or interrupted: its trials so far, picks not yet trained
                for dataset in dict.fromkeys(results.trials["dataset"]) if len(results.trials) else []:
                    prefix = plots.slug(dataset)
                    studies += [f"## Dataset `{dataset}`", "",
                                *tuning.section(results.trials, results.runs, dataset, tmp, prefix)]  # fmt: skip
                (tmp / "report.md").write_text(markdown.no_rows(results, [str(p) for p in paths], studies))
                return Path(out_dir) / "report.md"
            figures, extra, grids = {}, {}, {}
            for s in sections(results.epochs):
                prefix = plots.slug(s.dataset) if s.count == 1 else f"{plots.slug(s.dataset)}-schedule-{s.index}"
                partial = partial_epochs(s.select(results.epochs), results.runs)
                figures[s] = plots.draw_all(s.select(results.epochs), s.dataset, tmp, target, prefix, partial)
                extra[s] = spiking_sections(results, s, tmp, prefix)
                grids[s] = tuned.section(s.select(results.epochs), results.runs, s.dataset, tmp, prefix)
                in_section = set(s.select(results.epochs)["run_id"])
                grids[s] += tuning.section(results.trials[results.trials["run_id"].isin(in_section)]
                                           if len(results.trials) else results.trials, results.runs, s.dataset, tmp,
                                           prefix, s.select(results.epochs))  # fmt: skip
            text = markdown.report(results, figures, [str(p) for p in paths], target, extra, grids)  # summarise
            (tmp / "report.md").write_text(text)
    return Path(out_dir) / "report.md"


def spiking_sections(results: Results, s: Section, out_dir: Path, prefix: str) -> list[str]:
    """Activity and cost, measured energy, neuron activity, the gradient window and the time-step sweep of one section,
    with their PNGs; each part only where its data exist, so reports of runs that recorded none of it read exactly as before."""
    from report import activity, energy, neurons, sweep, window
    from report.runs import partial_epochs

    data = s.select(results.epochs)
    mine = dataclasses.replace(results, epochs=data, windows=s.select(results.windows),
                               activity=[r for r in results.activity if s.holds(r)])  # fmt: skip
    return [
        *activity.section(data, partial_epochs(data, results.runs)),
        *energy.section(data, results.runs),
        *neurons.section(mine, s.dataset, out_dir, prefix),
        *window.section(
            mine.windows,
            s.dataset,
            mine.runs,
            out_dir,
            prefix,
            list(dict.fromkeys(data.loc[data["kind"] == schema.SPIKING, "model"])),
        ),
        *sweep.section(data, mine.runs, s.dataset, out_dir, prefix),
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
                   help="results folders or run folders; every epochs.csv below them is read, except in "
                        "results/reference (the shipped reference runs) unless a PATH names it (default: results)")  # fmt: skip
    p.add_argument("--out", metavar="DIR", default=None,
                   help="where report.md and its PNGs go; replaced whole when the report is done, and refused if it "
                        "holds other files (default: PATH/report for one PATH; required for several)")  # fmt: skip
    p.add_argument("--target", type=target, default=DEFAULT_TARGET,
                   help="test accuracy for the time-to-accuracy table, a fraction (default: %(default)s)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    out = None
    try:
        with folder.interruptible():  # from the start: Ctrl-C while the libraries load is handled like any other
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
    except KeyboardInterrupt as exc:
        if out is None:
            print("report: interrupted", file=sys.stderr)
        elif (out / "report.md").is_file():  # as it was: an interrupted build leaves it alone
            print(f"report: interrupted; the previous report in {out} is unchanged", file=sys.stderr)
        else:
            print(f"report: interrupted; no report was written to {out}", file=sys.stderr)
        return getattr(exc, "exit_status", 130)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
