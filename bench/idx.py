"""MNIST-style datasets in torchvision's layout (``DIR/MNIST/raw/*-ubyte``): found, checked, or downloaded.

torchvision checks none of what ``check_idx`` does, and its download error can blame a file that is
there; here a partial or misplaced folder is one line that names what is missing and where to point.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench.cli import shorten
from bench.data import DataError, Raw


def torchvision_raw(name: str, cls, data_dir: str | Path) -> Raw:
    """From torchvision's layout ``data_dir/MNIST/raw/*-ubyte`` (checked first). Downloaded only when none of
    the four IDX files is there and ``data_dir`` does not look like a folder below the one meant."""
    raw_dir = Path(data_dir) / cls.__name__ / "raw"
    if Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise DataError(f"--data-dir {data_dir} is not a folder")
    missing = _missing_raw(raw_dir)
    fix = _layout_hint(cls.__name__, data_dir) if len(missing) == len(IDX_FILES) else None
    if 0 < len(missing) < len(IDX_FILES):  # partial: a download would blame, or overwrite, the files that are there
        packed = [f"{n}.gz" for n in missing if (raw_dir / f"{n}.gz").is_file()]
        fix = f"{name} needs all four, uncompressed, and downloads them only when none is there; "
        fix += f"unpack {', '.join(packed)} with gunzip" if packed else "--dataset mnist-mini needs no download"
    if fix:
        raise DataError(f"cannot find {', '.join(missing)} in {raw_dir} (--data-dir {data_dir}); {fix}")
    if not missing:
        check_idx(raw_dir)
    created = _first_missing(raw_dir)  # what a failed download must not leave behind
    out = {}
    for split in ("train", "test"):
        try:
            ds = cls(root=str(data_dir), train=split == "train", download=bool(missing))
        except Exception as exc:  # torchvision raises many kinds; the user needs one line
            if created is not None:
                shutil.rmtree(created, ignore_errors=True)
            reason = shorten(str(exc), 400) or type(exc).__name__
            raise DataError(
                f"cannot load {name} from {data_dir} or download it ({reason}); "
                f"--dataset mnist-mini ships with snnbench and needs no download"
            ) from None
        out[split] = (ds.data, ds.targets)
    return out


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _missing_raw(raw_dir: Path) -> list[str]:
    """The IDX files (uncompressed, as torchvision reads them) that ``raw_dir`` lacks; none: no network."""
    return [n for n in IDX_FILES if not (raw_dir / n).is_file()]


def _layout_hint(folder: str, data_dir: str | Path) -> str | None:
    """The --data-dir to use where ``data_dir`` is a folder below the one meant (``.../MNIST/raw``, ``.../MNIST``)
    or holds the IDX files itself (or in ``raw/``); None where it looks like a root to download into."""
    d = Path(os.path.abspath(data_dir))
    want, datasets = f"--data-dir should be the folder that holds {folder}/raw", {"MNIST", "FashionMNIST", folder}
    if d.name == "raw" and d.parent.name in datasets:
        return f"{want}: try --data-dir {d.parent.parent}"
    if d.name in datasets:
        return f"{want}: try --data-dir {d.parent}"
    for where in (d, d / "raw"):
        if _missing_raw(where) != list(IDX_FILES):
            root = d.parent if where == d and d.name == "raw" else d
            return f"{want}: move the IDX files in {where} to {root / folder / 'raw'} and use --data-dir {root}"
    return f"{want}: try --data-dir {d.parent}" if d.name == "raw" else None


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
