"""``python -m bench.run``: train each model on each device with each seed; write results/<run-id>/.

python -m bench.run --models snn ffn --device cpu --dataset mnist-mini
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tabulate import tabulate

import models
from bench import analysis, interrupt
from bench import data as datasets
from bench.checkpoint import CheckpointError, Checkpoints, file_name
from bench.devices import DeviceError, resolve_devices
from bench.loop import Diverged, Schedule, epochs, seed_everything
from bench.results import EpochWriter, check_writable, holding_locks, lock_run_dir, new_run_dir, read_epochs, write_json
from bench.resume import ResumeError, check_unchanged, new_record, open_run, read_run, recorded_args, resume_command, to_argv

FINISHED = ("complete", "diverged")  # never run again on --resume; "oom" is tried again (memory may be free then)


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
    p.add_argument(
        "--no-metrics", action="store_true",
        help="do not count firing, sparsity and synaptic operations during evaluation, nor save neuron activity "
             "and the gradient window after training (default: count and save them)",
    )  # fmt: skip
    p.add_argument(
        "--resume", metavar="RUN_DIR", default=None,
        help="finish the run in RUN_DIR with the arguments recorded in its run.json; "
             "only --no-report and --keep-checkpoints may be added (default: start a new run)",
    )  # fmt: skip
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each training's last checkpoint when it ends")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The checked arguments; with --resume, the recorded ones (``args.meta`` is the run's run.json)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _checked(build_parser().parse_args(argv))
    if args.resume is None:
        return args
    meta = read_run(args.resume)
    recorded = to_argv(meta["args"])
    # the recorded command line, then the given one: argparse keeps the last value of an option
    wanted = _checked(build_parser().parse_args(recorded + argv))
    check_unchanged(recorded_args(_checked(build_parser().parse_args(recorded))), recorded_args(wanted), args.resume)
    wanted.meta = meta
    return wanted


def _checked(args: argparse.Namespace) -> argparse.Namespace:
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
    """The CLI; returns the exit status: 0 done, 1 a training diverged or ran out of memory, 2 bad input,
    130 or 143 interrupted by SIGINT or SIGTERM (the run can be resumed)."""
    with interrupt.handlers(), holding_locks():
        try:
            return _main(argv)
        except KeyboardInterrupt as exc:  # before a run folder exists: nothing to resume
            print("bench.run: interrupted before the run started", file=sys.stderr)
            return getattr(exc, "exit_status", 130)


@dataclass
class Run:
    """The run folder being written: run.json's contents, the CSV writer and the checkpoints."""

    dir: Path
    meta: dict
    writer: EpochWriter | None = None
    checkpoints: Checkpoints | None = None
    metrics: bool = True  # count activity and operations, save neuron activity and the gradient window

    def save(self) -> None:
        write_json(self.dir / "run.json", self.meta)


def _main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        if args.resume is None:
            _run_folder_check(check_writable, args.out)  # before loading (and maybe downloading) any data
        loaded = {d: datasets.load(args.dataset, args.data_dir, d) for d in args.devices}
        if args.resume is None:
            run_id, run_dir = _run_folder_check(new_run_dir, args.out)
            lock_run_dir(run_dir)
        else:
            run_dir, meta = Path(args.resume), args.meta
            run_id = meta["run_id"]
            open_run(run_dir, meta)
    except (UsageError, ResumeError, datasets.DataError) as exc:
        print(f"bench.run: error: {exc}", file=sys.stderr)
        return 2

    schedule = Schedule(args.epochs, tuple(args.lr), args.momentum, args.batch_size, args.max_batches)
    if args.resume is None:
        meta = new_record(args, run_id, schedule)
        write_json(run_dir / "run.json", meta)
        print(f"run {run_id}: {len(args.specs)} model(s) x {len(args.devices)} device(s) x {len(args.seeds)} seed(s) "
              f"on {args.dataset}, results in {run_dir}", file=sys.stderr)  # fmt: skip
    else:
        done = sum(t["status"] in FINISHED for t in meta["trainings"])
        print(f"resuming run {run_id}: {done} of {len(meta['trainings'])} trainings finished, results in {run_dir}",
              file=sys.stderr)  # fmt: skip

    specs = {s.label: s for s in args.specs}
    run = Run(run_dir, meta, checkpoints=Checkpoints(run_dir, args.keep_checkpoints), metrics=not args.no_metrics)
    try:
        with EpochWriter(run_dir / "epochs.csv") as run.writer:
            if run.writer.missing and run.metrics:
                print(f"bench.run: warning: {run_dir / 'epochs.csv'} was started by an older snnbench without the "
                      "activity and cost columns; they are not recorded for this run", file=sys.stderr)  # fmt: skip
            for t in meta["trainings"]:
                if t["status"] not in FINISHED:
                    _train_one(run, t, specs[t["model"]], loaded[t["device"]], schedule)
        meta["status"] = "complete" if all(t["status"] == "complete" for t in meta["trainings"]) else "partial"
    except KeyboardInterrupt as exc:
        meta["status"] = "interrupted"
        print(f"bench.run: interrupted ({exc or 'SIGINT'}); every finished epoch is in {run_dir / 'epochs.csv'}. Resume with:\n"
              f"  {resume_command(run_dir)}", file=sys.stderr)  # fmt: skip
        return getattr(exc, "exit_status", 130)
    except CheckpointError as exc:
        meta["status"] = "failed"
        print(f"bench.run: error: {exc}; delete it to train that model again from epoch 1", file=sys.stderr)
        return 2
    except BaseException:
        meta["status"] = "failed"
        raise
    finally:
        with interrupt.ignored():  # a second Ctrl-C must not cut the record of the first
            meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            run.save()

    finals = _finals(read_epochs(run_dir / "epochs.csv"), meta["trainings"])
    failed = [t for t in meta["trainings"] if t["status"] != "complete"]
    print(_console_table(finals))
    for t in failed:
        print(f"{t['status']}: {t['model']} on {t['device']}, seed {t['seed']}, after {t['epochs_done']} epoch(s): {t['detail']}")
    print(f"results: {run_dir / 'epochs.csv'}")
    if not args.no_report:
        from report.__main__ import build_report

        print(f"report: {build_report([run_dir], run_dir / 'report')}")
    return 1 if failed else 0


def _run_folder_check(function, out: str):
    try:
        return function(out)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(out) else ""
        raise UsageError(f"cannot create a run folder in {out}: {exc.strerror}{where}") from None


def _train_one(run: Run, t: dict, spec: models.ModelSpec, data: datasets.Dataset, schedule: Schedule) -> None:
    """Train, or go on training from its checkpoint, the training ``t`` of run.json; record its status there."""
    key, device, seed = (t["model"], t["device"], t["seed"]), t["device"], t["seed"]
    desc = f"{spec.label} {device} seed {seed}"
    shuffle = seed_everything(seed, device)
    model = None
    try:
        model = spec.build().to(device)
        done, row = run.checkpoints.restore(key, model, shuffle)
        if row is not None:
            run.writer.write(row)  # the checkpoint is saved before its row (see below): the row may be missing
        elif t["epochs_done"]:
            print(f"bench.run: warning: no checkpoint of {desc}; training it again from epoch 1, "
                  "its rows already in the CSV are kept", file=sys.stderr)  # fmt: skip
        t.update(status="running", epochs_done=done)
        run.save()
        for epoch, lr, tr, te in epochs(model, data, shuffle, schedule, done + 1, desc, run.metrics):
            row = {
                "run_id": run.meta["run_id"], "dataset": data.name, "model": spec.label, "device": device, "seed": seed,
                "epoch": epoch, "lr": lr, "train_loss": tr.loss, "train_accuracy": tr.accuracy,
                "test_loss": te.loss, "test_accuracy": te.accuracy, "train_seconds": tr.seconds,
                "eval_seconds": te.seconds, "train_samples_per_second": tr.samples / tr.seconds,
                "train_samples": tr.samples, "test_samples": te.samples, **te.metrics,
            }  # fmt: skip
            # The checkpoint first, then the row, then run.json, with signals held until all three are on
            # disk. A row is in the CSV only once its checkpoint is saved, so a resumed training goes on after
            # its last checkpoint's epoch and never has rows beyond it; if a crash (power, kill -9) came between
            # checkpoint and row, the row is written from the checkpoint; EpochWriter never writes a row twice.
            with interrupt.critical():
                run.checkpoints.save(key, epoch, row, model, shuffle)
                run.writer.write(row)
                t["epochs_done"] = epoch
                run.save()
        if run.metrics and analysis.supports(model) and not t.get("analysed"):
            _analyse(run, t, spec, model, data)
        t["status"] = "complete"
    except Diverged as exc:
        t.update(status="diverged", detail=str(exc))
        print(f"bench.run: {desc} diverged: {exc}; the other trainings go on", file=sys.stderr)
    except torch.cuda.OutOfMemoryError:
        t.update(status="oom", detail=f"out of memory on {device} with --batch-size {schedule.batch_size}")
        print(f"bench.run: {desc}: out of memory on {device}; start a new run with a smaller --batch-size than "
              f"{schedule.batch_size}, or free memory and --resume it (it goes on after its last epoch)",
              file=sys.stderr)  # fmt: skip
    except KeyboardInterrupt:
        t["status"] = "interrupted"  # main() writes run.json
        raise
    del model  # so that after an out-of-memory error the next training gets the memory back
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    run.save()
    if t["status"] != "oom":  # a resume tries an out-of-memory training again, from its checkpoint
        run.checkpoints.remove(key)


def _analyse(run: Run, t: dict, spec: models.ModelSpec, model: torch.nn.Module, data: datasets.Dataset) -> None:
    """After the last epoch: one test digit's neuron activity (RUN/activity/) and the gradient window (RUN/window.csv)."""
    labels = {"run_id": run.meta["run_id"], "dataset": data.name, "model": spec.label, "device": t["device"],
              "seed": t["seed"], "epoch": t["epochs_done"]}  # fmt: skip
    name = Path(file_name((t["model"], t["device"], t["seed"]))).with_suffix(".npz").name
    config = {"reset": getattr(spec.config, "reset", ""), "decay": getattr(spec.config, "decay", "")}
    arrays = analysis.neuron_activity(model, data.test)
    rows = [{**labels, **config, **row} for row in analysis.window(model, data.test)]
    with interrupt.critical():  # a whole file, all of a training's rows and the record of both, or nothing
        analysis.save_activity(run.dir / "activity" / name, arrays, **labels)
        analysis.save_window(run.dir / "window.csv", rows)
        t["analysed"] = True  # a resume (after a signal that came during the analysis) does not append the rows again
        run.save()


def _finals(rows: list[dict], trainings: list[dict]) -> list[dict]:
    """The last row of each complete training, with its total training seconds as ``seconds_sum``."""
    complete = {(t["model"], t["device"], t["seed"]) for t in trainings if t["status"] == "complete"}
    finals: dict[tuple, dict] = {}
    for r in rows:  # in file order: a training's epochs ascend
        key = (r["model"], r["device"], r["seed"])
        if key in complete:
            finals[key] = dict(r, seconds_sum=finals.get(key, {}).get("seconds_sum", 0.0) + r["train_seconds"])
    return list(finals.values())


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
