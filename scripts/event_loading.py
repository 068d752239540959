"""How much of an event-data epoch goes to loading: N-MNIST-format files written here (no N-MNIST download needed),
converted once, then an epoch of ``csnn`` (and ``lif``) with the time spent taking batches (indexing the mapped
frames, making them float32) apart from the training steps.

    python scripts/event_loading.py [--train 2000] [--test 500] [--events 4000] [--models csnn lif]

N-MNIST's samples hold about 4,000 events each over about 300 ms (Orchard et al. 2015); the files written here have
that many, at random positions and times, so the binning and the loading cost what they would on the real files.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from eventfiles import write_nmnist  # noqa: E402

import models  # noqa: E402
from bench import data as datasets  # noqa: E402
from bench.devices import cpu_model  # noqa: E402
from bench.loop import training_step  # noqa: E402


def write(root: Path, train: int, test: int, events: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for is_train, n in ((True, train), (False, test)):
        samples = []
        for i in range(n):
            x, y = rng.integers(0, 34, events), rng.integers(0, 34, events)
            samples.append(
                (i % 10, {"x": x, "y": y, "t": np.sort(rng.integers(0, 300_000, events)), "p": rng.integers(0, 2, events)})
            )
        write_nmnist(root, samples, train=is_train)


def epoch(name: str, dataset: str, root: Path, batch: int) -> tuple[float, float, int]:
    """(seconds taking batches, seconds in training steps, steps) of one epoch."""
    data = datasets.load(dataset, root)
    spec = models.parse_spec(name, defaults=datasets.model_defaults(dataset, root))
    torch.manual_seed(0)
    model = spec.build()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    batches = datasets.batches(data.train, batch, torch.Generator().manual_seed(0))
    loading = stepping = 0.0
    steps = 0
    while True:
        began = time.perf_counter()
        try:
            x, y = next(batches)
        except StopIteration:
            break
        loaded = time.perf_counter()
        training_step(model, optimizer, x, y)
        stepping += time.perf_counter() - loaded
        loading += loaded - began
        steps += 1
    return loading, stepping, steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--test", type=int, default=500)
    p.add_argument("--events", type=int, default=4000)
    p.add_argument("--bins", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--models", nargs="+", default=["csnn", "lif"])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, os.environ["SNNBENCH_CACHE"] = Path(tmp) / "data", str(Path(tmp) / "cache")
        began = time.perf_counter()
        write(root, args.train, args.test, args.events)
        print(f"wrote {args.train} + {args.test} N-MNIST files of {args.events} events in {time.perf_counter() - began:.1f} s")
        dataset = f"nmnist:bins={args.bins}"
        began = time.perf_counter()
        datasets.load(dataset, root)
        converted = time.perf_counter() - began
        n = args.train + args.test
        print(
            f"first load (conversion): {converted:.1f} s, {1e3 * converted / n:.2f} ms a sample; {cpu_model()}, "
            f"{torch.get_num_threads()} threads"
        )
        datasets._loaded.cache_clear()
        datasets._cached.cache_clear()
        began = time.perf_counter()
        datasets.load(dataset, root)
        print(f"later load (mapped from the cache): {time.perf_counter() - began:.2f} s")
        for name in args.models:
            epoch(name, dataset, root, args.batch_size)  # warm-up: the first steps build kernels, allocate
            loading, stepping, steps = epoch(name, dataset, root, args.batch_size)
            print(
                f"{name}: one epoch of {steps} steps, batch {args.batch_size}: {loading:.2f} s taking batches, "
                f"{stepping:.2f} s training: loading is {100 * loading / (loading + stepping):.1f}% of the epoch"
            )


if __name__ == "__main__":
    main()
