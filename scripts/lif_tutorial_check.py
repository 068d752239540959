"""Why ``lif`` on full MNIST scores above snnTorch's tutorial 5: the loss or the accuracy measure?

snnTorch's tutorial 5 trains 784-1000-10 ``Leaky`` neurons (beta 0.95, T = 25, the image as a direct input
at every step) with Adam (lr 5e-4, batches of 128, one epoch) on the *sum over steps* of the cross-entropy of
layer 2's membrane, and scores it by *spike counts*: 93.87% on the test set. snnbench's ``lif`` with that
setting (``lif:hidden=1000,encoding=direct --optimizer adam --lr 0.0005 --batch-size 128 --epochs 1``) trains
on the cross-entropy of the *mean* membrane and scores by that mean. This script trains the same model both
ways and scores each both ways, so the two differences are measured apart:

    python scripts/lif_tutorial_check.py --data-dir ../shared/data --seeds 0 1
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import models
from bench.data import load
from models.lif import LIFRecurrence


def membranes(model, x: torch.Tensor) -> torch.Tensor:
    """Layer 2's membrane at every step, (T, B, 10), through lif's own recurrence."""
    c = model.config
    args = (c.time_steps, c.beta, c.threshold, c.reset == "zero", c.surrogate, c.sharpness)
    p = x.flatten(1) + 0.5  # direct encoding: the pixel intensities, constant over the steps
    spikes1 = LIFRecurrence.apply(F.linear(p, model.fc1.weight, model.fc1.bias), *args, "spikes")
    return LIFRecurrence.apply(F.linear(spikes1, model.fc2.weight, model.fc2.bias), *args, "membrane")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="data")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = p.parse_args()
    data = load("mnist", data_dir=args.data_dir)
    for loss_kind in ("sum over steps (tutorial)", "mean membrane (snnbench)"):
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = models.build("lif:hidden=1000,encoding=direct")
            optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, betas=(0.9, 0.999))
            order = torch.randperm(len(data.train.images))
            start = time.perf_counter()
            for i in range(len(order) // 128):  # the tutorial drops the last partial batch
                batch = order[i * 128 : (i + 1) * 128]
                u2, y = membranes(model, data.train.images[batch]), data.train.labels[batch]
                if loss_kind.startswith("sum"):
                    loss = sum(F.cross_entropy(u, y) for u in u2)
                else:
                    loss = F.cross_entropy(u2.mean(0), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            by_count = by_membrane = 0
            with torch.no_grad():
                for i in range(0, len(data.test.images), 1000):
                    u2, y = membranes(model, data.test.images[i : i + 1000]), data.test.labels[i : i + 1000]
                    counts = (u2 > model.config.threshold).float().sum(0)
                    by_count += int((counts.max(1).indices == y).sum())  # the tutorial's argmax: lowest index on a tie
                    by_membrane += int((u2.mean(0).argmax(1) == y).sum())
            n = len(data.test.images)
            print(f"loss: {loss_kind}, seed {seed}: test accuracy by spike count {100 * by_count / n:.2f}%, "
                  f"by mean membrane {100 * by_membrane / n:.2f}% ({time.perf_counter() - start:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
