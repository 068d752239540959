"""``python -m bench.speed --sweep DIR``: cost curves, the step time and peak memory of each implementation as the work
grows, with each curve's fitted exponent.

From a workload's base point (its T, hidden size and batch size: bench.speed's defaults or the ones given), one axis
at a time is scaled, the others held: T and the hidden size by 1/4, 1/2, 1 and 2, the batch by 1/4, 1/2 and 1. At each
point every implementation that has that size is timed as bench.speed times (interleaved, rotated, the median of
``--repeats``), and, unless ``--no-memory``, its peak memory per step measured in a child process. Written to DIR:
``sweep.csv`` (a row per workload, axis, point and implementation), ``exponents.csv`` (per workload, implementation
and axis: the slope of log time, and of log memory, against log size, by least squares, scipy.stats.linregress), and
``sweep-WORKLOAD.png`` (log-log curves, the exponent in each label). An exponent of 1 is cost proportional to the size;
below 1, fixed costs still dominate; where two curves cross, one implementation overtakes the other.

Which implementations: a workload's registered models and its floor; the snn workload's snnTorch and SpikingJelly
copies (fixed at 100 hidden neurons) and csnn's (no hidden layer: no hidden axis) are timed on the axes they have.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

SCALES = {"time_steps": (0.25, 0.5, 1, 2), "hidden": (0.25, 0.5, 1, 2), "batch_size": (0.25, 0.5, 1)}
HIDDEN = {"snn": 100, "lif": 100, "rsnn": 128}  # the workloads' hidden sizes (csnn has none)
COLUMNS = ["workload", "axis", "implementation", "device", "batch_size", "time_steps", "hidden", "median_seconds",
           "min_seconds", "max_seconds", "repeats", "peak_mib"]  # fmt: skip


def takes_hidden(name: str, workload: str) -> bool:
    """Whether an implementation of ``workload`` has a hidden size to sweep: not csnn's, not the snn peers'."""
    from bench import peers

    return workload in HIDDEN and name not in peers.PEERS


def points(workload: str, time_steps: int, batch_size: int) -> list[tuple[str, int, int, int | None]]:
    """(axis, T, B, hidden) of each point of a workload's sweep, the base point on each axis."""
    hidden = HIDDEN.get(workload)
    out = []
    for axis, scales in SCALES.items():
        if axis == "hidden" and hidden is None:
            continue
        for s in scales:
            t = max(1, round(time_steps * s)) if axis == "time_steps" else time_steps
            b = max(1, round(batch_size * s)) if axis == "batch_size" else batch_size
            h = max(1, round(hidden * s)) if axis == "hidden" and hidden else hidden
            out.append((axis, t, b, h))
    return out


def run(workloads: list[str], devices: list[str], time_steps: int | None, batch_size: int | None, repeats: int,
        memory: bool, out_dir: str | Path) -> list[dict]:  # fmt: skip
    """Time every point of every workload on every device; write DIR's files; return the rows."""
    import sys

    from bench import speed

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for device in devices:
        for workload in workloads:
            base_t, base_b = time_steps or speed.WORKLOADS[workload], batch_size or speed.BATCH_SIZES[workload]
            for axis, t, b, h in points(workload, base_t, base_b):
                # each implementation's hidden size (None: it has none, or a fixed one)
                sizes = {n: h if takes_hidden(n, workload) else None for n in speed.names(workload)}
                names = [n for n in sizes if axis != "hidden" or sizes[n] is not None]
                print(f"bench.speed: sweep {workload} on {device}: {axis} T = {t}, B = {b}, hidden = {h}: "
                      f"{', '.join(names)}", file=sys.stderr, flush=True)  # fmt: skip
                impls = {(n, "fp32"): speed.implementation(n, device, b, t, "fp32", sizes[n]) for n in names}
                found = speed.rows(speed.measure(impls, device, repeats), device, b, t, workload)
                del impls
                for row in found:
                    name = row["implementation"]
                    row.update(axis=axis, hidden=math.nan if sizes[name] is None else sizes[name])
                    row.pop("precision")
                    if memory:
                        row["peak_mib"] = speed.peak_step_mib(name, device, b, t, "fp32", sizes[name])
                rows += found
    write(rows, out_dir)
    return rows


def exponents(rows: list[dict]) -> list[dict]:
    """Per workload, device, implementation and axis: the least-squares slope of log(median seconds) and of log(peak
    MiB) against log(size), over the points it was timed at (NaN with fewer than 2 points or no memory)."""
    import numpy as np
    from scipy import stats

    out = []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["workload"], r["device"], r["implementation"], r["axis"]), []).append(r)
    for (workload, device, name, axis), g in groups.items():
        x = np.log([float(r[axis]) for r in g])
        fits = {}
        for column in ("median_seconds", "peak_mib"):
            y = np.array([float(r[column]) for r in g])
            ok = np.isfinite(y) & (y > 0)
            fits[column] = (stats.linregress(x[ok], np.log(y[ok])).slope
                            if ok.sum() >= 2 and np.ptp(x[ok]) > 0 else math.nan)  # fmt: skip
        out.append({"workload": workload, "device": device, "implementation": name, "axis": axis, "points": len(g),
                    "time_exponent": fits["median_seconds"], "memory_exponent": fits["peak_mib"]})  # fmt: skip
    return out


def write(rows: list[dict], out_dir: Path) -> None:
    with open(out_dir / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    fitted = exponents(rows)
    with open(out_dir / "exponents.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fitted[0]) if fitted else ["workload"])
        writer.writeheader()
        writer.writerows(fitted)
    for workload in dict.fromkeys(r["workload"] for r in rows):
        figure([r for r in rows if r["workload"] == workload], fitted, workload, out_dir / f"sweep-{workload}.png")


def figure(rows: list[dict], fitted: list[dict], workload: str, path: Path) -> None:
    """Log-log curves: a column per axis, time on top and memory below (where measured), a line per implementation
    labelled with its exponent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    axes_names = list(dict.fromkeys(r["axis"] for r in rows))
    has_memory = any(math.isfinite(float(r["peak_mib"])) for r in rows)
    fig, axes = plt.subplots(2 if has_memory else 1, len(axes_names), figsize=(4.2 * len(axes_names), 7 if has_memory else 3.8),
                             squeeze=False)  # fmt: skip
    names = list(dict.fromkeys(r["implementation"] for r in rows))
    palette = dict(zip(names, sns.color_palette("colorblind", len(names))))
    slope = {(f["device"], f["implementation"], f["axis"]): f for f in fitted}
    for col, axis in enumerate(axes_names):
        for name in names:
            for device in dict.fromkeys(r["device"] for r in rows):
                mine = sorted((r for r in rows if r["axis"] == axis and r["implementation"] == name and r["device"] == device),
                              key=lambda r: float(r[axis]))  # fmt: skip
                if not mine:
                    continue
                f = slope[(device, name, axis)]
                x = [float(r[axis]) for r in mine]
                axes[0][col].plot(x, [float(r["median_seconds"]) for r in mine], marker="o", ms=3, color=palette[name],
                                  label=f"{name} ({f['time_exponent']:.2f})")  # fmt: skip
                if has_memory:
                    axes[1][col].plot(x, [float(r["peak_mib"]) for r in mine], marker="o", ms=3, color=palette[name],
                                      label=f"{name} ({f['memory_exponent']:.2f})")  # fmt: skip
        axes[0][col].set(xscale="log", yscale="log", xlabel=axis.replace("_", " "), ylabel="median s per training step",
                         title=f"{workload}: time against {axis.replace('_', ' ')}")  # fmt: skip
        if has_memory:
            axes[1][col].set(xscale="log", yscale="log", xlabel=axis.replace("_", " "), ylabel="peak MiB per step",
                             title=f"{workload}: memory against {axis.replace('_', ' ')}")  # fmt: skip
        for row in axes:
            row[col].legend(fontsize=7, title="fitted exponent", title_fontsize=7)
            row[col].grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
