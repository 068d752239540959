"""``bench.run --tune N``: a budgeted hyperparameter study per model and device, with Optuna, whose trials are trainings.

The driver (bench/run.py's process) is the only writer, of Optuna's storage as of the run folder. It asks Optuna for
trials (ask-and-tell), turns each into an ordinary training (bench.train.Task with the trial's TrainConfig and the
trial's number in its key), runs them on the run's executor (local or Dask) and tells Optuna each outcome: the
validation accuracy after the training's last epoch. Selection never sees the test set: the trials are scored on the
``--validation`` samples (required), the configuration with the best one is *picked*, and only the picks, trained
again with the run's ``--seeds``, are scored on the test set (the trials' own test passes are skipped: their rows have
no test accuracy).

- **Search space**: ``SPACE`` below, one per model kind and the same for every model of a kind (ranges that contain the
  defaults of bench/config.py), overridable per kind or per model name from a JSON file (``--search-space``):
  ``{"spiking": {"batch_size": {"choices": [100, 1000]}}, "ffn": {"lr_adam": {"low": 1e-4, "high": 1e-2, "log": true}}}``;
  a value that is not a dict fixes that hyperparameter. ``lr_sgd`` and ``lr_adam`` are the learning rate of the
  optimizer drawn (a conditional space), ``momentum`` SGD's only. A trial's schedule is its learning rate at every
  epoch, up to ``--epochs`` (with ``--patience``, early stopping on the validation loss).
- **Samplers**: ``random`` (the default: the trials are independent draws, which the tuning curves of the report
  assume) or ``tpe``, both seeded by ``--tune-seed``.
- **Budget**: ``--tune N`` trials per model and device, and/or ``--budget-seconds S``: no trial is begun once the
  study's trials have trained for S measured seconds (those under way finish; the record says what was used).
- **Pruning** (``--pruner halving``): synchronous successive halving (Jamieson and Talwalkar 2016): all N trials train
  to the first rung (``--min-epochs`` epochs), the best 1/eta (``--reduction-factor``) by validation accuracy there go
  on to eta times as many epochs, and so on to ``--epochs``; the others end as ``pruned``, their rows kept. Optuna's own
  pruners are asynchronous: they decide per trial as its reports arrive, which on a batch of trainings that end
  together would depend on the order they are looked at; here the rungs are the driver's, and Optuna records each
  trial's reports (``trial.report``) and its state.
- **Resume**: the study is Optuna's SQLite storage in the run folder (``study.db``) and run.json lists every trial that
  was asked, its parameters and its status, so Ctrl-C, a killed worker and ``--resume`` lose nothing: a resumed study
  finishes the trials it had asked (from their checkpoints) before it asks new ones.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.cli import UsageError
from bench.config import TrainConfig
from bench.schema import TrainingKey, describe_params

STUDY_FILE = "study.db"
TRIAL_SEED = 10_000  # trial k trains with seed TRIAL_SEED + k: never one of the picks' --seeds (which must be below)
SAMPLERS = ("random", "tpe")
OPEN = ("pending", "running", "paused", "interrupted")  # a trial's statuses that go on; failed and oom ones are not tried again
PRUNERS = ("none", "halving")
DEFAULT_SPACE: dict[str, Any] = {
    "optimizer": {"choices": ["sgd", "adam"]},
    "lr_sgd": {"low": 1e-3, "high": 1.0, "log": True},  # the 2018 schedule's 0.1 .. 0.01 inside
    "lr_adam": {"low": 1e-4, "high": 3e-2, "log": True},  # torch's and Keras's 1e-3 inside
    "momentum": {"low": 0.0, "high": 0.95},  # 2018's 0.5 inside
    "batch_size": {"choices": [64, 128, 256, 512, 1000]},  # 2018's 1000 inside
    "weight_decay": {"choices": [0.0, 1e-5, 1e-4, 1e-3]},
    "input_scaling": {"choices": ["centered", "unit", "standard"]},
}
SPACE: dict[str, dict[str, Any]] = {"spiking": DEFAULT_SPACE, "baseline": DEFAULT_SPACE}  # one per model kind


def space_for(spec, overrides: dict[str, dict[str, Any]], fixed_inputs: bool) -> dict[str, Any]:
    """The search space of a model: its kind's, then the file's entries for its kind and for its name (later wins);
    no ``input_scaling`` where the inputs cannot be rescaled (``fixed_inputs``: event data, or a model that encodes
    intensities itself): it is fixed at ``centered`` there, and the report says so."""
    space = dict(SPACE[spec.info.kind])
    for name in (spec.info.kind, spec.name):
        space.update(overrides.get(name, {}))
    if fixed_inputs:
        space["input_scaling"] = "centered"
    return space


def load_space_file(path: str | None) -> dict[str, dict[str, Any]]:
    """``--search-space FILE``'s overrides, checked: UsageError (one line) for a file that cannot be used."""
    if path is None:
        return {}
    try:
        loaded = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"--search-space {path}: cannot read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--search-space {path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
        raise UsageError(f"--search-space {path}: must map model kinds or names to {{hyperparameter: range}} objects")
    for owner, entries in loaded.items():
        for name, value in entries.items():
            if name not in DEFAULT_SPACE:
                raise UsageError(f"--search-space {path}: {owner}: unknown hyperparameter {name!r}; known: "
                                 f"{', '.join(DEFAULT_SPACE)}")  # fmt: skip
            if isinstance(value, dict) and not (_is_range(value) or _is_choices(value)):
                raise UsageError(f"--search-space {path}: {owner}.{name}: give {{\"low\": L, \"high\": H}} (with "
                                 "\"log\": true for a log scale) or {\"choices\": [...]}")  # fmt: skip
    return loaded


def _is_range(value: dict) -> bool:
    return set(value) <= {"low", "high", "log"} and {"low", "high"} <= set(value) and \
        all(isinstance(value[k], (int, float)) for k in ("low", "high")) and value["low"] <= value["high"] and \
        (not value.get("log") or value["low"] > 0)  # fmt: skip


def _is_choices(value: dict) -> bool:
    return set(value) == {"choices"} and isinstance(value["choices"], list) and len(value["choices"]) > 0


def _suggest(trial, name: str, value):
    if not isinstance(value, dict):
        return value
    if "choices" in value:
        return trial.suggest_categorical(name, value["choices"])
    return trial.suggest_float(name, float(value["low"]), float(value["high"]), log=bool(value.get("log")))


def draw(trial, space: dict[str, Any]) -> dict[str, Any]:
    """A trial's hyperparameters from ``space`` (define-by-run: the learning rate and momentum of the optimizer drawn)."""
    optimizer = _suggest(trial, "optimizer", space["optimizer"])
    params = {"optimizer": optimizer, "lr": _suggest(trial, f"lr_{optimizer}", space[f"lr_{optimizer}"])}
    if optimizer == "sgd":
        params["momentum"] = _suggest(trial, "momentum", space["momentum"])
    for name in ("batch_size", "weight_decay", "input_scaling"):
        params[name] = _suggest(trial, name, space[name])
    params["batch_size"] = int(params["batch_size"])
    return params


def trial_config(base: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    """The run's schedule with a trial's hyperparameters: its learning rate at every epoch, its optimizer (SGD with its
    momentum, made fresh each epoch as bench.config's sgd is; Adam kept), batch size, weight decay and input scaling."""
    return replace(base, lrs=(float(params["lr"]),), optimizer=params["optimizer"], momentum=params.get("momentum"),
                   batch_size=int(params["batch_size"]), weight_decay=float(params["weight_decay"]),
                   input_scaling=params["input_scaling"], fresh_optimizer=None)  # fmt: skip


def rungs(epochs: int, min_epochs: int, eta: int) -> list[int]:
    """Successive halving's epochs: min_epochs, min_epochs * eta, ... below ``epochs``, then ``epochs``."""
    out, r = [], min_epochs
    while r < epochs:
        out.append(r)
        r *= eta
    return [*out, epochs]


def check_args(args) -> None:
    """What --tune needs, before anything runs: UsageError (exit 2, one line) otherwise."""
    tuning = args.tune is not None or args.budget_seconds is not None
    for flag, given in (("--sampler", args.sampler != "random"), ("--pruner", args.pruner != "none"),
                        ("--search-space", args.search_space is not None)):  # fmt: skip
        if given and not tuning:
            raise UsageError(f"{flag} is for a tuning run: give --tune N or --budget-seconds S too")
    if not tuning:
        return
    if not args.config.validation:
        raise UsageError("--tune picks on the validation split, never on the test set: give --validation N too")
    if len(args.lr_scale) > 1 or args.lr_scale != [1.0]:
        raise UsageError("--tune draws the learning rate itself: --lr-scale is for a grid run without --tune")
    if clash := [s for s in args.seeds if s >= TRIAL_SEED]:
        raise UsageError(f"--seeds {clash[0]}: the picks' seeds must be below {TRIAL_SEED}, the trials' own seeds")
    if args.reduction_factor < 2:
        raise UsageError(f"--reduction-factor {args.reduction_factor}: successive halving needs 2 or more")
    if args.pruner == "halving":
        if args.tune is None or args.budget_seconds is not None:
            raise UsageError("--pruner halving needs a fixed number of trials: --tune N without --budget-seconds")
        if args.min_epochs >= args.config.epochs:
            raise UsageError(f"--min-epochs {args.min_epochs} leaves successive halving no rung below --epochs "
                             f"{args.config.epochs}")  # fmt: skip
    args.space_overrides = load_space_file(args.search_space)


class Tuner:
    """The studies of one tuning run: ``next_tasks`` says what to train next, ``settle`` what the ended ones mean."""

    def __init__(self, args, meta: dict, run_dir: Path, event_data: bool):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.args, self.meta = args, meta
        self.optuna = optuna
        self.storage = optuna.storages.RDBStorage(f"sqlite:///{(run_dir / STUDY_FILE).absolute()}")
        state = meta.setdefault("tuning", {
            "trials": args.tune, "budget_seconds": args.budget_seconds, "sampler": args.sampler,
            "tune_seed": args.tune_seed, "pruner": args.pruner, "min_epochs": args.min_epochs,
            "reduction_factor": args.reduction_factor, "studies": {},
        })  # fmt: skip
        self.studies, self.spaces = {}, {}
        for spec in args.specs:
            for device in args.devices:
                name = f"{spec.label} on {device}"
                sampler = (optuna.samplers.RandomSampler(seed=args.tune_seed) if args.sampler == "random" else
                           optuna.samplers.TPESampler(seed=args.tune_seed))  # fmt: skip
                self.studies[name] = optuna.create_study(study_name=name, storage=self.storage, sampler=sampler,
                                                         direction="maximize", load_if_exists=True)  # fmt: skip
                self.spaces[name] = space_for(spec, getattr(args, "space_overrides", {}), event_data or spec.info.intensities)
                entry = state["studies"].setdefault(name, {"model": spec.label, "device": device, "promoted": [],
                                                           "picked": None})  # fmt: skip
                entry["space"] = self.spaces[name]

    # --- what each study has done
    def trials_of(self, name: str) -> list[dict]:
        return [t for t in of_study(self.meta, self.meta["tuning"]["studies"][name]) if t.get("trial") is not None]

    def seconds_of(self, name: str, seconds: Callable[[TrainingKey], float]) -> float:
        return sum(seconds(TrainingKey.of(t)) for t in self.trials_of(name))

    def _open(self, name: str) -> list[dict]:
        return [t for t in self.trials_of(name) if t["status"] in OPEN]

    def _wants_more(self, name: str, seconds: Callable[[TrainingKey], float]) -> bool:
        tune, budget = self.args.tune, self.args.budget_seconds
        if tune is not None and len(self.trials_of(name)) >= tune:
            return False
        return budget is None or self.seconds_of(name, seconds) < budget

    # --- asking
    def ask(self, name: str, slots: int) -> None:
        """Ask ``slots`` new trials of study ``name`` and enter them in run.json (pending)."""
        study, s = self.studies[name], self.meta["tuning"]["studies"][name]
        base = self.args.config
        for _ in range(slots):
            trial = study.ask()
            params = draw(trial, self.spaces[name])
            config = trial_config(base, params)
            key = TrainingKey(s["model"], s["device"], TRIAL_SEED + trial.number, 1.0, trial.number)
            self.meta["trainings"].append({**key.record(), "status": "pending", "epochs_done": 0, "params": params,
                                           "config": config.record()})  # fmt: skip

    def next_tasks(self, seconds: Callable[[TrainingKey], float], slots: int) -> list[tuple[dict, int | None]]:
        """The trainings to run next, as (run.json entry, the epoch to pause after or None); none when the run is done:
        open trials first (pending, paused or interrupted: from their checkpoints), to the next rung where pruning;
        then new trials while a study's budget allows (all N at once with the random sampler or pruning, ``slots`` at a
        time otherwise); then the picks' trainings."""
        tasks = []
        counts = self._balanced(seconds, slots)
        for name in self.studies:
            if self.args.pruner == "halving" and not self.trials_of(name):
                self.ask(name, self.args.tune)
            open_ = self._open(name)
            if not open_ and self._wants_more(name, seconds) and self.args.pruner != "halving":
                left = math.inf if self.args.tune is None else self.args.tune - len(self.trials_of(name))
                fixed = self.args.budget_seconds is None and self.args.sampler == "random"  # all N at once
                self.ask(name, int(left if fixed else min(counts[name], left)))
                open_ = self._open(name)
            until = self._rung(name, open_)
            tasks += [(t, until) for t in open_]
        if tasks:
            return tasks
        return [(t, None) for t in self._picks() if t["status"] not in ("complete", "diverged")]  # (failed:
        # bench.run asks once per run)

    def _balanced(self, seconds: Callable[[TrainingKey], float], slots: int) -> dict[str, int]:
        """How many new trials each study asks in the next batch: ``slots``, except in a random search on a seconds
        budget, where each study asks as many as take about the seconds of ``slots`` trials of the slowest study (from
        the mean seconds of their ended trials), no more than its budget's rest would take. Then one batch
        costs each study about the same seconds, and a model 100 times cheaper than another does not need 100 times
        as many batches (each ending with its slowest training) to spend the same budget. TPE asks ``slots`` at a
        time: it learns from the trials before."""
        counts = dict.fromkeys(self.studies, slots)
        budget = self.args.budget_seconds
        if budget is None or self.args.sampler != "random" or self.args.pruner == "halving":
            return counts
        means = {}
        for name in self.studies:
            ended = [seconds(TrainingKey.of(t)) for t in self.trials_of(name) if t["status"] not in OPEN]
            if ended:
                means[name] = max(sum(ended) / len(ended), 1e-3)
        if not means:
            return counts
        slowest = max(means.values())  # a batch lasts about that long, whether the slowest study goes on or not
        for name, mean in means.items():
            if self._wants_more(name, seconds):
                rest = budget - self.seconds_of(name, seconds)
                counts[name] = max(slots, min(math.ceil(slots * slowest / mean), math.ceil(rest / mean)))
        return counts

    def _rung(self, name: str, open_: list[dict]) -> int | None:
        """Where the open trials of a pruned study train to now: the first rung one of them has not reached."""
        if self.args.pruner != "halving" or not open_:
            return None
        ladder = rungs(self.args.config.epochs, self.args.min_epochs, self.args.reduction_factor)
        low = min(int(t["epochs_done"]) for t in open_)
        target = next(r for r in ladder if r > low)
        return None if target == ladder[-1] else target

    # --- telling
    def settle(self, rows: Callable[[TrainingKey], list[dict]]) -> None:
        """After a batch: tell Optuna every trial that ended (its final validation accuracy; failed for a diverged one)
        and, where pruning, promote at the rung the open trials all reached. ``rows(key)``: a training's epochs.csv rows."""
        for name, study in self.studies.items():
            if self.args.pruner == "halving":
                self._promote(name, rows)  # first: the trials it prunes are told below, with the rest
            by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
            for t in self.trials_of(name):
                trial = by_number.get(t["trial"])
                if trial is None or trial.state != self.optuna.trial.TrialState.RUNNING:
                    continue
                history = rows(TrainingKey.of(t))
                live = self.optuna.trial.Trial(study, trial._trial_id)
                for r in history:
                    if r["epoch"] not in trial.intermediate_values and _finite(r.get("val_accuracy")):
                        live.report(float(r["val_accuracy"]), int(r["epoch"]))
                if t["status"] == "complete":
                    value = float(history[-1]["val_accuracy"]) if history else math.nan
                    study.tell(trial.number, value if math.isfinite(value) else None,
                               state=None if math.isfinite(value) else self.optuna.trial.TrialState.FAIL)  # fmt: skip
                elif t["status"] in ("diverged", "failed", "oom"):
                    study.tell(trial.number, state=self.optuna.trial.TrialState.FAIL)
                elif t["status"] == "pruned":
                    study.tell(trial.number, state=self.optuna.trial.TrialState.PRUNED)

    def _promote(self, name: str, rows: Callable[[TrainingKey], list[dict]]) -> None:
        s = self.meta["tuning"]["studies"][name]
        open_ = self._open(name)
        if not open_ or any(t["status"] != "paused" for t in open_):
            return
        reached = min(int(t["epochs_done"]) for t in open_)
        if reached in s["promoted"]:
            return
        scores = []
        for t in open_:
            at = [r for r in rows(TrainingKey.of(t)) if int(r["epoch"]) == reached]
            value = float(at[0]["val_accuracy"]) if at and _finite(at[0].get("val_accuracy")) else -math.inf
            scores.append((value, -int(t["trial"]), t))
        keep = max(1, math.ceil(len(open_) / self.args.reduction_factor))
        ranked = sorted(scores, key=lambda v: (v[0], v[1]), reverse=True)
        for value, _, t in ranked[keep:]:
            t["status"] = "pruned"
            t["detail"] = f"pruned at epoch {reached}: validation accuracy {value:.4f}, not in the best {keep} of {len(open_)}"
            print(f"bench.run: {TrainingKey.of(t).describe()} {t['detail']}", file=sys.stderr)
        s["promoted"].append(reached)

    # --- the picks
    def _picks(self) -> list[dict]:
        """The picks' trainings, entered in run.json once every study is done: its best complete trial's config
        (highest final validation accuracy; on a tie the earlier trial), trained with each of the run's seeds."""
        out = []
        for name, study in self.studies.items():
            s = self.meta["tuning"]["studies"][name]
            if s["picked"] is None:
                done = [t for t in study.get_trials(deepcopy=False) if t.state == self.optuna.trial.TrialState.COMPLETE]
                if not done:
                    print(f"bench.run: warning: {name}: no trial completed, so there is no configuration to pick",
                          file=sys.stderr)  # fmt: skip
                    s["picked"] = -1
                    continue
                best = max(done, key=lambda t: (t.value, -t.number))
                entry = next(t for t in self.trials_of(name) if t["trial"] == best.number)
                s["picked"], s["picked_value"] = best.number, best.value
                for seed in self.args.seeds:
                    key = TrainingKey(s["model"], s["device"], seed)
                    self.meta["trainings"].append({**key.record(), "status": "pending", "epochs_done": 0,
                                                   "picked_trial": best.number, "params": entry["params"],
                                                   "config": entry["config"]})  # fmt: skip
                print(f"bench.run: {name}: picked trial {best.number} (validation accuracy {100 * best.value:.2f}%): "
                      f"{describe_params(entry['params'])}; training it with seed(s) {' '.join(map(str, self.args.seeds))}",
                      file=sys.stderr)  # fmt: skip
            out += [t for t in of_study(self.meta, s) if t.get("picked_trial") is not None]
        return out


def of_study(meta: dict, study: dict) -> list[dict]:
    """run.json's trainings of one study's model and device: its trials (``trial`` set) and its picks' trainings."""
    return [t for t in meta["trainings"] if (t["model"], t["device"]) == (study["model"], study["device"])]


def ended_as_it_should(training: dict) -> bool:
    """Complete, or a trial that pruning or divergence ended: a study's normal outcomes, not the run's failures."""
    trial_end = training.get("trial") is not None and training["status"] in ("pruned", "diverged")
    return training["status"] == "complete" or trial_end


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def summary(meta: dict, rows: list[dict]) -> str:
    """The console's table of a tuning run: per study, its trials and how they ended, the epochs and measured seconds
    they trained (the budget used), and the pick."""
    from tabulate import tabulate

    table = []
    for name, s in meta["tuning"]["studies"].items():
        trials = [t for t in of_study(meta, s) if t.get("trial") is not None]
        mine = [r for r in rows if TrainingKey.of(r).trial is not None and (r["model"], r["device"]) == (s["model"], s["device"])]
        ended = {status: sum(t["status"] == status for t in trials) for status in ("complete", "pruned", "diverged")}
        picked = next((t for t in trials if t["trial"] == s.get("picked")), None)
        table.append([name, len(trials), ended["complete"], ended["pruned"], len(trials) - sum(ended.values()),
                      len(mine), sum(float(r["train_seconds"]) for r in mine),
                      f"{s['picked']}: {describe_params(picked['params'])}" if picked else "none",
                      100 * s["picked_value"] if picked else math.nan])  # fmt: skip
    return tabulate(table, headers=["study", "trials", "complete", "pruned", "failed or open", "epochs", "train s",
                                   "picked", "its validation accuracy (%)"], floatfmt=".2f")  # fmt: skip
