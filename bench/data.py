"""Datasets behind a registry, as tensors on the target device, batched by indexing a seeded permutation.

Each registered dataset has a loader (``data_dir`` -> the uint8 images and labels of each split)
and a ``DataInfo``: the shape of one sample, the class names. Models are checked against the
info before anything runs (``check_fits``).

Preprocessing follows SPEC.md: pixels scaled to [0, 1], then ``(x - 0.5) / 1.0``,
so the input lies in [-0.5, 0.5] and the background is -0.5.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

MINI_FILE = "mnist-mini.npz"  # in bench/assets/, built by scripts/make_mnist_mini.py
Raw = dict[str, tuple[torch.Tensor, torch.Tensor]]  # {"train": (images, labels), "test": ...}, uint8 images


class DataError(RuntimeError):
    """A dataset that cannot be loaded; the message is one line for the user."""


@dataclass(frozen=True)
class DataInfo:
    """What a model must fit: the shape of one sample and the classes."""

    input_shape: tuple[int, ...]  # one preprocessed sample, e.g. (1, 28, 28)
    class_names: tuple[str, ...]

    @property
    def n_inputs(self) -> int:
        return math.prod(self.input_shape)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


DIGITS = DataInfo((1, 28, 28), tuple(str(d) for d in range(10)))
FASHION = DataInfo((1, 28, 28), ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                                 "Bag", "Ankle boot"))  # fmt: skip
DATASETS: dict[str, tuple[Callable[[str | Path], Raw], DataInfo]] = {}


def register(name: str, info: DataInfo):
    """Decorator: ``@register("mnist", DIGITS)`` on a loader ``data_dir -> Raw``."""

    def deco(loader: Callable[[str | Path], Raw]):
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        DATASETS[name] = (loader, info)
        return loader

    return deco


def available() -> list[str]:
    return sorted(DATASETS)


def info(name: str) -> DataInfo:
    return _entry(name)[1]


def _entry(name: str):
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose from {', '.join(available())}") from None


def check_fits(label: str, config, dataset: str) -> None:
    """ValueError when a model's ``n_in`` or ``n_out`` (where its config has them) does not fit the dataset."""
    i = info(dataset)
    n_in, n_out = getattr(config, "n_in", None), getattr(config, "n_out", None)
    if n_in is not None and n_in != i.n_inputs:
        shape = "x".join(map(str, i.input_shape))
        raise ValueError(f"{label}: n_in={n_in} does not fit {dataset}, whose samples have {i.n_inputs} inputs ({shape})")
    if n_out is not None and n_out != i.n_classes:
        raise ValueError(f"{label}: n_out={n_out} does not fit {dataset}, which has {i.n_classes} classes")


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
    info: DataInfo = DIGITS


def preprocess(images: torch.Tensor, labels: torch.Tensor, device: str | torch.device) -> Split:
    """uint8 images (N, 28, 28) -> float (N, 1, 28, 28) in [-0.5, 0.5] on ``device``."""
    x = images.to(device=device, dtype=torch.float32).div_(255.0).sub_(0.5).unsqueeze(1)
    return Split(x, labels.to(device=device, dtype=torch.int64))


def load_raw(name: str, data_dir: str | Path = "data") -> Raw:
    """The uint8 images and labels of each split: ``{"train": (images, labels), "test": ...}``."""
    return _entry(name)[0](data_dir)


@register("mnist-mini", DIGITS)
def _mnist_mini(data_dir: str | Path) -> Raw:
    """Ships with snnbench: needs no ``data_dir``."""
    with resources.files("bench").joinpath("assets", MINI_FILE).open("rb") as f:
        arrays = dict(np.load(f))
    return {
        split: (torch.from_numpy(arrays[f"{split}_images"]), torch.from_numpy(arrays[f"{split}_labels"]))
        for split in ("train", "test")
    }


@register("mnist", DIGITS)
def _mnist(data_dir: str | Path) -> Raw:
    import torchvision

    return _torchvision("mnist", torchvision.datasets.MNIST, data_dir)


@register("fashion-mnist", FASHION)
def _fashion_mnist(data_dir: str | Path) -> Raw:
    import torchvision

    return _torchvision("fashion-mnist", torchvision.datasets.FashionMNIST, data_dir)


def _torchvision(name: str, cls, data_dir: str | Path) -> Raw:
    """From torchvision's layout under ``data_dir`` (checked first), downloading it when it is not there."""
    raw_dir = Path(data_dir) / cls.__name__ / "raw"
    if Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise DataError(f"--data-dir {data_dir} is not a folder")
    have_raw = _has_raw(cls, data_dir)
    if have_raw:
        check_idx(raw_dir)
    created = _first_missing(raw_dir)  # what a failed download must not leave behind
    out = {}
    for split in ("train", "test"):
        try:
            ds = cls(root=str(data_dir), train=split == "train", download=not have_raw)
        except Exception as exc:  # torchvision raises many kinds; the user needs one line
            if created is not None:
                shutil.rmtree(created, ignore_errors=True)
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise DataError(
                f"cannot load {name} from {data_dir} or download it ({reason[:200]}); "
                f"--dataset mnist-mini ships with snnbench and needs no download"
            ) from None
        out[split] = (ds.data, ds.targets)
    return out


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _has_raw(cls, data_dir: str | Path) -> bool:
    """True when the four raw IDX files are there: then torchvision must not try the network."""
    raw = Path(data_dir) / cls.__name__ / "raw"
    return all((raw / n).is_file() for n in IDX_FILES)


def _first_missing(path: Path) -> Path | None:
    """The outermost folder on the way to ``path`` that does not exist yet (None if ``path`` exists)."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def check_idx(raw_dir: str | Path) -> None:
    """DataError naming the first IDX file that is unreadable, has a wrong magic number or size,
    holds labels outside 0-9, or whose image and label counts differ (torchvision checks none of it)."""
    counts = {}
    for name in IDX_FILES:
        path = Path(raw_dir) / name
        images = "images" in name
        want_magic, header_size = (2051, 16) if images else (2049, 8)
        try:
            with open(path, "rb") as f:
                header = f.read(header_size)
                size = os.fstat(f.fileno()).st_size - header_size
                labels = b"" if images else f.read()
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror}") from None
        if len(header) < header_size or int.from_bytes(header[:4], "big") != want_magic:
            raise DataError(f"{path} is not an IDX {'image' if images else 'label'} file (magic number is not {want_magic})")
        n = int.from_bytes(header[4:8], "big")
        shape = (int.from_bytes(header[8:12], "big"), int.from_bytes(header[12:16], "big")) if images else ()
        if shape not in ((), (28, 28)):
            raise DataError(f"{path}: images are {shape[0]}x{shape[1]}, expected 28x28")
        if size != n * (784 if images else 1):
            raise DataError(f"{path} is truncated or too long: {size} data bytes for {n} items")
        if labels and max(labels) > 9:
            raise DataError(f"{path}: label {max(labels)} is not a class 0-9")
        counts[name] = n
    for split in ("train", "t10k"):
        n_images, n_labels = counts[f"{split}-images-idx3-ubyte"], counts[f"{split}-labels-idx1-ubyte"]
        if n_images != n_labels:
            raise DataError(f"{raw_dir}: {split} has {n_images} images but {n_labels} labels")


@functools.lru_cache(maxsize=4)
def _cached(name: str, data_dir: str, device: str) -> Dataset:
    raw = load_raw(name, data_dir)
    return Dataset(name, preprocess(*raw["train"], device), preprocess(*raw["test"], device), info(name))


def load(name: str, data_dir: str | Path = "data", device: str | torch.device = "cpu") -> Dataset:
    """The preprocessed dataset on ``device``; kept for the next training of the same process (nothing may
    change its tensors in place)."""
    return _cached(name, os.path.abspath(data_dir), str(torch.device(device)))


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
