"""Why rsnn's accuracy on smnist drops for an epoch and recovers: the gradient norm and the loss of every step.

Trains rsnn:n_in=99 as the reference run does (sequence input of 112 bins; seed 0, Adam at 1e-3, batch 256, the
50,000 training samples of the reference run's split) for a few epochs and prints, per epoch, the loss, the test
accuracy, the median and largest gradient norm (all parameters, before the step) and how many steps had a norm above
10x the epoch's median; with ``--clip C``, the same with gradients clipped to norm C; ``--spec`` another model.

    python scripts/rsnn_gradients.py --data-dir ../shared/data --epochs 4 [--clip 1.0]
    python scripts/rsnn_gradients.py --spec rsnn:n_in=99,sequence=true,time_steps=112,alpha=0.6
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import models
from bench import data as datasets


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--clip", type=float, default=None)
    ap.add_argument("--spec", default="rsnn:n_in=99,sequence=true,time_steps=112")
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    torch.manual_seed(0)
    train, _ = datasets.training_splits("smnist", args.data_dir, "cpu", 10000)
    test = datasets.load("smnist", args.data_dir, "cpu").test
    model = models.build(args.spec)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    n = len(train.labels)
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(n)
        norms, losses, t0 = [], [], time.perf_counter()
        for i in range(0, n, 256):
            idx = order[i : i + 256]
            x, y = train.images[idx].float(), train.labels[idx]
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            total = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip if args.clip else float("inf"))
            norms.append(float(total))
            losses.append(float(loss))
            opt.step()
        with torch.no_grad():
            correct = sum(int((model(test.images[j : j + 1000].float()).argmax(1) == test.labels[j : j + 1000]).sum())
                          for j in range(0, len(test.labels), 1000))  # fmt: skip
        t = torch.tensor(norms)
        med = float(t.median())
        print(f"epoch {epoch}: train loss {sum(losses) / len(losses):.4f}, test {100 * correct / len(test.labels):.2f}%, "
              f"grad norm median {med:.3g} max {float(t.max()):.3g} (step {int(t.argmax())}), "
              f"{int((t > 10 * med).sum())} steps above 10x median, worst loss {max(losses):.3f}, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
