"""The committed reference results: results/README.md's tables and each committed report are what the CSVs give.

No training: these read ``results/reference/`` and rebuild text from it.
"""

from pathlib import Path

import pytest

from report.__main__ import build_report
from report.readme import BEGIN, END, block, group_folders, replace, run_folders

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "results" / "reference"
RESULTS = ROOT / "results" / "README.md"


def test_results_readme_agrees_with_the_committed_csvs():
    text = RESULTS.read_text()
    assert replace(text, block(REFERENCE)) == text, "run python -m report.readme after changing results/reference"


def test_the_generated_links_are_relative_to_results_readme():
    text = RESULTS.read_text()
    generated = text[text.index(BEGIN) : text.index(END)]
    assert "](reference/" in generated and "](results/" not in generated
    for run in run_folders(REFERENCE):
        assert f"](reference/{run.relative_to(REFERENCE).as_posix()}/report/report.md)" in generated  # a group's too


def test_the_project_readme_holds_no_generated_block():
    assert BEGIN not in (ROOT / "README.md").read_text()


def test_reference_holds_the_runs_the_readme_promises():
    runs = run_folders(REFERENCE)
    assert len(runs) >= 3
    for run in runs:
        assert (run / "run.json").is_file() and (run / "report" / "report.md").is_file()
        assert not (run / "checkpoints").exists()
    files = [f for f in REFERENCE.rglob("*") if f.is_file() and "checkpoints" not in f.relative_to(REFERENCE).parts]
    # thirteen runs (three in a group), figures, activity files, the smnist runs of issue 26 and issue 27's tuning
    # study, whose run.json and epochs.csv hold hundreds of trials (1 to 2 MB each); the checkpoints of a run in
    # progress are not committed (.gitignore); no file over the project's 5 MB
    assert sum(f.stat().st_size for f in files) < 25_000_000
    assert max(f.stat().st_size for f in files) < 5_000_000


@pytest.mark.parametrize("run", run_folders(REFERENCE) if REFERENCE.is_dir() else [], ids=lambda p: p.name)
def test_each_committed_report_is_rebuilt_identically(run, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # bench.run named the run folder relative to the repository
    rebuilt = build_report([run.relative_to(ROOT)], tmp_path).read_text()
    assert rebuilt == (run / "report" / "report.md").read_text()
    for png in (run / "report").glob("*.png"):
        assert (tmp_path / png.name).is_file()


def test_readme_check_command(tmp_path, capsys):
    from report.readme import main

    assert main(["--check"]) == 0
    results = tmp_path / "results"
    results.mkdir()
    stale = results / "README.md"
    text = RESULTS.read_text()
    assert "92.43 ± 0.87" in text[text.index(BEGIN) :]
    stale.write_text(text.replace("92.43 ± 0.87", "99.99 ± 0.01"))
    assert main(["--check", "--file", str(stale), "--reference", str(REFERENCE)]) == 1
    assert main(["--check", "--readme", str(stale), "--reference", str(REFERENCE)]) == 1  # the old name still works
    (results / "reference").symlink_to(REFERENCE)  # a reference/ beside the file: the same links
    assert main(["--file", str(stale), "--reference", str(results / "reference")]) == 0
    assert main(["--check", "--file", str(stale), "--reference", str(results / "reference")]) == 0
    assert stale.read_text() == text
    capsys.readouterr()
    (tmp_path / "plain.md").write_text("no markers\n")
    assert main(["--check", "--file", str(tmp_path / "plain.md")]) == 2
    assert "no results markers" in capsys.readouterr().err


@pytest.mark.parametrize("group", group_folders(REFERENCE) if REFERENCE.is_dir() else [], ids=lambda p: p.name)
def test_each_committed_group_report_is_rebuilt_identically(group, tmp_path, monkeypatch):
    """A group (several runs read together) has one report over its runs: the CSVs still give exactly that text."""
    monkeypatch.chdir(ROOT)
    runs = [r for r in run_folders(REFERENCE) if group in r.parents]
    assert len(runs) >= 2
    rebuilt = build_report([group.relative_to(ROOT)], tmp_path).read_text()
    assert rebuilt == (group / "report" / "report.md").read_text()


def test_a_group_is_a_folder_of_runs_with_one_report(tmp_path):
    from test_report_tuned import grid_rows, write_grid

    reference = tmp_path / "reference"
    write_grid(reference / "alone", grid_rows("snn", 1.0, [0.9, 0.91, 0.92], [0.9, 0.9, 0.9], run_id="alone"))
    for name, model, scale in (("a", "snn", 2.0), ("b", "ffn", 4.0)):
        write_grid(reference / "group" / name, grid_rows(model, scale, [0.9, 0.91, 0.92], [0.9, 0.9, 0.9], run_id=name),
                   scales=[scale])  # fmt: skip
    build_report([reference / "group"], reference / "group" / "report")
    build_report([reference / "alone"], reference / "alone" / "report")
    assert group_folders(reference) == [reference / "group"]
    assert {p.name for p in run_folders(reference)} == {"alone", "a", "b"}
    text = (reference / "group" / "report" / "report.md").read_text()
    assert "### Tuned comparison" in text and "snn at x2" in text and "ffn at x4" in text
