"""Datasets as tensors on the target device, batched by indexing a seeded permutation.

Preprocessing follows SPEC.md: pixels scaled to [0, 1], then ``(x - 0.5) / 1.0``,
so the input lies in [-0.5, 0.5] and the background is -0.5.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

DATASETS = ("mnist", "fashion-mnist", "mnist-mini")
MINI_FILE = "mnist-mini.npz"  # in bench/assets/, built by scripts/make_mnist_mini.py


class DataError(RuntimeError):
    """A dataset that cannot be loaded; the message is one line for the user."""


@dataclass
class Split:
    images: torch.Tensor  # (N, 1, 28, 28) float32 in [-0.5, 0.5]
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split


def preprocess(images: torch.Tensor, labels: torch.Tensor, device: str | torch.device) -> Split:
    """uint8 images (N, 28, 28) -> float (N, 1, 28, 28) in [-0.5, 0.5] on ``device``."""
    x = images.to(device=device, dtype=torch.float32).div_(255.0).sub_(0.5).unsqueeze(1)
    return Split(x, labels.to(device=device, dtype=torch.int64))


def load_raw(name: str, data_dir: str | Path = "data") -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The uint8 images and labels of each split: ``{"train": (images, labels), "test": ...}``."""
    if name == "mnist-mini":
        with resources.files("bench").joinpath("assets", MINI_FILE).open("rb") as f:
            arrays = dict(np.load(f))
        return {
            split: (torch.from_numpy(arrays[f"{split}_images"]), torch.from_numpy(arrays[f"{split}_labels"]))
            for split in ("train", "test")
        }
    if name not in ("mnist", "fashion-mnist"):
        raise DataError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    import torchvision

    cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.FashionMNIST
    out = {}
    for split in ("train", "test"):
        try:
            ds = cls(root=str(data_dir), train=split == "train", download=not _has_raw(cls, data_dir))
        except Exception as exc:  # torchvision raises many kinds; the user needs one line
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise DataError(
                f"cannot load {name} from {data_dir} or download it ({reason[:200]}); "
                f"--dataset mnist-mini ships with snnbench and needs no download"
            ) from None
        out[split] = (ds.data, ds.targets)
    return out


def _has_raw(cls, data_dir: str | Path) -> bool:
    """True when the four raw IDX files are there: then torchvision must not try the network."""
    raw = Path(data_dir) / cls.__name__ / "raw"
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return all((raw / n).is_file() for n in names)


def load(name: str, data_dir: str | Path = "data", device: str | torch.device = "cpu") -> Dataset:
    raw = load_raw(name, data_dir)
    return Dataset(name, preprocess(*raw["train"], device), preprocess(*raw["test"], device))


def num_batches(n: int, batch_size: int, max_batches: int | None = None) -> int:
    count = -(-n // batch_size)
    return min(count, max_batches) if max_batches else count


def batches(
    split: Split,
    batch_size: int,
    generator: torch.Generator | None = None,
    max_batches: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images, labels) batches; shuffled by ``generator`` (a CPU generator) when given, else in order."""
    n = len(split)
    order = None
    if generator is not None:
        order = torch.randperm(n, generator=generator).to(split.labels.device)
    for i in range(num_batches(n, batch_size, max_batches)):
        lo, hi = i * batch_size, min(n, (i + 1) * batch_size)
        if order is None:
            yield split.images[lo:hi], split.labels[lo:hi]
        else:
            idx = order[lo:hi]
            yield split.images[idx], split.labels[idx]
