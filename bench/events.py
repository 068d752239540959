"""Event-camera and spike-train datasets through tonic: N-MNIST, DVS128 Gesture, SHD and spiking sequential MNIST.

``--dataset NAME[:key=value,...]`` (``nmnist``, ``shd:bins=100``, ``dvsgesture:factor=0.25,bins=20``): the events
of each sample become ``bins`` frames through tonic's transforms (``Denoise``, ``Downsample``, ``ToFrame``), which the
models see as a sequence (B, T, *frame) (bench.data.DataInfo.time_steps). The frames of every sample are made once
and kept on disk (``cache_dir``), keyed by the dataset, its options, tonic's version and the source files' sizes and
times; later runs map them from there, so no epoch bins events.

Binning, from what tonic does (tests/test_eventfiles.py states it by hand): ``ToFrame(n_time_bins=K)`` drops a
sample's last event and counts time from its first one, and events out of time order are binned wrongly (SMNIST's
duplicated spikes come out unsorted). So the events are sorted by time, and each sample is cut into ``bins`` frames of
``window`` microseconds from time 0 (``ToFrame(time_window=..., start_time=0, end_time=...)``; events after the last
frame are cut, and the share cut is recorded), or, with ``window=0``, its own span from its first to its last event
cut into ``bins`` equal frames; the frames hold every event of that span (checked).

The files are read where their publisher's archive unpacks them below ``--data-dir`` (tonic's layout, ``LAYOUT``); a
missing file is one line naming what is missing, the folder searched and the layout expected. Nothing is downloaded
unless ``--download`` asks for it (``DOWNLOAD``), where a network exists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DOWNLOAD = False  # set by bench.run's --download: may tonic fetch missing files
FORMAT = 1  # of the cached frames: a change of the binning here makes every cached conversion stale


class EventDataError(RuntimeError):
    """An event dataset that cannot be loaded (bench.data.DataError wraps it); one line for the user."""


@dataclass(frozen=True)
class Options:
    """How one sample's events become frames; ``--dataset NAME:key=value,...``."""

    bins: int = 25  # frames per sample: the time axis T the models step through
    window: int = 0  # microseconds per frame from time 0 (0: the sample's own span, first to last event, in bins)
    denoise: int = 0  # microseconds: tonic's Denoise(filter_time) drops events with no neighbour as recent (0: off)
    factor: float = 1.0  # tonic's Downsample(spatial_factor): 0.25 makes DVS Gesture's 128x128 32x32 (1: as recorded)
    binary: bool = False  # frames clipped to 0/1 (spikes) instead of event counts

    def __post_init__(self):
        if self.bins < 1:
            raise ValueError(f"bins must be at least 1, got {self.bins}")
        if not (self.window >= 0 and self.denoise >= 0):
            raise ValueError("window and denoise are microseconds >= 0")
        if not 0 < self.factor <= 1:
            raise ValueError(f"factor must be in (0, 1], got {self.factor}")


@dataclass(frozen=True)
class Source:
    """One event dataset: what it is, its tonic class, sensor, classes, default options and files on disk."""

    what: str
    tonic_class: str  # in tonic.datasets
    sensor: tuple[int, int, int]  # tonic's sensor_size: (width, height, polarities); (channels, 1, 1) without a y
    classes: tuple[str, ...]
    defaults: Options
    layout: str  # where the files must be, below --data-dir
    present: tuple[str, str]  # (train, test): a glob below the folder that matches the split's files


DIGITS = tuple(str(d) for d in range(10))
GESTURES = ("hand clap", "right hand wave", "left hand wave", "right arm cw", "right arm ccw", "left arm cw",
            "left arm ccw", "arm roll", "air drums", "air guitar", "other")  # fmt: skip
SHD_WORDS = tuple([f"{d} (en)" for d in range(10)] + [f"{d} (de)" for d in range(10)])  # labels 0-9 English, 10-19 German
SOURCES = {
    "nmnist": Source(
        "N-MNIST: MNIST digits seen by an event camera on 3 saccades", "NMNIST", (34, 34, 2), DIGITS, Options(bins=25),
        "NMNIST/Train/<digit>/<id>.bin and NMNIST/Test/<digit>/<id>.bin (Train.zip and Test.zip unpacked)",
        ("Train/*/*.bin", "Test/*/*.bin")),
    "dvsgesture": Source(
        "DVS128 Gesture: 11 hand gestures by 29 people", "DVSGesture", (128, 128, 2), GESTURES,
        Options(bins=20, factor=0.25),
        "DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy and DVSGesture/ibmGestureTest/... (tonic's "
        "ibmGestureTrain.tar.gz and ibmGestureTest.tar.gz unpacked)", ("ibmGestureTrain/*/*.npy", "ibmGestureTest/*/*.npy")),
    "shd": Source(
        "SHD: Spiking Heidelberg Digits, 20 spoken digits on 700 cochlear channels", "SHD", (700, 1, 1), SHD_WORDS,
        Options(bins=100, window=10000), "SHD/shd_train.h5 and SHD/shd_test.h5 (shd_train.h5.zip, shd_test.h5.zip "
        "unpacked)", ("shd_train.h5", "shd_test.h5")),
    "smnist": Source(
        "spiking sequential MNIST: MNIST's pixels in row order crossing 49 grey thresholds, on 99 channels", "SMNIST",
        (99, 1, 1), DIGITS, Options(bins=112, window=14000),
        "smnist/train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, or "
        "the same files in torchvision's MNIST/raw/ (uncompressed)",
        ("train-*-ubyte", "t10k-*-ubyte")),
}  # fmt: skip
MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}  # fmt: skip


def split(text: str) -> tuple[str, str]:
    """``"shd:bins=100"`` -> ``("shd", "bins=100")``."""
    name, _, rest = text.strip().partition(":")
    return name.strip(), rest


def is_event(text: str) -> bool:
    return split(text)[0] in SOURCES


def options(text: str) -> Options:
    """The options of ``NAME:key=value,...`` over the dataset's defaults; ValueError naming what is wrong."""
    from models.registry import SpecError, _parse_value

    name, rest = split(text)
    source = SOURCES[name]
    fields = {f.name: f for f in dataclasses.fields(Options)}
    values = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            wrong = f"expected key=value, got {item!r}" if not sep else f"unknown key {key!r}"
            raise ValueError(f"--dataset {text}: {wrong}; keys of {name}: {', '.join(fields)}")
        if key in values:
            raise ValueError(f"--dataset {text}: {key} is given twice")
        try:
            values[key] = _parse_value(Options, fields[key], raw.strip())
        except SpecError as exc:
            raise ValueError(f"--dataset {text}: {exc}") from None
    try:
        return dataclasses.replace(source.defaults, **values)
    except ValueError as exc:
        raise ValueError(f"--dataset {text}: {exc}") from None


def canonical(text: str) -> str:
    """The dataset's label: its name, then the options that differ from its defaults, sorted (``shd:bins=50``)."""
    name, opts = split(text)[0], options(text)
    default = SOURCES[name].defaults
    changed = [f"{f.name}={getattr(opts, f.name)!r}" if isinstance(getattr(opts, f.name), float) else
               f"{f.name}={getattr(opts, f.name)}" for f in dataclasses.fields(Options)
               if getattr(opts, f.name) != getattr(default, f.name)]  # fmt: skip
    return name + (":" + ",".join(sorted(changed)) if changed else "")


def _size(n: int, factor: float) -> int:
    """Coordinates 0..n-1 times ``factor``, floored as tonic's Downsample does: this many values."""
    return int((n - 1) * factor) + 1


def frame_shape(text: str) -> tuple[int, ...]:
    """One frame: (polarities, height, width) of a camera, (1, channels) of a cochlea or SMNIST's thresholds."""
    name, opts = split(text)[0], options(text)
    w, h, p = SOURCES[name].sensor
    w, h = _size(w, opts.factor), _size(h, opts.factor) if h > 1 else 1
    return (p, h, w) if h > 1 else (p, w)


def cache_dir() -> Path:
    """Where converted frames are kept: ``$SNNBENCH_CACHE`` or ``$XDG_CACHE_HOME/snnbench/frames`` (~/.cache)."""
    if os.environ.get("SNNBENCH_CACHE"):
        return Path(os.environ["SNNBENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "snnbench" / "frames"


def _tonic():
    try:
        import tonic
    except ImportError:
        raise EventDataError("the event datasets read their files through tonic: pip install -e '.[events]'") from None
    return tonic


def _folder(name: str, data_dir: Path) -> Path:
    """The folder tonic reads ``name`` from (for smnist: its own, or torchvision's MNIST/raw/ linked into the cache)."""
    source = SOURCES[name]
    folder = data_dir / ("smnist" if name == "smnist" else source.tonic_class)
    if name == "smnist" and _missing(name, folder):
        raw = data_dir / "MNIST" / "raw"
        if _missing(name, raw):
            return folder
        staged = cache_dir() / "smnist-sources" / hashlib.sha256(str(raw).encode()).hexdigest()[:16] / "smnist"
        staged.mkdir(parents=True, exist_ok=True)
        for files in MNIST_FILES.values():
            for f in files:
                link = staged / f
                if not link.is_symlink() or link.resolve() != (raw / f).resolve():
                    link.unlink(missing_ok=True)
                    link.symlink_to((raw / f).resolve())
        return staged
    return folder


def _missing(name: str, folder: Path) -> list[str]:
    """The splits' files (patterns) with no match in ``folder``: none when both splits are there."""
    if name == "smnist":
        return [f for files in MNIST_FILES.values() for f in files if not (folder / f).is_file()]
    return [pattern for pattern in SOURCES[name].present if next(folder.glob(pattern), None) is None]


def _not_found(name: str, folder: Path, data_dir, missing: list[str]) -> EventDataError:
    return EventDataError(f"{name}: no {', '.join(missing)} in {folder}; expected {SOURCES[name].layout} below "
                          f"--data-dir {data_dir}; --download fetches them where a network exists")  # fmt: skip


def _dataset(name: str, data_dir: Path, train: bool):
    """tonic's dataset of ``name`` reading ``data_dir``: its own check of the files replaced by ``_missing`` (tonic's
    wants the downloaded archive still there and 10,000 N-MNIST files, so it would download again what is unpacked),
    and its download refused unless ``DOWNLOAD``."""
    tonic = _tonic()
    base = getattr(tonic.datasets, SOURCES[name].tonic_class)
    folder = _folder(name, data_dir)

    def check(self) -> bool:
        return not _missing(name, folder)

    def download(self) -> None:
        if not DOWNLOAD:
            raise _not_found(name, folder, data_dir, _missing(name, folder))
        base.download(self)

    cls = type(base.__name__, (base,), {"_check_exists": check, "download": download})  # tonic's folder: the class name
    save_to = folder.parent
    return cls(str(save_to), train=train)


def check_files(text: str, data_dir: str | Path) -> None:
    """EventDataError naming the missing files, the folder searched and the layout expected (before any work)."""
    name = split(text)[0]
    _tonic()
    folder = _folder(name, Path(data_dir))
    if (missing := _missing(name, folder)) and not DOWNLOAD:
        raise _not_found(name, folder, data_dir, missing)


def _cached_at(text: str, data_dir: str | Path) -> Path:
    """The cache folder of ``text``'s frames, named by the dataset's label and a key of the format, the options,
    tonic's version, and each source file's path, size and time."""
    folder = _folder(split(text)[0], Path(data_dir))
    files = sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())
    stats = [(str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.exists()]
    blob = json.dumps([FORMAT, canonical(text), _tonic().__version__, str(folder.resolve()), stats])
    return cache_dir() / f"{canonical(text).replace(':', '-').replace(',', '-')}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


class Binner:
    """One sample's events -> (frames (bins, *frame) int16, events cut after the last frame), through tonic's
    transforms, set up once for a dataset and its options."""

    def __init__(self, text: str):
        self.tonic = _tonic()
        T = self.tonic.transforms
        self.name, self.opts = split(text)[0], options(text)
        w, h, p = SOURCES[self.name].sensor
        self.denoise = T.Denoise(filter_time=self.opts.denoise) if self.opts.denoise and h > 1 else None
        self.downsample = T.Downsample(spatial_factor=self.opts.factor) if self.opts.factor != 1 else None
        self.sensor = (_size(w, self.opts.factor), _size(h, self.opts.factor) if h > 1 else 1, p)
        self.shape = (self.opts.bins, *frame_shape(text))

    def __call__(self, events: np.ndarray) -> tuple[np.ndarray, int]:
        bins = self.opts.bins
        t = events["t"]
        # a copy either way (ToFrame writes into p on one-polarity sensors); sorting by the time column alone is 10x
        # faster than a structured sort
        events = events.copy() if len(t) < 2 or bool((t[1:] >= t[:-1]).all()) else events[np.argsort(t, kind="stable")]
        if self.denoise is not None:
            events = self.denoise(events)
        if self.downsample is not None:
            events = self.downsample(events)
        frames = np.zeros(self.shape, np.int16)
        if len(events) == 0:
            return frames, 0
        if self.opts.window:
            start, window = 0, self.opts.window
        else:  # the sample's own span, its last event included: [first, last + 1) in ``bins`` frames of whole
            # microseconds (tonic's slices of a fractional window can overlap by a rounding error: an event in two)
            start = int(events["t"][0])
            window = -(-(int(events["t"][-1]) + 1 - start) // bins)
        end = start + window * bins
        kept = events[events["t"] < end]
        made = self.tonic.transforms.ToFrame(sensor_size=self.sensor, time_window=window, start_time=start, end_time=end,
                                             include_incomplete=True)(kept)  # fmt: skip
        made = np.asarray(made)[:bins]
        frames[: len(made)] = made.reshape(len(made), *self.shape[1:])
        binned = int(frames.sum(dtype=np.int64))
        if binned != len(kept):  # every event of the span in exactly one frame
            raise EventDataError(f"{self.name}: binning put {binned} of a sample's {len(kept)} events in its frames "
                                 f"(tonic {self.tonic.__version__}); this is a bug, please report it")  # fmt: skip
        return frames, len(events) - len(kept)


def load(text: str, data_dir: str | Path, progress: bool = True) -> dict:
    """``{"train": (frames (N, bins, *frame) uint8 or int16, labels (N,) int64), "test": ...}`` as numpy arrays mapped
    from the cache, converting the files first where the cache does not hold them."""
    name = split(text)[0]
    check_files(text, data_dir)
    if _missing(name, _folder(name, Path(data_dir))):  # --download: tonic fetches them now
        for train in (True, False):
            _dataset(name, Path(data_dir), train)
    where = _cached_at(text, data_dir)
    if not (where / "meta.json").is_file():
        _convert(text, Path(data_dir), where, progress)
    found = {}
    for s in ("train", "test"):
        found[s] = (np.load(where / f"{s}-frames.npy", mmap_mode="c"), np.load(where / f"{s}-labels.npy").astype(np.int64))
    return found


def _convert(text: str, data_dir: Path, where: Path, progress: bool) -> None:
    """Every sample's frames into ``where`` (written beside it, then renamed: a cut conversion leaves no cache)."""
    name, opts = split(text)[0], options(text)
    where.parent.mkdir(parents=True, exist_ok=True)
    part = where.with_name(where.name + f".part-{os.getpid()}")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir()
    meta = {"dataset": canonical(text), "options": dataclasses.asdict(opts), "frame": list(frame_shape(text)), "splits": {}}
    began = time.perf_counter()
    for s in ("train", "test"):
        data = _dataset(name, data_dir, s == "train")
        n = len(data)
        frames = np.zeros((n, opts.bins, *frame_shape(text)), np.int16)
        labels = np.zeros(n, np.int64)
        cut = events = 0
        binner = Binner(text)
        for i in _bar(range(n), f"{name} {s}: events to frames", progress):
            sample, label = data[i]
            frames[i], lost = binner(sample)
            labels[i], cut, events = int(label), cut + lost, events + len(sample)
        if opts.binary:
            np.minimum(frames, 1, out=frames)
        top = int(frames.max()) if frames.size else 0
        np.save(part / f"{s}-frames.npy", frames.astype(np.uint8) if top <= 255 else frames)
        np.save(part / f"{s}-labels.npy", labels)
        meta["splits"][s] = {"samples": n, "events": events, "events_cut": cut, "max_count": top}
    meta["seconds"] = round(time.perf_counter() - began, 1)
    (part / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(where, ignore_errors=True)
    os.replace(part, where)
    cut = sum(v["events_cut"] for v in meta["splits"].values()) / max(1, sum(v["events"] for v in meta["splits"].values()))
    print(f"bench.run: {canonical(text)} converted in {meta['seconds']} s into {where}"
          + (f"; {100 * cut:.2f}% of the events fall after the last frame and are cut" if cut else ""),
          file=sys.stderr, flush=True)  # fmt: skip


def _bar(items, what: str, progress: bool):
    """tqdm on a terminal; else a line at the start and at each tenth (a conversion can take minutes)."""
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(items, desc=what, unit="sample", file=sys.stderr)
    return _lines(items, what) if progress else items


def _lines(items, what: str):
    n, began = len(items), time.perf_counter()
    print(f"bench.run: {what}: {n:,} samples, once (then kept in the cache)", file=sys.stderr, flush=True)
    for i, item in enumerate(items, 1):
        yield item
        if n >= 1000 and i % (n // 10) == 0 and i < n:
            print(f"bench.run: {what}: {i:,} of {n:,} in {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)


def converted(text: str, data_dir: str | Path) -> dict | None:
    """The conversion's record (meta.json) where the cache holds it, else None."""
    where = _cached_at(text, data_dir)
    return json.loads((where / "meta.json").read_text()) if (where / "meta.json").is_file() else None


def record(text: str, data_dir: str | Path) -> dict:
    """What run.json keeps of an event dataset: every option (defaults included), the frame, tonic's version and what
    the conversion found (samples, events, events cut after the last frame, the largest count, seconds)."""
    meta = converted(text, data_dir) or {}
    return {"options": dataclasses.asdict(options(text)), "frame": list(frame_shape(text)), "tonic": _tonic().__version__,
            "conversion": {k: meta[k] for k in ("splits", "seconds") if k in meta}}  # fmt: skip
