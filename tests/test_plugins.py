"""Models and datasets from outside snnbench: the example distribution installed for real (entry points), and
``package.module:Name`` from the current directory; every broken plug-in is a one-line exit 2 before anything runs."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.run import main
from bench.schema import read_epochs

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--device", "cpu", "--epochs", "1", "--max-batches", "1", "--batch-size", "50", "--no-report"]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """``examples/snnbench-example`` installed (without dependencies or network) into a folder of its own."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("src") / "snnbench-example"
    import shutil

    shutil.copytree(ROOT / "examples" / "snnbench-example", build)  # pip builds in its source tree: not in the repo's
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(target), str(build)], check=True, capture_output=True, timeout=300)  # fmt: skip
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]))


def bench_run(env, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bench.run", *args], capture_output=True, text=True, env=env, cwd=cwd)


@pytest.mark.slow
def test_the_installed_example_is_listed_and_runs_end_to_end(example, tmp_path):
    listing = bench_run(example, "--list")
    assert listing.returncode == 0, listing.stderr
    assert "conv-snn" in listing.stdout and "entry point (snnbench-example 0.1.0)" in listing.stdout
    assert "blobs" in listing.stdout and "channels=8 (int)" in listing.stdout
    proc = bench_run(example, "--models", "conv-snn:time_steps=2", "ffn", "--dataset", "mnist-mini", *SMALL,
                     "--out", str(tmp_path / "images"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "images").iterdir()
    assert {r["model"] for r in read_epochs(run_dir / "epochs.csv")} == {"conv-snn:time_steps=2", "ffn"}
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["models"]["conv-snn:time_steps=2"]["kind"] == "spiking"


def test_the_installed_example_runs_on_a_dask_cluster(example, tmp_path):
    """A worker unpickles the plug-in's config but has no registry entry for it until the plug-in is loaded there."""
    pytest.importorskip("distributed")
    proc = bench_run(example, "--models", "conv-snn:time_steps=2", "ffn", "--dataset", "mnist-mini", *SMALL,
                     "--executor", "dask", "--workers", "2", "--threads", "1", "--out", str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "KeyError" not in proc.stderr and "failed" not in proc.stderr
    (run_dir,) = tmp_path.iterdir()
    assert {r["model"] for r in read_epochs(run_dir / "epochs.csv")} == {"conv-snn:time_steps=2", "ffn"}
    assert {t["status"] for t in json.loads((run_dir / "run.json").read_text())["trainings"]} == {"complete"}


@pytest.mark.slow
def test_a_plug_in_dataset_sizes_the_models_and_feeds_the_metrics(example, tmp_path):
    proc = bench_run(example, "--models", "ffn", "snn:time_steps=4", "--dataset", "blobs", *SMALL, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = tmp_path.iterdir()
    rows = {r["model"]: r for r in read_epochs(run_dir / "epochs.csv")}
    assert set(rows) == {"ffn:n_in=8,n_out=3", "snn:n_in=8,n_out=3,time_steps=4"}  # n_in and n_out from the data
    assert rows["ffn:n_in=8,n_out=3"]["dense_ops"] == 8 * 100 + 100 * 3 and rows["ffn:n_in=8,n_out=3"]["test_samples"] == 50
    # a model that cannot take the dataset's shape never runs
    bad = bench_run(example, "--models", "conv-snn", "--dataset", "blobs", *SMALL, "--out", str(tmp_path / "no"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "model conv-snn:n_out=3 fails the contract check on blobs: forward raised RuntimeError" in bad.stderr
    assert not (tmp_path / "no").exists()


GOOD = """
    import torch
    from dataclasses import dataclass
    from torch import nn

    class Tiny(nn.Module):
        kind = "baseline"

        @dataclass(frozen=True)
        class Config:
            n_in: int = 784
            n_out: int = 10
            fail_at_step: int = 0  # > 0: raise in that training step (a bug that only shows while training)

        def __init__(self, config=None):
            super().__init__()
            self.config = config or self.Config()
            self.fc = nn.Linear(self.config.n_in, self.config.n_out)
            self.steps = 0

        def forward(self, x):
            if self.training and self.config.fail_at_step:
                self.steps += 1
                if self.steps == self.config.fail_at_step:
                    raise RuntimeError("a bug in step " + str(self.steps))
            return self.fc(x.flatten(1))
"""
BROKEN = {
    "Shape": ("return self.fc(x.flatten(1))[:, :5]", "forward gave logits of shape (2, 5) for a batch of 2; expected (2, 10)"),
    "Nan": ("return self.fc(x.flatten(1)) * float('nan')", "forward gave NaN or infinite logits"),
    "Raises": ("raise ValueError('no way')", "forward raised ValueError: no way"),
    "Unused": ("return self.fc(x.flatten(1)) + 0 * self.extra.sum().detach()", "no gradient reaches extra"),
}


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder with ``nets_<test>.py`` (a good model and broken ones) and ``sets_<test>.py``, made the current one."""
    name = f"p{abs(hash(str(tmp_path))) % 10**8}"
    code = textwrap.dedent(GOOD)
    for cls, (body, _) in BROKEN.items():
        code += textwrap.dedent(f"""

        class {cls}(Tiny):
            def __init__(self, config=None):
                super().__init__(config)
                self.extra = nn.Parameter(torch.zeros(3))

            def forward(self, x):
                {body}
        """)
    (tmp_path / f"nets_{name}.py").write_text(code)
    (tmp_path / f"sets_{name}.py").write_text(
        textwrap.dedent("""
        import numpy as np

        def load(data_dir):
            rng = np.random.default_rng(0)
            x = rng.normal(size=(120, 5)).astype(np.float32)
            y = (x[:, 0] > 0).astype(np.int64)
            return (x[:100], y[:100]), (x[100:], y[100:]), ["neg", "pos"]

        def bad_labels():
            x = np.zeros((10, 5), np.float32)
            return (x, np.full(10, 2)), (x, np.zeros(10, int)), ["a", "b"]

        def float_labels(data_dir):
            x = np.zeros((10, 5), np.float32)
            return (x, np.zeros(10, np.float32)), (x, np.zeros(10, int)), ["a", "b"]

        def raises(data_dir):
            raise OSError("disk on fire")
    """)
    )
    monkeypatch.chdir(tmp_path)
    yield name, tmp_path
    for module in [m for m in sys.modules if m.endswith(name)]:
        del sys.modules[module]


def test_a_model_named_module_colon_class_runs_and_keeps_its_spec_as_label(plugin_dir, capsys):
    name, folder = plugin_dir
    assert main(["--models", f"nets_{name}:Tiny", "ffn", *SMALL, "--out", str(folder / "res")]) == 0
    (run_dir,) = (folder / "res").iterdir()
    assert {r["model"] for r in read_epochs(run_dir / "epochs.csv")} == {f"nets_{name}:Tiny", "ffn"}
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["models"][f"nets_{name}:Tiny"]["kind"] == "baseline"
    assert main(["--models", f"nets_{name}:Tiny:n_in=5,n_out=2", *SMALL, "--dataset", f"sets_{name}:load",
                 "--out", str(folder / "res2")]) == 0  # fmt: skip


def test_a_model_named_module_colon_class_runs_on_a_dask_cluster(plugin_dir, capsys):
    pytest.importorskip("distributed")
    name, folder = plugin_dir
    argv = ["--models", f"nets_{name}:Tiny", "ffn", *SMALL, "--executor", "dask", "--workers", "2", "--threads", "1"]
    assert main([*argv, "--out", str(folder / "res")]) == 0, capsys.readouterr().err
    (run_dir,) = (folder / "res").iterdir()
    assert {r["model"] for r in read_epochs(run_dir / "epochs.csv")} == {f"nets_{name}:Tiny", "ffn"}


@pytest.mark.parametrize("cls", list(BROKEN))
def test_the_contract_check_rejects_each_kind_of_broken_model(plugin_dir, capsys, cls):
    name, folder = plugin_dir
    assert main(["--models", "ffn", f"nets_{name}:{cls}", *SMALL, "--out", str(folder / "res")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"bench.run: error: model nets_{name}:{cls} fails the contract check on mnist-mini: {BROKEN[cls][1]}" in err
    assert not (folder / "res").exists()


@pytest.mark.parametrize(
    "dataset, message",
    [
        ("bad_labels", "dataset 'sets_{n}:bad_labels': train labels must be 0 .. 1 (one per class name), got 2 .. 2"),
        ("float_labels", "train labels must be integers, got torch.float32"),
        ("raises", "dataset 'sets_{n}:raises' raised OSError: disk on fire"),
        ("nothing", "module 'sets_{n}' has no 'nothing'"),
    ],
)
def test_a_broken_dataset_is_one_line_and_nothing_written(plugin_dir, capsys, dataset, message):
    name, folder = plugin_dir
    assert main(["--models", "ffn", *SMALL, "--dataset", f"sets_{name}:{dataset}", "--out", str(folder / "res")]) == 2
    err = capsys.readouterr().err
    assert message.format(n=name) in err and err.count("\n") == 1 and not (folder / "res").exists()


def test_a_model_that_fails_while_training_fails_alone(plugin_dir, capsys):
    name, folder = plugin_dir
    buggy = f"nets_{name}:Tiny:fail_at_step=2"
    argv = ["--models", buggy, "ffn", *SMALL, "--epochs", "2", "--max-batches", "3", "--out", str(folder / "res")]
    assert main(argv) == 1
    (run_dir,) = (folder / "res").iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    assert [(t["model"], t["status"]) for t in meta["trainings"]] == [(buggy, "failed"), ("ffn", "complete")]
    assert meta["trainings"][0]["detail"] == "RuntimeError: a bug in step 2" and meta["status"] == "partial"
    out, err = capsys.readouterr()
    assert f"tracebacks of the failed trainings: {run_dir / 'errors.log'}" in out
    assert "the other trainings go on" in err
    log = (run_dir / "errors.log").read_text()
    assert "Traceback (most recent call last)" in log and "RuntimeError: a bug in step 2" in log
    assert {r["model"] for r in read_epochs(run_dir / "epochs.csv")} == {"ffn"}
