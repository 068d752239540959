import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import data


def test_mnist_mini_shapes_balance_and_range():
    ds = data.load("mnist-mini")
    assert ds.train.images.shape == (6000, 1, 28, 28) and ds.test.images.shape == (1000, 1, 28, 28)
    assert ds.train.images.dtype == torch.float32 and ds.train.labels.dtype == torch.int64
    assert torch.bincount(ds.train.labels).tolist() == [600] * 10
    assert torch.bincount(ds.test.labels).tolist() == [100] * 10
    assert ds.train.images.min() == -0.5 and ds.train.images.max() == 0.5
    # real MNIST digits: most of the image is background (-0.5), mean pixel near 0.13 before the shift
    assert 0.10 < (ds.train.images + 0.5).mean() < 0.16


def test_mnist_mini_keeps_its_provenance():
    from importlib import resources

    with resources.files("bench").joinpath("assets", data.MINI_FILE).open("rb") as f:
        arrays = np.load(f)
        assert len(np.unique(arrays["train_source_index"])) == 6000
        assert arrays["test_source_index"].max() < 10000
    assert resources.files("bench").joinpath("assets", "README.md").is_file()


def write_idx(root, folder, images, labels):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, (x, y) in {"train": images, "t10k": labels}.items():
        n = len(y)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + x.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + y.tobytes())


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_path_on_idx_files_written_here(tmp_path, name, folder):
    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), np.array([3, 1, 4, 1, 5], dtype=np.uint8))
    test = (rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), np.array([9, 2], dtype=np.uint8))
    write_idx(tmp_path, folder, train, test)
    ds = data.load(name, tmp_path)
    assert ds.train.labels.tolist() == [3, 1, 4, 1, 5] and ds.test.labels.tolist() == [9, 2]
    expected = torch.from_numpy(train[0]).float().div(255).sub(0.5).unsqueeze(1)
    torch.testing.assert_close(ds.train.images, expected)


def test_download_failure_names_mnist_mini(tmp_path, monkeypatch):
    import torchvision

    def no_network(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", no_network)
    with pytest.raises(data.DataError) as info:
        data.load("mnist", tmp_path / "nowhere")
    message = str(info.value)
    assert "\n" not in message and "mnist-mini" in message and "Error downloading" in message


def test_batches_cover_the_split_once_and_shuffle_with_the_seed():
    split = data.Split(torch.arange(10.0).view(10, 1), torch.arange(10))
    seen = torch.cat([y for _, y in data.batches(split, 4, torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    again = torch.cat([y for _, y in data.batches(split, 4, torch.Generator().manual_seed(0))])
    assert torch.equal(seen, again)
    in_order = [y.tolist() for _, y in data.batches(split, 4)]
    assert in_order == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(list(data.batches(split, 4, max_batches=2))) == 2


def idx_files(tmp_path, n_train=5, n_test=2):
    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train, dtype=np.uint8))
    test = (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test, dtype=np.uint8))
    write_idx(tmp_path, "MNIST", train, test)
    return tmp_path / "MNIST" / "raw"


def corrupt_magic(raw):
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(struct.pack(">I", 2049) + path.read_bytes()[4:])


def truncate(raw):
    path = raw / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])


def count_mismatch(raw):
    path = raw / "train-labels-idx1-ubyte"
    path.write_bytes(struct.pack(">II", 2049, 4) + path.read_bytes()[8:12])


def bad_label(raw):
    path = raw / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-1] + bytes([200]))


@pytest.mark.parametrize(
    "damage, message",
    [
        (corrupt_magic, "train-images-idx3-ubyte is not an IDX image file (magic number is not 2051)"),
        (truncate, "t10k-images-idx3-ubyte is truncated or too long: 1468 data bytes for 2 items"),
        (count_mismatch, "train has 5 images but 4 labels"),
        (bad_label, "label 200 is not a class 0-9"),
    ],
)
def test_corrupt_idx_files_are_one_line_errors(tmp_path, damage, message):
    damage(idx_files(tmp_path))
    with pytest.raises(data.DataError) as info:
        data.load("mnist", tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_failed_download_leaves_no_folder_behind(tmp_path, monkeypatch):
    import torchvision

    def fail_like_torchvision(self):
        os.makedirs(self.raw_folder, exist_ok=True)  # torchvision makes the folder, then fails to download
        (Path(self.raw_folder) / "train-images-idx3-ubyte.gz.part").write_bytes(b"")
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fail_like_torchvision)
    with pytest.raises(data.DataError, match="mnist-mini"):
        data.load("mnist", tmp_path / "missing")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()  # a folder that was there before stays
    with pytest.raises(data.DataError):
        data.load("mnist", tmp_path / "kept")
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and list((tmp_path / "kept").iterdir()) == []


def test_a_data_dir_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(data.DataError, match="is not a folder"):
        data.load("mnist", tmp_path / "file")


def test_datasets_come_from_a_registry_with_what_models_must_fit():
    assert data.available() == ["dvsgesture", "fashion-mnist", "mnist", "mnist-mini", "nmnist", "shd", "smnist"]
    info = data.info("mnist-mini")
    assert info.input_shape == (1, 28, 28) and info.n_inputs == 784 and info.n_classes == 10
    assert data.info("fashion-mnist").class_names[-1] == "Ankle boot"
    assert data.load("mnist-mini").info == info
    with pytest.raises(data.DataError, match="unknown dataset 'cifar'; choose from dvsgesture, fashion-mnist, mnist, mnist-mini"):
        data.load("cifar")


def test_a_model_is_checked_against_the_dataset_before_anything_runs():
    import models

    data.check_fits("snn", models.parse_spec("snn").config, "mnist-mini")
    with pytest.raises(ValueError, match="n_in=10 does not fit mnist-mini, whose samples have 784 inputs"):
        data.check_fits("ffn:n_in=10", models.parse_spec("ffn:n_in=10").config, "mnist-mini")
    with pytest.raises(ValueError, match="n_out=5 does not fit fashion-mnist, which has 10 classes"):
        data.check_fits("snn:n_out=5", models.parse_spec("snn:n_out=5").config, "fashion-mnist")
