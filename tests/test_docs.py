"""Every documented command of this repository's entry points parses with that entry point's own parser.

The Markdown files below are searched for ``python -m MODULE ...`` in fenced and indented code blocks and in
inline code. For this repository's modules, the arguments are parsed with the module's parser: an unknown
option, a bad value or a wrong choice fails. Options must be spelt out in full (argparse would accept a prefix).
Nothing is run. Every option in an options table (a row that starts with | `--x) must be an option of the
command its page documents, and every option of that command must have a row. Relative links must resolve.
"""

import re
import shlex
from itertools import takewhile
from pathlib import Path

import pytest

import bench.speed
import report.__main__
import report.readme
from bench.preflight import build_parser as bench_run_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "results" / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "examples" / "snnbench-example" / "README.md"]  # fmt: skip
PARSERS = {
    "bench.run": bench_run_parser,
    "bench.speed": bench.speed.build_parser,
    "report": report.__main__.build_parser,
    "report.readme": report.readme.build_parser,
}
OWN = ("bench", "report", "models", "scripts")  # a documented `python -m` of these packages needs a parser above
TABLES = {"docs/running.md": "bench.run", "docs/speed.md": "bench.speed", "docs/report.md": "report"}
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
OPTION = re.compile(r"--[a-z][a-z0-9-]*")


def snippets(text: str):
    """The code of a Markdown text: each line of fenced and indented blocks, each inline span on one line."""
    for block in FENCE.findall(text):
        yield from block.splitlines()[1:-1]
    prose = []
    for line in FENCE.sub("", text).splitlines():
        if line.startswith("    ") and "`" not in line:  # an indented block, in a list item too
            yield line
        else:
            prose.append(line)
    for span in re.findall(r"`([^`]+)`", "\n".join(prose)):
        yield " ".join(span.split())  # an inline span may break across lines


def commands(text: str):
    """(module, arguments) of each ``python -m`` in ``text``'s code, up to a comment, ``&&``, ``;`` or a pipe."""
    for snippet in snippets(text):
        for match in re.finditer(r"\bpython -m ([A-Za-z_][\w.]*)", snippet):
            words = shlex.split(snippet[match.end() :], comments=True)
            args = takewhile(lambda w: w not in ("&&", "||", ";", "|"), words)
            yield match.group(1), [w for w in args if w not in ("...", "…")]  # "and so on" is no argument


def documented():
    for path in DOCS:
        name = path.relative_to(ROOT).as_posix()
        for i, (module, args) in enumerate(commands(path.read_text())):
            if module.split(".")[0] in OWN:
                yield pytest.param(module, args, id=f"{name}#{i}:{module}")


def options_of(parser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings if s.startswith("--")}


def problem(module: str, args: list[str]) -> str | None:
    """Why ``python -m module args`` would not parse, or None."""
    if module not in PARSERS:
        return f"python -m {module} is documented, but tests/test_docs.py knows no parser for it"
    parser = PARSERS[module]()
    known = options_of(parser)
    for word in args:
        if word.startswith("--") and word.split("=")[0] not in known:
            return f"python -m {module} has no option {word.split('=')[0]}"
    try:
        parser.parse_args(args)
    except Exception as exc:  # bench.cli.Parser raises instead of exiting: UsageError, ReportError
        return f"python -m {module} {shlex.join(args)}: {exc}"
    return None


def table_options(text: str) -> list[str]:
    """The options named in the first cell of each table row that starts with an option."""
    found = []
    for line in text.splitlines():
        if line.startswith("| `--"):
            first_cell = re.split(r"(?<!\\)\|", line)[1]
            found += OPTION.findall(first_cell)
    return found


COMMANDS = list(documented())


@pytest.mark.parametrize("module, args", COMMANDS)
def test_each_documented_command_parses(module, args):
    assert problem(module, args) is None, problem(module, args)


def test_the_commands_are_found():
    found = {p.values[0] for p in COMMANDS}
    assert found == set(PARSERS)
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize("page, module", TABLES.items())
def test_each_option_table_matches_its_parser(page, module):
    rows = table_options((ROOT / page).read_text())
    known = options_of(PARSERS[module]())
    assert set(rows) - known == set(), f"{page} documents options that python -m {module} does not have"
    assert known - {"--help"} - set(rows) == set(), f"{page} has no row for these options of python -m {module}"


def test_every_option_table_is_checked():
    with_tables = {p.relative_to(ROOT).as_posix() for p in DOCS if table_options(p.read_text())}
    assert with_tables <= set(TABLES)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(path):
    for target in re.findall(r"\]\(([^)\s]+)\)", FENCE.sub("", path.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = path.parent / file if file else path
        assert dest.exists(), f"{target}: no such file"
        if anchor:
            assert anchor in {slug(h) for h in re.findall(r"^#+ (.*)$", dest.read_text(), re.M)}, f"{target}: no such heading"


def test_a_wrong_option_or_value_is_caught():
    text = """
    python -m bench.run --models snn --device cpu --seeds 0 1

Run `python -m bench.run --seed 0` or `python -m bench.speed --workload snn
--precision fp64`, then `python -m report.readme --check --frobnicate`.

```
python -m report results/ --target 85  # a percentage, not a fraction
```
"""
    found = list(commands(text))
    assert [m for m, _ in found] == ["report", "bench.run", "bench.run", "bench.speed", "report.readme"]  # fenced first
    assert [problem(m, a) is None for m, a in found] == [False, True, False, False, False]
    assert "no option --seed" in problem(*found[2])  # a prefix of --seeds: argparse alone would accept it
    assert found[3][1] == ["--workload", "snn", "--precision", "fp64"]  # an inline span across a line break
    assert problem("bench.nothing", []) is not None
    assert table_options("| `--workers N`, `--scheduler ADDR` | ... |\n| `--optimizer sgd\\|adam` | ... |") == [
        "--workers", "--scheduler", "--optimizer"]  # fmt: skip
