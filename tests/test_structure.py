"""The shape of the house: data flows one way through atenea's layers, no two files import each
other in a loop, and no source file grows past what one reader holds in mind.

Read from the source with ``ast`` (nothing is imported), every import counted, those inside
functions too: a lazy import that dodges a circle at run time is still a circle for the reader.
"""

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SOURCE / "atenea"

# Lowest first: a layer imports only from layers before it (DESIGN.md's list; _native is the
# C kernel below everything). The package's face, atenea/__init__.py (atenea.attention,
# atenea.generate, ...), stands just below the command line, its one user inside the package;
# __main__.py runs the command line, above all.
LAYERS = [
    "_native",
    "attention",
    "nn",
    "models",
    "generation",
    "retrieval",
    "training",
    "inspect",
    "cli",
]
FACE = LAYERS.index("cli") - 0.5
MOST_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path, known: dict[str, Path]) -> set[str]:
    """The atenea modules ``path`` imports, anywhere in the file. ``from a.b import c`` names
    the module ``a.b.c`` when it is one, else ``a.b`` (c is a name defined there)."""
    found = set()
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in known else base)
    return {name for name in found if name in known and name != here}


def layer_of(module: str) -> float:
    parts = module.split(".")
    if len(parts) == 1:
        return FACE
    if parts[1] == "__main__":
        return len(LAYERS)
    return LAYERS.index(parts[1])


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported_modules(path, known) for name, path in known.items()}


def test_every_package_has_a_layer():
    packages = {name.split(".")[1] for name in modules() if name.count(".") >= 1}
    assert packages - {"__main__"} <= set(LAYERS), "a new package needs its place in LAYERS"


def test_no_import_runs_up_the_layers():
    upward = [
        f"{source} imports {target}"
        for source, targets in import_graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(source)
    ]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of ``graph``, the ones with more than one module."""
    index, low, on_stack, stack, order, found = {}, {}, set(), [], [0], []

    def visit(node):
        index[node] = low[node] = order[0]
        order[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle():
    circles = strongly_connected(import_graph())
    assert not circles, "files that import each other in a loop:\n" + "\n".join(
        " <-> ".join(circle) for circle in circles
    )


def test_the_circle_finder_finds_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: module_name(p))
def test_source_files_stay_readable(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MOST_LINES, f"{path.name}: {lines} lines; split it along its seams"
