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


def test_an_installed_package_has_every_c_source_and_header_its_kernels_compile():
    """A wheel (``pip install .``, not ``-e``) holds only the package data pyproject.toml names: a kernel whose source
    or shared header is left out cannot compile there, and every model falls back to its slow path."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for package in ("bench", "models", "report"):
        sources = [p.name for p in (ROOT / package).iterdir() if p.suffix in (".c", ".h")]
        missing = [s for s in sources if not any(fnmatch.fnmatch(s, g) for g in data.get(package, []))]
        assert not missing, f"{package}: not in the wheel: {missing}"
