"""The registry package's modules import each other in one direction only: no cycle, and
none hidden behind `TYPE_CHECKING` (uploads and downloads see a repository through its
handle, `mirror.registry.handle`, never `mirror.registry.repository`)."""

from __future__ import annotations

import ast
from pathlib import Path

import mirror.registry

PACKAGE = "mirror.registry"
FOLDER = Path(mirror.registry.__file__).parent


def _module_name(path: Path) -> str:
    return PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"


def _targets(node: ast.Import | ast.ImportFrom, modules: set[str]) -> set[str]:
    """The package's modules an import statement names (`from mirror.registry import x`
    names the module `x` when there is one, else the package)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    if node.level or node.module is None:
        raise AssertionError(f"a relative import in {PACKAGE}: line {node.lineno}")
    if node.module == PACKAGE:
        return {
            f"{PACKAGE}.{alias.name}" if f"{PACKAGE}.{alias.name}" in modules else PACKAGE
            for alias in node.names
        }
    return {node.module} if node.module in modules else set()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str]) -> tuple[set[str], set[str]]:
    """The package's modules `path` imports: (at run time, only when type checking)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            hidden.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    at_run_time: set[str] = set()
    type_only: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            (type_only if id(node) in hidden else at_run_time).update(_targets(node, modules))
    return at_run_time - {_module_name(path)}, type_only


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    paths = sorted(FOLDER.glob("*.py"))
    modules = {_module_name(path) for path in paths}
    graph: dict[str, set[str]] = {}
    hidden: dict[str, set[str]] = {}
    for path in paths:
        graph[_module_name(path)], hidden[_module_name(path)] = _imports(path, modules)
    return graph, hidden


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, as the modules along it, or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for imported in sorted(graph[module]):
            found = visit(imported, [*path, module])
            if found is not None:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module, [])
        if found is not None:
            return found
    return None


def test_the_registry_modules_import_each_other_without_a_cycle() -> None:
    graph, hidden = _graph()
    assert {f"{PACKAGE}.download", f"{PACKAGE}.upload", f"{PACKAGE}.repository"} <= set(graph)
    assert _cycle({m: graph[m] | hidden[m] for m in graph}) is None


def test_no_registry_module_imports_another_only_when_type_checking() -> None:
    _, hidden = _graph()
    assert {module: found for module, found in hidden.items() if found} == {}


def test_uploads_and_downloads_see_a_repository_only_through_its_handle() -> None:
    graph, _ = _graph()
    for module in ("download", "upload"):
        assert f"{PACKAGE}.repository" not in graph[f"{PACKAGE}.{module}"]
        assert f"{PACKAGE}.handle" in graph[f"{PACKAGE}.{module}"]


def test_a_cycle_is_found_when_there_is_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
