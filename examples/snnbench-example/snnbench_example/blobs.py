"""``blobs``: a dataset from a CSV file shipped in this package (8 features, 3 classes)."""

from __future__ import annotations

from importlib import resources

import numpy as np

CLASSES = ["left", "middle", "right"]
TRAIN = 600  # the first 600 rows train, the rest test


def load(data_dir: str):
    """snnbench's dataset contract: (train_x, train_y), (test_x, test_y), class names. ``data_dir`` is not needed."""
    with resources.files(__package__).joinpath("blobs.csv").open() as f:
        table = np.loadtxt(f, delimiter=",", skiprows=1, dtype=np.float32)
    x, y = table[:, :-1], table[:, -1].astype(np.int64)
    return (x[:TRAIN], y[:TRAIN]), (x[TRAIN:], y[TRAIN:]), CLASSES
