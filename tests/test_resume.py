"""Never lose a result: signals, resume with the same numbers, partial lines, divergence, out of memory."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from test_plugins import GOOD  # a plug-in model's source

import bench.executors
import bench.loop
import bench.run
import bench.train
from bench import interrupt
from bench.run import main
from bench.schema import BASE_COLUMNS as OLD_COLUMNS  # what snnbench 0.1 wrote
from bench.schema import COLUMNS, csv_columns, read_epochs
from bench.train import Epoch

# segment: which stretch of its training trained a row (a resumed one is another): not one of its numbers
TIMING = {"run_id", "train_seconds", "eval_seconds", "train_samples_per_second", "metrics_seconds", "peak_memory_mib",
          "segment"}  # fmt: skip
SMALL = ["--device", "cpu", "--dataset", "mnist-mini", "--max-batches", "2", "--batch-size", "100", "--no-report"]


def numbers(run_dir):
    """The rows without what differs between two runs of the same seeds: timings and the run id (NaN as None,
    so that two empty cells compare equal)."""
    return [{k: None if v != v else v for k, v in r.items() if k not in TIMING} for r in read_epochs(run_dir / "epochs.csv")]


def only_run(out):
    (run_dir,) = out.iterdir()
    return run_dir


def interrupt_after_epoch(n, signum=signal.SIGINT):
    """Replace bench.run's train() by one that gets a signal once the first training's epoch ``n`` is recorded."""
    real, calls = bench.executors.train, []

    def train(*args, **kwargs):
        calls.append(1)
        for event in real(*args, **kwargs):
            yield event  # the row and checkpoint are written before the generator goes on
            if len(calls) == 1 and isinstance(event, Epoch) and event.epoch == n:
                os.kill(os.getpid(), signum)  # the handler only asks the training to stop: it does at its next batch

    return train


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("optimizer", [[], ["--optimizer", "adam", "--lr", "0.01", "0.005"]], ids=["sgd", "adam"])
def test_resume_after_epoch_1_gives_the_rows_of_an_uninterrupted_run(tmp_path, capsys, monkeypatch, optimizer, device):
    """Adam's state after epoch 1 comes back from the checkpoint, as SGD's 2018 schedule needs none; on cuda too (the
    generators' states of the device as well)."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    small = [device if a == "cpu" else a for a in SMALL]
    argv = ["--models", "snn:time_steps=4", "ffn", "--epochs", "3", "--seeds", "5", *optimizer, *small]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    with monkeypatch.context() as m:
        m.setattr(bench.executors, "train", interrupt_after_epoch(1))
        assert main([*argv, "--out", str(tmp_path / "cut")]) == 130
    run_dir = only_run(tmp_path / "cut")
    err = capsys.readouterr().err
    assert f"Resume with:\n  {os.path.basename(sys.executable)} -m bench.run --resume {run_dir}\n" in err
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "interrupted"
    assert [(t["status"], t["epochs_done"]) for t in meta["trainings"]] == [("interrupted", 1), ("pending", 0)]
    assert len(read_epochs(run_dir / "epochs.csv")) == 1 and len(list((run_dir / "checkpoints").iterdir())) == 1

    assert main(["--resume", str(run_dir)]) == 0
    assert numbers(run_dir) == numbers(only_run(tmp_path / "whole"))  # exactly: losses and accuracies
    assert {r["optimizer"] for r in read_epochs(run_dir / "epochs.csv")} == {"adam" if optimizer else "sgd"}
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "complete" and len(meta["resumes"]) == 1
    assert {t["status"] for t in meta["trainings"]} == {"complete"}
    assert not (run_dir / "checkpoints").exists()


def test_a_crash_between_checkpoint_and_row_and_a_partial_line_lose_nothing(tmp_path, capsys, monkeypatch):
    argv = ["--models", "ffn", "--epochs", "3", *SMALL]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    with monkeypatch.context() as m:
        m.setattr(bench.executors, "train", interrupt_after_epoch(2))
        assert main([*argv, "--out", str(tmp_path / "cut"), "--keep-checkpoints"]) == 130
    run_dir = only_run(tmp_path / "cut")
    # as if the power went out while row 2 was being written, after its checkpoint was saved
    lines = (run_dir / "epochs.csv").read_bytes().splitlines(keepends=True)
    (run_dir / "epochs.csv").write_bytes(b"".join(lines[:2]) + lines[2][:40])
    capsys.readouterr()
    assert main(["--resume", str(run_dir)]) == 0
    assert "removed a partial last line (40 bytes" in capsys.readouterr().err
    assert numbers(run_dir) == numbers(only_run(tmp_path / "whole"))
    assert len(list((run_dir / "checkpoints").iterdir())) == 1  # --keep-checkpoints is recorded for the resume


@pytest.mark.parametrize("version", ["0.1", "0.3"])
def test_a_run_started_by_an_older_snnbench_resumes_in_its_own_format(tmp_path, capsys, monkeypatch, version):
    """0.1 wrote the first 16 columns only and recorded no --no-metrics; 0.3 wrote the metric columns too but no
    optimizer column, and recorded no --optimizer (its schedule: sgd, fresh each epoch). Either resumes as the SGD it
    was, in its own header; only 0.1's is told that the metric columns are not recorded."""
    columns, unrecorded = {"0.1": (OLD_COLUMNS, "no_metrics"), "0.3": (COLUMNS, "optimizer")}[version]
    argv = ["--models", "ffn", "--epochs", "3", *SMALL]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    with monkeypatch.context() as m:
        m.setattr(bench.executors, "train", interrupt_after_epoch(1))
        assert main([*argv, "--out", str(tmp_path / "cut")]) == 130
    run_dir = only_run(tmp_path / "cut")
    (row,) = read_epochs(run_dir / "epochs.csv")
    (run_dir / "epochs.csv").write_text(",".join(columns) + "\n" + ",".join(str(row[c]) for c in columns) + "\n")
    meta = json.loads((run_dir / "run.json").read_text())
    del meta["args"][unrecorded]
    (run_dir / "run.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["--resume", str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert ("started by an older snnbench without the activity and cost columns" in err) == (version == "0.1")
    assert csv_columns(run_dir / "epochs.csv") == columns
    whole = [{k: v for k, v in r.items() if k in columns} for r in numbers(only_run(tmp_path / "whole"))]
    assert numbers(run_dir) == whole


def test_resuming_a_finished_run_changes_no_row(tmp_path, capsys):
    assert main(["--models", "ffn", "--epochs", "1", *SMALL, "--out", str(tmp_path)]) == 0
    run_dir = only_run(tmp_path)
    before = (run_dir / "epochs.csv").read_bytes()
    assert main(["--resume", str(run_dir), "--no-report"]) == 0
    assert (run_dir / "epochs.csv").read_bytes() == before


def test_while_a_run_runs_a_signal_only_asks_it_to_stop():
    done = []
    with interrupt.handlers():  # as bench.run before its run folder exists: a signal raises
        with interrupt.stopping() as stop:  # then, while it runs: a signal is a request
            assert not stop()
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGINT)  # a second one changes nothing
            done.append("all of it")
        assert stop() and stop.signum == signal.SIGTERM and interrupt.exit_status(stop.signum) == 143
        with pytest.raises(interrupt.Interrupted):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
    assert done == ["all of it"]


def test_a_signal_in_the_middle_of_an_epoch_stops_it_within_a_batch(tmp_path, capsys, monkeypatch):
    real, steps = bench.loop.training_step, []

    def training_step(*args):
        steps.append(1)
        if len(steps) == 3:  # the second epoch's first batch (two batches per epoch)
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args)

    monkeypatch.setattr(bench.loop, "training_step", training_step)
    assert main(["--models", "ffn", "--epochs", "3", *SMALL, "--out", str(tmp_path)]) == 130
    assert len(steps) == 3  # the step under way finished; the epoch's next batch never started
    run_dir = only_run(tmp_path)
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "interrupted" and meta["trainings"][0]["epochs_done"] == 1
    assert [r["epoch"] for r in read_epochs(run_dir / "epochs.csv")] == [1]


# bench.run in a process of its own that, once epoch 1 is recorded, says "ready" on stdout and waits for the signal
# before it goes on (the training's own stop check ends the wait): the signal always comes mid-run, however slow or fast
# the machine, never after the run ended.
PARKED_RUN = textwrap.dedent("""
    import sys, time
    import bench.executors
    from bench.run import main
    from bench.train import Epoch

    real = bench.executors.train

    def parked(task, checkpoint_dir, analysed=False, stop=None):
        for event in real(task, checkpoint_dir, analysed, stop):
            yield event
            if isinstance(event, Epoch) and event.epoch == 1 and not event.restored:
                print("ready", flush=True)
                while not stop():
                    time.sleep(0.005)

    bench.executors.train = parked
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_the_process_stops_it_cleanly_and_it_can_be_resumed(tmp_path, signum, status):
    argv = ["--models", "ffn", "--epochs", "3", *SMALL, "--max-batches", "1", "--out", str(tmp_path / "cut")]
    proc = subprocess.Popen([sys.executable, "-c", PARKED_RUN, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout.readline() == "ready\n", proc.stderr.read()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    run_dir = only_run(tmp_path / "cut")
    assert "Traceback" not in err and f"interrupted ({signal.Signals(signum).name})" in err
    command = err.rstrip("\n").splitlines()[-1].strip()
    assert command == f"{os.path.basename(sys.executable)} -m bench.run --resume {run_dir}"
    text = (run_dir / "epochs.csv").read_text()
    assert text.endswith("\n")
    rows = read_epochs(run_dir / "epochs.csv")
    assert [r["epoch"] for r in rows] == [1]  # the wait was inside epoch 2's first step check: epoch 2 never ran
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "interrupted" and meta["trainings"][0]["status"] == "interrupted"
    if signum == signal.SIGTERM:  # run the printed command; the result is that of a run never stopped
        resumed = subprocess.run([sys.executable, *command.split()[1:]], capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        # the uninterrupted run in a process of its own too: the same torch threads and state as the cut one
        whole = subprocess.run([sys.executable, "-m", "bench.run", *argv[:-1], str(tmp_path / "whole")],
                               capture_output=True, text=True, timeout=120)  # fmt: skip
        assert whole.returncode == 0, whole.stderr
        assert numbers(run_dir) == numbers(only_run(tmp_path / "whole"))


EXPLODING = textwrap.dedent(GOOD) + textwrap.dedent("""

    class Exploding(Tiny):
        \"\"\"Finite logits until its second training step (it passes the contract check), then NaN.\"\"\"

        def forward(self, x):
            self.steps += self.training
            logits = self.fc(x.flatten(1))
            return logits * float("nan") if self.steps > 1 else logits
""")


def test_a_diverging_training_stops_and_the_others_go_on(tmp_path, capsys, monkeypatch):
    (tmp_path / "exploding_net.py").write_text(EXPLODING)
    monkeypatch.syspath_prepend(str(tmp_path))
    diverging = "exploding_net:Exploding"  # its loss turns NaN in its first epoch
    assert main(["--models", diverging, "ffn", "--epochs", "2", *SMALL, "--out", str(tmp_path / "res")]) == 1
    run_dir = only_run(tmp_path / "res")
    out, err = capsys.readouterr()
    trainings = json.loads((run_dir / "run.json").read_text())["trainings"]
    assert [(t["model"], t["status"], t["epochs_done"]) for t in trainings] == [
        (diverging, "diverged", 0),
        ("ffn", "complete", 2),
    ]
    assert trainings[0]["detail"] == "train loss nan in epoch 1 (lr 0.1)"
    assert f"diverged: {diverging} on cpu, seed 0, after 0 epoch(s): train loss nan in epoch 1" in out
    assert f"bench.run: {diverging} cpu seed 0 diverged" in err
    assert [(r["model"], r["epoch"]) for r in read_epochs(run_dir / "epochs.csv")] == [("ffn", 1), ("ffn", 2)]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "partial"
    assert not (run_dir / "checkpoints").exists()
    assert main(["--resume", str(run_dir)]) == 1  # a diverged training is not tried again
    assert len(read_epochs(run_dir / "epochs.csv")) == 2


def test_a_huge_learning_rate_diverges(tmp_path, capsys):
    assert main(["--models", "ffn", "--epochs", "1", "--lr", "1e30", *SMALL, "--out", str(tmp_path)]) == 1
    (training,) = json.loads((only_run(tmp_path) / "run.json").read_text())["trainings"]
    assert training["status"] == "diverged" and "nan" in training["detail"]


def test_out_of_memory_stops_that_training_only_and_a_resume_tries_it_again(tmp_path, capsys, monkeypatch):
    real = bench.train.train_epoch

    def train_epoch(model, *args, **kwargs):
        if type(model).__name__ == "SNN" and real_calls[0] >= 1:  # its second epoch runs out of memory
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        real_calls[0] += type(model).__name__ == "SNN"
        return real(model, *args, **kwargs)

    real_calls = [0]
    argv = ["--models", "snn:time_steps=4", "ffn", "--epochs", "2", *SMALL]
    with monkeypatch.context() as m:
        m.setattr(bench.train, "train_epoch", train_epoch)
        assert main([*argv, "--out", str(tmp_path / "cut")]) == 1
    run_dir = only_run(tmp_path / "cut")
    meta = json.loads((run_dir / "run.json").read_text())
    assert [(t["status"], t["epochs_done"]) for t in meta["trainings"]] == [("oom", 1), ("complete", 2)]
    assert meta["status"] == "partial"
    out, err = capsys.readouterr()
    assert "start a new run with a smaller --batch-size than 100" in err and "oom: snn:time_steps=4 on cpu" in out
    assert main(["--resume", str(run_dir)]) == 0  # memory is free now: it goes on from epoch 1's checkpoint
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    assert sorted(numbers(run_dir), key=str) == sorted(numbers(only_run(tmp_path / "whole")), key=str)


def test_a_run_written_by_snnbench_0_2_resumes(tmp_path, capsys):
    """A committed reference run (run.json and epochs.csv in 0.2's formats), with one training cut after epoch 2 and
    no checkpoint: it is trained again from epoch 1, only its missing row is added, in the file's own header."""
    import shutil
    from pathlib import Path

    from bench.devices import cpu_model
    from bench.schema import COLUMNS

    source = Path(__file__).resolve().parent.parent / "results" / "reference" / "20261128-124131-8b27fd"
    run_dir = tmp_path / source.name
    shutil.copytree(source, run_dir, ignore=shutil.ignore_patterns("report"))
    meta = json.loads((run_dir / "run.json").read_text())
    assert csv_columns(run_dir / "epochs.csv") == COLUMNS and "kind" not in meta["models"]["ffn"]  # 0.2's formats
    (training,) = [t for t in meta["trainings"] if (t["model"], t["seed"]) == ("ffn", 0)]
    training.update(status="interrupted", epochs_done=2)
    meta["status"] = "interrupted"
    (run_dir / "run.json").write_text(json.dumps(meta))
    rows = read_epochs(run_dir / "epochs.csv")
    (cut,) = [r for r in rows if (r["model"], r["seed"], r["epoch"]) == ("ffn", 0, 3)]
    lines = (run_dir / "epochs.csv").read_text().splitlines(keepends=True)
    (run_dir / "epochs.csv").write_text("".join(line for i, line in enumerate(lines) if i == 0 or rows[i - 1] is not cut))
    capsys.readouterr()
    same_cpu = cpu_model() == meta["environment"]["cpu_model"]
    if not same_cpu:  # made on another kind of CPU: going on here changes what its seconds mean, so it needs asking
        assert main(["--resume", str(run_dir), "--no-report"]) == 2
        assert f"would go on with hardware {meta['environment']['cpu_model']} -> {cpu_model()}" in capsys.readouterr().err
    assert main(["--resume", str(run_dir), "--no-report", *([] if same_cpu else ["--new-segment"])]) == 0
    err = capsys.readouterr().err
    assert "no checkpoint of ffn cpu seed 0; training it again from epoch 1" in err
    assert "activity and cost columns" not in err  # it has them; only the optimizer's is new, and it is not missed
    assert csv_columns(run_dir / "epochs.csv") == COLUMNS
    after = read_epochs(run_dir / "epochs.csv")
    assert len(after) == len(rows) and after[-1]["model"] == "ffn" and after[-1]["epoch"] == 3
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    if same_cpu:  # the same kind of CPU: the very same numbers
        assert after[-1]["test_accuracy"] == cut["test_accuracy"] and after[-1]["train_loss"] == cut["train_loss"]


def test_a_signal_while_the_report_is_written_says_the_run_is_complete(tmp_path, capsys, monkeypatch):
    import report.__main__

    def build_report(*args):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the run is over: the signal raises again, here

    monkeypatch.setattr(report.__main__, "build_report", build_report)
    argv = ["--models", "ffn", "--epochs", "1", *[a for a in SMALL if a != "--no-report"], "--out", str(tmp_path)]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted while writing the report; the run is complete" in err and "interrupted before" not in err
    assert json.loads((only_run(tmp_path) / "run.json").read_text())["status"] == "complete"
