"""Writes snnbench_example/blobs.csv: three Gaussian blobs in 8 dimensions, 300 rows each, shuffled (seed 0)."""

import numpy as np

rng = np.random.default_rng(0)
centres = rng.normal(0, 1.0, (3, 8))
x = np.concatenate([rng.normal(c, 1.2, (300, 8)) for c in centres]).astype(np.float32)
y = np.repeat(np.arange(3), 300)
order = rng.permutation(len(y))
header = ",".join([f"x{i}" for i in range(8)] + ["label"])
rows = [",".join([*(f"{v:.4f}" for v in x[i]), str(y[i])]) for i in order]
with open("snnbench_example/blobs.csv", "w") as f:
    f.write(header + "\n" + "\n".join(rows) + "\n")
