"""Event datasets through tonic (bench/events.py): files in each publisher's format (tests/eventfiles.py), binned to
frames by hand-checked rules, cached once, and refused with one line where the files, the options or the models do not
fit."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("tonic")
pytest.importorskip("h5py")

from eventfiles import write_dvsgesture, write_mnist_idx, write_nmnist, write_shd  # noqa: E402

from bench import data as datasets  # noqa: E402
from bench import events  # noqa: E402
from bench.run import main  # noqa: E402
from bench.schema import read_epochs  # noqa: E402


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test converts into a cache of its own and never downloads."""
    monkeypatch.setenv("SNNBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(events, "DOWNLOAD", False)
    datasets._loaded.cache_clear()
    datasets._cached.cache_clear()
    datasets.training_splits.cache_clear()


def camera_events(rng, digit: int, n: int = 120, side: int = 34, span: int = 300_000) -> dict:
    """Events whose x centre says the digit: a pattern any model can learn in a few steps."""
    x = np.clip(rng.normal(3 + 2.8 * digit, 2, n), 0, side - 1).astype(int)
    y = np.clip(rng.normal(side // 2, 4, n), 0, side - 1).astype(int)
    return {"x": x, "y": y, "t": np.sort(rng.integers(0, span, n)), "p": rng.integers(0, 2, n)}


def nmnist_files(root, train: int = 30, test: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    for is_train, n in ((True, train), (False, test)):
        write_nmnist(root, [(i % 10, camera_events(rng, i % 10)) for i in range(n)], train=is_train)
    return root


def structured(**columns) -> np.ndarray:
    names = list(columns)
    out = np.zeros(len(columns[names[0]]), dtype=[(n, np.int64) for n in names])
    for n in names:
        out[n] = columns[n]
    return out


def test_a_hand_computed_sample_becomes_these_frames():
    """Seven events on SHD's channels; out of time order, as SMNIST's duplicated spikes come."""
    ev = structured(t=[9000, 0, 2500, 10000, 19999, 20000, 35000], x=[5, 0, 1, 5, 699, 3, 2], p=[0] * 7)
    binner = events.Binner("shd:bins=3")  # window 10 ms from t = 0: [0, 10), [10, 20), [20, 30) ms
    frames, cut = binner(ev)
    assert frames.shape == (3, 1, 700) and frames.dtype == np.int16
    expected = np.zeros((3, 1, 700), np.int16)
    expected[0, 0, [0, 1, 5]] = 1  # t 0, 2500, 9000
    expected[1, 0, [5, 699]] = 1  # t 10000 (on the edge: the later frame), 19999
    expected[2, 0, 3] = 1  # t 20000; t 35000 is after the last frame
    assert np.array_equal(frames, expected) and cut == 1
    # window=0: the sample's own span, 0 to 35000 inclusive, in 2 frames of 17501 us (whole microseconds); all kept
    frames, cut = events.Binner("shd:bins=2,window=0")(ev)
    assert cut == 0 and frames.sum() == 7
    assert frames[0, 0].nonzero()[0].tolist() == [0, 1, 5] and frames[0, 0, 5] == 2  # t 0, 2500, 9000, 10000
    assert sorted(frames[1, 0].nonzero()[0].tolist()) == [2, 3, 699]  # t 19999, 20000, 35000: tonic's own bins drop t=35000
    assert ev["t"].tolist()[0] == 9000  # the caller's events untouched


def test_a_camera_sample_downsampled_keeps_its_last_row_and_polarities():
    ev = structured(x=[0, 33, 20, 33], y=[0, 33, 7, 33], t=[0, 10, 20, 30], p=[0, 1, 1, 1])
    frames, _ = events.Binner("nmnist:bins=1,factor=0.25")(ev)
    assert frames.shape == (1, 2, 9, 9)  # 34 pixels at 0.25: coordinates 0..8 (tonic floors x * 0.25)
    assert frames[0, 0, 0, 0] == 1 and frames[0, 1, 8, 8] == 2 and frames[0, 1, 1, 5] == 1


def test_options_are_checked_and_labelled_canonically():
    assert events.canonical("nmnist") == "nmnist" and events.canonical("nmnist:bins=25") == "nmnist"
    assert events.canonical("shd:window=5000,bins=50") == "shd:bins=50,window=5000"
    for bad, message in [("nmnist:bins=0", "bins must be at least 1"), ("nmnist:colour=1", "unknown key 'colour'"),
                         ("shd:factor=2", "factor must be in (0, 1]"), ("shd:bins=x", "bad value 'x' for bins"),
                         ("shd:bins=2,bins=3", "bins is given twice")]:  # fmt: skip
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            events.canonical(bad)


def test_nmnist_files_load_as_frames_once_and_from_the_cache_after(tmp_path, monkeypatch, capsys):
    root = nmnist_files(tmp_path / "data")
    data = datasets.load("nmnist:bins=5", root)
    assert data.info == datasets.DataInfo((2, 34, 34), events.DIGITS, 5)
    assert data.train.images.shape == (30, 5, 2, 34, 34) and data.train.images.dtype == torch.uint8
    assert data.train.labels.tolist() == sorted(i % 10 for i in range(30))  # tonic's order: by digit folder
    assert int(data.train.images.sum()) == 30 * 120  # every event of the span kept
    batch = data.train.inputs(torch.tensor([0, 3]))
    assert batch.dtype == torch.float32 and batch.shape == (2, 5, 2, 34, 34)
    assert "nmnist:bins=5 converted in" in capsys.readouterr().err
    meta = events.converted("nmnist:bins=5", root)
    train = meta["splits"]["train"]
    assert (train["samples"], train["events"], train["events_cut"]) == (30, 3600, 0) and 1 <= train["max_count"] <= 255

    datasets._loaded.cache_clear()
    datasets._cached.cache_clear()
    monkeypatch.setattr(events, "_convert", lambda *a: pytest.fail("converted again"))
    again = datasets.load("nmnist:bins=5", root)
    assert torch.equal(again.train.images, data.train.images)
    # a source file changed: converted again
    next((root / "NMNIST" / "Train" / "0").iterdir()).write_bytes(b"")
    datasets._loaded.cache_clear()
    with pytest.raises(pytest.fail.Exception, match="converted again"):
        datasets._loaded("nmnist:bins=5", str(root))


def test_shd_dvsgesture_and_smnist_files_load(tmp_path):
    rng = np.random.default_rng(1)
    shd = tmp_path / "shd"
    for train in (True, False):
        write_shd(shd, [(k, np.sort(rng.uniform(0, 0.9, 50)), rng.integers(0, 700, 50)) for k in range(20)], train=train)
    data = datasets.load("shd:bins=10,window=100000", shd)  # 10 frames of 100 ms: the 0.9 s of every sample
    assert data.train.images.shape == (20, 10, 1, 700) and data.info.n_classes == 20 and data.info.time_steps == 10
    assert int(data.train.images.sum()) == 20 * 50

    gesture = tmp_path / "dvs"
    for train in (True, False):
        samples = [(1 + k // 11, "natural", k % 11, {"x": rng.integers(0, 128, 40), "y": rng.integers(0, 128, 40),
                                                     "p": rng.integers(0, 2, 40), "t": np.sort(rng.uniform(0, 500, 40))})
                   for k in range(11)]  # fmt: skip
        write_dvsgesture(gesture, samples, train=train)
    data = datasets.load("dvsgesture:bins=4", gesture)
    assert data.train.images.shape == (11, 4, 2, 32, 32) and int(data.train.images.sum()) == 11 * 40

    mnist = tmp_path / "mnist"
    images = rng.integers(0, 256, (12, 28, 28)).astype(np.uint8)
    for split in ("train", "test"):
        write_mnist_idx(mnist, images, np.arange(12) % 10, split, layout="torchvision")  # the harness's MNIST layout
    data = datasets.load("smnist:bins=8,window=200000", mnist)
    assert data.train.images.shape == (12, 8, 1, 99) and data.train.labels.tolist() == (np.arange(12) % 10).tolist()
    assert data.train.images.sum() > 0


def test_bench_run_trains_lif_and_ffn_on_nmnist_files_and_records_the_dataset(tmp_path):
    root = nmnist_files(tmp_path / "data")
    argv = ["--models", "lif", "ffn", "--device", "cpu", "--dataset", "nmnist:bins=4", "--data-dir", str(root),
            "--epochs", "1", "--batch-size", "10", "--out", str(tmp_path / "out"), "--no-report"]  # fmt: skip
    assert main(argv) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    rows = read_epochs(run_dir / "epochs.csv")
    # n_in is in the label as ever (2 x 34 x 34 per frame); sequence and time_steps, set from the data, are not
    assert {(r["model"], r["dataset"]) for r in rows} == {("lif:n_in=2312", "nmnist:bins=4"), ("ffn:n_in=2312", "nmnist:bins=4")}
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["args"]["dataset"] == "nmnist:bins=4"
    assert meta["event_data"]["options"] == {"bins": 4, "window": 0, "denoise": 0, "factor": 1.0, "binary": False}
    assert meta["event_data"]["frame"] == [2, 34, 34] and meta["event_data"]["conversion"]["splits"]["test"]["samples"] == 10
    config = meta["models"]["lif:n_in=2312"]["config"]
    assert config["sequence"] is True and config["time_steps"] == 4 and config["n_in"] == 2312


def test_bench_run_trains_csnn_and_cnn_on_nmnist_files_and_counts_their_convolutions(tmp_path):
    root = nmnist_files(tmp_path / "data")
    argv = ["--models", "csnn", "cnn", "--device", "cpu", "--dataset", "nmnist:bins=3", "--data-dir", str(root),
            "--epochs", "1", "--batch-size", "10", "--out", str(tmp_path / "out"), "--no-report"]  # fmt: skip
    assert main(argv) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    rows = {r["model"]: r for r in read_epochs(run_dir / "epochs.csv")}
    assert set(rows) == {"csnn", "cnn"}
    # conv1 sees 2x34x34 frames: csnn's are event counts at 3 steps, cnn's their mean once; dense operations alike
    # per step, so csnn's are 3 times cnn's in conv1 and its later layers (its spikes where cnn has ReLUs)
    assert rows["csnn"]["dense_ops"] == 3 * rows["cnn"]["dense_ops"] > 0
    assert rows["csnn"]["layer3_firing_rate"] == rows["csnn"]["layer3_firing_rate"]  # recorded: three layers


@pytest.mark.parametrize(
    "models, dataset, message",
    [
        (
            ["snn"],
            "nmnist:bins=4",
            "snn:n_in=2312 takes static images only, and nmnist:bins=4 is 2x34x34 frames over 4 "
            "bins; on event data use a model with the key sequence",
        ),
        (
            ["lif:time_steps=7"],
            "nmnist:bins=4",
            "time_steps=7 does not fit nmnist:bins=4, whose samples have 4 bins; the data sets T: --dataset nmnist:bins=7",
        ),
        (["lif:sequence=True"], "mnist-mini", "lif:sequence=True: sequence=True does not fit mnist-mini"),
        (
            ["csnn"],
            "shd",
            "takes images or camera frames (channels x height x width), and shd is 1x700 frames over 100 bins",
        ),
        (["ffn"], "nmnist:bins=0", "bins must be at least 1"),
        (["ffn"], "nmnist:size=3", "unknown key 'size'; keys of nmnist: bins, window, denoise, factor, binary"),
    ],
)
def test_models_and_options_that_do_not_fit_the_data_are_one_line_and_exit_2(tmp_path, models, dataset, message):
    root = nmnist_files(tmp_path / "data", train=10, test=10)
    argv = ["--models", *models, "--device", "cpu", "--dataset", dataset, "--data-dir", str(root), "--out",
            str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "bench.run", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "dataset, missing, layout",
    [
        ("nmnist", "no Train/*/*.bin, Test/*/*.bin in {root}/NMNIST", "expected NMNIST/Train/<digit>/<id>.bin"),
        ("shd", "no shd_train.h5, shd_test.h5 in {root}/SHD", "expected SHD/shd_train.h5 and SHD/shd_test.h5"),
        ("dvsgesture", "no ibmGestureTrain/*/*.npy, ibmGestureTest/*/*.npy in {root}/DVSGesture", "ibmGestureTrain/user"),
        ("smnist", "no train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
                   "in {root}/smnist", "or the same files in torchvision's MNIST/raw/"),
    ],
)  # fmt: skip
def test_missing_files_name_themselves_the_folder_and_the_layout(tmp_path, capsys, dataset, missing, layout):
    root = tmp_path / "empty"
    root.mkdir()
    argv = ["--models", "ffn", "--device", "cpu", "--dataset", dataset, "--data-dir", str(root), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and missing.format(root=root) in err and layout in err
    assert "--download fetches them where a network exists" in err and not (tmp_path / "o").exists()


def test_a_mistyped_layout_is_refused_with_the_layout_expected(tmp_path, capsys):
    """N-MNIST's digits one level too deep (an archive unpacked into a folder of its own name)."""
    root = nmnist_files(tmp_path / "data", train=10, test=10)
    (root / "NMNIST").rename(tmp_path / "NMNIST")
    (root / "NMNIST").mkdir()
    (tmp_path / "NMNIST").rename(root / "NMNIST" / "NMNIST")
    assert main(["--models", "ffn", "--device", "cpu", "--dataset", "nmnist", "--data-dir", str(root)]) == 2
    assert "expected NMNIST/Train/<digit>/<id>.bin and NMNIST/Test/<digit>/<id>.bin" in capsys.readouterr().err


def test_without_tonic_the_event_datasets_say_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tonic", None)  # import tonic raises ImportError
    root = nmnist_files(tmp_path / "data", train=10, test=10)
    assert main(["--models", "ffn", "--device", "cpu", "--dataset", "nmnist", "--data-dir", str(root)]) == 2
    assert "through tonic: pip install -e '.[events]'" in capsys.readouterr().err


def test_list_shows_each_event_dataset_with_its_frames_and_keys(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    shapes = ["2x34x34 frames over 25 bins, 10 classes", "1x700 frames over 100 bins, 20 classes",
              "2x32x32 frames over 20 bins, 11 classes", "1x99 frames over 112 bins, 10 classes"]  # fmt: skip
    for line in ("nmnist", *shapes, "window=10000"):
        assert line in out


def test_validation_is_carved_out_of_an_event_training_split(tmp_path):
    """SHD has no validation split: --validation holds out training samples, stratified, as for MNIST."""
    rng = np.random.default_rng(2)
    root = tmp_path / "shd"
    for train, n in ((True, 40), (False, 20)):
        write_shd(root, [(k % 20, np.sort(rng.uniform(0, 0.5, 30)), rng.integers(0, 700, 30)) for k in range(n)], train=train)
    argv = ["--models", "lif", "--device", "cpu", "--dataset", "shd:bins=20", "--data-dir", str(root), "--epochs", "1",
            "--batch-size", "10", "--validation", "20", "--out", str(tmp_path / "out"), "--no-report"]  # fmt: skip
    assert main(argv) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    (row,) = read_epochs(run_dir / "epochs.csv")
    assert row["train_samples"] == 20 and row["test_samples"] == 20 and 0 <= row["val_accuracy"] <= 1


def test_the_recurrent_models_take_shd(tmp_path):
    """Issue 26's second dataset: rsnn (with adaptation), gru, lstm and ffn train on SHD's 700 channels, one row each."""
    rng = np.random.default_rng(3)
    root = tmp_path / "shd"
    for train, n in ((True, 20), (False, 10)):
        write_shd(root, [(k % 20, np.sort(rng.uniform(0, 0.5, 40)), rng.integers(0, 700, 40)) for k in range(n)], train=train)
    models = ["rsnn:adaptation=0.05", "gru", "lstm", "ffn"]
    argv = ["--models", *models, "--device", "cpu", "--dataset", "shd:bins=10", "--data-dir", str(root), "--epochs", "1",
            "--batch-size", "10", "--out", str(tmp_path / "out"), "--no-report"]  # fmt: skip
    assert main(argv) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    rows = read_epochs(run_dir / "epochs.csv")
    assert sorted(r["model"].split(":")[0] for r in rows) == sorted(m.split(":")[0] for m in models)
    assert all(r["train_samples"] == 20 and r["test_samples"] == 10 and 0 <= r["test_accuracy"] <= 1 for r in rows)


def test_event_data_on_dask_after_resume_and_in_a_report_gives_the_local_numbers(tmp_path, monkeypatch):
    """Users combine features: the new models on an event dataset, on a Dask cluster (its workers map the cache the
    driver converted), cut after epoch 1 and resumed, then a report over the folders; every number as one local run."""
    pytest.importorskip("distributed")
    import os
    import signal

    from test_dask import numbers

    import bench.executors
    from bench.train import Epoch
    from report.__main__ import main as report_main

    root = nmnist_files(tmp_path / "data", train=20, test=10)
    argv = ["--models", "csnn", "rsnn", "gru", "--device", "cpu", "--dataset", "nmnist:bins=3", "--data-dir", str(root),
            "--epochs", "2", "--batch-size", "10", "--threads", "1", "--no-report"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "local")]) == 0
    assert main([*argv, "--executor", "dask", "--workers", "2", "--out", str(tmp_path / "dask")]) == 0
    real = bench.executors.train

    def cut(*args, **kwargs):  # SIGINT once the first training's first epoch is recorded
        for event in real(*args, **kwargs):
            yield event
            if isinstance(event, Epoch) and event.epoch == 1:
                os.kill(os.getpid(), signal.SIGINT)

    with monkeypatch.context() as m:
        m.setattr(bench.executors, "train", cut)
        assert main([*argv, "--out", str(tmp_path / "cut")]) == 130
    (local,), (dask,), (resumed,) = ((tmp_path / d).iterdir() for d in ("local", "dask", "cut"))
    assert main(["--resume", str(resumed)]) == 0
    assert numbers(dask) == numbers(local) == numbers(resumed)
    assert report_main([str(local), str(dask), str(resumed), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "nmnist:bins=3" in text and "csnn" in text and "gru:n_in=2312" in text


def test_download_asks_tonic_for_the_missing_files_and_then_trains(tmp_path, monkeypatch, capsys):
    """Without --download a missing file is an error (tests above); with it, tonic's own download runs (here one
    that writes the files, as tonic's would unpack them: no network in the tests) and the run goes on."""
    import tonic

    root = tmp_path / "data"
    fetched = []

    def download(self):  # tonic.datasets.NMNIST.download, called once per split by bench/events.py
        fetched.append(self.train)
        if len(fetched) == 1:
            nmnist_files(root, train=10, test=10)

    monkeypatch.setattr(tonic.datasets.NMNIST, "download", download)
    argv = ["--models", "ffn", "--device", "cpu", "--dataset", "nmnist:bins=2", "--data-dir", str(root), "--epochs", "1",
            "--no-report", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2 and fetched == []  # not asked: refused, nothing fetched
    assert "--download fetches them" in capsys.readouterr().err
    assert main([*argv, "--download"]) == 0
    assert fetched and (root / "NMNIST" / "Train").is_dir()
