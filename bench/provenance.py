"""What a training's numbers were measured under, read from run.json alone: no torch, so the report uses it as it is.

A training takes its provenance where it trains (bench.record.provenance: host, hardware, torch threads, each kernel
family's backend, the mask generator, precision, versions, git commit, executor, trainings in parallel) and sends it
with ``Started``; bench.run records it in run.json as a *segment*, one per stretch of the training between resumes::

    "segments": [{"segment": 0, "from_epoch": 1, "started": "...", "host": "...", "torch_threads": 1, ...}, ...]

and each row of epochs.csv names its segment. What a segment's keys mean to the numbers:

- ``timing``: the seconds and the memory depend on the hardware, the threads, the trainings run beside it and each
  kernel family's backend (``describe`` says them in words; the report pools seconds only where it is the same);
- ``stream``: the random numbers depend on the mask generator (the report pools accuracies only where it is the same);
- ``changes``: what differs between two provenances, in words (--resume refuses it unless --new-segment).

Runs made before segments (snnbench 0.4 and older) record none: ``stretches`` derives what their run.json does say
(the arguments and environment of the first command, and of each resume's command) for the same comparisons.
"""

from __future__ import annotations

import shlex
from typing import Any

STREAM = "mask_generator"
WORDS = {"hardware": "hardware", "torch_threads": "torch threads", "parallel": "trainings in parallel",
         STREAM: "mask generator"}  # fmt: skip
CLUSTER = ("executor", "workers", "scheduler")  # given with --resume, they replace all three recorded ones


def placement(executor: str | None, device: str, threads: int | None, workers: int | None, scheduler: str | None,
              cores: int | None) -> tuple[int | None, int | None]:  # fmt: skip
    """The torch threads a training on ``device`` gets (None: the process's own) and how many trainings the executor
    runs at once on that device, its own included (None: unknown): the local executor one with ``--threads`` or torch's
    default; bench/dask_executor.py one per worker, with ``--threads`` or 1, and on the LocalCluster ``--workers`` CPU
    workers (default: the cores divided by the threads) and one worker per other device; a ``--scheduler``'s workers
    are not known here."""
    if executor != "dask":
        return threads, 1
    threads = threads or 1
    if scheduler is not None:
        return threads, None
    return threads, (workers or max(1, (cores or 1) // threads)) if device == "cpu" else 1


def families(p: dict[str, Any]) -> list[str]:
    """The kernel families a provenance names (models.dispatch.provenance: ``neurons``, ``masks``, ...)."""
    return [k for k in p if f"{k}_changes" in p]


def timing(p: dict[str, Any]) -> tuple:
    """What the seconds and the memory of a provenance depend on; equal tuples may be pooled."""
    return (p.get("hardware"), p.get("torch_threads"), p.get("parallel"), *((f, p[f]) for f in families(p)))


def describe(p: dict[str, Any]) -> str:
    """``timing`` in words: ``AMD EPYC, 1 thread, 2 trainings in parallel, neurons c+openmp, masks c+openmp``."""
    threads, parallel = p.get("torch_threads"), p.get("parallel")
    kernels = ", ".join(f"{f} {p[f]}" for f in families(p)) or "kernels not recorded"
    return ", ".join([
        p.get("hardware") or "hardware not recorded",
        f"{threads} thread{'s' * (threads != 1)}" if threads else "threads not recorded",
        "one training at a time" if parallel == 1 else f"{parallel} trainings in parallel" if parallel else
        "trainings in parallel unknown", kernels,
    ])  # fmt: skip


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The keys whose values differ between two provenances and change the numbers (the hardware, threads, trainings in
    parallel, each kernel family's backend, the mask generator); a key either does not know (None, absent) is skipped."""
    keys = ["hardware", "torch_threads", "parallel", *families(before), STREAM]
    return [k for k in dict.fromkeys(keys) if before.get(k) is not None and after.get(k) is not None and before[k] != after[k]]


def said(before: dict[str, Any], after: dict[str, Any]) -> str:
    """``changes`` in words: ``torch threads 1 -> 2, trainings in parallel 2 -> 1``."""
    return ", ".join(f"{WORDS.get(k, f'{k} kernels')} {before[k]} -> {after[k]}" for k in changes(before, after))


def stretches(meta: dict[str, Any], device: str, before: str | None = None) -> list[dict[str, Any]]:
    """What a run from before segments records of the conditions its trainings on ``device`` ran under: one provenance
    for its first command and one for each resume (started before ``before``, the first segment's start, where a newer
    snnbench resumed it), from its arguments (executor, workers, scheduler, threads) and environment (hardware, CPU
    count, mask generator; the driver's thread count for a local run). Kernel backends, host and versions per training
    are not recorded then."""
    args, env = meta.get("args") or {}, meta.get("environment") or {}
    env = env if isinstance(env, dict) else {}
    cluster = {k: args.get(k) for k in CLUSTER}
    threads = args.get("threads")
    found = [_stretch(env, device, cluster, threads)]
    for resume in meta.get("resumes") or []:
        if not isinstance(resume, dict) or (before is not None and str(resume.get("started", "")) >= before):
            continue
        given = _flags(str(resume.get("command", "")))
        if given.keys() & set(CLUSTER):
            cluster = {k: given.get(k) for k in CLUSTER}
        threads = given.get("threads", threads)
        found.append(_stretch(env, device, cluster, threads))
    return found


def _stretch(env: dict, device: str, cluster: dict, threads) -> dict[str, Any]:
    executor = cluster.get("executor") or "local"
    threads, parallel = placement(executor, device, _int(threads), _int(cluster.get("workers")), cluster.get("scheduler"),
                                  _int(env.get("cpu_count")))  # fmt: skip
    devices = env.get("devices") if isinstance(env.get("devices"), dict) else {}
    return {
        "hardware": devices.get(device), "torch_threads": threads or _int(env.get("torch_threads")), "parallel": parallel,
        STREAM: env.get("cpu_mask_generator") if device == "cpu" else None, "executor": executor,
    }  # fmt: skip


def _flags(command: str) -> dict[str, str]:
    """The options ``--executor``, ``--workers``, ``--scheduler``, ``--threads`` of a recorded command line."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    found = {}
    for i, word in enumerate(words):
        name, eq, value = word.partition("=")
        key = name.removeprefix("--").replace("-", "_")
        if name.startswith("--") and key in (*CLUSTER, "threads"):
            found[key] = value if eq else (words[i + 1] if i + 1 < len(words) else "")
    return found


def _int(value) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def last(meta: dict[str, Any], training: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The provenance of a training's last stretch, and what names it: ``segment N``, or, for a run from before
    segments, what its run.json says (its arguments, or its last resume's)."""
    segments = [s for s in training.get("segments") or [] if isinstance(s, dict)]
    if segments:
        return segments[-1], f"segment {segments[-1].get('segment', len(segments) - 1)}"
    found = stretches(meta, str(training.get("device")))
    return found[-1], "last stretch as run.json's " + ("last resume" if len(found) > 1 else "arguments") + " record it"


def next_segment(training: dict[str, Any]) -> int:
    """The number of a training's next segment: one more than its last; 1 for a training that trained before segments
    were recorded (its rows so far: segment 0, unrecorded), else 0."""
    segments = [s for s in training.get("segments") or [] if isinstance(s, dict)]
    if segments:
        return max(int(s.get("segment", 0)) for s in segments) + 1
    return 1 if int(training.get("epochs_done") or 0) > 0 else 0


def of_rows(meta: dict[str, Any], training: dict[str, Any] | None, device: str) -> tuple[dict[int, dict], dict | None]:
    """A training's provenance by segment number, and the provenance of its rows that name no segment (a file from
    before segments, or a row restored from an older checkpoint): that of every stretch they may come from, or None
    where those differ in ``timing`` or stream (which stretch measured which row cannot be told)."""
    segments = {int(s["segment"]): s for s in (training or {}).get("segments") or [] if isinstance(s, dict) and
                isinstance(s.get("segment"), int)}  # fmt: skip
    ordered = sorted(segments.values(), key=lambda s: s["segment"])
    older = not ordered or int(ordered[0].get("from_epoch") or 1) > 1
    candidates = (stretches(meta, device, ordered[0].get("started") if ordered else None) if older else []) + ordered
    same = all((timing(c), c.get(STREAM)) == (timing(candidates[0]), candidates[0].get(STREAM)) for c in candidates)
    return segments, (candidates[0] if same else None)
