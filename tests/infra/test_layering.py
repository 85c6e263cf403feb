"""Constructs do not depend on stacks: what a construct needs (the lake, tags, training
definitions) lives in stacks/constructs/, and the stacks import it from there."""

from __future__ import annotations

import ast

from stacks.platform import REPO_ROOT

CONSTRUCTS = REPO_ROOT / "stacks" / "constructs"


def stack_imports(source: str) -> set[str]:
    """The modules of stacks/ outside stacks/constructs/ that `source` imports (at the top
    or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {
        m for m in found if m.startswith("stacks.") and not f"{m}.".startswith("stacks.constructs.")
    }


def test_no_construct_imports_a_stack_module():
    found = {path.name: stack_imports(path.read_text()) for path in CONSTRUCTS.glob("*.py")}
    assert {name: modules for name, modules in found.items() if modules} == {}


def test_the_check_sees_stack_imports_and_only_them():
    assert stack_imports("from stacks.storage import Lake") == {"stacks.storage.Lake"}
    assert stack_imports("import stacks.network") == {"stacks.network"}
    assert stack_imports("def f():\n    from stacks import ml") == {"stacks.ml"}
    assert stack_imports("from stacks.constructs import checkov") == set()
    assert stack_imports("from stacks.constructs.lake import Lake") == set()
