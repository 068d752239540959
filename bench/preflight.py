"""Everything ``python -m bench.run`` checks before a run folder exists: the arguments against the models, the
devices and the data, each model's contract (bench/contract.py), and which kernels run on which backend
(models/dispatch.py: a fallback is a warning, or an error under ``SNNBENCH_REQUIRE_NATIVE=1``). Also ``--list``.

A mistake here is a UsageError: one line, exit status 2, nothing written.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
import typing
from pathlib import Path

from tabulate import tabulate

import models
from bench import config as train_config
from bench import contract, events, tune
from bench import data as datasets
from bench.cli import Parser, UsageError, positive
from bench.devices import DeviceError, cores, resolve_devices
from bench.precision import problem as precision_problem
from bench.record import check_unchanged, read_run, recorded_args, to_argv
from models import dispatch, spike_products


def build_parser() -> Parser:
    p = Parser(prog="python -m bench.run", description="Train spiking and non-spiking models side by side.")
    p.add_argument(
        "--models", nargs="+", default=["snn", "ffn"], metavar="SPEC",
        help=f"model specs NAME[:key=value,...]; NAME is one of {', '.join(models.available())} (default: snn ffn)",
    )  # fmt: skip
    p.add_argument("--device", nargs="+", default=["all"], help="cpu, cuda, cuda:N, mps or all (default: all)")
    names = ", ".join(datasets.available())
    p.add_argument("--dataset", default="mnist-mini", metavar="NAME",
                   help=f"one of {names}, an event dataset with its binning as NAME:key=value,... (e.g. "
                        "shd:bins=100; see --list), or package.module:function (default: %(default)s)")  # fmt: skip
    p.add_argument("--data-dir", default="data", help="where torchvision keeps mnist/fashion-mnist, and the event "
                   "datasets' files are, each in its publisher's layout (default: %(default)s)")  # fmt: skip
    p.add_argument("--download", action="store_true", help="let tonic fetch an event dataset's missing files (needs "
                   "a network; default: a missing file is an error that names it)")  # fmt: skip
    train_config.add_options(p)  # --epochs, --lr, --optimizer, --momentum, --batch-size, ...: bench/config.py
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one training per seed (default: 0)")
    p.add_argument("--lr-scale", type=positive(float), nargs="+", default=[1.0], metavar="S",
                   help="multiply the whole --lr schedule by each S: one training per model x device x seed x S "
                        "(default: 1)")  # fmt: skip
    tuning = p.add_argument_group("tuning (bench/tune.py)")
    tuning.add_argument("--tune", type=positive(int), default=None, metavar="N",
                        help="a hyperparameter study per model and device: N trials (Optuna), each a training scored on "
                             "--validation; the best configuration is then trained with each of --seeds and only those "
                             "are scored on the test set (default: no study)")  # fmt: skip
    tuning.add_argument("--budget-seconds", type=positive(float), default=None, metavar="S",
                        help="begin no trial once a study's trials have trained for S measured seconds (alone or with "
                             "--tune N) (default: no limit)")  # fmt: skip
    tuning.add_argument("--sampler", choices=tune.SAMPLERS, default="random",
                        help="random: independent draws (the tuning curves assume them); tpe: Optuna's TPE "
                             "(default: random)")  # fmt: skip
    tuning.add_argument("--tune-seed", type=int, default=0, help="the sampler's seed (default: 0)")
    tuning.add_argument(
        "--pruner",
        choices=tune.PRUNERS,
        default="none",
        help="halving: synchronous successive halving over the trials, rungs in epochs (default: none)",
    )
    tuning.add_argument(
        "--min-epochs", type=positive(int), default=1, help="successive halving's first rung, in epochs (default: 1)"
    )
    tuning.add_argument(
        "--reduction-factor",
        type=positive(int),
        default=3,
        metavar="ETA",
        help="successive halving keeps the best 1/ETA at each rung (default: 3)",
    )
    tuning.add_argument(
        "--search-space",
        default=None,
        metavar="FILE",
        help="JSON overrides of the search space per model kind or name (see bench/tune.py)",
    )
    p.add_argument(
        "--threads",
        type=positive(int),
        default=None,
        help="torch threads per training (default: as many as torch takes, the cores of this machine; 1 with --executor dask)",
    )
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local: one training after the other in this process; dask: each training a task on a Dask "
                        "cluster (pip install -e '.[dask]') (default: local)")  # fmt: skip
    p.add_argument("--workers", type=positive(int), default=None,
                   help="--executor dask without --scheduler: worker processes of the LocalCluster that bench.run "
                        "starts and stops (default: the cores divided by --threads; one per GPU for cuda)")  # fmt: skip
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="--executor dask: the tcp://HOST:PORT of a running Dask scheduler to use instead of a "
                        "LocalCluster (default: none)")  # fmt: skip
    p.add_argument("--out", default="results", help="parent folder of the run folder (default: %(default)s)")
    p.add_argument("--no-report", action="store_true", help="do not build the Markdown report at the end")
    p.add_argument(
        "--no-metrics", action="store_true",
        help="do not count firing, sparsity and synaptic operations during evaluation, nor save neuron activity "
             "and the gradient window after training (default: count and save them)",
    )  # fmt: skip
    p.add_argument(
        "--resume", metavar="RUN_DIR", default=None,
        help="finish the run in RUN_DIR with the arguments recorded in its run.json; only --no-report, "
             "--keep-checkpoints, --threads, --executor, --workers, --scheduler, --new-segment and --download may be added, "
             "and a change of the threads, the trainings in parallel, the hardware or a kernel backend needs --new-segment "
             "(default: start a new run)",
    )  # fmt: skip
    p.add_argument("--new-segment", action="store_true",
                   help="with --resume: go on although the trainings would run with other threads, trainings in "
                        "parallel, hardware or kernel backends than they ran with; the report keeps the seconds of each "
                        "condition apart (default: refuse such a resume)")  # fmt: skip
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each training's last checkpoint when it ends")
    p.add_argument("--list", action="store_true", help="list every model and dataset, where it comes from, and the "
                   "models' config keys; run nothing")  # fmt: skip
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The checked arguments; with --resume, the recorded ones (``args.meta`` is the run's run.json)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.list:
        return args
    args = _checked(args)
    args.lr_given = any(a == "--lr" or a.startswith("--lr=") for a in argv)  # the default schedule never warns
    if args.resume is None:
        return args
    meta = read_run(args.resume)
    recorded = to_argv(meta["args"])
    cluster = ("executor", "workers", "scheduler")  # where it runs: given with --resume, none of the recorded ones holds
    flags = {a.split("=")[0] for a in argv}
    if flags & {"--" + k for k in cluster}:
        recorded = to_argv({k: v for k, v in meta["args"].items() if k not in cluster})
    original = recorded_args(_checked(build_parser().parse_args(recorded)))
    try:  # the recorded command line, then the given one: argparse keeps the last value of an option
        wanted = _checked(build_parser().parse_args(recorded + argv))
    except UsageError:  # options that cannot even join the recorded ones (--optimizer adam, a recorded --momentum)
        given = {k: v for k, v in recorded_args(args).items() if f"--{k.replace('_', '-')}" in flags}
        check_unchanged(original, {**original, **given}, args.resume)  # name what contradicts the run, if anything
        raise
    check_unchanged(original, recorded_args(wanted), args.resume)
    wanted.meta = meta
    return wanted


def _checked(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with ``specs``, ``devices`` and ``config`` (a TrainConfig) added; UsageError for what cannot run,
    a model that does not fit the dataset included."""
    try:
        args.devices = resolve_devices(args.device)
        args.config = train_config.from_args(args)
        args.dataset = datasets.canonical(args.dataset)  # an event dataset's options, checked and in their order
        events.DOWNLOAD = args.download
        sizes = datasets.model_defaults(args.dataset, args.data_dir)  # n_in, n_out from the data unless given
        args.specs = [models.parse_spec(s, defaults=sizes) for s in args.models]
        for spec in args.specs:
            datasets.check_fits(spec.label, spec.config, args.dataset, args.data_dir, spec.info.min_time_steps)
    except (models.SpecError, DeviceError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if why := precision_problem(args.config.precision, args.devices):
        raise UsageError(why)
    labels = [s.label for s in args.specs]
    if len(set(labels)) != len(labels):
        raise UsageError(f"the same model is given twice: {', '.join(labels)}")
    if len(set(args.seeds)) != len(args.seeds):
        raise UsageError(f"the same seed is given twice: {args.seeds}")
    if len(set(args.lr_scale)) != len(args.lr_scale):
        raise UsageError(f"the same --lr-scale is given twice: {' '.join(map(str, args.lr_scale))}")
    if args.executor != "dask" and (args.scheduler is not None or args.workers is not None):
        raise UsageError(f"{'--scheduler' if args.scheduler is not None else '--workers'} needs --executor dask")
    if args.new_segment and args.resume is None:
        raise UsageError("--new-segment needs --resume: a new run's trainings start their first segment")
    if args.scheduler is not None and args.workers is not None:
        raise UsageError("--workers is for the LocalCluster that bench.run starts; with --scheduler the cluster has its own")
    if args.config.input_scaling != "centered":
        if events.is_event(args.dataset):
            raise UsageError(f"--input-scaling {args.config.input_scaling} is for static images; {args.dataset}'s "
                             "inputs are event counts, given as they are")  # fmt: skip
        if own := [s.label for s in args.specs if s.info.intensities]:
            raise UsageError(f"--input-scaling {args.config.input_scaling}: {', '.join(own)} encode(s) the pixel "
                             "intensities themselves (x + 0.5 in [0, 1]) and take only the centered inputs; run "
                             "them without --input-scaling")  # fmt: skip
    tune.check_args(args)
    return args


def check_data(args: argparse.Namespace, data: datasets.Dataset) -> None:
    """What the data must allow: a validation split that leaves samples to train on, of every class."""
    n = args.config.validation
    if n and n >= len(data.train):
        raise UsageError(f"--validation {n} is not below the {len(data.train)} training samples of {args.dataset}")
    if n and n < data.info.n_classes:
        raise UsageError(f"--validation {n} is fewer than the {data.info.n_classes} classes of {args.dataset}: "
                         "a stratified split needs at least one of each")  # fmt: skip
    if n:
        classes, counts, held = datasets.held_out_counts(data.train.labels, n)
        for c, count, h in zip(classes.tolist(), counts.tolist(), held.tolist()):
            if h >= count:
                raise UsageError(f"--validation {n} leaves class {data.info.class_names[c]} of {args.dataset} without a "
                                 f"training sample (all {count} held out)")  # fmt: skip


def check_models(args: argparse.Namespace, data: datasets.Dataset) -> None:
    """The contract check of every model on the run's data (its first device's tensors, copied to the CPU). Records
    the kernels the models called (``args.kernels``: models/dispatch.py's names) for ``native_notes``."""
    try:
        spike_products.forced()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with dispatch.watching() as used:
        for spec in args.specs:
            try:
                contract.check(spec, data)
            except contract.ContractError as exc:
                raise UsageError(str(exc)) from None
    args.kernels = sorted(used)


def native_notes(args: argparse.Namespace) -> list[str]:
    """One line per fallback in effect on the run's devices, for the kernels its models use (``args.kernels``, from
    ``check_models``; all where it has not run): which backend runs instead of which, why (the compiler's first error
    line, ``SNNBENCH_NATIVE=0``, ``triton not installed``) and whether the results change, not only the speed.
    UsageError (exit status 2) instead where ``SNNBENCH_REQUIRE_NATIVE=1``."""
    found = dispatch.fallbacks(args.devices, getattr(args, "kernels", None))
    if found and dispatch.required():
        raise UsageError(f"{dispatch.REQUIRE}=1 refuses the fallback(s) in effect: {'; '.join(f.summary() for f in found)}; "
                         f"build the C kernels (a C compiler as cc or $CC) or unset {dispatch.REQUIRE}")  # fmt: skip
    return [f.line() for f in found]


def check_out(out: str) -> None:
    """UsageError when ``--out`` is a run folder or inside one: a new run there would be a run inside a run."""
    for folder in (Path(out).absolute(), *Path(out).absolute().parents):
        if (folder / "run.json").is_file():
            raise UsageError(f"--out {out} is inside the run folder {folder}; to finish that run, use --resume {folder}")


def warnings(args: argparse.Namespace, data: datasets.Dataset) -> list[str]:
    """Arguments that run, but probably not as meant."""
    config, found = args.config, []
    if args.lr_given and len(config.lrs) > config.epochs:
        unused = len(config.lrs) - config.epochs
        found.append(f"{len(config.lrs)} learning rates for {config.epochs} epoch(s): the last {unused} never used")
    if config.optimizer == "adam" and not args.lr_given:
        found.append("--optimizer adam with the default --lr 0.1 0.05 0.01, the 2018 schedule for SGD: Adam usually "
                     "wants rates nearer 0.001")  # fmt: skip
    if args.threads and args.threads > cores():
        found.append(f"--threads {args.threads} is more than the {cores()} cores of this machine: the threads share them, "
                     "and the seconds measure the sharing")  # fmt: skip
    elif args.executor == "dask" and args.workers and args.scheduler is None and args.workers * (args.threads or 1) > cores():
        found.append(f"--workers {args.workers} of {args.threads or 1} thread(s) each are more than the {cores()} cores of "
                     "this machine: the trainings share them, and the seconds measure the sharing")  # fmt: skip
    n_train = len(data.train) - config.validation
    if config.batch_size > n_train:
        found.append(f"--batch-size {config.batch_size} is more than the {n_train} training samples of {args.dataset}: "
                     "each epoch is one step")  # fmt: skip
    return found


def listing() -> str:
    """Every model and dataset, where each comes from, and the models' config keys with defaults and types."""
    rows = []
    for name in models.available():
        try:
            cls, info, where = models.model_class(name), models.INFO[name], models.ORIGIN[name]
        except models.SpecError as exc:
            rows.append([name, "entry point", "?", f"cannot be loaded: {exc}"])
            continue
        hints = typing.get_type_hints(cls.Config)
        keys = ", ".join(f"{f.name}={f.default!r} ({_type_name(hints[f.name])})" for f in dataclasses.fields(cls.Config))
        rows.append([name, where, info.kind, keys])
    rows += [[name, "not available", "spiking", f"it {why}"] for name, why in sorted(models.UNAVAILABLE.items())]
    sets = []
    for name in datasets.available():
        known = datasets.info(name) if events.is_event(name) else datasets.DATASETS.get(name, (None, None))[1]
        shape = f"{known.describe()}, {known.n_classes} classes" if known else "known once loaded"
        try:
            where = datasets.origin(name)
        except datasets.DataError as exc:
            where = f"cannot be loaded: {exc}"
        if events.is_event(name):
            where += "" if importlib.util.find_spec("tonic") else " (not installed: pip install -e '.[events]')"
            opts = events.SOURCES[name].defaults
            shape += "; keys: " + ", ".join(f"{f.name}={getattr(opts, f.name)!r}" for f in dataclasses.fields(opts))
        sets.append([name, where, shape])
    return "\n\n".join([
        tabulate(rows, headers=["model", "from", "kind", "config keys (default, type)"], maxcolwidths=[None, 30, None, 80]),
        *models.NOTES.values(),
        tabulate(sets, headers=["dataset", "from", "input, classes"], maxcolwidths=[None, None, 80]),
        "A model can also be named as package.module:ClassName[:key=value,...], a dataset as package.module:function.",
    ])  # fmt: skip


def _type_name(kind) -> str:
    if typing.get_origin(kind) is typing.Literal:
        return " | ".join(map(str, typing.get_args(kind)))
    return getattr(kind, "__name__", str(kind))
