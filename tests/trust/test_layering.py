"""trust sits beside copy: it imports registry, oci and core only, and copy never imports it."""

from __future__ import annotations

import ast
from pathlib import Path

import mirrord

PACKAGE = Path(mirrord.__file__).parent


def _imports(folder: str) -> set[str]:
    found = set()
    for path in (PACKAGE / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mirrord."):
                found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("mirrord."))
    return found


def test_trust_imports_only_the_layers_below() -> None:
    assert _imports("trust") <= {"trust", "registry", "oci", "core"}


def test_copy_reaches_trust_only_through_its_hooks() -> None:
    assert "trust" not in _imports("copy")
    assert "trust" not in _imports("registry") | _imports("oci") | _imports("plan")
