"""The documentation's own tests: the Sphinx site builds with warnings as errors, and every
shell session and Python block of README.md and docs/*.md runs, its output compared with
what the page shows. The conventions are the docs' own ("These docs" in docs/developer.md):

- ```console blocks are shell sessions: a ``$ `` line is a command (a trailing ``\\``
  continues it), the lines up to the next ``$ `` its output, stdout and stderr together;
  every command must exit with status 0;
- a ```python block whose first line is ``# NAME.py`` is written to that file; any other
  Python block is run with ``python`` and must succeed;
- in shown output ``...`` matches any text (a line of only ``...`` any number of lines),
  a duration such as ``0.07s`` any duration, and a run of spaces any run;
- ``<!-- norun: why -->`` right above a block keeps it from running; every ```bash block
  needs one.

Each page runs in a temporary working copy of the repository, its blocks in order, with a
``.venv`` of its own whose ``bin/`` lends the real environment's programs: its ``python``
runs the real interpreter but refuses nothing and installs nothing (a ``-m pip`` call is
a no-op), so ``bash launch/run-local.sh`` runs as written without reinstalling mpigd or
pointing the real environment's editable install at the copy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_TIMEOUT = 180  # seconds; a hung mpiexec fails the test instead of CI
# Pages whose examples take long enough to leave them out of the quick check (about 10 s
# of CPU each: scikit-learn imported under mpiexec, the Python API on the flights data).
SLOW_PAGES = {"estimators.md", "training.md"}
# The least the pages run, so that a parser or convention change that silently skips the
# examples fails here (what a page runs is checked against what it shows, below).
LEAST_COMMANDS, LEAST_COMPARED, LEAST_PYTHON = 30, 20, 6

NORUN = re.compile(r"^<!--\s*norun:\s*(.+?)\s*-->$")
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([^\s`]*)")
NAMED = re.compile(r"^#\s+([\w.-]+\.py)\b")
DURATION = re.compile(r"\b\d+(?:\.\d+)?s\b")


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    norun: str | None = None


@dataclass
class Command:
    line: str
    expected: list[str] = field(default_factory=list)


def read_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, with the norun comment above each."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.groups()
        start = i
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path.name}:{start + 1}: unclosed code block")
        i += 1
        above = next((line for line in reversed(lines[:start]) if line.strip()), "")
        norun = NORUN.match(above.strip())
        blocks.append(Block(path.name, start + 1, lang, "\n".join(body), norun and norun.group(1)))
    return blocks


def session(block: Block) -> list[Command]:
    """The commands of a console block and the output shown after each."""
    commands: list[Command] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command += "\n" + lines[i]
            commands.append(Command(command))
        elif commands:
            commands[-1].expected.append(line)
        elif line.strip():
            raise AssertionError(f"{block.page}:{block.line}: output before the first '$ '")
        i += 1
    return commands


def runnable(block: Block) -> bool:
    return block.norun is None and block.lang in ("console", "python")


def normalized(line: str) -> str:
    return " ".join(DURATION.sub("0.0s", line).split())


def line_matches(expected: str, actual: str) -> bool:
    parts = normalized(expected).split("...")
    return re.fullmatch(".*".join(map(re.escape, parts)), normalized(actual)) is not None


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """``expected`` against ``actual`` line by line; a line of only ``...`` takes any number
    of lines. Blank lines at either end are ignored."""

    def trimmed(lines):
        lines = list(lines)
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        return lines

    expected, actual = trimmed(expected), trimmed(actual)
    memo: dict[tuple[int, int], bool] = {}

    def match(i: int, j: int) -> bool:
        if (i, j) not in memo:
            if i == len(expected):
                result = j == len(actual)
            elif expected[i].strip() == "...":
                result = any(match(i + 1, k) for k in range(j, len(actual) + 1))
            else:
                result = (
                    j < len(actual) and line_matches(expected[i], actual[j]) and match(i + 1, j + 1)
                )
            memo[i, j] = result
        return memo[i, j]

    return match(0, 0)


# ----------------------------------------------------------------- a working copy per page


def working_copy(dest: Path) -> Path:
    """The repository's files (tracked and new, not ignored) and the built extension
    modules, copied to ``dest``, with a ``.venv`` that lends the real one's programs."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if listed.returncode == 0:
        files = [Path(name) for name in listed.stdout.split("\0") if name]
    else:  # not a git checkout: everything but the usual build and cache folders
        skip = {".git", ".venv", ".venv-openmpi", "__pycache__", "build", ".pytest_cache"}
        files = [
            p.relative_to(ROOT)
            for p in ROOT.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(ROOT).parts)
        ]
    files += [p.relative_to(ROOT) for p in (ROOT / "mpigd").rglob("*.so")]
    for name in files:
        source = ROOT / name
        if source.is_file():  # a tracked file may have been moved away in the work tree
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    real_bin = Path(sys.executable).parent
    bin_ = dest / ".venv" / "bin"
    bin_.mkdir(parents=True)
    for program in real_bin.iterdir():
        if not program.name.startswith("python"):
            (bin_ / program.name).symlink_to(program)
    python = Path(sys.executable)
    for name in ("python", "python3", f"python3.{sys.version_info.minor}"):
        wrapper = bin_ / name
        wrapper.write_text(
            "#!/bin/sh\n"
            "# The real environment's interpreter; installing into it is a no-op here.\n"
            'if [ "$1" = -m ] && [ "$2" = pip ]; then exit 0; fi\n'
            f'exec "{python}" "$@"\n'
        )
        wrapper.chmod(0o755)
    env = environment(dest)
    # launch/venv.sh finds nothing installed yet: let it stamp the fake .venv now, so that
    # the pages' commands do not print its "installing" line.
    subprocess.run(
        ["bash", "-c", "source launch/venv.sh mpich"], cwd=dest, env=env,
        capture_output=True, check=True,
    )  # fmt: skip
    return dest


def environment(copy: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MPIGD_DEBUG"}  # no tracebacks
    env["PATH"] = f"{copy / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(copy / ".venv")
    env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr in the order a terminal shows them
    env["COLUMNS"] = "80"  # --help wraps at the width of a terminal
    return env


def shell_prefix() -> str:
    """``$MPIGD_TEST_MPIEXEC`` (e.g. Open MPI's ``mpiexec --oversubscribe``) stands in for
    ``mpiexec``, as in the rest of the suite."""
    launcher = os.environ.get("MPIGD_TEST_MPIEXEC")
    return f'mpiexec() {{ command {launcher} "$@"; }}\n' if launcher else ""


def run_page(path: Path, copy: Path) -> tuple[int, int, int]:
    """Run a page's blocks in ``copy``; returns (commands, outputs compared, Python blocks)."""
    env = environment(copy)
    commands = compared = pythons = 0
    for block in filter(runnable, read_blocks(path)):
        where = f"{block.page}:{block.line}"
        if block.lang == "python":
            named = NAMED.match(block.text)
            target = copy / (named.group(1) if named else f"_block_{block.line}.py")
            target.write_text(block.text + "\n")
            pythons += 1
            if named:  # a script: a later command runs it
                continue
            done = subprocess.run(
                [sys.executable, target.name], cwd=copy, env=env, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=COMMAND_TIMEOUT,
            )  # fmt: skip
            assert done.returncode == 0, f"{where}: the Python block failed:\n{done.stdout}"
            continue
        for command in session(block):
            done = subprocess.run(
                ["bash", "-c", shell_prefix() + command.line], cwd=copy, env=env, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=COMMAND_TIMEOUT,
            )  # fmt: skip
            assert done.returncode == 0, (
                f"{where}: `{command.line}` exited with {done.returncode}:\n{done.stdout}"
            )
            actual = done.stdout.splitlines()
            assert output_matches(command.expected, actual), (
                f"{where}: `{command.line}` printed\n"
                + "\n".join(actual)
                + "\n--- where the page shows\n"
                + "\n".join(command.expected)
            )
            commands += 1
            compared += any(line.strip() for line in command.expected)
    return commands, compared, pythons


def shown(path: Path) -> tuple[int, int, int]:
    """What a page shows to run: (commands, outputs shown, runnable Python blocks)."""
    blocks = [b for b in read_blocks(path) if runnable(b)]
    commands = [c for b in blocks if b.lang == "console" for c in session(b)]
    pythons = [b for b in blocks if b.lang == "python"]
    outputs = sum(any(line.strip() for line in c.expected) for c in commands)
    return len(commands), outputs, len(pythons)


# ------------------------------------------------------------------------------ the tests


def test_site_builds_without_warnings(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "html" / "api.html").exists()


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, id=p.name, marks=[pytest.mark.slow] if p.name in SLOW_PAGES else [])
        for p in PAGES
    ],
)
def test_page_examples_run_as_shown(path, tmp_path):
    copy = working_copy(tmp_path / "repo")
    assert run_page(path, copy) == shown(path)


def test_every_example_runs_or_says_why_not():
    totals = [0, 0, 0]
    for path in PAGES:
        for block in read_blocks(path):
            where = f"{block.page}:{block.line}"
            if block.lang in ("bash", "sh", "shell"):
                assert block.norun, f"{where}: a ```{block.lang} block needs <!-- norun: why -->"
            if block.lang == "console" and block.norun is None:
                assert session(block), f"{where}: a console block without a '$ ' command"
        blocks = [b for b in read_blocks(path) if runnable(b)]
        for i, block in enumerate(blocks):
            named = block.lang == "python" and NAMED.match(block.text)
            if named:  # a script is there to be run by a command after it
                later = [c.line for b in blocks[i:] if b.lang == "console" for c in session(b)]
                assert any(named.group(1) in line for line in later), (
                    f"{block.page}:{block.line}: no command after it runs {named.group(1)}"
                )
        for i, count in enumerate(shown(path)):
            totals[i] += count
    commands, compared, pythons = totals
    print(f"docs: {commands} commands ({compared} outputs compared), {pythons} Python blocks")
    assert commands >= LEAST_COMMANDS and compared >= LEAST_COMPARED, totals
    assert pythons >= LEAST_PYTHON, totals


def test_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 200
    assert "bash launch/run-local.sh" in text and "bash tests/run.sh" in text
    targets = re.findall(r"\]\((docs/[^)#]+)", text)
    assert targets
    for target in targets:
        assert (ROOT / target).exists(), f"README links to {target}, which is not there"


def test_layout_names_every_module():
    """docs/developer.md's map of mpigd/ names every module there and no other."""
    text = (ROOT / "docs" / "developer.md").read_text()
    start = text.index("| stage | modules | owns |")
    table = text[start : text.index("\n\n", start)]
    rows = [line.split("|") for line in table.splitlines()]
    named = {
        path
        for cells in rows
        if len(cells) > 3
        for path in re.findall(r"`([\w/]+\.(?:py|c|h|inc))`", cells[2])
    }
    package = ROOT / "mpigd"
    present = {
        p.relative_to(package).as_posix()
        for p in package.rglob("*")
        if p.suffix in (".py", ".c", ".h", ".inc") and "__pycache__" not in p.parts
    }
    assert not named - present, f"the layout names modules that are not there: {named - present}"
    missing = {p for p in present - named if not p.endswith("__init__.py")}
    assert not missing, f"the layout does not name: {sorted(missing)}"


@pytest.mark.parametrize(
    ("expected", "actual", "matches"),
    [
        (["a  b", "took 0.07s"], ["a b", "took 12.5s"], True),
        (["path .../data/x.h5"], ["path /tmp/q/data/x.h5"], True),
        (["first", "...", "last"], ["first", "1", "2", "last"], True),
        (["first", "...", "last"], ["first", "last"], True),
        (["a"], ["a", "b"], False),
        (["0.5"], ["0.6"], False),
    ],
)
def test_output_matching(expected, actual, matches):
    assert output_matches(expected, actual) is matches
