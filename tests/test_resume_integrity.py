"""--resume checks epochs.csv against run.json before it changes anything: rows of another run, rows that are gone, a cut
last line, a corrupt cell and a lost checkpoint are repaired as the message says, or refused in one line (exit 2) with
the run folder left byte for byte as it was. A training's rows are always one trajectory."""

import json
import os
import shutil
import signal

import pytest

import bench.executors
from bench.results import EpochWriter
from bench.run import main
from bench.schema import COLUMNS, TrainingKey, read_epochs
from bench.train import Epoch

SMALL = ["--models", "ffn", "--device", "cpu", "--dataset", "mnist-mini", "--max-batches", "1", "--batch-size", "100",
         "--no-report", "--epochs", "3"]  # fmt: skip
# segment: which stretch of its training trained a row (a resumed one is another): not one of its numbers
TIMING = {"run_id", "train_seconds", "eval_seconds", "train_samples_per_second", "metrics_seconds", "peak_memory_mib",
          "segment"}  # fmt: skip


def run(out, *extra, interrupt_after=None, monkeypatch=None):
    """A run in ``out`` (its folder returned); with ``interrupt_after``, a SIGINT once the first training's epoch
    ``interrupt_after`` is recorded (its checkpoint kept: the training is unfinished)."""
    if interrupt_after is None:
        assert main([*SMALL, *extra, "--out", str(out)]) == 0
    else:
        real, calls = bench.executors.train, []

        def train(*args, **kwargs):
            calls.append(1)
            for event in real(*args, **kwargs):
                yield event
                if len(calls) == 1 and isinstance(event, Epoch) and event.epoch == interrupt_after:
                    os.kill(os.getpid(), signal.SIGINT)

        with monkeypatch.context() as m:
            m.setattr(bench.executors, "train", train)
            assert main([*SMALL, *extra, "--out", str(out)]) == 130
    (run_dir,) = out.iterdir()
    return run_dir


def lines(run_dir):
    return (run_dir / "epochs.csv").read_bytes().splitlines(keepends=True)


def snapshot(run_dir):
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def refused(run_dir, capsys, *words):
    """--resume is exit 2 with one line on stderr holding ``words``, and changes no byte of the run folder."""
    before = snapshot(run_dir)
    capsys.readouterr()
    assert main(["--resume", str(run_dir)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("bench.run: error: --resume ") or err.startswith("bench.run: error: cannot read checkpoint"), err
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err and out == "", err
    for word in words:
        assert word in err, err
    assert snapshot(run_dir) == before
    return err


def one_trajectory_each(run_dir, epochs=3):
    """Every complete training has exactly the rows of epochs 1..epochs, once each, of this run."""
    meta = json.loads((run_dir / "run.json").read_text())
    rows = read_epochs(run_dir / "epochs.csv")
    for t in meta["trainings"]:
        mine = [r["epoch"] for r in rows if TrainingKey.of(r) == TrainingKey.of(t)]
        assert sorted(mine) == list(range(1, t["epochs_done"] + 1)), (t, mine)
        assert t["status"] != "complete" or t["epochs_done"] == epochs
    assert {r["run_id"] for r in rows} <= {meta["run_id"]}


def numbers(run_dir):
    return sorted(
        ({k: None if v != v else v for k, v in r.items() if k not in TIMING} for r in read_epochs(run_dir / "epochs.csv")),
        key=lambda r: (r["seed"], r["epoch"]),
    )


def test_another_runs_epochs_csv_is_refused(tmp_path, capsys, monkeypatch):
    other = run(tmp_path / "other")
    run_dir = run(tmp_path / "cut", interrupt_after=1, monkeypatch=monkeypatch)
    shutil.copy(other / "epochs.csv", run_dir / "epochs.csv")
    refused(run_dir, capsys, "epochs.csv", "line 2", f"run {other.name}", f"not of this run ({run_dir.name}")


@pytest.mark.parametrize("damage", ["emptied", "deleted", "shortened", "header only"])
def test_a_complete_run_whose_rows_are_gone_is_refused(tmp_path, capsys, damage):
    run_dir = run(tmp_path, "--seeds", "0", "1")
    path = run_dir / "epochs.csv"
    if damage == "deleted":
        path.unlink()
    else:
        path.write_bytes({"emptied": b"", "shortened": b"".join(lines(run_dir)[:-1]), "header only": lines(run_dir)[0]}[damage])
    seed, lacks = (1, "the row(s) of epoch(s) 3") if damage == "shortened" else (0, "no row")  # the first training found short
    refused(run_dir, capsys, f"ffn cpu seed {seed}", "complete after 3 epoch(s)", lacks)


def test_rows_beyond_what_run_json_records_are_refused(tmp_path, capsys, monkeypatch):
    run_dir = run(tmp_path, interrupt_after=1, monkeypatch=monkeypatch)
    (line,) = lines(run_dir)[1:]
    path = run_dir / "epochs.csv"
    path.write_bytes(path.read_bytes() + line.replace(b",1,0.1,", b",2,0.1,", 1))  # its epoch 2, never trained
    refused(run_dir, capsys, "ffn cpu seed 0", "interrupted after 1 epoch(s)", "beyond")


def test_a_row_twice_and_a_row_of_a_training_the_run_does_not_have_are_refused(tmp_path, capsys, monkeypatch):
    run_dir = run(tmp_path, interrupt_after=1, monkeypatch=monkeypatch)
    head, line = lines(run_dir)
    path = run_dir / "epochs.csv"
    path.write_bytes(head + line + line)
    refused(run_dir, capsys, "epochs.csv, line 3", "a second row of epoch 1 of ffn cpu seed 0")
    path.write_bytes(head + line + line.replace(b",ffn,cpu,0,", b",ffn,cpu,9,", 1))
    refused(run_dir, capsys, "epochs.csv, line 3", "ffn cpu seed 9", "run.json does not list")


def test_a_cut_last_line_of_a_complete_training_is_refused_not_averaged(tmp_path, capsys):
    """The issue's case: seed 0 complete, its last row cut mid-line, seed 1 not started. Before, the cut line was dropped
    with a false promise ("its epoch is redone or restored") and seed 0's epoch 2 averaged with seed 1's epoch 3."""
    run_dir = run(tmp_path, "--seeds", "0", "1")
    ls = lines(run_dir)
    (run_dir / "epochs.csv").write_bytes(b"".join(ls[:3]) + ls[3][:40])
    meta = json.loads((run_dir / "run.json").read_text())
    meta["trainings"][1].update(status="interrupted", epochs_done=0)
    meta["status"] = "interrupted"
    (run_dir / "run.json").write_text(json.dumps(meta))
    refused(run_dir, capsys, "ffn cpu seed 0", "complete after 3 epoch(s)", "the row(s) of epoch(s) 3", "cut off")


def test_a_cut_last_line_is_restored_from_its_checkpoint_as_the_message_says(tmp_path, capsys, monkeypatch):
    whole = run(tmp_path / "whole", "--seeds", "0", "1")
    run_dir = run(tmp_path / "cut", "--seeds", "0", "1", interrupt_after=2, monkeypatch=monkeypatch)
    ls = lines(run_dir)
    (run_dir / "epochs.csv").write_bytes(b"".join(ls[:2]) + ls[2][:40])  # the power went out while row 2 was written
    meta = json.loads((run_dir / "run.json").read_text())
    meta["trainings"][0].update(status="running", epochs_done=1)  # ... so run.json never heard of epoch 2
    (run_dir / "run.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["--resume", str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert "removed a partial last line (40 bytes, cut off mid-write)" in err
    assert "lacks the row of epoch 2 of ffn cpu seed 0: it is restored from its checkpoint" in err
    assert "redone" not in err
    assert numbers(run_dir) == numbers(whole)
    one_trajectory_each(run_dir)


def test_a_row_written_before_its_record_in_run_json_is_kept(tmp_path, capsys, monkeypatch):
    """A crash between a row and run.json's epochs_done: the row is one more than recorded, and its checkpoint holds it."""
    whole = run(tmp_path / "whole")
    run_dir = run(tmp_path / "cut", interrupt_after=2, monkeypatch=monkeypatch)
    meta = json.loads((run_dir / "run.json").read_text())
    meta["trainings"][0].update(status="running", epochs_done=1)
    (run_dir / "run.json").write_text(json.dumps(meta))
    assert main(["--resume", str(run_dir)]) == 0
    assert numbers(run_dir) == numbers(whole)
    one_trajectory_each(run_dir)


def test_rows_lost_before_the_checkpoints_epoch_are_refused_until_the_checkpoint_goes(tmp_path, capsys, monkeypatch):
    run_dir = run(tmp_path, interrupt_after=2, monkeypatch=monkeypatch)
    ls = lines(run_dir)
    (run_dir / "epochs.csv").write_bytes(ls[0] + ls[2])  # epoch 1's row is gone: no checkpoint holds it
    (checkpoint,) = (run_dir / "checkpoints").iterdir()
    refused(run_dir, capsys, "ffn cpu seed 0", "the row(s) of epoch(s) 1", f"delete its checkpoint {checkpoint}")
    checkpoint.unlink()  # as the message says: it is trained again from epoch 1, without its old row
    assert main(["--resume", str(run_dir)]) == 0
    assert "no checkpoint of ffn cpu seed 0; training it again from epoch 1" in capsys.readouterr().err
    one_trajectory_each(run_dir)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda cells: cells.__setitem__(10, "abc"), "line 2, column test_accuracy: 'abc' is not a number"),
        (lambda cells: cells.__setitem__(5, "1.5"), "line 2, column epoch: '1.5' is not a whole number"),
        (lambda cells: cells.__delitem__(slice(3, None)), "line 2 has 3 cells, not the 38 of its header"),
        (lambda cells: cells.append("7"), "line 2 has 39 cells, not the 38 of its header"),
    ],
    ids=["abc", "float-epoch", "garbage", "extra-cell"],
)
def test_a_corrupt_cell_is_one_line_naming_file_line_column_and_value(tmp_path, capsys, monkeypatch, damage, message):
    run_dir = run(tmp_path, interrupt_after=2, monkeypatch=monkeypatch)
    ls = lines(run_dir)
    cells = ls[1].decode().rstrip("\r\n").split(",")
    damage(cells)
    (run_dir / "epochs.csv").write_bytes(ls[0] + (",".join(cells) + "\r\n").encode() + ls[2])
    refused(run_dir, capsys, f"{run_dir / 'epochs.csv'}, {message}")


def test_read_epochs_names_the_line_column_and_value(tmp_path):
    path = tmp_path / "epochs.csv"
    values = {c: 1.0 for c in COLUMNS}
    values.update(run_id="r", dataset="d", model="ffn", device="cpu", seed=0, epoch=1, train_samples=1, test_samples=1)
    with EpochWriter(path) as writer:
        writer.write(values)
    path.write_text(path.read_text() + "\n" + path.read_text().splitlines()[1].replace(",1.0,", ",nan?,", 1) + "\n")
    with pytest.raises(ValueError, match=r"epochs.csv, line 4, column lr: 'nan\?' is not a number"):
        read_epochs(path)  # the blank line 3 counts


def test_a_training_without_its_checkpoint_is_trained_again_without_its_old_rows(tmp_path, capsys, monkeypatch):
    """Before, its old rows were kept and the retrained ones of the same epochs silently dropped: two trajectories in one
    training. Now its old rows go (the file replaced whole) when it starts again from epoch 1, moved byte for byte into
    epochs-set-aside.csv: nothing stitched, nothing lost; run.json says how many and why."""
    whole = run(tmp_path / "whole")
    run_dir = run(tmp_path / "cut", interrupt_after=2, monkeypatch=monkeypatch)
    shutil.rmtree(run_dir / "checkpoints")
    ls = lines(run_dir)
    marked = [b",".join(b"99.0" if i == 7 else c for i, c in enumerate(line.split(b","))) for line in ls[1:]]
    (run_dir / "epochs.csv").write_bytes(ls[0] + b"".join(marked))  # train_loss 99: the old trajectory's rows
    capsys.readouterr()
    assert main(["--resume", str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert ("no checkpoint of ffn cpu seed 0; training it again from epoch 1: its 2 row(s) in epochs.csv are moved to "
            f"{run_dir / 'epochs-set-aside.csv'}") in err  # fmt: skip
    assert (run_dir / "epochs-set-aside.csv").read_bytes() == ls[0] + b"".join(marked)  # the old trajectory, whole
    (entry,) = json.loads((run_dir / "run.json").read_text())["trainings"]
    assert entry["set_aside"] == [{"rows": 2, "epochs": [1, 2], "why": "no checkpoint", "file": "epochs-set-aside.csv",
                                   "before_segment": 1}]  # fmt: skip
    losses = [[r["train_loss"] for r in read_epochs(folder / "epochs.csv")] for folder in (run_dir, whole)]
    assert losses[0] == losses[1]  # none of the old rows (99) is left; the new ones in epoch order
    assert numbers(run_dir) == numbers(whole)
    one_trajectory_each(run_dir)


def test_a_damaged_checkpoint_or_another_runs_is_refused_before_anything_changes(tmp_path, capsys, monkeypatch):
    """Before, a damaged one marked the run failed in run.json on the way out; another run's went on from its weights."""
    other = run(tmp_path / "other", interrupt_after=1, monkeypatch=monkeypatch)
    run_dir = run(tmp_path / "cut", interrupt_after=1, monkeypatch=monkeypatch)
    (checkpoint,) = (run_dir / "checkpoints").iterdir()
    shutil.copy(other / "checkpoints" / checkpoint.name, checkpoint)
    refused(run_dir, capsys, f"its checkpoint holds epoch 1 of run {other.name}", f"delete its checkpoint {checkpoint}")
    checkpoint.write_bytes(b"not a checkpoint")
    refused(run_dir, capsys, f"cannot read checkpoint {checkpoint}", "delete it to train that model again from epoch 1")


def test_epoch_writer_drops_a_trainings_later_rows_atomically_and_goes_on_appending(tmp_path):
    path = tmp_path / "epochs.csv"

    def row(seed, epoch):
        values = {c: 0.5 for c in COLUMNS}
        values.update(run_id="r", dataset="d", model="ffn", device="cpu", seed=seed, epoch=epoch, train_samples=1,
                      test_samples=1)  # fmt: skip
        return values

    with EpochWriter(path) as writer:
        for seed, epoch in [(0, 1), (1, 1), (0, 2), (1, 2), (0, 3)]:
            writer.write(row(seed, epoch))
        kept = [line for i, line in enumerate(lines(tmp_path)) if i not in (3, 5)]
        assert writer.drop(TrainingKey("ffn", "cpu", 0), after=1) == 2
        assert lines(tmp_path) == kept  # the other lines byte for byte
        assert writer.drop(TrainingKey("ffn", "cpu", 0), after=1) == 0
        assert writer.write(row(0, 2))  # no longer in the file: written, to the new file
    assert [(r["seed"], r["epoch"]) for r in read_epochs(path)] == [(0, 1), (1, 1), (1, 2), (0, 2)]
