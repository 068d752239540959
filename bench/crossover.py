"""``python -m bench.speed --crossover DIR``: where event-driven layer products beat dense ones on this machine.

For `lif`'s layer 1 on MNIST (784 inputs, 100 neurons, T 25 x B 1000 = 25,000 rows) both paths of
models/spike_products.py are timed at densities from 1% to 80% (fp32, this process's threads, best of ``repeats``):

- ``products``: the forward and weight-gradient products alone, on random 0/1 inputs (two GEMMs against the event
  kernels), the speed-up the figure's first curve shows;
- ``rate, active A``: the spikes drawn too (``masks.bernoulli_`` and one GEMM each way, against ``rate_events`` and the
  event kernels), from probabilities that are 0 outside a share A of the inputs: 0.2 as on MNIST (its background never
  fires), and 1 (every input may fire: the event generator skips nothing).

Written to DIR: ``crossover.csv`` (a row per curve and density: seconds of each path, the speed-up dense / event) and
``crossover.png`` (speed-up against density, log x, the crossover where a curve meets 1); returns the crossovers.
"""

from __future__ import annotations

import csv
from pathlib import Path

DENSITIES = (0.01, 0.02, 0.05, 0.1, 0.13, 0.2, 0.3, 0.5, 0.8)
CURVES = (("products", False, 1.0), ("rate, active 0.2", True, 0.2), ("rate, active 1", True, 1.0))
COLUMNS = ["curve", "density", "dense_seconds", "event_seconds", "speedup", "rows", "n_in", "hidden", "threads"]


def run(out_dir: str | Path, rows: int = 25_000, n: int = 784, hidden: int = 100, repeats: int = 5) -> dict[str, float]:
    import torch

    from models import spike_products as sp

    if not sp.native():
        raise RuntimeError("the event-driven kernels are not built here (models/_events.c): nothing to compare")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table, found = [], {}
    for curve, rate, active in CURVES:
        measured = sp.measure(n, hidden, DENSITIES, rows=rows, repeats=repeats, rate=rate, active=active)
        found[curve] = sp.crossing(measured)
        for r in measured:
            table.append({"curve": curve, **r, "speedup": r["dense_seconds"] / r["event_seconds"], "rows": rows,
                          "n_in": n, "hidden": hidden, "threads": torch.get_num_threads()})  # fmt: skip
        print(f"{curve}: " + ", ".join(f"{r['density']:g} {r['dense_seconds'] / r['event_seconds']:.2f}x" for r in measured)
              + f"; crossover {found[curve]:g}", flush=True)  # fmt: skip
    with open(out_dir / "crossover.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(table)
    draw(table, found, out_dir / "crossover.png")
    return found


def draw(table: list[dict], found: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import pandas as pd
    import seaborn as sns

    from models.native import cpu_model

    data = pd.DataFrame(table)
    data["label"] = [f"{c} (crossover {found[c]:g})" for c in data["curve"]]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    sns.lineplot(data=data, x="density", y="speedup", hue="label", marker="o", ax=ax, palette="colorblind")
    ax.axhline(1, color="grey", linestyle="--", linewidth=1)
    ax.axvline(0.13, color="grey", linestyle=":", linewidth=1)
    ax.text(0.13, ax.get_ylim()[1] * 0.95, " MNIST", va="top", fontsize=8, color="grey")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    row = table[0]
    ax.set_xlabel("density of the 0/1 input (share of 1s)")
    ax.set_ylabel("speed-up of event-driven over dense")
    ax.set_title(f"{row['n_in']} -> {row['hidden']}, {row['rows']:,} rows, fp32, {row['threads']} threads\n{cpu_model()}",
                 fontsize=9)  # fmt: skip
    ax.legend(fontsize=8, title=None)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
