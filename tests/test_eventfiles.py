"""tonic's own dataset classes read the tiny files tests/eventfiles.py writes, offline, as exactly the events written;
and ToFrame's binning, by hand, on seven events."""

import numpy as np
import pytest

tonic = pytest.importorskip("tonic")
pytest.importorskip("h5py")

import eventfiles as ef  # noqa: E402  (tests/ is on sys.path: pytest's default import mode)
from tonic.transforms import ToFrame  # noqa: E402


@pytest.fixture
def offline(monkeypatch):
    ef.forbid_downloads(monkeypatch)
    return monkeypatch


def _events(dtype, **cols):
    out = np.zeros(len(next(iter(cols.values()))), dtype=dtype)
    for name, values in cols.items():
        out[name] = values
    return out


# N-MNIST


def test_nmnist_bytes_are_orchards_40_bit_events():
    # x=5, y=33, p=1, t=0x012345: 05 | 21 | 1<<7 | 0x01 | 23 | 45
    assert ef.encode_nmnist(([5], [33], [0x012345], [1])) == bytes([0x05, 0x21, 0x81, 0x23, 0x45])
    assert ef.encode_nmnist(([0], [0], [(1 << 23) - 1], [0])) == bytes([0, 0, 0x7F, 0xFF, 0xFF])
    for bad in (([0], [240], [0], [0]), ([0], [0], [1 << 23], [0]), ([256], [0], [0], [0]), ([0], [0], [0], [2])):
        with pytest.raises(ValueError):
            ef.encode_nmnist(bad)


def test_nmnist_reads_back_the_events_written(tmp_path, offline):
    ef.relax_file_counts(offline)  # tonic wants 10,000 .bin files before it believes the archive was extracted
    dt = tonic.datasets.NMNIST.dtype
    samples = [
        (3, _events(dt, x=[0, 33, 7], y=[33, 0, 12], t=[0, 1000, (1 << 23) - 1], p=[1, 0, 1])),
        (0, _events(dt, x=[1], y=[2], t=[300_000], p=[0])),
        (3, _events(dt, x=[4, 4], y=[5, 5], t=[10, 10], p=[0, 1])),
    ]
    paths = ef.write_nmnist(tmp_path, samples)
    ef.write_nmnist(tmp_path, samples[1:2], train=False)
    assert paths[0] == tmp_path / "NMNIST" / "Train" / "3" / "00000.bin"
    assert (tmp_path / "NMNIST" / "train.zip").is_file() and (tmp_path / "NMNIST" / "test.zip").is_file()

    ds = tonic.datasets.NMNIST(str(tmp_path), train=True)
    assert tonic.datasets.NMNIST.sensor_size == (34, 34, 2)
    assert ds.data == [str(p) for p in (paths[1], paths[0], paths[2])]  # by digit folder, then file name
    assert ds.targets == [0, 3, 3]
    for index, (label, written) in zip((1, 0, 2), samples):
        events, target = ds[index]
        assert target == label and isinstance(target, int)
        assert events.dtype.names == ("x", "y", "t", "p") and events.dtype == dt  # all int64; t in microseconds
        np.testing.assert_array_equal(events, written)
    test_events, test_target = tonic.datasets.NMNIST(str(tmp_path), train=False)[0]
    assert test_target == 0
    np.testing.assert_array_equal(test_events, samples[1][1])


def test_tiny_nmnist_without_the_relaxed_count_makes_tonic_download(tmp_path, offline):
    ef.write_nmnist(tmp_path, [(1, ([0], [0], [0], [0]))])
    with pytest.raises(ef.DownloadAttempted):
        tonic.datasets.NMNIST(str(tmp_path))


# SHD


def test_shd_reads_back_the_spikes_written(tmp_path, offline):
    train = [(4, [0.0, 0.5, 0.7, 1.25], [0, 699, 3, 3]), (19, [0.001], [42])]
    path = ef.write_shd(tmp_path, train, speakers=[2, 5])
    ef.write_shd(tmp_path, [(7, [0.25, 0.0625], [1, 2])], train=False)
    assert path == tmp_path / "SHD" / "shd_train.h5" and (tmp_path / "SHD" / "shd_train.h5.zip").is_file()

    ds = tonic.datasets.SHD(str(tmp_path), train=True)  # tonic's own checks pass as they are
    assert tonic.datasets.SHD.sensor_size == (700, 1, 1) and len(ds) == 2
    assert list(ds.speaker) == [2, 5] and len(ds.classes) == 20
    events, target = ds[0]
    assert events.dtype.names == ("t", "x", "p") and all(events.dtype[n] == np.int64 for n in ("t", "x", "p"))
    assert target == 4
    # seconds -> integer microseconds, truncated; float16 storage rounds 0.7 s to 0.7001953125 s
    assert events["t"].tolist() == [0, 500_000, 700_195, 1_250_000]
    assert events["x"].tolist() == [0, 699, 3, 3] and events["p"].tolist() == [1, 1, 1, 1]
    events, target = ds[1]
    assert target == 19 and events["t"].tolist() == [1000] and events["x"].tolist() == [42]  # float16(0.001) = 0.0010004
    for index, (_, times, _) in enumerate(train):  # in general: trunc(float64(float16(seconds)) * 1e6)
        expected = (np.asarray(times, np.float16).astype(np.float64) * 1e6).astype(np.int64)
        assert ds[index][0]["t"].tolist() == expected.tolist()

    test_events, test_target = tonic.datasets.SHD(str(tmp_path), train=False)[0]
    assert test_target == 7 and test_events["t"].tolist() == [250_000, 62_500] and test_events["x"].tolist() == [1, 2]


# DVS128 Gesture


def test_dvsgesture_reads_back_the_events_written(tmp_path, offline):
    dt = tonic.datasets.DVSGesture.dtype
    special = {
        (1, "fluorescent_led", 10): ([0, 127, 5], [127, 0, 6], [1, 0, 1], [0.0, 1.005, 8654.079]),
        (1, "fluorescent_led", 0): ([3], [4], [0], [2.0]),
    }
    # 100 files in all: tonic's unmodified check (archive present, >= 100 .npy files) passes
    filler = {(u, "natural", k): ([u], [k], [k % 2], [float(k)]) for u in range(2, 12) for k in range(10)}
    filler.pop((11, "natural", 9)), filler.pop((11, "natural", 8))
    samples = {**special, **filler}
    assert len(samples) == 100
    paths = ef.write_dvsgesture(tmp_path, [(*key, cols) for key, cols in samples.items()])
    assert paths[0] == tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_fluorescent_led" / "10.npy"
    assert (tmp_path / "DVSGesture" / "ibmGestureTrain.tar.gz").is_file()

    ds = tonic.datasets.DVSGesture(str(tmp_path), train=True)
    assert tonic.datasets.DVSGesture.sensor_size == (128, 128, 2) and len(ds) == 100
    by_path = {str(p): key for p, key in zip(paths, samples)}
    for index, path in enumerate(ds.data):  # within a folder, tonic keeps the file system's order
        user, lighting, label = by_path[path]
        events, target = ds[index]
        assert (target, ds.users[index], ds.lighting[index]) == (label, user, lighting)
        assert events.dtype == dt and events.dtype.names == ("x", "y", "p", "t")
        x, y, p, t_ms = samples[by_path[path]]
        assert events["x"].tolist() == x and events["y"].tolist() == y and events["p"].tolist() == [bool(v) for v in p]
        assert events["t"].tolist() == [int(v * 1000) for v in t_ms]  # ms * 1000, truncated to int64 microseconds
    events, _ = ds[ds.data.index(str(paths[0]))]
    assert events["t"].tolist() == [0, 1004, 8_654_079]  # 1.005 * 1000 = 1004.999..., truncated


# SMNIST and torchvision's MNIST


def _two_digits():
    images = np.zeros((2, 28, 28), np.uint8)
    images[0].flat[10] = 20  # 0 -> 20 -> 0: crosses thresholds 5, 10, 15 up at pixel 9->10, down at 10->11
    images[1].flat[0] = 255  # starts at 255 (a "touch") and falls to 0 at pixel 0->1
    return images, np.array([7, 2], np.uint8)


def test_smnist_reads_the_idx_files_written(tmp_path, offline):
    images, labels = _two_digits()
    ef.write_mnist_idx(tmp_path, images, labels, split="train")
    ef.write_mnist_idx(tmp_path, images[::-1], labels[::-1], split="test")
    assert (tmp_path / "smnist" / "train-images-idx3-ubyte").stat().st_size == 16 + 2 * 784

    ds = tonic.datasets.SMNIST(str(tmp_path), train=True, duplicate=False)
    assert ds.sensor_size == (99, 1, 1) and len(ds) == 2
    np.testing.assert_array_equal(ds.image_data.reshape(2, 28, 28), images)
    events, target = ds[0]
    assert target == 7 and events.dtype.names == ("t", "x", "p")
    # thresholds linspace(0, 254, 49) as uint8 = 0, 5, 10, 15, 21, ...; threshold 0 never fires.
    # Upward crossing of threshold i (1..48) -> neuron 99 - i, stamped at the pixel BEFORE the crossing;
    # downward crossing -> neuron 50 - i; a pixel of 255 -> neuron 0 at its own index; t = pixel index * dt (1000)
    assert events["t"].tolist() == [9000] * 3 + [10_000] * 3
    assert events["x"].tolist() == [96, 97, 98, 47, 48, 49] and set(events["p"].tolist()) == {1}
    events, target = ds[1]
    assert target == 2 and set(events["t"].tolist()) == {0} and events["x"].tolist() == [0, *range(2, 50)]

    dup, _ = tonic.datasets.SMNIST(str(tmp_path), train=True)[0]  # duplicate=True is tonic's default
    assert dup["x"].tolist() == [96, 96, 97, 97, 98, 98, 47, 47, 48, 48, 49, 49]
    assert dup["t"].tolist() == [18_000, 19_000] * 3 + [20_000, 21_000] * 3  # times doubled, and NOT sorted
    test_events, test_target = tonic.datasets.SMNIST(str(tmp_path), train=False, duplicate=False)[1]
    assert test_target == 7 and test_events["x"].tolist() == [96, 97, 98, 47, 48, 49]


def test_torchvision_layout_reads_the_same_idx_files(tmp_path, offline):
    torchvision = pytest.importorskip("torchvision")
    images, labels = _two_digits()
    for split in ("train", "test"):  # torchvision needs all four files for either split
        img_path, _ = ef.write_mnist_idx(tmp_path, images, labels, split=split, layout="torchvision")
    assert img_path == tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    ds = torchvision.datasets.MNIST(str(tmp_path), train=False, download=False)
    np.testing.assert_array_equal(ds.data.numpy(), images)
    assert ds.targets.tolist() == [7, 2]


# ToFrame, by hand

# (x, y, t, p) on a 3 x 2 sensor with 2 polarities; t in microseconds, sorted, first event at 0, last at 10
_HAND = [(0, 0, 0, 0), (1, 0, 2, 0), (2, 1, 3, 1), (0, 1, 5, 1), (1, 1, 6, 0), (2, 0, 9, 1), (2, 0, 10, 0)]


def _hand_events():
    x, y, t, p = zip(*_HAND)
    return _events(tonic.datasets.NMNIST.dtype, x=x, y=y, t=t, p=p)


def _frames(n_frames, *coords):
    """(T, P, H, W) int16 counts with a 1 at each (frame, p, y, x)."""
    out = np.zeros((n_frames, 2, 2, 3), np.int16)
    for c in coords:
        out[c] += 1
    return out


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        # width (10 - 0) // 5 = 2: bins [0,2) [2,4) [4,6) [6,8) [8,10); t=2 opens bin 1; the last event (t=10) is lost
        (dict(n_time_bins=5), _frames(5, (0, 0, 0, 0), (1, 0, 0, 1), (1, 1, 1, 2), (2, 1, 1, 0), (3, 0, 1, 1), (4, 1, 0, 2))),
        # width 10 // 3 = 3 (floor): bins [0,3) [3,6) [6,9): the events at t=9 and t=10 are both lost
        (dict(n_time_bins=3), _frames(3, (0, 0, 0, 0), (0, 0, 0, 1), (1, 1, 1, 2), (1, 1, 1, 0), (2, 0, 1, 1))),
        # floor((10 - 4) / 4) + 1 = 2 whole windows [0,4) [4,8); the events at t=9, 10 are lost
        (dict(time_window=4), _frames(2, (0, 0, 0, 0), (0, 0, 0, 1), (0, 1, 1, 2), (1, 1, 1, 0), (1, 0, 1, 1))),
        # include_incomplete adds [8,12): now every event is counted
        (
            dict(time_window=4, include_incomplete=True),
            _frames(3, (0, 0, 0, 0), (0, 0, 0, 1), (0, 1, 1, 2), (1, 1, 1, 0), (1, 0, 1, 1), (2, 1, 0, 2), (2, 0, 0, 2)),
        ),
        # a duration that is a multiple of the window: [0,5) [5,10) and nothing more, so t=10 is lost even so
        (
            dict(time_window=5, include_incomplete=True),
            _frames(2, (0, 0, 0, 0), (0, 0, 0, 1), (0, 1, 1, 2), (1, 1, 1, 0), (1, 0, 1, 1), (1, 1, 0, 2)),
        ),
        # an end_time past the last event keeps it: [0,5) [5,10) [10,15)
        (
            dict(time_window=5, start_time=0, end_time=15),
            _frames(3, (0, 0, 0, 0), (0, 0, 0, 1), (0, 1, 1, 2), (1, 1, 1, 0), (1, 0, 1, 1), (1, 1, 0, 2), (2, 0, 0, 2)),
        ),
    ],
)
def test_to_frame_by_hand(kwargs, expected):
    frames = ToFrame(sensor_size=(3, 2, 2), **kwargs)(_hand_events())
    assert frames.dtype == np.int16 and frames.shape == expected.shape
    np.testing.assert_array_equal(frames, expected)


def test_to_frame_edge_cases():
    hand = _hand_events()
    # fewer microseconds between first and last event than bins: width 0, every frame empty
    short = hand[:3].copy()
    short["t"] = [0, 1, 2]
    assert ToFrame(sensor_size=(3, 2, 2), n_time_bins=5)(short).sum() == 0
    # no events: float64 zeros in (T, P, W, H) order, not (T, P, H, W)
    empty = ToFrame(sensor_size=(3, 2, 2), n_time_bins=5)(hand[:0])
    assert empty.shape == (5, 2, 3, 2) and empty.dtype == np.float64
    # events without y (SHD, SMNIST): (T, P, X) frames; a one-polarity sensor sets the input's p to 0 in place
    audio = _events(tonic.datasets.SHD.dtype, t=[0, 400, 1000], x=[0, 699, 5], p=[1, 1, 1])
    frames = ToFrame(sensor_size=tonic.datasets.SHD.sensor_size, n_time_bins=2)(audio)
    assert frames.shape == (2, 1, 700) and frames[0, 0, [0, 699]].tolist() == [1, 1] and frames.sum() == 2
    assert audio["p"].tolist() == [0, 0, 0]
    # unsorted times (SMNIST with duplicate=True) are binned wrongly: sorting first counts them per bin
    unsorted = _events(tonic.datasets.SMNIST.dtype, t=[18, 19, 18, 19, 18, 19, 20, 21, 20, 21, 20, 21], x=[0] * 12, p=[1] * 12)
    as_is = ToFrame(sensor_size=(99, 1, 1), n_time_bins=3)(unsorted.copy()).sum(axis=(1, 2))
    ordered = ToFrame(sensor_size=(99, 1, 1), n_time_bins=3)(np.sort(unsorted, order="t", kind="stable")).sum(axis=(1, 2))
    assert as_is.tolist() == [1, 5, 1] and ordered.tolist() == [3, 3, 3]
