"""The layer rules of docs/architecture.md, checked on the source: who may import whom, and no cycles.

Every module of ``mirrord/`` is parsed with :mod:`ast`; every ``import`` counts wherever it stands (top
level, inside a function, under ``if TYPE_CHECKING:``), since each is a dependency a reader must know.
An edge goes from a file to the file it names (``from mirrord.sync import X`` names
``mirrord/sync/__init__.py``; ``from mirrord.oci import digest`` names ``mirrord/oci/digest.py``).
The implicit import of a parent package's ``__init__`` is not an edge. The root ``mirrord/__init__.py``
holds only the version and may be imported by anyone, as long as it imports nothing itself.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from setuptools import find_namespace_packages

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mirrord"


@cache
def modules() -> dict[str, Path]:
    """Every module of mirrord by dotted name (a package by its ``__init__.py``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _named(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    """The dotted names one import statement loads (``from X import y`` may name module X.y)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    for alias in node.names:
        candidate = f"{source}.{alias.name}"
        yield candidate if candidate in modules() else source


def _owner(name: str) -> str | None:
    """The mirrord file ``name`` lives in (``mirrord.oci.Digest`` -> ``mirrord.oci``); None outside."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def graph() -> dict[str, frozenset[str]]:
    """File-level import graph: module -> the mirrord modules it imports (itself left out)."""
    edges = {}
    for module, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name in _named(node, module, path.name == "__init__.py"):
                    owner = _owner(name) if name.split(".")[0] == "mirrord" else None
                    if owner is not None and owner != module:
                        targets.add(owner)
        edges[module] = frozenset(targets)
    return edges


def layer(module: str) -> str:
    """``mirrord.registry.http.client`` -> ``registry``; the root package is ``mirrord``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mirrord"


def area(module: str) -> str:
    """The sub-folder for the rules that look one level deeper (``registry.settings``)."""
    return ".".join(module.split(".")[1:3])


@dataclass(frozen=True)
class Rule:
    """Modules of ``layer`` may import only ``allowed`` layers (when given) and never ``forbidden``
    ones; ``only_from`` narrows a layer to some of its files (``{"registry": {"registry.settings"}}``)."""

    layer: str
    forbidden: frozenset[str] = frozenset()
    allowed: frozenset[str] | None = None
    only_from: tuple[tuple[str, frozenset[str]], ...] = ()

    def breaks(self, target: str) -> bool:
        """True when an import of ``target`` by a module of this layer breaks the rule."""
        other = layer(target)
        if other == self.layer or other == "mirrord":
            return False
        if other in self.forbidden or (self.allowed is not None and other not in self.allowed):
            return True
        return any(other == lay and area(target) not in files for lay, files in self.only_from)


def _rule(name: str, *, forbidden: str = "", allowed: str | None = None, **only: str) -> Rule:
    return Rule(
        name,
        frozenset(forbidden.split()),
        None if allowed is None else frozenset(allowed.split()),
        tuple((lay, frozenset(files.split())) for lay, files in only.items()),
    )


RULES = [
    _rule("core", allowed=""),
    _rule("oci", allowed="core"),
    _rule("registry", forbidden="copy sync daemon observe plan trust cli"),
    _rule("copy", forbidden="plan sync daemon observe cli"),
    _rule("plan", forbidden="copy sync daemon observe trust cli", registry="registry.settings"),
    _rule("trust", forbidden="sync daemon observe cli"),
    _rule("sync", forbidden="daemon cli"),
    _rule("daemon", forbidden="cli"),
    _rule("observe", allowed="core oci"),
]


def _broken(rule: Rule) -> list[str]:
    return sorted(
        f"{module} -> {target}"
        for module, targets in graph().items()
        if layer(module) == rule.layer
        for target in targets
        if rule.breaks(target)
    )


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.layer)
def test_layer_rule(rule: Rule) -> None:
    assert _broken(rule) == []


def test_the_root_package_imports_nothing_of_mirrord() -> None:
    assert graph()["mirrord"] == frozenset()


def test_only_test_code_imports_mirrord_testing() -> None:
    # tests/, bench/ and scripts/ may; inside mirrord/ only the test doubles themselves.
    users = sorted(
        f"{module} -> {target}"
        for module, targets in graph().items()
        if layer(module) != "testing"
        for target in targets
        if layer(target) == "testing"
    )
    assert users == []


def test_nothing_imports_the_cli_but_main() -> None:
    users = sorted(
        m for m, targets in graph().items() if "mirrord.cli" in targets and m != "mirrord.__main__"
    )
    assert users == []


def cycles(edges: dict[str, frozenset[str]] | None = None) -> list[list[str]]:
    """Strongly connected groups of more than one file (Tarjan) of ``edges`` (default: mirrord's
    graph), each sorted, in a stable order."""
    edges = graph() if edges is None else edges
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def _in_registry_http(group: list[str]) -> bool:
    return all(m.startswith("mirrord.registry.http.") for m in group)


def test_no_import_cycle_between_files() -> None:
    # Cycles wholly inside registry/http are the next test's (expected) failure, not this one's.
    assert [g for g in cycles() if not _in_registry_http(g)] == []


def test_no_import_cycle_in_registry_http() -> None:
    assert [g for g in cycles() if _in_registry_http(g)] == []


# -- the checker itself -----------------------------------------------------------------------------


def test_the_graph_sees_imports_in_functions_and_under_type_checking() -> None:
    edges = graph()
    # registry/hub.py imports the layout package inside Registries.open.
    assert "mirrord.registry.layout" in edges["mirrord.registry.hub"]
    # The cli imports everything inside its command functions.
    assert "mirrord.sync" in edges["mirrord.cli"]
    # ``from mirrord.oci import digest``-style imports name the module, not the package.
    assert "mirrord.registry.layout.reference" in edges["mirrord.testing.hub"]


def test_a_rule_and_the_cycle_finder_can_fail() -> None:
    copy_rule = next(r for r in RULES if r.layer == "copy")
    assert copy_rule.breaks("mirrord.plan.model")
    assert not copy_rule.breaks("mirrord.registry.base")
    plan_rule = next(r for r in RULES if r.layer == "plan")
    assert plan_rule.breaks("mirrord.registry.hub")
    assert not plan_rule.breaks("mirrord.registry.settings")
    assert next(r for r in RULES if r.layer == "core").breaks("mirrord.oci.digest")
    loop = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"})}
    assert cycles(loop) == [["a", "b", "c"]]
    assert cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


# -- the wheel --------------------------------------------------------------------------------------


def test_the_wheel_leaves_out_the_test_doubles() -> None:
    """The packages setuptools puts in the wheel, found with pyproject's own include/exclude
    (``[tool.setuptools.packages.find]``, namespace discovery as setuptools does for pyproject)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    find = config["tool"]["setuptools"]["packages"]["find"]
    packages = set(find_namespace_packages(str(ROOT), include=find["include"], exclude=find["exclude"]))
    assert "mirrord" in packages
    assert "mirrord.registry.http" in packages
    assert not [p for p in packages if p == "mirrord.testing" or p.startswith("mirrord.testing.")]
    # Every production folder ships (a new one that the patterns miss would be a broken install).
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")}
    assert folders - packages == {"mirrord.testing"}
