"""One training is a pure function: ``train(task, checkpoint_dir)`` yields events and writes only its checkpoint."""

import dataclasses
import os
import pickle

import pytest

import models
from bench.config import TrainConfig
from bench.train import Analysis, Epoch, Finished, Started, Task, train

SMALL = TrainConfig(epochs=3, batch_size=100, max_batches=2)


def task(spec="ffn", config=SMALL, seed=0, metrics=True):
    return Task("run", "mnist-mini", "data", models.parse_spec(spec), "cpu", seed, config, metrics)


def files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def numbers(events):
    """The rows of the Epoch events without their timings."""
    timing = {"train_seconds", "eval_seconds", "train_samples_per_second", "metrics_seconds", "peak_memory_mib"}
    return [{k: None if v != v else v for k, v in e.row.items() if k not in timing} for e in events if isinstance(e, Epoch)]


def test_a_task_pickles_so_another_process_can_run_it():
    t = task("snn:time_steps=4,reset=proportional")
    again = pickle.loads(pickle.dumps(t))
    assert again == t and again.key == ("snn:reset=proportional,time_steps=4", "cpu", 0, 1.0, None)


def test_the_same_task_gives_the_same_rows_and_writes_only_its_checkpoint(tmp_path):
    first = list(train(task("snn:time_steps=4"), tmp_path / "a"))
    second = list(train(task("snn:time_steps=4"), tmp_path / "b"))
    kinds = [type(e) for e in first]
    assert kinds == [Started, Epoch, Epoch, Epoch, Analysis, Finished]
    assert numbers(first) == numbers(second) and numbers(first) != numbers(list(train(task("snn:time_steps=4", seed=1),
                                                                                        tmp_path / "c")))  # fmt: skip
    assert [e.epoch for e in first if isinstance(e, Epoch)] == [1, 2, 3]
    (analysis,) = (e for e in first if isinstance(e, Analysis))
    assert analysis.epoch == 3 and analysis.window and analysis.activity["layer1_v"].shape == (4, 100)
    stem = task("snn:time_steps=4").key.file_stem()
    assert files(tmp_path) == [f"a/{stem}.pt", f"b/{stem}.pt", f"c/{task('snn:time_steps=4', seed=1).key.file_stem()}.pt"]


def test_a_baseline_has_no_analysis_and_without_metrics_no_spiking_model_has_one(tmp_path):
    baseline = list(train(task("ffn"), tmp_path / "a"))
    assert Analysis not in [type(e) for e in baseline] and "dense_ops" in baseline[1].row
    plain = list(train(task("snn:time_steps=4", metrics=False), tmp_path / "b"))
    assert Analysis not in [type(e) for e in plain] and "dense_ops" not in plain[1].row
    recorded = list(train(task("snn:time_steps=4"), tmp_path / "c", analysed=True))  # a resume after its analysis
    assert Analysis not in [type(e) for e in recorded] and Finished in [type(e) for e in recorded]


def test_stopped_before_a_batch_it_returns_without_finishing(tmp_path):
    asked = []

    def stop():  # yes once the first epoch is done
        asked.append(1)
        return len(asked) > 2 * 2  # two batches of training, two of testing

    events = list(train(task(), tmp_path, stop=stop))
    assert [type(e) for e in events] == [Started, Epoch]
    resumed = list(train(task(), tmp_path))  # goes on from the checkpoint of epoch 1
    assert [type(e) for e in resumed] == [Started, Epoch, Epoch, Epoch, Finished]
    assert resumed[0].epochs_done == 1 and resumed[1].restored and numbers(resumed[1:2]) == numbers(events[1:])
    whole = list(train(task(), tmp_path / "whole"))
    assert numbers(resumed) == numbers(whole)


@pytest.mark.parametrize("optimizer, fresh", [("sgd", True), ("sgd", False), ("adam", False)],
                         ids=["sgd fresh each epoch", "sgd kept", "adam"])  # fmt: skip
def test_a_resumed_training_equals_one_never_stopped_whatever_its_optimizer(tmp_path, optimizer, fresh):
    """With ``fresh_optimizer=False`` SGD's momentum goes on between epochs, and Adam's moments and step count always
    do: the checkpoint carries them, so a training resumed after epoch 1 is the one never stopped."""
    lrs = (0.1, 0.05, 0.01) if optimizer == "sgd" else (0.01, 0.005, 0.001)
    config = TrainConfig(epochs=3, lrs=lrs, optimizer=optimizer, batch_size=100, max_batches=2, fresh_optimizer=fresh)
    whole = numbers(train(task(config=config), tmp_path / "whole"))
    cut = train(task(config=config), tmp_path / "cut")
    for event in cut:
        if isinstance(event, Epoch):
            break
    cut.close()  # as a process that died after epoch 1
    resumed = numbers(train(task(config=config), tmp_path / "cut"))
    assert resumed == whole and {row["optimizer"] for row in whole} == {optimizer}
    if not fresh:  # the state that went on changed the numbers: the state restored was needed
        again = dataclasses.replace(config, fresh_optimizer=True)
        assert whole[1:] != numbers(train(task(config=again), tmp_path / "fresh"))[1:]
