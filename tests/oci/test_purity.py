"""mirrord.oci is pure: importing it loads the standard library only, never aiohttp or asyncio."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import mirrord.oci

OCI_DIR = Path(mirrord.oci.__file__).parent
REPO_ROOT = OCI_DIR.parent.parent

#: The model may import itself and the core below it (the error root; stdlib only, like the model).
_MIRRORD_ALLOWED = ("mirrord.oci", "mirrord.core")
_LIST_MODULES = "import sys, json; print(json.dumps(sorted(sys.modules)))"


def _modules_after(statement: str) -> set[str]:
    """Every module in ``sys.modules`` of a fresh interpreter after running ``statement``."""
    result = subprocess.run(
        [sys.executable, "-c", f"{statement}\n{_LIST_MODULES}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    return set(json.loads(result.stdout))


def _top(module: str) -> str:
    return module.split(".")[0]


def test_the_brief_check_passes() -> None:
    """The literal check from the brief, relative to what a bare interpreter already loads."""
    baseline = {_top(m) for m in _modules_after("pass")}
    banned = {"aiohttp", "asyncio"} - baseline
    code = (
        "import mirrord.oci, sys; "
        f"assert not any(m.split('.')[0] in {sorted(banned)!r} for m in sys.modules), "
        "sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'asyncio'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=60)


def test_import_loads_only_the_standard_library() -> None:
    loaded = _modules_after("import mirrord.oci") - _modules_after("pass")
    assert not any(_top(m) == "aiohttp" for m in loaded)
    assert not any(_top(m) == "asyncio" for m in loaded)
    foreign = {m for m in loaded if _top(m) not in sys.stdlib_module_names and _top(m) != "mirrord"}
    assert foreign == set()
    outside = {
        m for m in loaded if _top(m) == "mirrord" and m != "mirrord" and not m.startswith(_MIRRORD_ALLOWED)
    }
    assert outside == set()


def _imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_sources_import_only_stdlib_and_the_package_itself() -> None:
    """Static check, so that a lazily imported dependency inside a function is caught too."""
    sources = sorted(OCI_DIR.glob("*.py"))
    assert sources
    for path in sources:
        for name in _imported_names(path):
            allowed = _top(name) in sys.stdlib_module_names - {"asyncio"} or name.startswith(_MIRRORD_ALLOWED)
            assert allowed, f"{path.name} imports {name}"
