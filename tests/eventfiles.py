"""Tiny event datasets in each publisher's own on-disk format, laid out where tonic 1.7's dataset classes look.

Each writer takes what the files hold, in the files' own units (N-MNIST: microseconds; SHD: seconds; tonic's
DVS Gesture ``.npy``: milliseconds; MNIST: 8-bit pixels), so a test can state what tonic makes of them.
``save_to`` below is what the tonic class is given (the harness's ``--data-dir``); tonic reads from
``save_to/<ClassName>/`` (``save_to/smnist/`` for SMNIST).

tonic decides "already downloaded" without checksums: the archive it would fetch must exist next to the
extracted files (any content: only ``os.path.isfile`` is checked), and N-MNIST and DVS Gesture also need at least
10,000 ``.bin`` and 100 ``.npy`` files. The writers leave an empty archive file in place (``archive=False`` leaves
it out). Where the check still fails, tonic downloads: ``forbid_downloads`` makes that an error, and
``relax_file_counts`` lowers the file counts so a handful of samples passes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

NMNIST_SENSOR = (34, 34, 2)  # (x, y, p): tonic's sensor_size order is width, height, polarities
SHD_CHANNELS = 700
DVSGESTURE_SENSOR = (128, 128, 2)
MNIST_SIDE = 28

_NMNIST_OVERFLOW_Y = 240  # tonic's reader treats any event with y == 240 as a timestamp-overflow marker and drops it


class DownloadAttempted(AssertionError):
    """A tonic (or torchvision) dataset tried to fetch something."""


def fields(events, names: Sequence[str]) -> dict[str, np.ndarray]:
    """``events`` as one 1-D array per name: a structured array (by field name), a mapping, or a sequence of
    arrays in the order of ``names``."""
    if isinstance(events, np.ndarray) and events.dtype.names is not None:
        missing = [n for n in names if n not in events.dtype.names]
        if missing:
            raise ValueError(f"events lack the fields {missing} (have {events.dtype.names})")
        cols = [events[n] for n in names]
    elif isinstance(events, dict):
        cols = [events[n] for n in names]
    else:
        cols = list(events)
        if len(cols) != len(names):
            raise ValueError(f"expected {len(names)} arrays ({', '.join(names)}), got {len(cols)}")
    out = {n: np.atleast_1d(np.asarray(c)) for n, c in zip(names, cols)}
    sizes = {a.shape for a in out.values()}
    if len(sizes) != 1 or len(next(iter(sizes))) != 1:
        raise ValueError(f"event fields must be 1-D and of one length, got shapes {sorted(sizes)}")
    return out


def _placeholder(path: Path) -> None:
    """The archive tonic would download: only its presence is checked, never its checksum, unless a download runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(b"")


# N-MNIST (Orchard et al. 2015): save_to/NMNIST/{Train,Test}/<digit>/<id>.bin, 5 bytes per event


def encode_nmnist(events) -> bytes:
    """Orchard's 40-bit events, big-endian: byte 0 x, byte 1 y, byte 2 polarity (bit 7) and timestamp bits 22-16,
    bytes 3-4 timestamp bits 15-0 (microseconds). ``events``: fields x, y, t, p."""
    ev = fields(events, ("x", "y", "t", "p"))
    x, y, t, p = (ev[n].astype(np.int64) for n in ("x", "y", "t", "p"))
    if ((x < 0) | (x > 255) | (y < 0) | (y > 255)).any():
        raise ValueError("N-MNIST x and y are 8 bits (0-255)")
    if (y == _NMNIST_OVERFLOW_Y).any():
        raise ValueError("y == 240 marks a timestamp overflow in tonic's reader; such an event would be dropped")
    if ((t < 0) | (t >= 1 << 23)).any():
        raise ValueError("N-MNIST timestamps are 23 bits (0 to 8388607 microseconds)")
    if not np.isin(p, (0, 1)).all():
        raise ValueError("N-MNIST polarity is one bit (0 or 1)")
    raw = np.empty((len(x), 5), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    return raw.tobytes()


def write_nmnist(save_to, samples: Iterable[tuple[int, object]], *, train: bool = True, archive: bool = True) -> list[Path]:
    """``samples``: (label 0-9, events with fields x, y, t, p). Writes ``save_to/NMNIST/Train/<label>/<i:05d>.bin``
    (``Test/`` with ``train=False``), i the sample's position, and the empty archive ``NMNIST/train.zip``
    (``test.zip``). Returns the files in the order of ``samples``; tonic lists them by digit folder, then file name."""
    base = Path(save_to) / "NMNIST"
    folder = base / ("Train" if train else "Test")
    paths = []
    for i, (label, events) in enumerate(samples):
        if int(label) not in range(10):
            raise ValueError(f"N-MNIST labels are digits 0-9 (tonic reads the folder name's last character), got {label}")
        path = folder / str(int(label)) / f"{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_nmnist(events))
        paths.append(path)
    if archive:
        _placeholder(base / ("train.zip" if train else "test.zip"))
    return paths


# SHD (Cramer et al. 2020): save_to/SHD/shd_{train,test}.h5


def write_shd(
    save_to,
    samples: Iterable[tuple[int, object, object]],
    *,
    train: bool = True,
    archive: bool = True,
    time_dtype=np.float16,
    speakers: Sequence[int] | None = None,
    n_classes: int = 20,
) -> Path:
    """``samples``: (label, spike times in seconds, channel ids < 700), one pair of equal-length arrays per sample.
    Writes ``save_to/SHD/shd_train.h5`` (``shd_test.h5``) with ``spikes/times`` (variable-length ``time_dtype``,
    float16 as third-party code reports for the published files), ``spikes/units`` (variable-length uint16),
    ``labels`` (uint16), ``extra/speaker`` (uint16) and ``extra/keys`` (class names, bytes), which tonic's SHD
    reads when it opens; and the empty archive ``SHD/shd_train.h5.zip``. Returns the ``.h5`` path."""
    import h5py

    samples = list(samples)
    name = "shd_train.h5" if train else "shd_test.h5"
    base = Path(save_to) / "SHD"
    base.mkdir(parents=True, exist_ok=True)
    times, units, labels = [], [], []
    for label, t, u in samples:
        t, u = np.atleast_1d(np.asarray(t, dtype=np.float64)), np.atleast_1d(np.asarray(u))
        if t.shape != u.shape or t.ndim != 1:
            raise ValueError(f"times and units must be 1-D and of one length, got {t.shape} and {u.shape}")
        if ((u < 0) | (u >= SHD_CHANNELS)).any():
            raise ValueError(f"SHD channel ids are 0-{SHD_CHANNELS - 1}")
        if (t < 0).any():
            raise ValueError("SHD spike times are non-negative seconds")
        times.append(t.astype(time_dtype))
        units.append(u.astype(np.uint16))
        labels.append(int(label))
    speakers = [0] * len(samples) if speakers is None else list(speakers)
    if len(speakers) != len(samples):
        raise ValueError("one speaker per sample")
    path = base / name
    with h5py.File(path, "w") as f:
        t_set = f.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.dtype(time_dtype)))
        u_set = f.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.dtype(np.uint16)))
        for i, (t, u) in enumerate(zip(times, units)):
            t_set[i] = t
            u_set[i] = u
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        f.create_dataset("extra/speaker", data=np.asarray(speakers, dtype=np.uint16))
        f.create_dataset("extra/keys", data=np.asarray([f"class-{k}".encode() for k in range(n_classes)]))
    if archive:
        _placeholder(base / f"{name}.zip")
    return path


# DVS128 Gesture (Amir et al. 2017), as tonic's own preprocessed release (figshare):
# save_to/DVSGesture/ibmGesture{Train,Test}/user<NN>_<lighting>/<label>.npy


def write_dvsgesture(
    save_to,
    samples: Iterable[tuple[int, str, int, object]],
    *,
    train: bool = True,
    archive: bool = True,
    dtype=np.float64,
) -> list[Path]:
    """``samples``: (user, lighting, label 0-10, events with fields x, y, p, t; t in milliseconds, as the files hold
    it). Writes ``save_to/DVSGesture/ibmGestureTrain/user<user:02d>_<lighting>/<label>.npy`` (``ibmGestureTest``
    with ``train=False``), each an (N, 4) ``dtype`` array with columns x, y, p, t, at most one file per class per
    user and lighting; and the empty archive ``DVSGesture/ibmGestureTrain.tar.gz``. Returns the files in the order
    of ``samples``; tonic's order within a folder is the file system's (it sorts folders, not files)."""
    folder_name = "ibmGestureTrain" if train else "ibmGestureTest"
    base = Path(save_to) / "DVSGesture"
    paths = []
    for user, lighting, label, events in samples:
        if int(label) not in range(11):
            raise ValueError(f"DVS Gesture labels are 0-10, got {label}")
        if not lighting:
            raise ValueError("tonic splits the folder name user<NN>_<lighting> at the first underscore")
        ev = fields(events, ("x", "y", "p", "t"))
        arr = np.stack([ev[n].astype(np.float64) for n in ("x", "y", "p", "t")], axis=1).astype(dtype)
        path = base / folder_name / f"user{int(user):02d}_{lighting}" / f"{int(label)}.npy"
        if path.exists() or path in paths:
            raise ValueError(f"{path} is written twice: one sample per class per user and lighting")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, arr)
        paths.append(path)
    if archive:
        _placeholder(base / f"{folder_name}.tar.gz")
    return paths


# MNIST IDX files, uncompressed: tonic's SMNIST reads save_to/smnist/, torchvision's MNIST save_to/MNIST/raw/


def write_mnist_idx(save_to, images, labels, split: str = "train", layout: str = "smnist") -> tuple[Path, Path]:
    """``images``: (N, 28, 28) uint8; ``labels``: N digits. Writes ``train-images-idx3-ubyte`` and
    ``train-labels-idx1-ubyte`` (``t10k-...`` for ``split="test"``), uncompressed, big-endian IDX headers, into
    ``save_to/smnist/`` (``layout="smnist"``, tonic's SMNIST) or ``save_to/MNIST/raw/`` (``layout="torchvision"``;
    torchvision's MNIST needs all four files whichever split it loads). Returns (images path, labels path)."""
    if split not in ("train", "test"):
        raise ValueError(f"split is 'train' or 'test', got {split!r}")
    folders = {"smnist": Path("smnist"), "torchvision": Path("MNIST", "raw")}
    if layout not in folders:
        raise ValueError(f"layout is one of {sorted(folders)}, got {layout!r}")
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 3 or images.shape[1:] != (MNIST_SIDE, MNIST_SIDE):
        raise ValueError(f"images must be (N, 28, 28), got {images.shape}")
    if images.min(initial=0) < 0 or images.max(initial=0) > 255 or labels.shape != (len(images),):
        raise ValueError("images are 0-255, with one label per image")
    folder = Path(save_to) / folders[layout]
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "train" if split == "train" else "t10k"
    image_path = folder / f"{prefix}-images-idx3-ubyte"
    label_path = folder / f"{prefix}-labels-idx1-ubyte"
    image_path.write_bytes(struct.pack(">IIII", 2051, len(images), MNIST_SIDE, MNIST_SIDE) + images.astype(np.uint8).tobytes())
    label_path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())
    return image_path, label_path


# Keeping tonic offline in tests


def forbid_downloads(monkeypatch) -> None:
    """Make every way tonic fetches data raise ``DownloadAttempted``: its download helpers (also where a module
    imported them by name) and ``urllib.request.urlopen`` underneath."""
    import urllib.request

    import tonic.dataset
    import tonic.datasets.s_mnist
    import tonic.download_utils

    def refuse(*args, **kwargs):
        raise DownloadAttempted(f"tonic tried to download: {args[:1]}")

    for module in (tonic.download_utils, tonic.dataset, tonic.datasets.s_mnist):
        for name in ("download_url", "download_and_extract_archive", "download_file_from_google_drive", "_urlretrieve"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def relax_file_counts(monkeypatch, at_least: int = 1) -> None:
    """Lower tonic's "archive extracted" threshold (10,000 ``.bin`` files for N-MNIST, 100 ``.npy`` for DVS Gesture)
    to ``at_least``; the rest of ``_check_exists`` (archive present, files of that type in that folder) stays."""
    import tonic.dataset

    original = tonic.dataset.Dataset._folder_contains_at_least_n_files_of_type

    def relaxed(self, n_files, file_type):
        return original(self, min(n_files, at_least), file_type)

    monkeypatch.setattr(tonic.dataset.Dataset, "_folder_contains_at_least_n_files_of_type", relaxed)
