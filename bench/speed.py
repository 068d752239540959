"""``python -m bench.speed``: the median time of one training step, every implementation side by side.

    python -m bench.speed --device cpu --batch-size 1000 --repeats 7
    python -m bench.speed --device cpu --workload csnn --repeats 7
    python -m bench.speed --device cpu --workload rsnn --repeats 5

One process, interleaved: each repeat times every implementation once, in a rotated
order, so the drift of a shared machine hits them all alike. Four workloads:

- ``snn``, the 2018 design at T = 128: ffn, snn, snn-reference, snnTorch's and SpikingJelly's
  versions of it (bench/peers.py) and its floor; ratios are to ``snn``.
- ``lif``, the surrogate-gradient LIF at T = 25 (rate encoding): lif, lif-reference,
  snntorch-lif, spikingjelly-lif and its floor; ratios are to ``lif``.
- ``csnn``, the convolutional LIF network (models/conv.py) on N-MNIST-like event frames, 2 x 34 x 34
  over T = 25 bins, at batch 128 (``event_frames``): cnn, csnn, csnn-reference, snntorch-csnn and its
  floor; ratios are to ``csnn``. Not timed unless asked for (``--workload csnn``).
- ``rsnn``, the recurrent networks on smnist-sized sequences, 1 x 99 event counts over T = 112 bins at batch 256
  (``event_sequence``), hidden 128: rsnn, rsnn-reference, snntorch-rlif, torch's gru and lstm and its floor; ratios
  are to ``rsnn``. Not timed unless asked for (``--workload rsnn``).

``--time-steps`` sets T for all. The floor of ``snn`` and ``lif`` is the work no implementation of
its workload can skip: drawing the T x B x 784 random numbers of the input, layer 1's forward matmul
and its weight-gradient matmul. The floor of ``csnn`` is csnn's own training step with its neurons
replaced by the identity (``ConvFloor``): the convolutions, the pooling and fc, forward and backward. The floor of
``rsnn`` is its matmuls alone (``recurrent_floor_step``): the input projection of all steps as one GEMM and its weight
gradient, the T recurrent products forward and T backward, one step at a time, the recurrent weights' gradient and
the readout's GEMMs.
``--precision fp32 bf16`` gives a row per implementation and precision (the floors' matmuls, convolutions
and input at that precision too). The peak-memory column is the memory one
training step needs: each implementation's step in a child process of its own (bench.precision's
PeakMemory: the peak resident set on a CPU, the allocator's peak on CUDA, above what was held before).
"""

from __future__ import annotations

import csv
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tabulate import tabulate

import models
from bench import peers
from bench import precision as amp
from bench.cli import Parser, UsageError, one_of, positive
from bench.config import TrainConfig
from bench.devices import DeviceError, resolve_devices
from bench.loop import training_step
from bench.timing import steady_allocator, synchronizer
from models import spike_products
from models.conv import CSNN

COLUMNS = ["workload", "implementation", "precision", "device", "batch_size", "time_steps", "median_seconds", "min_seconds",
           "max_seconds", "repeats", "peak_mib"]  # fmt: skip
WORKLOADS = {"snn": 128, "lif": 25, "csnn": 25, "rsnn": 112}  # the base implementation of each workload and its default T
DEFAULT_WORKLOADS = ("snn", "lif")  # what runs without --workload (csnn, rsnn: their own data, asked for by name)
# without --batch-size (csnn: snnTorch's tutorial 7 on N-MNIST; rsnn: issue 26's recurrent workload)
BATCH_SIZES = {"snn": 1000, "lif": 1000, "csnn": 128, "rsnn": 256}
LIF_MODELS = ("lif", "lif-reference", "snntorch-lif", "spikingjelly-lif")
LIF_DENSE = "lif (dense products)"  # lif with both layers' products dense whatever the density: the path before them
CONV_MODELS = ("cnn", "csnn", "csnn-reference", "snntorch-csnn")
RECURRENT_MODELS = ("rsnn", "rsnn-reference", "snntorch-rlif", "gru", "lstm")  # gru, lstm: models/recurrent_ann.py
FLOORS = {"snn": "floor", "lif": "floor (lif)", "csnn": "floor (csnn)", "rsnn": "floor (rsnn)"}
EVENTS = (2, 34, 34)  # an N-MNIST frame: ON and OFF events on the 34 x 34 sensor
EVENT_RATE = 0.8  # events per bin of a pixel and polarity, over the digit's intensity: about 4,200 a sample at T = 25
SEQUENCE = (1, 99)  # an smnist frame: 99 channels, each a crossing of one of 49 grey levels up or down (docs/events.md)
SEQUENCE_RATE = 0.44  # mean events per bin and channel: smnist's 4,880 events a sample over 112 bins x 99 channels
RECURRENT_HIDDEN = 128  # the recurrent layer of rsnn, gru and lstm (issue 26)


def model_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str = "fp32") -> Callable[[], None]:
    """The training loop's own step (forward, backward, the default config's optimizer) at ``precision``, bound to one
    batch."""
    if hasattr(model, "calibrate"):  # (lif: the density crossover for such inputs, measured once per machine)
        model.calibrate(x)
    optimizer = TrainConfig().make_optimizer(model.parameters(), lr=0.01)
    scaler = amp.scaler(precision)
    return lambda: training_step(model, optimizer, x, y, precision, scaler)


def floor_step(x: torch.Tensor, time_steps: int, hidden: int = 100, precision: str = "fp32") -> Callable[[], None]:
    """Masks + layer 1's forward GEMM + its weight-gradient GEMM, into reused buffers, nothing else, in the fastest
    order measured: the masked input drawn a chunk of steps at a time (models/masked_linear.py's CHUNK_ELEMENTS
    numbers, one step at B 1000) and each chunk's forward GEMM run while the chunk is still in the cache; the chunks
    kept, and one weight-gradient GEMM over all of them (one GEMM of T * B rows beats T GEMMs of B rows). At bf16 or
    fp16 both GEMMs run in that dtype: the C generator writes bf16 itself; other generators draw float32 and cast."""
    from models import masked_linear
    from models import masks as mask_rng

    x = x.flatten(1)
    B, n = x.shape
    dtype = amp.DTYPES.get(precision, torch.float32)
    weight = torch.empty(hidden, n, device=x.device).uniform_(-0.08, 0.08).to(dtype)
    inputs = torch.empty(time_steps, B, n, device=x.device, dtype=dtype)
    per_chunk = max(1, masked_linear.CHUNK_ELEMENTS // (B * n))
    current = torch.empty(time_steps, B, hidden, device=x.device, dtype=dtype)
    grad_weight = torch.empty_like(weight)
    native = x.device.type == "cpu" and x.dtype == torch.float32 and bool(mask_rng.native())
    direct = dtype == torch.float32 or (native and dtype == torch.bfloat16)  # drawn straight into ``inputs``
    drawn = None if direct else torch.empty(min(per_chunk, time_steps), B, n, device=x.device)

    def draw(out: torch.Tensor, t0: int) -> torch.Tensor:
        if native:  # the C generator at any size, as masked_linear draws
            return mask_rng.masked_uniform_rows_(out, x, key, t0 * B)
        return mask_rng.masked_uniform_(out, x)

    def step() -> None:
        nonlocal key
        key = mask_rng.draw_key()
        for t0 in range(0, time_steps, per_chunk):
            rows = inputs[t0 : t0 + per_chunk]
            if drawn is None:
                draw(rows, t0)
            else:
                rows.copy_(draw(drawn[: len(rows)], t0))
            torch.mm(rows.view(-1, n), weight.t(), out=current[t0 : t0 + len(rows)].view(-1, hidden))  # forward
        torch.mm(current.view(-1, hidden).t(), inputs.view(-1, n), out=grad_weight)  # weight gradient: K = T * B

    key = 0
    return step


class ConvFloor(CSNN):
    """csnn with its neurons replaced by the identity: each stage's pooled currents are the next layer's input, at
    every step (a held image's repeated over T), the readout their mean. Its training step is the convolutions', the
    pooling's and fc's, forward and backward, in csnn's own layout: what no implementation of csnn can skip."""

    def neurons(self, current: torch.Tensor, out: str) -> torch.Tensor:
        return current if current.dim() == 3 else current.expand(self.config.time_steps, *current.shape)


def recurrent_floor_step(x: torch.Tensor, hidden: int = RECURRENT_HIDDEN, n_out: int = 10,
                         precision: str = "fp32") -> Callable[[], None]:  # fmt: skip
    """rsnn's matmuls and nothing else, into reused buffers, at ``precision``'s dtype: the input projection of all T
    steps as one GEMM (T B, n_in) x (n_in, hidden) and its weight gradient; T recurrent products (B, hidden) x (hidden,
    hidden) forward and T backward, each one GEMM per step (each needs the step before); the recurrent weights'
    gradient, one GEMM over all steps; the readout's GEMM (T B, hidden) x (hidden, n_out) and its two gradients. What
    no implementation of the recurrent workload can skip (a GRU does three recurrent products a step, an LSTM four).
    The spikes it multiplies are fixed 0/1 draws."""
    dtype = amp.DTYPES.get(precision, torch.float32)
    B, T = x.shape[:2]
    g = torch.Generator(device=x.device).manual_seed(0)
    inputs = x.transpose(0, 1).reshape(T * B, -1).to(dtype)
    n_in = inputs.shape[1]
    w_in = torch.empty(hidden, n_in, device=x.device).uniform_(-0.1, 0.1).to(dtype)
    w_rec = torch.empty(hidden, hidden, device=x.device).uniform_(-0.09, 0.09).to(dtype)
    w_out = torch.empty(n_out, hidden, device=x.device).uniform_(-0.09, 0.09).to(dtype)
    spikes = (torch.rand(T, B, hidden, device=x.device, generator=g) < 0.2).to(dtype)
    current = torch.empty(T, B, hidden, device=x.device, dtype=dtype)
    grad = torch.empty_like(current)
    out = torch.empty(T * B, n_out, device=x.device, dtype=dtype)
    grads = [torch.empty_like(w) for w in (w_in, w_rec, w_out)]

    def step() -> None:
        torch.mm(inputs, w_in.t(), out=current.view(T * B, hidden))  # the input projection, all steps
        for t in range(1, T):  # each step's recurrent product onto its current (rsnn's forward)
            current[t].addmm_(spikes[t - 1], w_rec.t())
        torch.mm(spikes.view(T * B, hidden), w_out.t(), out=out)  # the readout, all steps
        torch.mm(out, w_out, out=grad.view(T * B, hidden))  # its gradient to the spikes
        for t in range(T - 2, -1, -1):  # each step's recurrent product of the gradient (rsnn's backward)
            grad[t].addmm_(grad[t + 1], w_rec)
        torch.mm(grad[1:].view(-1, hidden).t(), spikes[:-1].view(-1, hidden), out=grads[1])  # the weight gradients
        torch.mm(grad.view(T * B, hidden).t(), inputs, out=grads[0])
        torch.mm(out.t(), spikes.view(T * B, hidden), out=grads[2])

    return step


def names(workload: str) -> list[str]:
    """The implementations of a workload, in the table's order (the library ones where their library is installed;
    gru and lstm where they are registered)."""
    if workload == "lif":
        return ["lif", LIF_DENSE, *[n for n in LIF_MODELS[1:] if n in models.available()], FLOORS["lif"]]
    if workload == "csnn":
        return [n for n in CONV_MODELS if n in models.available()] + [FLOORS["csnn"]]
    if workload == "rsnn":
        return [n for n in RECURRENT_MODELS if n in models.available()] + [FLOORS["rsnn"]]
    return ["ffn", "snn", "snn-reference", FLOORS["snn"], *peers.installed()]


def workload_of(name: str) -> str:
    """The workload an implementation belongs to: which data it times on."""
    if name in CONV_MODELS or name == FLOORS["csnn"]:
        return "csnn"
    if name in RECURRENT_MODELS or name == FLOORS["rsnn"]:
        return "rsnn"
    return "lif" if name in LIF_MODELS or name == LIF_DENSE else "snn"


def spec(name: str, time_steps: int, hidden: int | None = None) -> str:
    """The model spec an implementation's step trains: csnn's workload's on event frames, rsnn's on event sequences,
    sequence input of T bins; ``hidden``: the hidden layer's size (None: the workload's, HIDDEN)."""
    if workload_of(name) == "csnn":
        keys = "sequence=true,in_channels={},in_height={},in_width={}".format(*EVENTS)
        return f"{name}:{keys}" if name == "cnn" else f"{name}:{keys},time_steps={time_steps}"
    if workload_of(name) == "rsnn":
        size = hidden or RECURRENT_HIDDEN
        return f"{name}:sequence=true,n_in={SEQUENCE[0] * SEQUENCE[1]},time_steps={time_steps},hidden={size}"
    sized = f"hidden={hidden}" if hidden else ""
    if name == "ffn":
        return f"ffn:{sized}" if sized else "ffn"
    return f"{name}:time_steps={time_steps}" + (f",{sized}" if sized else "")


def event_frames(batch_size: int, time_steps: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """N-MNIST-like input, x (B, T, 2, 34, 34) of 0/1 event counts and labels y (B,): mnist-mini's digits on a 34 x 34
    sensor (3 pixels of margin), each bin's ON and OFF event at a pixel drawn with probability EVENT_RATE times its
    intensity (about 7% of a frame's pixels and polarities), by a generator of its own (the same batch every time)."""
    from bench.data import load

    data = load("mnist-mini", device="cpu").train
    reps = -(-batch_size // len(data))
    images, y = data.images.repeat(reps, 1, 1, 1)[:batch_size], data.labels.repeat(reps)[:batch_size]
    margin = (EVENTS[1] - images.shape[-2]) // 2, (EVENTS[2] - images.shape[-1]) // 2
    p = torch.nn.functional.pad(images + 0.5, (margin[1], margin[1], margin[0], margin[0]))[:, None]  # (B, 1, 1, H, W)
    u = torch.rand((batch_size, time_steps, *EVENTS), generator=torch.Generator().manual_seed(0))
    return (u < EVENT_RATE * p).float().to(device), y.to(device)


def event_sequence(batch_size: int, time_steps: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """smnist-sized input, x (B, T, 1, 99) of event counts and labels y (B,) of 10 classes: each bin and channel's count
    Poisson with mean SEQUENCE_RATE (mostly 0 and 1, a few 2 and more, as smnist's), by a generator of its own (the same
    batch every time)."""
    g = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.full((batch_size, time_steps, *SEQUENCE), SEQUENCE_RATE), generator=g)
    return x.to(device), torch.randint(0, 10, (batch_size,), generator=g).to(device)


def implementation(name: str, device: str, batch_size: int, time_steps: int, precision: str = "fp32",
                   hidden: int | None = None) -> Callable[[], None]:  # fmt: skip
    """One timed step: a model's training step, or a floor, on a batch of ``batch_size`` mnist-mini digits (csnn's
    workload: of their event frames, ``event_frames``; rsnn's: of smnist-sized sequences, ``event_sequence``);
    ``hidden``: the hidden layer's size (None: the workload's; not for csnn or the snn workload's peers)."""
    from bench.data import load

    if workload_of(name) == "rsnn":
        x, y = event_sequence(batch_size, time_steps, device)
        if name == FLOORS["rsnn"]:
            return recurrent_floor_step(x, hidden or RECURRENT_HIDDEN, precision=precision)
        return model_step(models.build(spec(name, time_steps, hidden)).to(device), x, y, precision)
    if workload_of(name) == "csnn":
        x, y = event_frames(batch_size, time_steps, device)
        if name == FLOORS["csnn"]:
            return model_step(ConvFloor(models.parse_spec(spec("csnn", time_steps)).config).to(device), x, y, precision)
        return model_step(models.build(spec(name, time_steps)).to(device), x, y, precision)
    data = load("mnist-mini", device=device).train
    reps = -(-batch_size // len(data))
    x, y = data.images.repeat(reps, 1, 1, 1)[:batch_size], data.labels.repeat(reps)[:batch_size]
    if name in FLOORS.values():
        return floor_step(x, time_steps, hidden or 100, precision=precision)
    if name in peers.PEERS:
        return model_step(peers.build(name, time_steps).to(device), x, y, precision)
    if name == LIF_DENSE:
        step = model_step(models.build(spec("lif", time_steps, hidden)).to(device), x, y, precision)

        def dense() -> None:
            with spike_products.forcing(0.0):
                step()

        return dense
    return model_step(models.build(spec(name, time_steps, hidden)).to(device), x, y, precision)


def implementations(device: str, batch_size: int, time_steps: int, workload: str = "snn",
                    precisions: tuple[str, ...] = ("fp32",)) -> dict[tuple[str, str], Callable[[], None]]:  # fmt: skip
    """The timed steps of one workload ("snn", "lif", "csnn" or "rsnn"), by (implementation, precision)."""
    return {(name, p): implementation(name, device, batch_size, time_steps, p) for p in precisions for name in names(workload)}


def peak_step_mib(name: str, device: str, batch_size: int, time_steps: int, precision: str = "fp32",
                  hidden: int | None = None) -> float:  # fmt: skip
    """The memory one training step of ``name`` needs, in MiB: measured in a child process of its own that loads the
    data, then inside bench.precision.PeakMemory builds the model or floor and runs two steps (CPU: the peak resident
    set above the one before the build; CUDA: the allocator's peak above what was allocated before it). Buffers an
    implementation keeps between steps (snn's masked input) count; the data does not. NaN where it cannot be
    measured."""
    code = ("import sys; from bench import speed; "
            f"print(speed._child_peak({name!r}, {device!r}, {batch_size}, {time_steps}, {precision!r}, {hidden!r}))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    try:
        return float(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return math.nan


def _child_peak(name: str, device: str, batch_size: int, time_steps: int, precision: str, hidden: int | None = None) -> float:
    from bench.data import load

    steady_allocator()  # as in the timing process
    load("mnist-mini", device=device)  # the data (cached) before the baseline: every implementation shares it
    with amp.PeakMemory(device) as peak:
        step = implementation(name, device, batch_size, time_steps, precision, hidden)
        step()  # the first step allocates the buffers that an implementation keeps between steps: they count
        step()
    return peak.mib - peak.baseline_mib


def measure(impls: dict[str, Callable[[], None]], device: str, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    sync = synchronizer(device)
    names = list(impls)
    for name in names:
        for _ in range(warmup):
            impls[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate: no one always goes first
            sync()
            start = time.perf_counter()
            impls[name]()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def rows(times: dict[tuple[str, str], list[float]], device: str, batch_size: int, time_steps: int,
         workload: str = "snn") -> list[dict]:  # fmt: skip
    return [
        {"workload": workload, "implementation": name, "precision": precision, "device": device,
         "batch_size": batch_size, "time_steps": time_steps, "median_seconds": statistics.median(ts), "min_seconds": min(ts),
         "max_seconds": max(ts), "repeats": len(ts), "peak_mib": math.nan}
        for (name, precision), ts in times.items()
    ]  # fmt: skip


def table(result: list[dict]) -> str:
    """One line per row; ``x base`` is the ratio to its workload's base implementation (snn, lif, csnn, rsnn) on its device at the
    first precision timed (fp32 unless not asked for), so that the precisions compare in one column."""
    base = {}
    for r in result:
        if r["implementation"] == r["workload"]:
            base.setdefault((r["workload"], r["device"]), r["median_seconds"])
    body = [
        [r["implementation"], r["precision"], r["device"], r["time_steps"], r["median_seconds"], r["min_seconds"],
         r["max_seconds"], r["median_seconds"] / base[r["workload"], r["device"]], r["workload"], r["peak_mib"]]
        for r in result
    ]  # fmt: skip
    headers = ["implementation", "precision", "device", "T", "median s/step", "min s", "max s", "x base", "base",
               "peak MiB/step"]  # fmt: skip
    return tabulate(body, headers=headers, floatfmt=("", "", "", "", ".4f", ".4f", ".4f", ".2f", "", ".0f"))


def build_parser() -> Parser:
    """The command line of ``python -m bench.speed`` (tests check the documented options against it)."""
    p = Parser(prog="python -m bench.speed", description=__doc__.splitlines()[0])
    p.add_argument("--device", nargs="+", default=["cpu"], help="cpu, cuda, cuda:N, mps or all (default: cpu)")
    p.add_argument("--batch-size", type=positive(int), default=None,
                   help="(default: 1000 for the snn and lif workloads, 128 for csnn, 256 for rsnn)")  # fmt: skip
    p.add_argument("--time-steps", type=positive(int), default=None,
                   help="T of every SNN (default: 128 for the snn workload, 25 for lif and csnn, 112 for rsnn)")  # fmt: skip
    p.add_argument("--workload", nargs="+", choices=list(WORKLOADS), default=list(DEFAULT_WORKLOADS),
                   help="which workloads to time: snn, lif, csnn, rsnn (default: snn lif)")  # fmt: skip
    p.add_argument("--precision", nargs="+", type=one_of(*amp.PRECISIONS), default=["fp32"],
                   help="one row per implementation and precision: fp32, bf16, fp16 (CUDA only) (default: fp32)")  # fmt: skip
    p.add_argument("--repeats", type=positive(int), default=5, help="timed steps per implementation (default: %(default)s)")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the peak-memory column (each implementation's step in a child process of its own)")  # fmt: skip
    p.add_argument("--csv", default=None, help="also write the rows to this CSV file (default: none)")
    p.add_argument("--sweep", default=None, metavar="DIR",
                   help="cost curves instead of one table: each workload's T, hidden size and batch scaled one at a "
                        "time, step time and peak memory of each implementation, their fitted exponents; writes "
                        "DIR/sweep.csv, DIR/exponents.csv and DIR/sweep-WORKLOAD.png (bench/sweep.py) "
                        "(default: none)")  # fmt: skip
    p.add_argument("--crossover", default=None, metavar="DIR",
                   help="instead of the table: the speed-up of event-driven over dense layer products against the "
                        "input's density (lif's layer 1, fp32), writing DIR/crossover.csv and DIR/crossover.png "
                        "(bench/crossover.py) (default: none)")  # fmt: skip
    return p


def check_csv(path: str) -> None:
    """UsageError unless ``path`` can be written: opened for appending (and removed again if that made it), before
    any timing, so that minutes of timings never end in an error."""
    if not Path(path).resolve().parent.is_dir():
        raise UsageError(f"--csv: folder {Path(path).parent} does not exist")
    existed = Path(path).exists()
    try:
        open(path, "a").close()
    except OSError as exc:
        raise UsageError(f"--csv {path} cannot be written ({exc.strerror})") from None
    if not existed:
        Path(path).unlink()


def check_sweep_dir(path: str, flag: str = "--sweep") -> None:
    """UsageError unless the folder ``path`` exists or can be made, and a file can be written in it."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{flag} {path} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".snnbench-write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{flag} {path} cannot be written ({exc.strerror})") from None


def check_fits(workload: str, time_steps: int) -> None:
    """UsageError for a T at which bench.run would refuse one of the workload's models: the same spec and data checks
    (models.parse_spec, bench.data.check_fits on mnist-mini, the data every step here trains on; csnn's and rsnn's
    workloads: the spec's, their event data made here to fit it)."""
    from bench.data import check_fits as fits

    for name in names(workload):
        if name in FLOORS.values() or name in peers.PEERS or name in ("ffn", "cnn", LIF_DENSE):
            continue  # the floors and the peer copies have no spec of their own; the ffn and the cnn have no T
        try:
            parsed = models.parse_spec(spec(name, time_steps))
            if workload not in ("csnn", "rsnn"):
                fits(parsed.label, parsed.config, "mnist-mini", min_time_steps=parsed.info.min_time_steps)
        except (models.SpecError, ValueError) as exc:
            raise UsageError(f"--time-steps {time_steps} does not fit the {workload} workload: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        devices = resolve_devices(args.device)
        if args.csv:
            check_csv(args.csv)
        precisions = tuple(dict.fromkeys(args.precision))
        for precision in precisions:
            if why := amp.problem(precision, devices):
                raise UsageError(why)
        for workload in args.workload:
            check_fits(workload, args.time_steps or WORKLOADS[workload])
        if args.sweep is not None:
            if precisions != ("fp32",) or args.csv:
                raise UsageError("--sweep times fp32 and writes its own files: give it without --precision and --csv")
            check_sweep_dir(args.sweep)
        if args.crossover is not None:
            check_sweep_dir(args.crossover, "--crossover")
    except (UsageError, DeviceError) as exc:
        print(f"bench.speed: error: {exc}", file=sys.stderr)
        return 2
    steady_allocator()  # every implementation's steps on memory the step before freed (bench/timing.py)
    if args.crossover is not None:
        from bench import crossover

        try:
            crossover.run(args.crossover, repeats=args.repeats)
        except RuntimeError as exc:
            print(f"bench.speed: error: {exc}", file=sys.stderr)
            return 2
        print(f"crossover: {Path(args.crossover) / 'crossover.csv'}, {Path(args.crossover) / 'crossover.png'}")
        return 0
    if args.sweep is not None:
        from bench import sweep

        found = sweep.run(list(dict.fromkeys(args.workload)), devices, args.time_steps, args.batch_size, args.repeats,
                          not args.no_memory, args.sweep)  # fmt: skip
        print(tabulate([[f["workload"], f["device"], f["implementation"], f["axis"], f["points"], f["time_exponent"],
                         f["memory_exponent"]] for f in sweep.exponents(found)],
                       headers=["workload", "device", "implementation", "axis", "points", "time exponent", "memory exponent"],
                       floatfmt=".2f"))  # fmt: skip
        print(f"sweep: {Path(args.sweep) / 'sweep.csv'}, {Path(args.sweep) / 'exponents.csv'}, "
              f"{', '.join(str(Path(args.sweep) / f'sweep-{w}.png') for w in dict.fromkeys(args.workload))}")  # fmt: skip
        return 0
    result = []
    for device in devices:
        for workload in dict.fromkeys(args.workload):
            steps = args.time_steps or WORKLOADS[workload]
            batch = args.batch_size or BATCH_SIZES[workload]
            impls = implementations(device, batch, steps, workload, precisions)
            print(f"timing {', '.join(names(workload))} at {', '.join(precisions)} on {device}, T = {steps}, B = {batch} ...",
                  file=sys.stderr)  # fmt: skip
            found = rows(measure(impls, device, args.repeats), device, batch, steps, workload)
            del impls  # their buffers: the memory children get the machine's memory to themselves
            for row in found if not args.no_memory else []:
                row["peak_mib"] = peak_step_mib(row["implementation"], device, batch, steps, row["precision"])
            result += found
    print(table(result))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(result)
        print(f"rows: {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
