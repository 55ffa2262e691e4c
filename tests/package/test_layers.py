"""The package's layers: each module imports only from its own room or from rooms below
it, and no import cycle hides behind a deferred (function-level) import.

The order, lowest first, is the one the style guide draws (partition -> data -> losses ->
objective -> optimisers -> driver/CLI): the optimisers see only functions of ``theta``
and the kernels only arrays, so neither imports the communicator's module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mpigd"

#: Rooms (a top-level module or subpackage of mpigd), lowest layer first; a room may
#: import from the rooms of lower layers only.
LAYERS = (
    ("_version", "errors", "host"),
    ("threads",),
    ("partition",),
    ("parallel",),
    ("kernels",),
    ("io",),
    ("scaling",),
    ("model", "objective", "optimize"),
    ("vectors",),
    ("evaluation", "train"),
    ("selection",),
    ("estimator_base",),
    ("estimators", "bench"),
    ("cli",),
    ("__main__", "__init__"),
)
LAYER = {room: depth for depth, rooms in enumerate(LAYERS) for room in rooms}
#: Rooms that must not see MPI, although it sits below them.
NO_MPI = {"kernels": "parallel", "optimize": "parallel"}


def _imports(path: Path) -> list[tuple[str, int]]:
    """The mpigd modules that ``path`` imports (anywhere in it), with line numbers."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = list(parts if path.name == "__init__.py" else parts[:-1])
    if path.name == "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "mpigd" or target.startswith("mpigd."):
                if node.module is None or target in ("mpigd",) or target.count(".") == 0:
                    found.extend((f"{target}.{alias.name}", node.lineno) for alias in node.names)
                else:
                    found.append((target, node.lineno))
        elif isinstance(node, ast.Import):
            found.extend(
                (alias.name, node.lineno) for alias in node.names if alias.name.startswith("mpigd.")
            )
    return found


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_room_has_a_layer():
    rooms = {_room(_module(path)) for path in SOURCES}
    assert rooms <= set(LAYER), f"rooms without a layer: {sorted(rooms - set(LAYER))}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_up_a_layer(path):
    room = _room(_module(path))
    wrong = []
    for target, line in _imports(path):
        other = _room(target)
        if other == room or other not in LAYER:
            continue
        if LAYER[other] >= LAYER[room] or NO_MPI.get(room) == other:
            wrong.append(f"line {line}: {target} ({other}, layer {LAYER[other]})")
    assert not wrong, f"{room} (layer {LAYER[room]}) imports up or across: {wrong}"


def test_no_import_cycle_between_modules():
    modules = {_module(path): path for path in SOURCES}
    graph = {}
    for module, path in modules.items():
        targets = set()
        for target, _ in _imports(path):
            while target and target not in modules:  # "pkg.mod.name" -> "pkg.mod"
                target = target.rpartition(".")[0]
            if target and target != module and not module.startswith(target + "."):
                targets.add(target)  # a package's own __init__ is not a cycle
        graph[module] = targets
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)
