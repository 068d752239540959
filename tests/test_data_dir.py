"""--data-dir errors name what is missing and where it was looked for (issue 12), and never download over
files that are there: tiny IDX files written here, torchvision's download replaced by one that must not run."""

import os
import struct

import pytest

from bench import data, idx
from bench.run import main

FILES = idx.IDX_FILES  # train-images, train-labels, t10k-images, t10k-labels
PARTIAL = "mnist needs all four, uncompressed, and downloads them only when none is there; "


def write_idx(raw, names=FILES, n=2):
    raw.mkdir(parents=True, exist_ok=True)
    for name in names:
        header = struct.pack(">IIII", 2051, n, 28, 28) if "images" in name else struct.pack(">II", 2049, n)
        (raw / name).write_bytes(header + bytes((784 if "images" in name else 1) * n))


@pytest.fixture
def no_download(monkeypatch):
    import torchvision

    def must_not_run(self):
        raise AssertionError("torchvision's download ran")

    for cls in (torchvision.datasets.MNIST, torchvision.datasets.FashionMNIST):
        monkeypatch.setattr(cls, "download", must_not_run)


def load_error(dataset, data_dir):
    with pytest.raises(data.DataError) as info:
        data.load(dataset, data_dir)
    message = str(info.value)
    assert "\n" not in message and "download ran" not in message, message
    return message


@pytest.mark.parametrize("present", [FILES[:1], FILES[:3], FILES[1:], (FILES[0], FILES[3])], ids=["1", "3", "3b", "2"])
def test_partial_files_name_exactly_the_missing_ones_and_the_folder(tmp_path, no_download, present):
    raw = tmp_path / "data" / "MNIST" / "raw"
    write_idx(raw, present)
    before = sorted(os.listdir(raw))
    missing = ", ".join(n for n in FILES if n not in present)
    want = f"cannot find {missing} in {raw} (--data-dir {tmp_path / 'data'}); {PARTIAL}"
    assert load_error("mnist", tmp_path / "data") == want + "--dataset mnist-mini needs no download"
    assert sorted(os.listdir(raw)) == before  # nothing downloaded, nothing overwritten


def test_a_missing_file_left_compressed_is_named_with_gunzip(tmp_path, no_download):
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw, FILES[:3])
    (raw / f"{FILES[3]}.gz").write_bytes(b"")
    message = load_error("mnist", tmp_path)
    assert message == f"cannot find {FILES[3]} in {raw} (--data-dir {tmp_path}); {PARTIAL}unpack {FILES[3]}.gz with gunzip"


@pytest.mark.parametrize("dataset, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
@pytest.mark.parametrize("below", ["raw", ""], ids=["at-raw", "at-dataset-folder"])
def test_pointing_below_the_root_suggests_the_root(tmp_path, no_download, dataset, folder, below):
    write_idx(tmp_path / "x" / folder / "raw")
    given = tmp_path / "x" / folder / below if below else tmp_path / "x" / folder
    message = load_error(dataset, given)
    assert message.startswith(f"cannot find {', '.join(FILES)} in {given / folder / 'raw'} (--data-dir {given}); ")
    assert message.endswith(f"; --data-dir should be the folder that holds {folder}/raw: try --data-dir {tmp_path / 'x'}")
    assert data.load(dataset, tmp_path / "x").train.images.shape == (2, 1, 28, 28)  # and the suggestion works


def test_a_dataset_folder_that_does_not_exist_yet_is_not_downloaded_into(tmp_path, no_download):
    message = load_error("mnist", tmp_path / "data" / "MNIST")
    assert message.endswith(f"--data-dir should be the folder that holds MNIST/raw: try --data-dir {tmp_path / 'data'}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "holder, given, root",
    [("idx", "idx", "idx"), ("idx/raw", "idx", "idx"), ("x/raw", "x/raw", "x")],
    ids=["in-data-dir", "in-data-dir-raw", "in-a-raw-data-dir"],
)
def test_idx_files_in_the_wrong_folder_say_where_they_belong(tmp_path, no_download, holder, given, root):
    write_idx(tmp_path / holder)
    message = load_error("mnist", tmp_path / given)
    where, root = tmp_path / holder, tmp_path / root
    want = f"--data-dir should be the folder that holds MNIST/raw: move the IDX files in {where} to {root / 'MNIST' / 'raw'}"
    assert message.endswith(f"{want} and use --data-dir {root}")


def test_no_files_in_a_plain_folder_still_tries_the_download(tmp_path, monkeypatch):
    import torchvision

    tried = []

    def offline(self):
        tried.append(self.raw_folder)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    (tmp_path / "data").mkdir()
    message = load_error("mnist", tmp_path / "data")
    assert message.startswith(f"cannot load mnist from {tmp_path / 'data'} or download it (Error downloading")
    assert "--dataset mnist-mini ships with snnbench and needs no download" in message
    assert tried == [str(tmp_path / "data" / "MNIST" / "raw")]


def test_a_long_download_error_is_given_whole_words(tmp_path, monkeypatch):
    """torchvision names every mirror it tried: the reason is shortened, if at all, between words, never mid-word."""
    import torchvision

    mirrors = " ".join(f"Tried https://mirror{i}.example.org/mnist/, got: <urlopen error [Errno -2] Name or service not known>"
                       for i in range(2))  # fmt: skip
    said = [f"Error downloading train-images-idx3-ubyte.gz: {mirrors}"]

    def offline(self):
        raise RuntimeError(said[0])

    def reason() -> str:
        return load_error("mnist", tmp_path / "data").partition("or download it (")[2].rpartition("); --dataset")[0]

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    (tmp_path / "data").mkdir()
    assert reason() == said[0]  # about 240 characters: whole
    said[0] = " ".join([mirrors] * 9)
    assert reason().endswith(" [...]") and set(reason()[: -len(" [...]")].split()) <= set(mirrors.split())


def snapshot(root):
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else None) for p in root.rglob("*"))


SMALL = ["--device", "cpu", "--max-batches", "1", "--batch-size", "100", "--epochs", "1", "--no-report"]


@pytest.mark.parametrize(
    "setup, given, message",
    [
        (lambda t: write_idx(t / "d" / "MNIST" / "raw", FILES[:2]), "d", f"cannot find {FILES[2]}, {FILES[3]} in "),
        (lambda t: write_idx(t / "d" / "MNIST" / "raw"), "d/MNIST/raw", "holds MNIST/raw: try --data-dir "),
        (lambda t: write_idx(t / "d" / "MNIST" / "raw"), "d/MNIST", "holds MNIST/raw: try --data-dir "),
    ],
    ids=["partial", "at-raw", "at-MNIST"],
)
def test_run_rejects_them_in_one_line_and_writes_nothing(tmp_path, capsys, no_download, setup, given, message):
    setup(tmp_path)
    before = snapshot(tmp_path)
    argv = [*SMALL, "--dataset", "mnist", "--data-dir", str(tmp_path / given), "--out", str(tmp_path / "res")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench.run: error: cannot find ") and err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err and "download ran" not in err
    if given != "d":
        assert err.rstrip("\n").endswith(f"--data-dir {tmp_path / 'd'}"), err
    assert snapshot(tmp_path) == before and not (tmp_path / "res").exists()
