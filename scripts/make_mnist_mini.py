"""Build bench/assets/mnist-mini.npz: a stratified, real subset of MNIST.

    python scripts/make_mnist_mini.py --data-dir ../shared/data

600 images per class from the official training set and 100 per class from the
official test set, drawn with a fixed seed and kept in their original order.
The source indices are stored too, so every image can be traced back.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from bench.data import MINI_FILE, load_raw

ASSETS = Path(__file__).resolve().parent.parent / "bench" / "assets"


def stratified(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picks = [np.sort(rng.choice(np.flatnonzero(labels == c), per_class, replace=False)) for c in range(10)]
    return np.sort(np.concatenate(picks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data", help="folder holding MNIST/raw (default: %(default)s)")
    parser.add_argument("--train-per-class", type=int, default=600, help="(default: %(default)s)")
    parser.add_argument("--test-per-class", type=int, default=100, help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=2018, help="(default: %(default)s)")
    args = parser.parse_args()

    raw = load_raw("mnist", args.data_dir)
    rng = np.random.default_rng(args.seed)
    arrays = {}
    for split, per_class in (("train", args.train_per_class), ("test", args.test_per_class)):
        images, labels = (t.numpy() for t in raw[split])
        idx = stratified(labels, per_class, rng)
        arrays[f"{split}_images"] = images[idx].astype(np.uint8)
        arrays[f"{split}_labels"] = labels[idx].astype(np.uint8)
        arrays[f"{split}_source_index"] = idx.astype(np.int32)
    ASSETS.mkdir(exist_ok=True)
    out = ASSETS / MINI_FILE
    np.savez_compressed(out, **arrays)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"wrote {out} ({out.stat().st_size:,} bytes, sha256 {digest})")


if __name__ == "__main__":
    main()
