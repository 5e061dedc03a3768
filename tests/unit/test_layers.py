"""The tooling's import graph runs one way: toolbox < families < distros < release < repo < channels.

An arrow from a lower layer to a higher one (a "back arrow") is a knot: the lower layer could not be
read, tested or reused without the higher one. Imports under `if TYPE_CHECKING:` are not arrows at
run time (a family is handed a catalog target, it never imports distros). The figures for the issue
notes come from `python3 -m pytest tests/unit/test_layers.py -s`.
"""
from __future__ import annotations

import ast
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
LAYERS = ("toolbox", "families", "distros", "release", "repo", "channels")


def _modules() -> dict[str, Path]:
    found = {}
    for package in LAYERS:
        for path in (TOP / package).rglob("*.py"):
            name = ".".join(path.relative_to(TOP).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _runtime_imports(tree: ast.AST) -> list[str]:
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names.extend(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def import_graph() -> set[tuple[str, str]]:
    modules = _modules()
    edges = set()
    for name, path in modules.items():
        for target in _runtime_imports(ast.parse(path.read_text())):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add((name, target))
    return edges


def back_arrows(edges: set[tuple[str, str]]) -> list[tuple[str, str]]:
    rank = {p: i for i, p in enumerate(LAYERS)}
    return sorted((a, b) for a, b in edges if rank[a.split(".")[0]] < rank[b.split(".")[0]])


def test_no_import_runs_back_up_the_layers():
    edges = import_graph()
    print(f"\n{len(_modules())} modules, {len(edges)} import arrows, back arrows: {back_arrows(edges)}")
    assert back_arrows(edges) == []


def test_the_families_import_nothing_above_toolbox():
    """What differs per package family lives in families/ and needs nothing of the layers that use it."""
    for a, b in import_graph():
        if a.startswith("families"):
            assert b.split(".")[0] in ("toolbox", "families"), f"{a} imports {b}"


def test_no_other_module_names_a_family_by_its_string():
    """No `if family == "deb"` outside families/: a new family must not need edits elsewhere."""
    offenders = []
    for name, path in _modules().items():
        if name.startswith("families"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if any(f'family == "{f}"' in line or f"family == '{f}'" in line for f in ("deb", "rpm", "apk", "arch", "tgz")):
                offenders.append(f"{path.relative_to(TOP)}:{n}: {line.strip()}")
    assert offenders == []
