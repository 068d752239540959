"""``python -m bench.run``: train each model on each device with each seed; write results/<run-id>/.

    python -m bench.run --models snn ffn --device cpu --dataset mnist-mini
"""

from __future__ import annotations

import argparse
import sys
import time

from tabulate import tabulate

import models
from bench import data as datasets
from bench.devices import DeviceError, resolve_devices
from bench.loop import EpochStats, Schedule, train
from bench.results import EpochWriter, command_line, environment, new_run_dir, write_json


class UsageError(Exception):
    """A user's mistake: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        raise UsageError(message)


def positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def build_parser() -> Parser:
    p = Parser(prog="python -m bench.run", description="Train spiking and non-spiking models side by side.")
    p.add_argument(
        "--models", nargs="+", default=["snn", "ffn"], metavar="SPEC",
        help=f"model specs NAME[:key=value,...]; NAME is one of {', '.join(models.available())} (default: snn ffn)",
    )  # fmt: skip
    p.add_argument("--device", nargs="+", default=["all"], help="cpu, cuda, cuda:N, mps or all (default: all)")
    p.add_argument("--dataset", default="mnist-mini", choices=datasets.DATASETS, help="(default: %(default)s)")
    p.add_argument("--data-dir", default="data", help="where torchvision keeps mnist/fashion-mnist (default: %(default)s)")
    p.add_argument("--epochs", type=positive(int), default=3, help="(default: %(default)s)")
    p.add_argument(
        "--lr", type=positive(float), nargs="+", default=[0.1, 0.05, 0.01],
        help="learning rate per epoch; the last repeats (default: 0.1 0.05 0.01)",
    )  # fmt: skip
    p.add_argument("--momentum", type=float, default=0.5, help="SGD momentum (default: %(default)s)")
    p.add_argument("--batch-size", type=positive(int), default=1000, help="(default: %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one training per seed (default: 0)")
    p.add_argument("--max-batches", type=positive(int), default=None, help="cap train/test batches per epoch (default: no cap)")
    p.add_argument("--out", default="results", help="parent folder of the run folder (default: %(default)s)")
    p.add_argument("--no-report", action="store_true", help="do not build the Markdown report at the end")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    try:
        args.specs = [models.parse_spec(s) for s in args.models]
        args.devices = resolve_devices(args.device)
    except (models.SpecError, DeviceError) as exc:
        raise UsageError(str(exc)) from None
    labels = [s.label for s in args.specs]
    if len(set(labels)) != len(labels):
        raise UsageError(f"the same model is given twice: {', '.join(labels)}")
    if len(set(args.seeds)) != len(args.seeds):
        raise UsageError(f"the same seed is given twice: {args.seeds}")
    if not (0 <= args.momentum < 1):
        raise UsageError(f"--momentum must be in [0, 1), got {args.momentum}")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        loaded = {d: datasets.load(args.dataset, args.data_dir, d) for d in args.devices}
        run_id, run_dir = new_run_dir(args.out)
    except (UsageError, datasets.DataError) as exc:
        print(f"bench.run: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"bench.run: error: cannot create a run folder in {args.out}: {exc.strerror}", file=sys.stderr)
        return 2

    schedule = Schedule(args.epochs, tuple(args.lr), args.momentum, args.batch_size, args.max_batches)
    meta = {
        "run_id": run_id,
        "command": command_line(),
        "status": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "finished": None,
        "dataset": args.dataset,
        "devices": args.devices,
        "seeds": args.seeds,
        "schedule": {"epochs": schedule.epochs, "lrs": list(schedule.lrs), "momentum": schedule.momentum,
                     "batch_size": schedule.batch_size, "max_batches": schedule.max_batches,
                     "optimizer": "SGD, fresh each epoch"},
        "models": {s.label: {"name": s.name, "config": vars(s.config)} for s in args.specs},
        "environment": environment(),
    }  # fmt: skip
    write_json(run_dir / "run.json", meta)
    print(f"run {run_id}: {len(args.specs)} model(s) x {len(args.devices)} device(s) x {len(args.seeds)} seed(s) "
          f"on {args.dataset}, results in {run_dir}", file=sys.stderr)  # fmt: skip

    finals: list[dict] = []
    try:
        with EpochWriter(run_dir / "epochs.csv") as writer:
            for device in args.devices:
                for spec in args.specs:
                    for seed in args.seeds:
                        finals.append(_train_one(spec, device, seed, loaded[device], schedule, writer, run_id))
        meta["status"] = "complete"
    except BaseException:
        meta["status"] = "interrupted" if sys.exc_info()[0] is KeyboardInterrupt else "failed"
        raise
    finally:
        meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json(run_dir / "run.json", meta)

    print(_console_table(finals))
    print(f"results: {run_dir / 'epochs.csv'}")
    if not args.no_report:
        from report.__main__ import build_report

        print(f"report: {build_report([run_dir], run_dir / 'report')}")
    return 0


def _train_one(spec, device, seed, data, schedule, writer, run_id) -> dict:
    last: dict = {}

    def record(epoch: int, lr: float, tr: EpochStats, te: EpochStats) -> None:
        row = {
            "run_id": run_id, "dataset": data.name, "model": spec.label, "device": device, "seed": seed,
            "epoch": epoch, "lr": lr, "train_loss": tr.loss, "train_accuracy": tr.accuracy,
            "test_loss": te.loss, "test_accuracy": te.accuracy, "train_seconds": tr.seconds,
            "eval_seconds": te.seconds, "train_samples_per_second": tr.samples / tr.seconds,
            "train_samples": tr.samples, "test_samples": te.samples,
        }  # fmt: skip
        writer.write(row)
        last.update(row, seconds_sum=last.get("seconds_sum", 0.0) + tr.seconds)

    train(spec.build, data, device, seed, schedule, record, desc=f"{spec.label} {device} seed {seed}")
    return last


def _console_table(finals: list[dict]) -> str:
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in finals:
        groups.setdefault((row["model"], row["device"]), []).append(row)
    table = [
        [model, device, len(rows),
         sum(r["test_accuracy"] for r in rows) / len(rows),
         sum(r["seconds_sum"] / r["epoch"] for r in rows) / len(rows)]
        for (model, device), rows in groups.items()
    ]  # fmt: skip
    headers = ["model", "device", "seeds", "final test accuracy", "train s/epoch"]
    return tabulate(table, headers=headers, floatfmt=(".4f", "", "", ".4f", ".3f"))


if __name__ == "__main__":
    sys.exit(main())
