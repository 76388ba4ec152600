"""The package's import graph (docs/architecture.md): no circle, and each room imports only what it may.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` of
``bigru_lightning`` anywhere in a file (module level, inside functions, under ``TYPE_CHECKING``).
``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bigru_lightning"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imports(path: Path, modules: set[str] | None = None) -> set[str]:
    """Every absolute name imported in ``path``: ``from pkg import name`` gives ``pkg.name`` when that is
    one of ``modules`` (a submodule), else ``pkg``; both when ``modules`` is None."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import of {node.module}; the package uses absolute imports"
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                if modules is None:
                    names.update((node.module, name))
                else:
                    names.add(name if name in modules else node.module)
    return names


def import_graph() -> dict[str, set[str]]:
    """Each module of the package and the modules of the package it imports."""
    modules = _modules()
    return {name: _imports(path, set(modules)) & set(modules) - {name} for name, path in modules.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph[node]):
            cycle = visit(target)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def _in(room: str, name: str) -> bool:
    return name == room or name.startswith(room + ".")


def test_the_graph_sees_the_package() -> None:
    graph = import_graph()
    assert {"bigru_lightning.model", "bigru_lightning.model.network"} & graph["bigru_lightning.module"]
    assert "bigru_lightning.data.readers" in graph["bigru_lightning.data.store"]


def test_the_import_graph_has_no_circle() -> None:
    cycle = _find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_a_circle_would_be_found() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_model_package_is_plain_torch() -> None:
    for name, path in _modules().items():
        if _in("bigru_lightning.model", name):
            wrong = {i for i in _imports(path) if _in("lightning", i) or _in("bigru_lightning.module", i)}
            wrong |= {i for i in _imports(path) if _in("bigru_lightning", i) and not _in("bigru_lightning.model", i)}
            assert not wrong, f"{name} imports {sorted(wrong)}; the model package imports torch and itself only"


def test_data_never_imports_the_model_or_the_module() -> None:
    for name, path in _modules().items():
        if _in("bigru_lightning.data", name):
            wrong = {i for i in _imports(path) if _in("bigru_lightning.model", i) or _in("bigru_lightning.module", i)}
            assert not wrong, f"{name} imports {sorted(wrong)}; data/ never imports the model or the module"
