"""README.md stays true: its example plan passes ``mirrord check``, the quick start is still the two
commands, and every file it links to exists.

The example plan names secrets the way a deployment provides them (``password_file: /run/secrets/...``).
``mirrord check`` reads such files, so the test runs it in a private mount namespace with a tmpfs on
/run holding placeholder files at exactly those paths: the plan is checked verbatim and the host's /run
is untouched. ``password_env`` variables are set to placeholders.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import ROOT
from tests.testbed.tools import in_ci, require_tool

README = ROOT / "README.md"
FILE_KEYS = {"password_file", "docker_config", "ca_file", "client_cert", "client_key", "trigger_token_file"}


def section(title: str) -> str:
    """The text of the ``## title`` section (up to the next ``## ``)."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def example_plan() -> str:
    """The first ```yaml block under "The sync plan"."""
    match = re.search(r"```yaml\n(.*?)```", section("The sync plan"), re.S)
    assert match, "no ```yaml block under '## The sync plan'"
    return match.group(1)


def _walk(node: Any) -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [(k, v) for k, v in node.items()] + [kv for v in node.values() for kv in _walk(v)]
    if isinstance(node, list):
        return [kv for v in node for kv in _walk(v)]
    return []


def _check_in_namespace(
    plan: Path, files: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[bytes]:
    unshare = require_tool("unshare")
    script = (
        'mount -t tmpfs tmpfs /run && for f in "$@"; do mkdir -p "${f%/*}" && echo placeholder >"$f"; done'
    )
    script += ' && exec "$0" -m mirrord check -c "$MIRRORD_TEST_PLAN"'
    args = [unshare, "-m", "--propagation", "private", "sh", "-c", script, sys.executable, *files]
    ran = subprocess.run(args, capture_output=True, env={**env, "MIRRORD_TEST_PLAN": str(plan)}, check=False)
    if ran.returncode != 0 and b"unshare" in ran.stderr and b"Operation not permitted" in ran.stderr:
        message = f"cannot make a private mount namespace: {ran.stderr.decode().strip()}"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return ran


@pytest.mark.integration
def test_the_example_plan_passes_mirrord_check(tmp_path: Path) -> None:
    text = example_plan()
    pairs = _walk(yaml.safe_load(text))
    files = sorted({str(v) for k, v in pairs if k in FILE_KEYS})
    for path in files:
        assert path.startswith("/run/"), (
            f"{path}: keep the README's example secrets under /run (see docstring)"
        )
    env = dict(os.environ, **{str(v): "placeholder" for k, v in pairs if k == "password_env"})
    env.pop("MIRRORD_CONFIG", None)
    plan = tmp_path / "mirrord.yaml"
    plan.write_text(text)
    ran = _check_in_namespace(plan, files, env)
    assert ran.returncode == 0, ran.stderr.decode()
    resolved = yaml.safe_load(ran.stdout)
    assert [e["name"] for e in resolved["sync"]] == ["nginx"]
    assert b"placeholder" not in ran.stdout


def test_the_plan_section_points_to_the_full_reference() -> None:
    assert "config/mirrord.yaml" in section("The sync plan")
    assert (ROOT / "config" / "mirrord.yaml").is_file()


def test_the_quick_start_is_two_commands() -> None:
    (block,) = re.findall(r"```sh\n(.*?)```", section("Quick start (the two commands)"), re.S)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make demo", "make test"]


def test_the_operations_sections_exist() -> None:
    for title in (
        "Install",
        "Running under systemd",
        "Running under Kubernetes",
        "Metrics and alerts",
        "Troubleshooting",
    ):
        assert section(title).strip()


def test_every_linked_file_exists() -> None:
    links = re.findall(r"\]\(([^)#:]+)\)", README.read_text())
    assert links
    for link in links:
        assert (ROOT / link).exists(), link
