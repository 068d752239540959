import matplotlib
import pytest
import torch

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _seed_and_close_figures():
    torch.manual_seed(0)
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(params=["native", "torch-threads"])
def generator(request, monkeypatch):
    """Each way the CPU masks are drawn: the native kernel (models/_masks.c) and torch generators on threads."""
    from models import masks as mask_rng

    if request.param == "native":
        if not mask_rng.native():
            pytest.skip("no C compiler here: the native generator is unavailable")
    else:
        monkeypatch.setattr(mask_rng, "_native", False)  # as SNNBENCH_NATIVE=0
    return request.param


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """pytest-benchmark's tables are turned off (--benchmark-quiet in pyproject.toml's addopts): its timings, in a few
    lines. ``tox -e bench`` prints the tables and saves the runs for ``pytest-benchmark compare``."""
    session = getattr(config, "_benchmarksession", None)
    timed = [b for b in getattr(session, "benchmarks", []) if getattr(b, "stats", None) is not None]
    if not timed or not getattr(session, "quiet", False):
        return
    import textwrap

    groups: dict[str, int] = {}
    for b in timed:
        groups[b.group] = groups.get(b.group, 0) + 1
    parts = []
    for b in sorted(timed, key=lambda b: (str(b.group), b.name)):
        variant = f" ({b.name.rpartition('-')[2].rstrip(']')})" if groups[b.group] > 1 else ""
        parts.append(f"{b.group}{variant} {1e3 * b.stats.median:.3g}")
    terminalreporter.write_sep("-", f"pytest-benchmark: {len(timed)} timings, median ms per call")
    for line in textwrap.wrap("; ".join(parts), 120, break_on_hyphens=False):
        terminalreporter.write_line(line)


def pytest_collection_modifyitems(config, items):
    """Test tiers by marker, so that a contributor can run a fast subset (docs/architecture.md, "Tests"): ``dask``
    (a cluster of processes each), ``golden`` (the committed reference reports rebuilt), ``cuda`` (skip without a GPU);
    ``slow`` is set on the tests themselves. The README's command runs them all."""
    for item in items:
        module = item.path.name
        if module.startswith("test_dask") or "dask" in item.name:
            item.add_marker(pytest.mark.dask)
        if module == "test_reference_results.py":
            item.add_marker(pytest.mark.golden)
        if "cuda" in item.name:
            item.add_marker(pytest.mark.cuda)
