"""What imports what: models know nothing of bench; the file formats and the report need no torch; the speed
benchmark does not load the run machinery. Each in a fresh interpreter, so nothing imported before counts."""

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import bench

ROOT = Path(__file__).resolve().parent.parent


def loaded(*modules):
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint('\\n'.join(sorted(sys.modules)))"
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())


def test_models_import_nothing_of_bench_or_report():
    assert not {m for m in loaded("models") if m.split(".")[0] in ("bench", "report")}


@pytest.mark.parametrize("module", ["bench.schema", "bench.results", "bench.cli"])
def test_the_file_formats_and_the_parser_need_no_torch(module):
    assert "torch" not in loaded(module)


def test_the_speed_benchmark_does_not_load_the_run():
    modules = loaded("bench.speed")
    assert not modules & {"bench.run", "bench.record", "bench.checkpoint", "bench.analysis", "bench.train", "report"}


def test_one_version():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert metadata.version("snnbench") == bench.__version__
