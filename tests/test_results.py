"""Results on disk: the CSV reader and repair, rows never written twice, run folders never shared."""

import threading

import pytest

from bench import results
from bench.results import EpochWriter, PartialLineWarning, read_epochs, repair_csv
from bench.schema import COLUMNS


def row(epoch, model="ffn", seed=0, loss=0.5):
    values = {c: 1.0 for c in COLUMNS}
    values.update(run_id="r", dataset="mnist-mini", model=model, device="cpu", seed=seed, epoch=epoch,
                  train_loss=loss, train_samples=100, test_samples=100)  # fmt: skip
    return values


def test_rows_are_read_back_typed_and_exactly(tmp_path):
    with EpochWriter(tmp_path / "epochs.csv") as writer:
        writer.write(row(1, loss=0.1 + 0.2))
        writer.write(row(2, seed=7))
    rows = read_epochs(tmp_path / "epochs.csv")
    assert [(r["epoch"], r["seed"]) for r in rows] == [(1, 0), (2, 7)]
    assert rows[0]["train_loss"] == 0.1 + 0.2 and rows[0]["model"] == "ffn" and rows[0]["train_samples"] == 100


def test_metric_cells_may_be_empty_and_old_csvs_without_them_still_read(tmp_path):
    values = row(1)
    values.update(layer2_firing_rate=None, dense_ops=float("nan"))  # a model with one layer; metrics not counted
    with EpochWriter(tmp_path / "epochs.csv") as writer:
        writer.write(values)
    (back,) = read_epochs(tmp_path / "epochs.csv")
    assert back["layer2_firing_rate"] != back["layer2_firing_rate"] and back["dense_ops"] != back["dense_ops"]  # NaN
    old = COLUMNS[: COLUMNS.index("metrics_seconds")]  # what snnbench 0.1 wrote
    (tmp_path / "old.csv").write_text(",".join(old) + "\n" + ",".join(str(row(1)[c]) for c in old) + "\n")
    (back,) = read_epochs(tmp_path / "old.csv")
    assert back["epoch"] == 1 and "dense_ops" not in back


def test_a_partial_last_line_is_dropped_with_a_warning_then_repaired(tmp_path):
    path = tmp_path / "epochs.csv"
    with EpochWriter(path) as writer:
        writer.write(row(1))
        writer.write(row(2))
    whole = path.read_bytes()
    path.write_bytes(whole + whole.splitlines(keepends=True)[-1][:25])  # power lost mid-write of row 3
    with pytest.warns(PartialLineWarning, match="partial last line"):
        assert [r["epoch"] for r in read_epochs(path)] == [1, 2]
    assert repair_csv(path) == whole.splitlines(keepends=True)[-1][:25]
    assert path.read_bytes() == whole and repair_csv(path) == b""
    with EpochWriter(path) as writer:  # appending after the repair gives whole lines
        writer.write(row(3))
    assert [r["epoch"] for r in read_epochs(path)] == [1, 2, 3]


def test_a_broken_line_that_is_not_the_last_is_an_error(tmp_path):
    path = tmp_path / "epochs.csv"
    with EpochWriter(path) as writer:
        writer.write(row(1))
    path.write_text(path.read_text() + "r,mnist-mini,ffn\n")
    with pytest.raises(ValueError, match="line 3"):
        read_epochs(path)


def test_a_row_already_in_the_file_is_not_written_again(tmp_path):
    path = tmp_path / "epochs.csv"
    with EpochWriter(path) as writer:
        assert writer.write(row(1)) and writer.write(row(2))
    with EpochWriter(path) as writer:  # a resumed run opens the same file
        assert not writer.write(row(2, loss=9.0))
        assert writer.write(row(2, seed=1))
    assert [(r["seed"], r["epoch"], r["train_loss"]) for r in read_epochs(path)] == [(0, 1, 0.5), (0, 2, 0.5), (1, 2, 0.5)]


def test_runs_started_at_the_same_moment_get_their_own_folders(tmp_path, monkeypatch):
    # every thread draws the same names in the same order, so all of them collide on the first
    local = threading.local()

    def colliding_token(_):
        local.n = getattr(local, "n", -1) + 1
        return f"{local.n:06d}"

    monkeypatch.setattr(results.secrets, "token_hex", colliding_token)
    monkeypatch.setattr(results.time, "strftime", lambda _: "20250101-000000")
    start, got = threading.Barrier(8), []

    def start_run():
        start.wait()
        got.append(results.new_run_dir(tmp_path)[1])

    threads = [threading.Thread(target=start_run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and len(set(got)) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"20250101-000000-{i:06d}" for i in range(8)]


def test_check_writable_creates_nothing(tmp_path):
    results.check_writable(tmp_path / "new" / "deeper")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        results.check_writable(tmp_path / "file")
    with pytest.raises(NotADirectoryError):
        results.check_writable(tmp_path / "file" / "sub")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_run_folder_is_locked_while_a_process_writes_it(tmp_path):
    with results.holding_locks():
        results.lock_run_dir(tmp_path)
        with pytest.raises(BlockingIOError):
            results.lock_run_dir(tmp_path)  # a second open of the folder: another process, to flock
    with results.holding_locks():
        results.lock_run_dir(tmp_path)  # released on leaving the first block


def test_a_file_is_written_and_read_by_header_name_whatever_its_layers(tmp_path):
    """A model with three layers gets layer3_* columns; any header made of known columns reads and appends."""
    from bench import schema

    columns = schema.header(["layer1", "layer2", "layer3"])
    assert columns[: len(schema.BASE_COLUMNS) + 1] == [*schema.BASE_COLUMNS, "optimizer"] and "layer3_firing_rate" in columns
    assert schema.header(["layer1", "layer2"]) == [*schema.BASE_COLUMNS, *schema.OPTIMIZER_COLUMNS, *schema.ENERGY_COLUMNS,
                                                   *schema.SEGMENT_COLUMNS, *schema.METRIC_COLUMNS]  # fmt: skip
    path = tmp_path / "epochs.csv"
    with EpochWriter(path, columns) as writer:
        writer.write({**row(1), "layer3_firing_rate": 0.25})
    with EpochWriter(path) as writer:  # reopened: the file's header is kept
        assert writer.columns == columns and writer.missing == []
        writer.write(row(2))
    back = read_epochs(path)
    assert back[0]["layer3_firing_rate"] == 0.25 and back[1]["layer3_firing_rate"] != back[1]["layer3_firing_rate"]
    assert schema.header_problem(columns) is None and schema.header_problem(schema.BASE_COLUMNS) is None
    assert "lacks the column(s) seed" in schema.header_problem([c for c in columns if c != "seed"])
    assert "does not know: colour" in schema.header_problem([*columns, "colour"])
    (tmp_path / "odd.csv").write_text(",".join([*schema.BASE_COLUMNS, "colour"]) + "\n")
    with pytest.raises(ValueError, match="does not know: colour"):
        EpochWriter(tmp_path / "odd.csv")


def test_every_new_row_names_its_optimizer_and_files_from_before_the_column_still_read_and_append(tmp_path):
    from bench import schema

    path = tmp_path / "epochs.csv"
    with EpochWriter(path, schema.header()) as writer:
        writer.write({**row(1), "optimizer": "adam"})
    assert read_epochs(path)[0]["optimizer"] == "adam"  # text, as the other names
    old = tmp_path / "old.csv"  # 0.2 and 0.3 wrote no optimizer column: every one of their runs was SGD
    with EpochWriter(old) as writer:
        writer.write(row(1))
    with EpochWriter(old, schema.header()) as writer:  # a new snnbench resuming it keeps the file's header
        assert writer.columns == COLUMNS
        assert writer.missing == [*schema.OPTIMIZER_COLUMNS, *schema.ENERGY_COLUMNS, *schema.SEGMENT_COLUMNS, "neurobench_ops",
                                  "memory_reads", "memory_writes"]  # fmt: skip
        writer.write({**row(2), "optimizer": "sgd"})
    assert [("optimizer" in r, r["epoch"]) for r in read_epochs(old)] == [(False, 1), (False, 2)]
    assert schema.header_problem(schema.header(grid=True, validation=True)) is None
