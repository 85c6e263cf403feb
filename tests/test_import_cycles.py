"""No import cycle in dataplatform/: each module's imports (at the top and inside
functions, where a cycle hides), as a graph of the package's modules, has no strongly
connected component larger than one module."""

from __future__ import annotations

import ast
from pathlib import Path

from stacks.platform import REPO_ROOT

PACKAGE = REPO_ROOT / "dataplatform"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1]
                        + ([base] if base else [])
                    )
                # `from pkg import mod` imports the module pkg.mod when there is one
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_imports():
    graph = import_graph()
    assert "dataplatform.cli.context" in graph["dataplatform.cli.ml"]
    assert "dataplatform.cli.ml" in graph["dataplatform.cli"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_dataplatform_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_no_module_imports_a_private_name_of_another():
    """`from module import _name` (or `module._name`) across modules: a private helper used
    elsewhere belongs to a shared module, under a public name."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        modules = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dataplatform"):
                found += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith("_")]
                modules |= {a.asname or a.name for a in node.names}
            elif (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
            ):
                found.append(f"{path.name}: {node.value.id}.{node.attr}")
    assert found == []


def test_the_aws_target_imports_nothing_of_the_local_one():
    """What both targets need (results, registry and gate, progress, paths) lives outside
    runtime/local/ and runtime/aws/."""
    graph = import_graph()
    crossing = {
        (module, imported)
        for module, imports in graph.items()
        if module.startswith("dataplatform.runtime.aws")
        for imported in imports
        if imported.startswith("dataplatform.runtime.local")
    }
    assert crossing == set()
