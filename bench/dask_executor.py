"""``--executor dask``: each training one task on a Dask cluster, its events streamed back to bench.run as they happen.

``prepare(args)`` runs before the run folder exists and raises UsageError (one line, exit status 2) for what
cannot run; it returns ``run_trainings``, which looks to the driver like ``bench.executors.run_local``:

- The cluster: without ``--scheduler``, a LocalCluster of worker processes that ``run_trainings`` starts and
  closes (also when the run is interrupted or fails), whose workers ignore SIGINT, so that a Ctrl-C in the
  terminal reaches only bench.run, which stops the trainings cleanly. It has ``--workers`` CPU workers (default:
  the cores divided by ``--threads``) and one worker per other device of the grid (``cuda:N``, ``mps``); each
  worker offers its device as a resource (``{"cuda:0": 1}``) and each training asks for its own, so a GPU runs
  one training at a time. With ``--scheduler``, a cuda training asks for ``{"GPU": 1}`` (workers started with
  ``--resources GPU=1``, one per GPU) and a CPU one for nothing.
- One training per worker process: two in one process would share its random generators, its torch threads and
  its peak-memory counter (rows no longer reproducible, memory figures wrong). The LocalCluster's workers have one
  thread each; a ``--scheduler`` worker with more is refused before the run starts (UsageError).
- Submission: Dask binds a task that asks for a resource to a worker when it is submitted, so a grid submitted
  whole left a worker idle while trainings waited behind another. A training is submitted only when a worker
  that can run it is free (nothing in its processing as the scheduler sees it, nor a task of this run not placed
  yet): one per free worker, those asking for a resource first; the scheduler then gives it to that free worker
  (the earliest start). The scheduler is asked again when a training ends, and every LOOK seconds for workers
  that joined (a scaled or replaced one).
- Threads: a training uses ``--threads`` torch threads, or 1 when it is not given, as Dask's own workers do
  (their OMP_NUM_THREADS=1): one single-threaded training per core, unless ``--threads`` asks otherwise.
- Each task runs ``bench.executors.guarded`` on a worker and puts every event, pickled, on a ``distributed.Queue``
  named for the run; the driver takes them off as they come and watches the futures for the errors that never
  reach the queue. A worker that dies (killed, out of memory) makes Dask run its training again elsewhere: it
  goes on from its last checkpoint; what it sends twice (its restored epoch, its analysis, its end) is dropped.
- ``stop()``: a ``distributed.Event`` tells the trainings under way to stop at their next batch (each checks it
  at most every STOP_POLL seconds); those submitted and not begun are cancelled, the others never submitted. Every
  training that started ends ``interrupted``, the others stay ``pending``, and ``--resume``, with either executor,
  finishes the run.
- A CheckpointError on a worker stops the run, as in the local executor: the other trainings stop as after a
  signal, then it is raised here.

Each training's worker (its address and host name) is printed when it begins there: ``bench.run: TRAINING started
on worker tcp://... (HOST)``. ``SNNBENCH_DASK_TIMES=FILE`` appends a JSON line per message received (the run, the
training, its worker and host, when it was sent there, received here, the training handed to this executor
(``queued``) and submitted to Dask, and an epoch's own seconds): scripts/dask_overhead.py reads it.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from dataclasses import replace
from pathlib import Path

from bench.checkpoint import CheckpointError
from bench.cli import UsageError, one_line
from bench.devices import cores
from bench.executors import Ended, guarded
from bench.provenance import placement
from bench.train import Analysis, Epoch, Started

CONNECT_TIMEOUT = 10  # seconds to reach --scheduler: an unreachable one is an error within 15 s
WORKER_WAIT = 30  # seconds for a --scheduler without workers to get one
RETRIES = 3  # runs of a training whose task raised (its worker's deaths Dask counts apart: allowed-failures)
POLL = 0.05  # seconds the driver waits, when no event came, before it looks again
STOP_POLL = 1.0  # seconds between a training's looks at the run's stop Event (each is a call to the scheduler)
GRACE = 300  # seconds the trainings under way get to stop after a signal before they are left behind
LOOK = 1.0  # seconds between looks at the scheduler's free workers while trainings wait (besides one per ended one)
TIMES = "SNNBENCH_DASK_TIMES"


def prepare(args):
    """The function that runs the trainings on Dask; UsageError when it cannot: distributed not installed, the
    scheduler unreachable or without workers (of a GPU, for a cuda grid), the run folder not shared with them."""
    try:
        import distributed
    except ImportError:
        raise UsageError("--executor dask needs the distributed package: pip install -e '.[dask]'") from None
    threads = placement("dask", "cpu", args.threads, None, args.scheduler, cores())[0]  # as recorded in run.json
    if args.scheduler is not None:
        folder = Path(args.resume) if args.resume else _existing(Path(args.out).absolute())
        with _connect(args.scheduler) as client:
            _check_workers(client, args.scheduler, folder, any(d.startswith("cuda") for d in args.devices))

    def run_trainings(tasks, checkpoint_dir, analysed, stop):
        if not tasks or stop():
            return
        cluster, environment = None, dict(os.environ)
        if args.scheduler is None:
            # the CPU workers: the count that bench.provenance.placement records as the trainings in parallel
            workers = placement("dask", "cpu", args.threads, args.workers, None, cores())[1]
            cluster = _local_cluster([t.device for t in tasks], workers)
            client = distributed.Client(cluster)
        else:
            client = _connect(args.scheduler)
        try:
            dashboard = client.dashboard_link if "dashboard" in client.scheduler_info(n_workers=0)["services"] else ""
            print(f"bench.run: {len(tasks)} trainings on a Dask cluster of {len(client.nthreads())} worker(s)"
                  f"{f', dashboard {dashboard}' if dashboard else ''}", file=sys.stderr, flush=True)  # fmt: skip
            tasks = [replace(t, threads=threads) for t in tasks]
            yield from _Run(client, cluster is not None, checkpoint_dir, stop).events(tasks, analysed)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
                _restore(environment)

    return run_trainings


def _restore(environment: dict[str, str]) -> None:
    """This process's environment as it was before the LocalCluster: Dask's nanny sets its pre-spawn variables
    (OMP_NUM_THREADS=1, MKL_NUM_THREADS=1, ...) in the parent's os.environ to start each worker, and leaves them there,
    so every process started from here afterwards would have trained with one thread."""
    for name in set(os.environ) - set(environment):
        del os.environ[name]
    os.environ.update({k: v for k, v in environment.items() if os.environ.get(k) != v})


class _Run:
    """One call of run_trainings on a connected client: submit, stream, stop."""

    def __init__(self, client, own_cluster: bool, checkpoint_dir, stop):
        from distributed import Event, Queue

        self.client, self.own, self.stop = client, own_cluster, stop
        self.checkpoint_dir = str(Path(checkpoint_dir).absolute())  # a worker's working folder may be another
        self.name = f"snnbench-{uuid.uuid4().hex}"
        self.queue, self.stopping = Queue(self.name, client=client), Event(self.name, client=client)
        self.began, self.started, self.ended, self.analysed = set(), set(), set(), set()
        self.queued, self.submitted = time.time(), {}
        self.workers, self.wake = _Workers(client), threading.Event()  # wake: set when a task of this run ends
        self.error: str | None = None  # a CheckpointError's message: it stops the run
        self.times = open(os.environ[TIMES], "a") if os.environ.get(TIMES) else None

    def events(self, tasks, analysed):
        futures, deadline, waiting = {}, None, list(tasks)  # waiting: not submitted yet
        try:
            while (futures or waiting) and (deadline is None or time.monotonic() < deadline):
                if deadline is None and (self.stop() or self.error):
                    deadline = time.monotonic() + GRACE
                    waiting.clear()  # never submitted: they stay pending
                    self.stopping.set()  # those under way stop at their next batch; those not begun never begin
                    self.client.cancel([f for key, f in futures.items() if key not in self.began])
                in_flight = {f.key: self._resources(key.device) for key, f in futures.items()}
                for task in self.workers.free_for(waiting, in_flight, lambda t: self._resources(t.device)):
                    futures[task.key] = self.client.submit(
                        _train_on_worker, task, self.checkpoint_dir, analysed.get(task.key, False), self.name,
                        key=f"{task.key.file_stem()}-{self.name[-8:]}", pure=False, retries=RETRIES,
                        resources=self._resources(task.device),
                    )  # fmt: skip
                    futures[task.key].add_done_callback(lambda _: self.wake.set())
                    self.submitted[task.key] = time.time()
                self.wake.clear()
                done = [key for key, f in futures.items() if f.done()]  # before the queue is emptied: all they sent is in it
                messages = self.queue.get(batch=True)
                for message in messages:
                    yield from self._received(*pickle.loads(message))
                for key in done:  # released at once: a result lost with its worker would run the training again
                    self.workers.due = True  # its worker is free: look again
                    yield from self._outcome(key, futures.pop(key), stopped=deadline is not None)
                if not messages and not done:  # a get with a timeout would log its timeout
                    self.wake.wait(POLL)  # or less: a task that ends frees a worker for a waiting training
            for key in sorted(self.started - self.ended) if deadline is not None else ():
                yield Ended(key, "interrupted")
            if self.error:
                raise CheckpointError(self.error)
        finally:
            if futures:  # an error here, or trainings that did not stop within GRACE
                self.stopping.set()
                self.client.cancel(list(futures.values()))
            if self.times:
                self.times.close()

    def _resources(self, device: str) -> dict[str, int] | None:
        """What a training on ``device`` asks of its worker: the device on the LocalCluster (a worker each), a GPU from a
        scheduler's workers (started with --resources GPU=1), nothing for a CPU training there."""
        return {device: 1} if self.own else {"GPU": 1} if device.startswith("cuda") else None

    def _received(self, key, worker, host, sent, event):
        if self.times:
            compute = event.row["train_seconds"] + event.row["eval_seconds"] if isinstance(event, Epoch) else None
            line = {"run": self.name[-8:], "training": key.describe(), "worker": worker, "host": host,
                    "kind": type(event).__name__ if event else "Began", "sent": sent, "received": time.time(),
                    "queued": self.queued, "submitted": self.submitted[key], "compute": compute}  # fmt: skip
            self.times.write(json.dumps(line) + "\n")
        if event is None:
            print(f"bench.run: {key.describe()} started{' again' if key in self.began else ''} on worker {worker} ({host})",
                  file=sys.stderr, flush=True)  # fmt: skip
            self.began.add(key)
        elif key in self.ended or (isinstance(event, Analysis) and key in self.analysed):
            return  # sent again by a training that ran again after its worker died
        else:
            for kind, seen in ((Started, self.started), (Analysis, self.analysed), (Ended, self.ended)):
                if isinstance(event, kind):
                    seen.add(key)
            yield event

    def _outcome(self, key, future, stopped: bool):
        """What a finished task leaves to say: a CheckpointError, or the end of a training that never sent its own."""
        if future.status == "finished":
            self.error = self.error or future.result()  # the others stop as after a signal, then it is raised
        elif key not in self.ended and not stopped:
            if future.status == "error":
                exc = future.exception()
                detail = one_line(exc)
                text = "".join(traceback.format_exception(type(exc), exc, future.traceback()))
            else:  # cancelled, though not by this run: the scheduler lost it
                detail = text = f"the Dask cluster lost this training's task ({future.status})"
            self.ended.add(key)
            yield Ended(key, "failed", detail, text)


def _train_on_worker(task, checkpoint_dir: str, analysed: bool, name: str) -> str | None:
    """A Dask task: one training, its events put on the run's queue as they happen; a CheckpointError's message,
    or None."""
    from distributed import Event, Queue, get_client, get_worker

    client = get_client()
    queue, stop, worker = Queue(name, client=client), _Stop(Event(name, client=client)), get_worker().address
    host = socket.gethostname()
    if stop():
        return None

    def send(event) -> None:
        queue.put(pickle.dumps((task.key, worker, host, time.time(), event)))

    send(None)  # it began: from now on a stop waits for its end
    run_dir = Path(checkpoint_dir).parent
    if not (run_dir / "run.json").is_file():
        send(Ended(task.key, "failed", f"worker {worker} cannot see the run folder {run_dir}: it must be on a "
                                       "filesystem the workers share"))  # fmt: skip
        return None
    try:
        for event in guarded(task, checkpoint_dir, analysed, stop):
            send(event)
    except CheckpointError as exc:  # stops the run: the driver raises it
        return str(exc)
    return None


class _Workers:
    """The cluster's workers as its scheduler sees them: which are free to take one of the waiting trainings."""

    def __init__(self, client):
        self.client = client
        self.offers: dict[str, dict] = {}  # worker address -> the resources it offers
        self.due, self.looked = True, float("-inf")  # a look is due at first and once a training has ended

    def free_for(self, waiting: list, in_flight: dict, needs) -> list:
        """The waiting tasks to submit now (taken out of ``waiting``): one per free worker that can run it, those asking
        for a resource first, else in their order. ``in_flight``: this run's submitted tasks (Dask key -> resources)
        that have not ended; ``needs(task)``: the resources a task asks for."""
        if not waiting or not (self.due or time.monotonic() - self.looked >= LOOK):
            return []
        self.due, self.looked = False, time.monotonic()
        processing = self.client.processing()  # every worker -> the keys it runs or holds to run, of every client
        if set(processing) - set(self.offers):
            workers = self.client.scheduler_info(n_workers=-1)["workers"]
            self.offers = {w: dict(info.get("resources") or {}) for w, info in workers.items()}
        # a worker is free without a task of any client: one training per worker process, whatever its threads
        free = sorted((w for w, keys in processing.items() if not keys and w in self.offers), key=lambda w: not self.offers[w])
        placed = {key for keys in processing.values() for key in keys}
        for need in sorted((need for key, need in in_flight.items() if key not in placed), key=lambda need: not need):
            self._take(free, need)  # just submitted (or waiting for a worker): the scheduler gives it a free one
        chosen = [task for task in sorted(waiting, key=lambda t: not needs(t)) if free and self._take(free, needs(task))]
        for task in chosen:
            waiting.remove(task)
        return chosen

    def _take(self, free: list[str], need: dict | None) -> str | None:
        """The free worker a task asking for ``need`` goes to, out of ``free``: one that offers it; for a task that asks
        for nothing, one that offers nothing if there is one (a GPU's worker is kept for the GPU's trainings)."""
        fits = [w for w in free if all(self.offers[w].get(r, 0) >= n for r, n in (need or {}).items())]
        if not fits:
            return None
        worker = min(fits, key=lambda w: bool(self.offers[w])) if not need else fits[0]
        free.remove(worker)
        return worker


class _Stop:
    """The run's stop Event as a training's ``stop()``: asked at most every STOP_POLL seconds, true for good once set."""

    def __init__(self, event):
        self.event, self.asked, self.set = event, float("-inf"), False

    def __call__(self) -> bool:
        if not self.set and time.monotonic() - self.asked >= STOP_POLL:
            self.asked, self.set = time.monotonic(), self.event.is_set()
        return self.set


def dask_setup(worker) -> None:
    """Preload of the LocalCluster's workers: a Ctrl-C in the terminal reaches the whole process group, but only
    bench.run may act on it (it stops the trainings at their next batch). And the imports every training needs, paid
    here, at start-up, as bench.run pays them in its checks: the first optimizer a process makes imports
    torch._dynamo (about 2 s), which would otherwise land on each worker's first training."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    import bench.train  # noqa: F401  (torch, the models, the loop)

    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


def _local_cluster(devices: list[str], cpu_workers: int):
    """A LocalCluster of single-threaded worker processes: ``cpu_workers`` for the CPU if the grid has CPU trainings,
    one for each other device; each offers its device as a resource."""
    from distributed import LocalCluster
    from distributed.system import MEMORY_LIMIT

    slots = [f"cpu-{i}" for i in range(cpu_workers if "cpu" in devices else 0)]
    slots += [d for d in dict.fromkeys(devices) if d != "cpu"]
    cluster = LocalCluster(n_workers=0, threads_per_worker=1, processes=True, dashboard_address=":0")
    template = cluster.new_spec
    for slot in slots:
        options = {**template["options"], "nthreads": 1, "resources": {slot.partition("-")[0]: 1}, "preload": [__name__],
                   "memory_limit": MEMORY_LIMIT // len(slots)}  # fmt: skip
        cluster.worker_spec[slot] = {"cls": template["cls"], "options": options}
    cluster.scale(len(cluster.worker_spec))
    try:
        cluster.wait_for_workers(len(slots))
    except BaseException:
        cluster.close()
        raise
    return cluster


def _connect(address: str):
    from distributed import Client

    try:
        return Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, asyncio.TimeoutError, ValueError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT} s "
                         f"({' '.join(str(exc).split())[:160]})") from None  # fmt: skip


def _check_workers(client, address: str, folder: Path, cuda: bool) -> None:
    """UsageError unless the scheduler has a worker (with a GPU, for cuda), and each one reads a file written here in
    ``folder`` and writes one there: the run folder must be on a filesystem they share."""
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT)
    except (TimeoutError, asyncio.TimeoutError):
        raise UsageError(f"the Dask scheduler at {address} has no worker (waited {WORKER_WAIT} s)") from None
    workers = client.scheduler_info(n_workers=-1)["workers"]
    threaded = {w: info["nthreads"] for w, info in workers.items() if info.get("nthreads", 1) > 1}
    if threaded:
        named = ", ".join(f"{w} ({n} threads)" for w, n in sorted(threaded.items())[:4])
        more = f" and {len(threaded) - 4} more" if len(threaded) > 4 else ""
        raise UsageError(f"Dask worker(s) {named}{more} of the scheduler at {address} run more than one thread: trainings "
                         "that share a worker process share its random generators, torch threads and peak-memory "
                         f"counter; start one process per training: dask worker {address} --nworkers N --nthreads 1")  # fmt: skip
    if cuda and not any(w.get("resources", {}).get("GPU") for w in workers.values()):
        raise UsageError(f"no worker of the Dask scheduler at {address} offers a GPU: start one per GPU with "
                         "dask worker --resources GPU=1")  # fmt: skip
    probe = folder / f".snnbench-probe-{uuid.uuid4().hex}"
    try:
        probe.write_text(probe.name)
    except OSError as exc:
        raise UsageError(f"cannot write in {folder}: {exc.strerror}") from None
    try:
        answers = client.run(_probe, str(probe), on_error="return")
    finally:
        probe.unlink(missing_ok=True)
    for worker, answer in answers.items():
        if answer is not None:
            problem = answer if isinstance(answer, str) else f"{type(answer).__name__}: {answer}"
            raise UsageError(f"Dask worker {worker} {problem}: the run folder must be on a filesystem the workers "
                             "share")  # fmt: skip


def _probe(path: str) -> str | None:
    """On a worker: None if it reads the driver's probe file and can write next to it, else what it cannot do."""
    probe = Path(path)
    try:
        probe.read_text()
    except OSError as exc:
        return f"cannot read {probe} ({exc.strerror})"
    mine = probe.with_name(f"{probe.name}-{os.getpid()}")
    try:
        mine.write_text("")
        mine.unlink()
    except OSError as exc:
        return f"cannot write in {probe.parent} ({exc.strerror})"
    return None


def _existing(path: Path) -> Path:
    """``path`` or its nearest folder that exists: where a new run's folder will be made."""
    while not path.exists():
        path = path.parent
    return path
