"""``mirrord.cliutil`` is part of the command-line layer: only ``mirrord.cli`` (and cliutil itself)
import it, and it never imports ``mirrord.cli`` (docs/architecture.md)."""

from __future__ import annotations

from tests.test_architecture import graph, layer


def test_only_the_cli_imports_cliutil() -> None:
    importers = sorted(
        module
        for module, targets in graph().items()
        if any(layer(t) == "cliutil" for t in targets) and layer(module) != "cliutil"
    )
    assert importers == ["mirrord.cli"]


def test_cliutil_does_not_import_the_cli() -> None:
    assert not [m for m, targets in graph().items() if layer(m) == "cliutil" and "mirrord.cli" in targets]
