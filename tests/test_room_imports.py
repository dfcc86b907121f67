"""The rooms' imports point down (docs/ARCHITECTURE.md): read from the source
with `ast`, at module and at function level, so a lazy import counts too.

    affect ← inference ← train
                       ← export
                       ← realtime ← dashboard

`realtime`, `export` and `dashboard` import nothing from `train`; the one way
down into training is the torch backend that `inference` names as a string
("train.torch_backend:TorchBackend") and imports only when it is chosen. A
"module:attr" string naming a project module (as the export table names its
functions) counts as an import. Inside each room the modules import each other
without a loop."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOMS = ("affect", "inference", "train", "export", "realtime", "dashboard")
# What each room may import (besides itself and third-party packages).
MAY_IMPORT = {
    "affect": set(),
    "inference": {"affect"},
    "train": {"affect", "inference"},
    "export": {"affect", "inference"},
    "realtime": {"affect", "inference"},
    "dashboard": {"affect", "inference", "realtime"},
}
# The named ways up a room may take: only inference's name for the torch backend.
NAMED = {("inference", "train.torch_backend")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def walk(tree: ast.AST):
    """ast.walk, leaving out `if TYPE_CHECKING:` blocks (names for annotations, never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            test = child.test if isinstance(child, ast.If) else None
            if test is not None and "TYPE_CHECKING" in ast.unparse(test):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """(imported project module, line, named by a string) for every import in the file."""
    here = module_name(path)
    return imports_in(path.read_text(encoding="utf-8"), here, here if path.name == "__init__.py"
                      else here.rpartition(".")[0], str(path))


def imports_in(source: str, here: str, package: str, filename: str = "<source>") -> list[tuple[str, int, bool]]:
    """`imports_of` for source text of module `here` in `package` (relative imports resolve there)."""
    tree = ast.parse(source, filename)
    found = []
    for node in walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, False) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.append((base, node.lineno, False))
            found += [(f"{base}.{a.name}", node.lineno, False) for a in node.names]  # `from pkg import module`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and ":" in node.value:
            module, _, attr = node.value.partition(":")
            if module.split(".")[0] in ROOMS and attr.isidentifier() and all(p.isidentifier() for p in module.split(".")):
                found.append((module, node.lineno, True))
    return [(m, line, named) for m, line, named in found if m.split(".")[0] in ROOMS]


def sources(room: str) -> list[Path]:
    return sorted((REPO / room).rglob("*.py"))


def known_modules() -> set[str]:
    return {module_name(p) for room in ROOMS for p in sources(room)}


def resolve(name: str, known: set[str]) -> str | None:
    """The project module an import names (`from pkg import thing` may name a module or an attribute)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def pointing_up(room: str, imports: list[tuple[str, int, bool]]) -> list[tuple[str, int, bool]]:
    """The imports of a module in `room` that point up or sideways (not itself, not a room
    below it, not the torch backend that inference names)."""
    wrong = []
    for module, line, named in imports:
        target = module.split(".")[0]
        if target == room or target in MAY_IMPORT[room]:
            continue
        if named and any(room == r and module.startswith(m) for r, m in NAMED):
            continue
        wrong.append((module, line, named))
    return wrong


def test_rooms_import_only_the_rooms_below_them():
    wrong = []
    for room in ROOMS:
        for path in sources(room):
            for module, line, named in pointing_up(room, imports_of(path)):
                entry = f"{path.relative_to(REPO)}:{line} imports {module}{' (by name)' if named else ''}"
                if not any(entry.startswith(w.split(" (")[0] + ".") for w in wrong):  # once per `from x import`
                    wrong.append(entry)
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def import_graph(room: str) -> dict[str, set[str]]:
    known = known_modules()
    graph: dict[str, set[str]] = {}
    for path in sources(room):
        here = module_name(path)
        edges = graph.setdefault(here, set())
        for module, _, _ in imports_of(path):
            target = resolve(module, known)
            if target and target.split(".")[0] == room and target != here:
                edges.add(target)
                # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
                parts = target.split(".")
                edges.update(".".join(parts[:i]) for i in range(1, len(parts))
                             if ".".join(parts[:i]) != here and not here.startswith(".".join(parts[:i]) + "."))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


@pytest.mark.parametrize("room", ROOMS)
def test_no_import_loop_inside_a_room(room):
    cycle = find_cycle(import_graph(room))
    assert cycle is None, f"import loop in {room}/: {' → '.join(cycle)}"


def test_the_checks_see_a_loop_and_an_upward_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    found = imports_of(REPO / "inference" / "backends.py")
    assert ("train.torch_backend", True) in {(m, named) for m, _, named in found}
    assert not pointing_up("inference", found)  # the named torch backend is the one way up
    # An import of train from export, realtime or the dashboard is seen at module level, inside a
    # function (a lazy import) and as a "module:attr" name, and refused; the same from train is not.
    source = ("import train.fit\n"
              "def calibrate():\n    from train.evaluate import evaluate\n"
              "RUN = 'train.evaluate:evaluate'\n")
    for room in ("export", "realtime", "dashboard"):
        found = imports_in(source, f"{room}.calibrate", room)
        assert set(pointing_up(room, found)) >= {("train.fit", 1, False), ("train.evaluate", 3, False),
                                                 ("train.evaluate", 4, True)}
    assert not pointing_up("train", imports_in(source, "train.calibrate", "train"))
    assert pointing_up("affect", imports_in("from inference import backends\n", "affect.x", "affect"))
