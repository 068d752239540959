"""``python -m bench.run``: train each model on each device with each seed; write results/<run-id>/.

python -m bench.run --models snn ffn --device cpu --dataset mnist-mini

This process is the run's parent: it checks the arguments against the models and the data
(bench/preflight.py), makes the run folder and holds its lock, hands the trainings (bench.train.Task)
to an executor (bench/executors.py), and is the only writer of ``epochs.csv``, ``run.json``,
``window.csv``, ``activity/`` and ``errors.log``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tabulate import tabulate

from bench import analysis, events, interrupt, preflight, tune
from bench import data as datasets
from bench import provenance as origin
from bench.checkpoint import CheckpointError, Checkpoints
from bench.cli import UsageError
from bench.config import TrainConfig
from bench.devices import cores
from bench.executors import Ended, run_local
from bench.preflight import build_parser, parse_args  # noqa: F401  (the CLI's parser, as tests and users import it)
from bench.record import FINISHED, ResumeError, check_rows, check_segments, new_record, open_run, provenance, resume_command, take
from bench.results import SET_ASIDE, EpochWriter, check_writable, holding_locks, lock_run_dir, new_run_dir, write_json
from bench.schema import TrainingKey, header, is_metric, read_epochs
from bench.train import Analysis, Epoch, Started, Task

ERRORS_LOG = "errors.log"  # in the run folder: the traceback of each training that failed


def main(argv: list[str] | None = None) -> int:
    """The CLI; returns the exit status: 0 done, 1 a training diverged, ran out of memory or failed (or the report
    could not be written), 2 bad input, 130 or 143 interrupted by SIGINT or SIGTERM (the run can be resumed)."""
    with interrupt.handlers(), holding_locks():
        try:
            return _main(argv)
        except KeyboardInterrupt as exc:  # before a run folder exists: nothing to resume
            print("bench.run: interrupted before the run started", file=sys.stderr)
            return getattr(exc, "exit_status", 130)


class RunRecord:
    """The run.json of the run being written, and each training's entry in it by key."""

    def __init__(self, run_dir: Path, meta: dict):
        self.dir, self.meta = run_dir, meta
        self.refresh()

    def refresh(self) -> None:
        """Index the trainings again (a tuning run enters new ones as it asks for trials)."""
        self.trainings = {TrainingKey.of(t): t for t in self.meta["trainings"]}

    def save(self) -> None:
        write_json(self.dir / "run.json", self.meta)

    def update(self, key: TrainingKey, **fields) -> None:
        self.trainings[key].update(fields)
        self.save()

    @property
    def grid(self) -> bool:
        """Whether the run has a learning-rate scale other than 1: then its files carry ``lr_scale``."""
        return any(key.lr_scale != 1 for key in self.trainings)


def _main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        if args.list:
            print(preflight.listing())
            return 0
        if args.resume is None:
            preflight.check_out(args.out)
            _run_folder_check(check_writable, args.out)  # before loading (and maybe downloading) any data
        # found (or downloaded) and checked before the run exists; the trainings reuse it
        data = [datasets.load(args.dataset, args.data_dir, device) for device in args.devices][0]
        preflight.check_data(args, data)
        preflight.check_models(args, data)
        for line in preflight.native_notes(args):  # a fallback of the kernels, resumed runs too; or exit 2 if required
            print(f"bench.run: warning: {line}", file=sys.stderr)
        run_trainings = executor(args)  # distributed installed, the scheduler reachable: before the run folder exists
        if args.resume is None:
            for line in preflight.warnings(args, data):
                print(f"bench.run: warning: {line}", file=sys.stderr)
            if note := datasets.note(args.dataset, data):
                print(f"bench.run: note: {note}", file=sys.stderr)
            run_id, run_dir = _run_folder_check(new_run_dir, args.out)
            lock_run_dir(run_dir)
        else:
            run_dir, meta = Path(args.resume), args.meta
            run_id = meta["run_id"]
            take(run_dir)
            rows = check_rows(run_dir, meta, args.config.epochs)  # epochs.csv against run.json, before anything changes
            check_segments(run_dir, meta, lambda device: expected(args, device), args.new_segment)
            before = {TrainingKey.of(t): origin.last(meta, t)[0] for t in meta["trainings"]}  # (this resume not in it yet)
            if all(t["status"] in FINISHED for t in meta["trainings"]):
                diverged = sum(t["status"] == "diverged" for t in meta["trainings"])
                print(f"bench.run: run {run_id} has no training left to run"
                      f"{f' ({diverged} diverged)' if diverged else ''}: nothing to do", file=sys.stderr)  # fmt: skip
                return 1 if diverged else 0
            open_run(run_dir, meta, rows)
    except (UsageError, ResumeError, datasets.DataError) as exc:
        print(f"bench.run: error: {exc}", file=sys.stderr)
        return 2

    if args.resume is None:
        meta, before = new_record(args, run_id), {}
        write_json(run_dir / "run.json", meta)
        print(f"run {run_id}: {len(args.specs)} model(s) x {len(args.devices)} device(s) x {len(args.seeds)} seed(s) "
              f"on {args.dataset}, results in {run_dir}", file=sys.stderr)  # fmt: skip
    else:
        done = sum(t["status"] in FINISHED for t in meta["trainings"])
        print(f"resuming run {run_id}: {done} of {len(meta['trainings'])} trainings finished, results in {run_dir}",
              file=sys.stderr)  # fmt: skip

    record = RunRecord(run_dir, meta)
    specs = {s.label: s for s in args.specs}
    tuning = "tuning" in meta or args.tune is not None or args.budget_seconds is not None

    def make_task(entry: dict, until: int | None = None) -> Task:
        """The training of run.json's ``entry``: the run's schedule, or the entry's own (a tuning run's trial or pick)."""
        k = TrainingKey.of(entry)
        config = TrainConfig(**entry["config"]) if "config" in entry else args.config
        return Task(run_id, args.dataset, os.path.abspath(args.data_dir), specs[k.model], k.device, k.seed, config,
                    metrics=not args.no_metrics and k.trial is None, lr_scale=k.lr_scale, threads=args.threads,
                    executor=args.executor, parallel=placement(args, k.device)[1],
                    segment=origin.next_segment(record.trainings[k]), trial=k.trial, until=until,
                    test=k.trial is None)  # fmt: skip

    columns = header((layer for s in args.specs for layer in s.info.layers), record.grid, args.config.validation > 0,
                     trial=tuning)  # fmt: skip
    try:
        with interrupt.stopping() as stop, EpochWriter(run_dir / "epochs.csv", columns) as writer:
            lacking = [c for c in writer.missing if is_metric(c)]  # (a file without the optimizer's: sgd)
            if lacking and not args.no_metrics and "metrics_seconds" in lacking:
                print(f"bench.run: warning: {run_dir / 'epochs.csv'} was started by an older snnbench without the "
                      "activity and cost columns; they are not recorded for this run", file=sys.stderr)  # fmt: skip
            elif lacking and not args.no_metrics:  # a file of 0.2 to 0.5: all but 0.6's memory and NeuroBench columns
                print(f"bench.run: warning: {run_dir / 'epochs.csv'} was started by an older snnbench without the "
                      f"column(s) {', '.join(lacking)}; they are not recorded for this run", file=sys.stderr)  # fmt: skip
            if tuning:
                _tune(args, record, writer, make_task, run_trainings, stop, before)
            else:
                tasks = [make_task(t) for t in meta["trainings"] if t["status"] not in FINISHED]
                analysed = {t.key: bool(record.trainings[t.key].get("analysed")) for t in tasks}
                recorder = Recorder(record, writer, {t.key: t for t in tasks}, args.keep_checkpoints, args.new_segment,
                                    before)  # fmt: skip
                for event in run_trainings(tasks, run_dir / "checkpoints", analysed, stop):
                    recorder.add(event)
        if stop():
            meta["status"] = "interrupted"
            print(f"bench.run: interrupted ({stop.name}); every finished epoch is in {run_dir / 'epochs.csv'}. Resume with:\n"
                  f"  {resume_command(run_dir)}", file=sys.stderr)  # fmt: skip
            return interrupt.exit_status(stop.signum)
        meta["status"] = "complete" if all(map(tune.ended_as_it_should, meta["trainings"])) else "partial"
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
            record.save()

    rows = read_epochs(run_dir / "epochs.csv")
    finals = _finals(rows, meta["trainings"])
    failed = [t for t in meta["trainings"] if not tune.ended_as_it_should(t)]  # a trial's end is the study's
    if "tuning" in meta:
        print(tune.summary(meta, rows))
    print(_console_table(finals, [t for t in meta["trainings"] if t.get("trial") is None]))
    for t in failed:
        print(f"{t['status']}: {t['model']} on {t['device']}, seed {t['seed']}, after {t['epochs_done']} epoch(s): {t['detail']}")
    if any(t["status"] == "failed" for t in failed):
        print(f"tracebacks of the failed trainings: {run_dir / ERRORS_LOG}")
    print(f"results: {run_dir / 'epochs.csv'}")
    if not args.no_report:
        from report.__main__ import build_report

        try:
            print(f"report: {build_report([run_dir], run_dir / 'report')}")
        except KeyboardInterrupt as exc:  # the run itself is recorded whole
            print(f"bench.run: interrupted while writing the report; the run is {meta['status']}. Write the report with:\n"
                  f"  python -m report {run_dir}", file=sys.stderr)  # fmt: skip
            return getattr(exc, "exit_status", 130)
        except Exception as exc:  # never a traceback over a run that is recorded whole: one line, and how to retry
            print(f"bench.run: error: the report could not be written ({type(exc).__name__}: {exc}); the run is "
                  f"{meta['status']} and its files are whole. Write the report with:\n  python -m report {run_dir}",
                  file=sys.stderr)  # fmt: skip
            return 1
    return 1 if failed else 0


def _run_folder_check(function, out: str):
    try:
        return function(out)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(out) else ""
        raise UsageError(f"cannot create a run folder in {out}: {exc.strerror}{where}") from None


def placement(args, device: str) -> tuple[int | None, int | None]:
    """The torch threads (None: the process's own) and the trainings run at once on ``device`` that ``args`` give a
    training there (bench.provenance.placement)."""
    return origin.placement(args.executor, device, args.threads, args.workers, args.scheduler, cores())


def expected(args, device: str) -> dict:
    """The provenance a training on ``device`` will have, as far as the driver can tell before it runs (for
    --resume's check): here, on the local executor or a LocalCluster; with --scheduler only its threads (the workers'
    hardware and kernels are theirs)."""
    import torch

    threads, parallel = placement(args, device)
    if args.scheduler is not None:
        return {"torch_threads": threads, "executor": args.executor, "parallel": parallel}
    return provenance(device, args.config.precision, args.executor, parallel, threads or torch.get_num_threads())


def executor(args):
    """The function that runs the trainings: bench.executors.run_local, or one on a Dask cluster."""
    if args.executor == "local":
        return run_local
    from bench import dask_executor

    return dask_executor.prepare(args)  # UsageError (exit 2) when it cannot run: not installed, unreachable


class Recorder:
    """Writes what the trainings yield, from whichever executor, into the run folder; the only writer there."""

    def __init__(self, record: RunRecord, writer: EpochWriter, tasks: dict[TrainingKey, Task], keep_checkpoints: bool,
                 new_segment: bool = False, before: dict[TrainingKey, dict] | None = None):  # fmt: skip
        self.record, self.writer, self.tasks, self.keep = record, writer, tasks, keep_checkpoints
        self.new_segment = new_segment  # --resume --new-segment: a change of conditions was asked for
        self.before = before or {}  # a run from before segments: what its run.json said of each training's last stretch
        self.checkpoints = Checkpoints(record.dir / "checkpoints")
        self.started: set[TrainingKey] = set()
        self.ended: set[TrainingKey] = set()

    def add(self, event) -> None:
        key, record = event.key, self.record
        entry, task = record.trainings[key], self.tasks[event.key]
        if isinstance(event, Started):
            # It goes on after its checkpoint's epoch, or from epoch 1 without one: rows of later epochs are another
            # trajectory's and go first (the file replaced whole), so that its rows are never two trajectories stitched.
            # Those rows are moved, byte for byte, to epochs-set-aside.csv (never read by the report): nothing lost.
            aside = record.dir / SET_ASIDE
            epochs = sorted(k[-1] for k in self.writer.keys if k[:-1] == tuple(key) and k[-1] > event.epochs_done)
            dropped = self.writer.drop(key, after=event.epochs_done, aside=aside)
            if dropped:
                why = "no checkpoint" if event.epochs_done == 0 else f"beyond its checkpoint of epoch {event.epochs_done}"
                entry.setdefault("set_aside", []).append({"rows": dropped, "epochs": [epochs[0], epochs[-1]], "why": why,
                                                          "file": SET_ASIDE, "before_segment": task.segment})  # fmt: skip
            moved = f"its {dropped} row(s) in epochs.csv are moved to {aside}"
            if event.epochs_done == 0 and (dropped or entry["epochs_done"]):
                print(f"bench.run: warning: no checkpoint of {key.describe()}; training it again from epoch 1"
                      + (f": {moved}" if dropped else ""), file=sys.stderr)  # fmt: skip
            elif dropped:
                print(f"bench.run: warning: {key.describe()} goes on from its checkpoint of epoch {event.epochs_done}: "
                      f"{moved.replace(' row(s)', ' row(s) of later epochs')}", file=sys.stderr)  # fmt: skip
            self._segment(task, entry, event)
            record.update(key, status="running", epochs_done=event.epochs_done)
            self.started.add(key)
        elif isinstance(event, Epoch):
            # The checkpoint is saved before the row is written: a row is in the CSV only once its checkpoint is
            # on disk, so a resumed training goes on after its checkpoint's epoch and never has rows beyond it. If
            # a crash (power, kill -9) came between the two, the restored checkpoint's row is written here then;
            # EpochWriter never writes a row twice, and only a restored row can be there already (see Started).
            if not self.writer.write(event.row) and not event.restored:
                raise RuntimeError(f"epoch {event.epoch} of {key.describe()} is in epochs.csv already")
            record.update(key, epochs_done=max(event.epoch, entry["epochs_done"]))
            if not event.restored:
                _print_epoch(key, event.row, task.config.epochs)
        elif isinstance(event, Analysis):
            _save_analysis(record, task, event)
        elif isinstance(event, Ended):
            self._end(task, event)

    def _segment(self, task: Task, entry: dict, event: Started) -> None:
        """run.json's record of the stretch of the training that begins: its segment, from which epoch, when, and its
        provenance; ``changed``: what differs from the stretch before (--new-segment, or a --scheduler's worker)."""
        segments = entry.setdefault("segments", [])
        if segments and segments[-1].get("segment") == task.segment:
            segments.pop()  # begun again (a Dask worker that died): this start replaces that one
        before = segments[-1] if segments else self.before.get(task.key, {}) if event.epochs_done else {}
        changed = origin.changes(before, event.provenance)
        segments.append({"segment": task.segment, "from_epoch": event.epochs_done + 1,
                         "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **event.provenance,
                         **({"changed": changed} if changed else {})})  # fmt: skip
        if changed and not self.new_segment:
            print(f"bench.run: warning: {task.key.describe()} goes on with {origin.said(before, event.provenance)}: its "
                  f"segment {task.segment} is kept apart in the report's seconds", file=sys.stderr)  # fmt: skip

    def _end(self, task: Task, event: Ended) -> None:
        key, record, dir = task.key, self.record, self.record.dir
        if event.detail:
            record.trainings[key]["detail"] = event.detail
        if event.stopped_early:
            record.trainings[key]["stopped_early"] = event.stopped_early
            print(f"bench.run: {key.describe()} {event.detail}", file=sys.stderr)
        if event.status == "diverged":
            print(f"bench.run: {key.describe()} diverged: {event.detail}; the other trainings go on", file=sys.stderr)
        elif event.status == "oom":
            print(f"bench.run: {key.describe()}: out of memory on {task.device}; start a new run with a smaller "
                  f"--batch-size than {task.config.batch_size}, or free memory and --resume it (it goes on after its "
                  "last epoch)", file=sys.stderr)  # fmt: skip
        elif event.status == "failed":
            with open(dir / ERRORS_LOG, "a") as log:
                log.write(f"--- {key.describe()} ({time.strftime('%Y-%m-%dT%H:%M:%S%z')})\n{event.traceback}\n")
            print(f"bench.run: {key.describe()} failed: {event.detail}; its traceback is in {dir / ERRORS_LOG}; "
                  "the other trainings go on", file=sys.stderr)  # fmt: skip
        record.update(key, status=event.status)
        if event.status in ("complete", "diverged") and not self.keep:  # an interrupted or oom one goes on from it
            self.checkpoints.remove(key)
        if event.status != "interrupted":
            self.ended.add(key)
            if len(self.tasks) > 1:
                running = len(self.started - self.ended)
                queued = len(self.tasks) - len(self.ended) - running
                print(f"bench.run: trainings {len(self.ended)} done, {running} running, {queued} queued", file=sys.stderr)


def _print_epoch(key: TrainingKey, row: dict, epochs: int) -> None:
    """A line per finished epoch, terminal or not (tqdm's bars show only on a terminal); a tuning run's trial, never
    tested, says its validation accuracy."""
    if row["test_accuracy"] == row["test_accuracy"]:
        scored, took = f"test accuracy {100 * row['test_accuracy']:.2f}%", f", {row['eval_seconds']:.2f} s test"
    else:
        scored, took = f"validation accuracy {100 * row['val_accuracy']:.2f}%", ""
    print(f"bench.run: {key.describe()} epoch {row['epoch']}/{epochs}: {scored}, train loss {row['train_loss']:.4f}, "
          f"{row['train_seconds']:.2f} s training{took}", file=sys.stderr, flush=True)  # fmt: skip


def _tune(args, record: RunRecord, writer: EpochWriter, make_task, run_trainings, stop, before: dict) -> None:
    """A tuning run (bench/tune.py): batch after batch of trainings, what the Tuner asks for, until the studies and
    the picks' trainings are done or ``stop()``; run.json saved before each batch (the trials it asked) and after."""
    rows: dict[TrainingKey, list[dict]] = {}
    for row in read_epochs(record.dir / "epochs.csv"):
        rows.setdefault(TrainingKey.of(row), []).append(row)

    def of(key: TrainingKey) -> list[dict]:
        return sorted(rows.get(key, []), key=lambda r: int(r["epoch"]))

    def seconds(key: TrainingKey) -> float:
        return sum(float(r["train_seconds"]) for r in rows.get(key, []))

    tuner = tune.Tuner(args, record.meta, record.dir, events.is_event(args.dataset))
    slots = max(placement(args, d)[1] or 1 for d in args.devices)
    tuner.settle(of)  # a resumed run: what ended before it was cut off
    ran: set[TrainingKey] = set()
    while not stop():
        wanted = tuner.next_tasks(seconds, slots)
        record.refresh()
        tasks = [make_task(entry, until) for entry, until in wanted]
        if not tasks or all(t.key in ran and t.until is None for t in tasks):
            break  # done; or only what ran to its end already and did not finish (failed): not again in this run
        record.save()
        analysed = {t.key: bool(record.trainings[t.key].get("analysed")) for t in tasks}
        recorder = Recorder(record, writer, {t.key: t for t in tasks}, args.keep_checkpoints, args.new_segment, before)
        for event in run_trainings(tasks, record.dir / "checkpoints", analysed, stop):
            recorder.add(event)
            if isinstance(event, Epoch):
                kept = [r for r in rows.get(event.key, []) if int(r["epoch"]) != event.epoch]
                rows[event.key] = [*kept, event.row]
        ran |= {t.key for t in tasks if t.until is None}
        if not stop():
            tuner.settle(of)
        record.save()


def _save_analysis(record: RunRecord, task: Task, event: Analysis) -> None:
    """One test digit's neuron activity (RUN/activity/) and the gradient window (RUN/window.csv): a whole file and all of
    a training's rows, then the record of both, so that a resume never appends the rows again."""
    key = task.key
    grid = record.grid
    labels = {"run_id": task.run_id, "dataset": task.dataset, "model": key.model, "device": key.device, "seed": key.seed,
              **({"lr_scale": key.lr_scale} if grid else {}), "epoch": event.epoch}  # fmt: skip
    config = {"reset": getattr(task.model.config, "reset", ""), "decay": getattr(task.model.config, "decay", "")}
    analysis.save_activity(record.dir / "activity" / f"{key.file_stem()}.npz", event.activity, **labels)
    analysis.save_window(record.dir / "window.csv", [{**labels, **config, **row} for row in event.window], grid)
    record.update(key, analysed=True)


def _finals(rows: list[dict], trainings: list[dict]) -> list[dict]:
    """The last row of each complete training (not a tuning run's trials), with its total training seconds as
    ``seconds_sum``."""
    complete = {TrainingKey.of(t) for t in trainings if t["status"] == "complete" and t.get("trial") is None}
    finals: dict[tuple, dict] = {}
    for r in rows:  # in file order: a training's epochs ascend
        key = TrainingKey.of(r)
        if key in complete:
            finals[key] = dict(r, seconds_sum=finals.get(key, {}).get("seconds_sum", 0.0) + r["train_seconds"])
    return list(finals.values())


def _console_table(finals: list[dict], trainings: list[dict]) -> str:
    """The final rows averaged per model, device and scale, in the report's order (report.stats.model_order):
    devices and models as given, a model's scales together and ascending, however the trainings finished."""
    devices = list(dict.fromkeys(t["device"] for t in trainings))
    specs = list(dict.fromkeys(t["model"] for t in trainings))
    groups: dict[tuple, list[dict]] = {}
    for row in finals:
        groups.setdefault((row["model"], row["device"], TrainingKey.of(row).lr_scale), []).append(row)
    groups = dict(sorted(groups.items(), key=lambda g: (devices.index(g[0][1]), specs.index(g[0][0]), g[0][2])))
    grid = any(scale != 1 for _, _, scale in groups)
    table = [
        [model, device, *([f"x{scale:g}"] if grid else []), len(rows),
         100 * sum(r["test_accuracy"] for r in rows) / len(rows),
         *([100 * sum(r["val_accuracy"] for r in rows) / len(rows)] if "val_accuracy" in rows[0] else []),
         sum(r["seconds_sum"] / r["epoch"] for r in rows) / len(rows)]
        for (model, device, scale), rows in groups.items()
    ]  # fmt: skip
    validation = bool(finals) and "val_accuracy" in finals[0]
    headers = ["model", "device", *(["lr scale"] if grid else []), "seeds", "final test accuracy (%)",
               *(["final validation accuracy (%)"] if validation else []), "train s/epoch"]  # fmt: skip
    return tabulate(table, headers=headers, floatfmt=".2f")


if __name__ == "__main__":
    sys.exit(main())
