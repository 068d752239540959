"""The committed reference results: the README's tables and each committed report are what the CSVs give.

No training: these read ``results/reference/`` and rebuild text from it.
"""

from pathlib import Path

import pytest

from report.__main__ import build_report
from report.readme import block, replace, run_folders

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "results" / "reference"


def test_readme_results_agree_with_the_committed_csvs():
    readme = (ROOT / "README.md").read_text()
    assert replace(readme, block(REFERENCE)) == readme, "run python -m report.readme after changing results/reference"


def test_reference_holds_the_runs_the_readme_promises():
    runs = run_folders(REFERENCE)
    assert len(runs) >= 3
    for run in runs:
        assert (run / "run.json").is_file() and (run / "report" / "report.md").is_file()
        assert not (run / "checkpoints").exists()
    files = [f for f in REFERENCE.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) < 8_000_000  # six runs with figures and neuron activity files
    assert max(f.stat().st_size for f in files) < 1_000_000


@pytest.mark.parametrize("run", run_folders(REFERENCE) if REFERENCE.is_dir() else [], ids=lambda p: p.name)
def test_each_committed_report_is_rebuilt_identically(run, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # bench.run named the run folder relative to the repository
    rebuilt = build_report([run.relative_to(ROOT)], tmp_path).read_text()
    assert rebuilt == (run / "report" / "report.md").read_text()
    for png in (run / "report").glob("*.png"):
        assert (tmp_path / png.name).is_file()


def test_readme_check_command(tmp_path):
    from report.readme import main

    assert main(["--check"]) == 0
    stale = tmp_path / "README.md"
    stale.write_text((ROOT / "README.md").read_text().replace("92.43 ± 0.87", "99.99 ± 0.01"))
    assert main(["--check", "--readme", str(stale)]) == 1
