"""Datasets behind a registry, as tensors on the target device, batched by indexing a seeded permutation.

Each registered dataset has a loader (``data_dir`` -> the uint8 images and labels of each split)
and a ``DataInfo``: the shape of one sample, the class names. Datasets of other distributions
(entry points) and ``package.module:function`` come through bench/userdata.py. Models are sized
from, and checked against, the info before anything runs (``model_defaults``, ``check_fits``).

Preprocessing follows SPEC.md: pixels scaled to [0, 1], then ``(x - 0.5) / 1.0``,
so the input lies in [-0.5, 0.5] and the background is -0.5.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from bench import events, userdata

MINI_FILE = "mnist-mini.npz"  # in bench/assets/, built by scripts/make_mnist_mini.py
Raw = dict[str, tuple[torch.Tensor, torch.Tensor]]  # {"train": (images, labels), "test": ...}, uint8 images


class DataError(RuntimeError):
    """A dataset that cannot be loaded; the message is one line for the user."""


@dataclass(frozen=True)
class DataInfo:
    """What a model must fit: the shape of one sample (of one frame, for a sequence), the classes, and the time axis."""

    input_shape: tuple[int, ...]  # one preprocessed sample, e.g. (1, 28, 28); one frame of a sequence, e.g. (2, 34, 34)
    class_names: tuple[str, ...]
    time_steps: int | None = None  # None: a static sample; T: a sequence of T frames, a batch (B, T, *input_shape)

    @property
    def n_inputs(self) -> int:
        """The inputs of one sample, of one frame for a sequence."""
        return math.prod(self.input_shape)

    @property
    def sequence(self) -> bool:
        return self.time_steps is not None

    def describe(self) -> str:
        """``1x28x28`` or ``2x34x34 frames over 25 bins``."""
        shape = "x".join(map(str, self.input_shape))
        return f"{shape} frames over {self.time_steps} bins" if self.sequence else shape

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


DIGITS = DataInfo((1, 28, 28), tuple(str(d) for d in range(10)))
FASHION = DataInfo((1, 28, 28), ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                                 "Bag", "Ankle boot"))  # fmt: skip
DATASETS: dict[str, tuple[Callable[[str | Path], Raw], DataInfo]] = {}  # the built-ins
ORIGIN = "built-in"


def register(name: str, info: DataInfo):
    """Decorator: ``@register("mnist", DIGITS)`` on a loader ``data_dir -> Raw``."""

    def deco(loader: Callable[[str | Path], Raw]):
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        DATASETS[name] = (loader, info)
        return loader

    return deco


def available() -> list[str]:
    """The built-in datasets, the event datasets (bench/events.py) and those of installed plug-in distributions."""
    return sorted({*DATASETS, *events.SOURCES, *userdata.entry_points()})


def origin(name: str) -> str:
    if events.is_event(name):
        return "built-in, through tonic"
    return ORIGIN if name in DATASETS else userdata.origin(name) or "unknown"


def canonical(name: str) -> str:
    """A dataset's label (the ``dataset`` column): an event dataset's name and the options that differ from its
    defaults (``shd:bins=50``); ValueError for options that do not parse; any other name as it is."""
    return events.canonical(name) if events.is_event(name) else name


def info(name: str, data_dir: str | Path = "data") -> DataInfo:
    """What a model must fit; a plug-in dataset is loaded (once) to know it, an event dataset's options say it."""
    if events.is_event(name):
        return DataInfo(events.frame_shape(name), events.SOURCES[events.split(name)[0]].classes, events.options(name).bins)
    return DATASETS[name][1] if name in DATASETS else _loaded(name, os.path.abspath(data_dir))[1]


@functools.lru_cache(maxsize=4)
def _loaded(name: str, data_dir: str) -> tuple[Raw, DataInfo]:
    """The raw splits and the info of any dataset, on the CPU, kept for the trainings of this process."""
    if events.is_event(name):
        try:
            found = events.load(name, data_dir)
        except events.EventDataError as exc:
            raise DataError(str(exc)) from None
        return {s: (torch.from_numpy(x), torch.from_numpy(y)) for s, (x, y) in found.items()}, info(name)
    if name in DATASETS:
        loader, known = DATASETS[name]
        return loader(data_dir), known
    function = userdata.find(name, DataError)
    if function is None:
        raise DataError(f"unknown dataset {name!r}; choose from {', '.join(available())} (or package.module:function)")
    raw, shape, names = userdata.call(function, name, data_dir, DataError)
    return raw, DataInfo(shape, names)


def model_defaults(name: str, data_dir: str | Path = "data") -> dict[str, int | bool]:
    """What a model takes from the data unless its spec gives it (the keys its Config has): ``n_in`` (the inputs of a
    sample, of a frame for a sequence), ``n_out``, ``in_channels``, ``in_height`` and ``in_width`` of an image or
    camera frame, and for a sequence ``sequence=True`` and ``time_steps`` = its bins."""
    i = info(name, data_dir)
    found: dict[str, int | bool] = {"n_in": i.n_inputs, "n_out": i.n_classes}
    if len(i.input_shape) == 3:
        found.update(zip(("in_channels", "in_height", "in_width"), i.input_shape))
    if i.sequence:
        found.update(sequence=True, time_steps=i.time_steps)
    return found


def check_fits(label: str, config, dataset: str, data_dir: str | Path = "data", min_time_steps: int = 1) -> None:
    """ValueError when a model's ``n_in`` or ``n_out`` (where its config has them) does not fit the dataset, or its
    ``time_steps`` is below the smallest T at which its input reaches the logits."""
    steps = getattr(config, "time_steps", None)
    if steps is not None and steps < min_time_steps:
        raise ValueError(f"{label}: time_steps={steps} is below its minimum of {min_time_steps}: with fewer steps no "
                         "input reaches the logits")  # fmt: skip
    i = info(dataset, data_dir)
    fields = {f.name for f in dataclasses.fields(config)} if dataclasses.is_dataclass(config) else set()
    if i.sequence and "sequence" not in fields:
        raise ValueError(f"{label} takes static images only, and {dataset} is {i.describe()}; on event data use a "
                         f"model with the key sequence ({', '.join(_sequence_models())})")  # fmt: skip
    if i.sequence and getattr(config, "sequence", False) is False:
        raise ValueError(f"{label}: sequence=False does not fit {dataset}, which is {i.describe()}")
    if not i.sequence and getattr(config, "sequence", False):
        raise ValueError(f"{label}: sequence=True does not fit {dataset}, whose samples are static ({i.describe()})")
    if i.sequence and steps is not None and steps != i.time_steps:
        name = dataset.partition(":")[0]
        raise ValueError(f"{label}: time_steps={steps} does not fit {dataset}, whose samples have {i.time_steps} bins; "
                         f"the data sets T: --dataset {name}:bins={steps}")  # fmt: skip
    if "in_height" in fields and len(i.input_shape) != 3:
        raise ValueError(f"{label} takes images or camera frames (channels x height x width), and {dataset} is "
                         f"{i.describe()}")  # fmt: skip
    for key, size in zip(("in_channels", "in_height", "in_width"), i.input_shape if len(i.input_shape) == 3 else ()):
        if key in fields and getattr(config, key) != size:
            raise ValueError(f"{label}: {key}={getattr(config, key)} does not fit {dataset}, whose samples are "
                             f"{i.describe()}")  # fmt: skip
    n_in, n_out = getattr(config, "n_in", None), getattr(config, "n_out", None)
    if n_in is not None and n_in != i.n_inputs:
        shape = "x".join(map(str, i.input_shape))
        per = " per frame" if i.sequence else ""
        raise ValueError(f"{label}: n_in={n_in} does not fit {dataset}, whose samples have {i.n_inputs} inputs{per} ({shape})")
    if n_out is not None and n_out != i.n_classes:
        raise ValueError(f"{label}: n_out={n_out} does not fit {dataset}, which has {i.n_classes} classes")


def _sequence_models() -> list[str]:
    """The built-in models that take event data (their Config has ``sequence``)."""
    import models

    return sorted(n for n, cls in models.MODELS.items() if models.ORIGIN.get(n) == "built-in" and
            "sequence" in {f.name for f in dataclasses.fields(cls.Config)})  # fmt: skip


@dataclass
class Split:
    images: torch.Tensor  # (N, 1, 28, 28) float32 in [-0.5, 0.5]; event frames (N, T, *frame) as counts, uint8 or int16
    labels: torch.Tensor  # (N,) int64
    # a batch is ``scale * images + shift`` (bench.data.scaled: --input-scaling); 1 and 0 leave it as stored
    scale: float = 1.0
    shift: float = 0.0

    def __len__(self) -> int:
        return len(self.labels)

    def inputs(self, index) -> torch.Tensor:
        """The samples at ``index`` (a slice or an index tensor) as the models take them: float32 (event counts are
        kept in their compact integer type until a batch is taken)."""
        # index_select: the same rows as images[index], gathered in half the time (1.2 against 2.8 ms for 128 N-MNIST
        # samples of 25 bins)
        x = self.images.index_select(0, index) if isinstance(index, torch.Tensor) else self.images[index]
        x = x if x.is_floating_point() else x.to(torch.float32)
        if self.scale != 1.0 or self.shift != 0.0:
            x = torch.add(x * self.scale, self.shift)  # a new tensor: a slice of the images is a view of them
        return x


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    info: DataInfo = DIGITS


def preprocess(images: torch.Tensor, labels: torch.Tensor, device: str | torch.device, shape: tuple[int, ...] | None = None,
               steps: int | None = None) -> Split:  # fmt: skip
    """uint8 images (N, 28, 28) -> float (N, 1, 28, 28) in [-0.5, 0.5] on ``device``; other float inputs as they are,
    in float32. ``shape``: one sample's (DataInfo.input_shape; by default a channel axis before the image's). With
    ``steps`` (a sequence), event frames stay counts, (N, steps, *shape): ``Split.inputs`` makes a batch float."""
    if steps is not None:  # event frames: counts in their integer type (a mapped cache on the CPU: not copied)
        x = images.to(device=device).reshape(len(images), steps, *shape)
        return Split(x, labels.to(device=device, dtype=torch.int64))
    x = images.to(device=device, dtype=torch.float32)
    if images.dtype == torch.uint8:
        x = x.div_(255.0).sub_(0.5)
    x = x.reshape(len(x), *(shape or (1, *images.shape[1:])))
    return Split(x, labels.to(device=device, dtype=torch.int64))


def load_raw(name: str, data_dir: str | Path = "data") -> Raw:
    """The inputs (uint8 images for the built-ins) and labels of each split: ``{"train": (images, labels), "test": ...}``."""
    return _loaded(name, os.path.abspath(data_dir))[0]


def note(name: str, data: Dataset) -> str | None:
    """What a user should know of the dataset's numbers before reading them (bench.run prints it as a run starts)."""
    if name != "mnist-mini":
        return None
    return (f"mnist-mini is a {len(data.train):,}-digit subset of MNIST's 60,000 training digits ({len(data.test):,} test "
            "digits), for a quick look: after the default 3 epochs expect about 64% (ffn) to 72% (snn), below full "
            "MNIST's 89-91%; --dataset mnist --data-dir DIR for the real figures")  # fmt: skip


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

    from bench import idx

    return idx.torchvision_raw("mnist", torchvision.datasets.MNIST, data_dir)


@register("fashion-mnist", FASHION)
def _fashion_mnist(data_dir: str | Path) -> Raw:
    import torchvision

    from bench import idx

    return idx.torchvision_raw("fashion-mnist", torchvision.datasets.FashionMNIST, data_dir)


@functools.lru_cache(maxsize=4)
def _cached(name: str, data_dir: str, device: str) -> Dataset:
    raw, i = _loaded(name, data_dir)
    splits = (preprocess(*raw[s], device, i.input_shape, i.time_steps) for s in ("train", "test"))
    return Dataset(name, *splits, i)


def load(name: str, data_dir: str | Path = "data", device: str | torch.device = "cpu") -> Dataset:
    """The preprocessed dataset on ``device``; kept for the next training of the same process (nothing may
    change its tensors in place)."""
    return _cached(name, os.path.abspath(data_dir), str(torch.device(device)))


VALIDATION_SEED = 2018  # the held-out split is the same for every model, seed and scale (run.json records it)


def hold_out(split: Split, n: int, seed: int = VALIDATION_SEED) -> tuple[Split, Split]:
    """(what trains, ``n`` held-out samples), stratified: each class keeps its share of the held-out samples
    (largest remainders round up), drawn by a generator of ``seed`` alone; both in the split's order."""
    labels = split.labels.cpu()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    classes, counts, quota = held_out_counts(labels, n)
    held = torch.cat([order[labels[order] == c][:q] for c, q in zip(classes.tolist(), quota.tolist())]).sort().values
    kept = torch.ones(len(labels), dtype=torch.bool)
    kept[held] = False
    keep, device = kept.nonzero().squeeze(1), split.labels.device
    return (Split(split.images[keep.to(device)], split.labels[keep.to(device)]),
            Split(split.images[held.to(device)], split.labels[held.to(device)]))  # fmt: skip


def held_out_counts(labels: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(classes, samples of each, how many of each ``hold_out`` holds out): each class its share of ``n``, the largest
    remainders rounded up."""
    classes, counts = labels.cpu().unique(return_counts=True)
    share = n * counts.double() / len(labels)
    quota = share.floor().long()
    quota[(share - quota).argsort(descending=True, stable=True)[: n - int(quota.sum())]] += 1
    return classes, counts, quota


@functools.lru_cache(maxsize=4)
def training_splits(name: str, data_dir: str, device: str, validation: int) -> tuple[Split, Split | None]:
    """(what trains, the held-out split or None) of a loaded dataset: made once per process, as the dataset is."""
    train = load(name, data_dir, device).train
    return hold_out(train, validation) if validation else (train, None)


def scaling(mode: str, reference: Split) -> tuple[float, float]:
    """(scale, shift) that turn stored static images (pixel / 255 - 0.5) into ``mode``'s (bench.config.INPUT_SCALINGS):
    centered (1, 0); unit (1, 0.5): pixel / 255; standard: (x - mean) / std, the mean and standard deviation of every
    pixel of ``reference`` (the samples a training trains on, never the held-out or test ones)."""
    if mode == "centered":
        return 1.0, 0.0
    if mode == "unit":
        return 1.0, 0.5
    if mode == "standard":
        pixels = reference.images.double()
        mean, std = float(pixels.mean()), float(pixels.std())
        return 1.0 / std, -mean / std
    raise ValueError(f"unknown input scaling {mode!r}")


def scaled(split: Split | None, scale: float, shift: float) -> Split | None:
    """``split`` whose batches are ``scale * x + shift``: the same tensors, nothing copied."""
    return None if split is None else dataclasses.replace(split, scale=scale, shift=shift)


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
            yield split.inputs(slice(lo, hi)), split.labels[lo:hi]
        else:
            idx = order[lo:hi]
            yield split.inputs(idx), split.labels[idx]
