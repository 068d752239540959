"""``python -m bench.speed``: the median time of one training step, every implementation side by side.

    python -m bench.speed --device cpu --batch-size 1000 --repeats 7

One process, interleaved: each repeat times every implementation once, in a rotated
order, so the drift of a shared machine hits them all alike. Two workloads:

- ``snn``, the 2018 design at T = 128: ffn, snn, snn-reference, snnTorch's and SpikingJelly's
  versions of it (bench/peers.py) and its floor; ratios are to ``snn``.
- ``lif``, the surrogate-gradient LIF at T = 25 (rate encoding): lif, lif-reference,
  snntorch-lif, spikingjelly-lif and its floor; ratios are to ``lif``.

``--time-steps`` sets T for both. A floor is the work no implementation of its workload can
skip: drawing the T x B x 784 random numbers of the input, layer 1's forward matmul and its
weight-gradient matmul.
"""

from __future__ import annotations

import csv
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tabulate import tabulate

import models
from bench import peers
from bench.cli import Parser, UsageError, positive
from bench.config import TrainConfig
from bench.devices import DeviceError, resolve_devices
from bench.loop import training_step
from bench.timing import synchronizer

COLUMNS = ["workload", "implementation", "device", "batch_size", "time_steps", "median_seconds", "min_seconds", "max_seconds",
           "repeats"]  # fmt: skip
WORKLOADS = {"snn": 128, "lif": 25}  # the base implementation of each workload and its default T
LIF_MODELS = ("lif", "lif-reference", "snntorch-lif", "spikingjelly-lif")


def model_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """The training loop's own step (forward, backward, the default config's optimizer), bound to one batch."""
    optimizer = TrainConfig().make_optimizer(model.parameters(), lr=0.01)
    return lambda: training_step(model, optimizer, x, y)


def floor_step(x: torch.Tensor, time_steps: int, hidden: int = 100) -> Callable[[], None]:
    """Masks + layer 1's forward GEMM + its weight-gradient GEMM, into reused buffers, nothing else."""
    from models import masks as mask_rng

    x = x.flatten(1)
    weight = torch.empty(hidden, x.shape[1], device=x.device).uniform_(-0.08, 0.08)
    inputs = torch.empty(time_steps * x.shape[0], x.shape[1], device=x.device)
    current = torch.empty(time_steps * x.shape[0], hidden, device=x.device)
    grad_weight = torch.empty_like(weight)

    def step() -> None:
        mask_rng.uniform_(inputs)
        torch.mm(inputs, weight.t(), out=current)  # forward: (T*B, 784) @ (784, hidden)
        torch.mm(current.t(), inputs, out=grad_weight)  # weight gradient: (hidden, T*B) @ (T*B, 784)

    return step


def implementations(device: str, batch_size: int, time_steps: int, workload: str = "snn") -> dict[str, Callable[[], None]]:
    """The timed steps of one workload ("snn" or "lif"), by implementation; the floor is "floor" or "floor (lif)"."""
    from bench.data import load

    data = load("mnist-mini", device=device).train
    reps = -(-batch_size // len(data))
    x, y = data.images.repeat(reps, 1, 1, 1)[:batch_size], data.labels.repeat(reps)[:batch_size]
    if workload == "lif":
        impls = {name: model_step(models.build(f"{name}:time_steps={time_steps}").to(device), x, y)
                 for name in LIF_MODELS if name in models.available()}  # fmt: skip
        impls["floor (lif)"] = floor_step(x, time_steps)
        return impls
    impls = {"ffn": model_step(models.build("ffn").to(device), x, y)}
    for name in ("snn", "snn-reference"):
        impls[name] = model_step(models.build(f"{name}:time_steps={time_steps}").to(device), x, y)
    impls["floor"] = floor_step(x, time_steps)
    for name in peers.installed():
        impls[name] = model_step(peers.build(name, time_steps).to(device), x, y)
    return impls


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


def rows(times: dict[str, list[float]], device: str, batch_size: int, time_steps: int, workload: str = "snn") -> list[dict]:
    return [
        {"workload": workload, "implementation": name, "device": device, "batch_size": batch_size, "time_steps": time_steps,
         "median_seconds": statistics.median(ts), "min_seconds": min(ts), "max_seconds": max(ts), "repeats": len(ts)}
        for name, ts in times.items()
    ]  # fmt: skip


def table(result: list[dict]) -> str:
    """One line per row; the last column is the ratio to its workload's base implementation (snn or lif) on its device."""
    base = {(r["workload"], r["device"]): r["median_seconds"] for r in result if r["implementation"] == r["workload"]}
    body = [
        [r["implementation"], r["device"], r["time_steps"], r["median_seconds"], r["min_seconds"], r["max_seconds"],
         r["median_seconds"] / base[r["workload"], r["device"]], r["workload"]]
        for r in result
    ]  # fmt: skip
    headers = ["implementation", "device", "T", "median s/step", "min s", "max s", "x base", "base"]
    return tabulate(body, headers=headers, floatfmt=("", "", "", ".4f", ".4f", ".4f", ".2f", ""))


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m bench.speed", description=__doc__.splitlines()[0])
    p.add_argument("--device", nargs="+", default=["cpu"], help="cpu, cuda, cuda:N, mps or all (default: cpu)")
    p.add_argument("--batch-size", type=positive(int), default=1000, help="(default: %(default)s)")
    p.add_argument("--time-steps", type=positive(int), default=None,
                   help="T of every SNN (default: 128 for the snn workload, 25 for lif)")  # fmt: skip
    p.add_argument("--workload", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS),
                   help="which workloads to time (default: snn lif)")  # fmt: skip
    p.add_argument("--repeats", type=positive(int), default=5, help="timed steps per implementation (default: %(default)s)")
    p.add_argument("--csv", default=None, help="also write the rows to this CSV file (default: none)")
    try:
        args = p.parse_args(argv)
        devices = resolve_devices(args.device)
        if args.csv and not Path(args.csv).resolve().parent.is_dir():
            raise UsageError(f"--csv: folder {Path(args.csv).parent} does not exist")
    except (UsageError, DeviceError) as exc:
        print(f"bench.speed: error: {exc}", file=sys.stderr)
        return 2
    result = []
    for device in devices:
        for workload in dict.fromkeys(args.workload):
            steps = args.time_steps or WORKLOADS[workload]
            impls = implementations(device, args.batch_size, steps, workload)
            print(f"timing {', '.join(impls)} on {device} at T = {steps} ...", file=sys.stderr)
            result += rows(measure(impls, device, args.repeats), device, args.batch_size, steps, workload)
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
