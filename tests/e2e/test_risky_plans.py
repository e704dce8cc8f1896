"""Risky plans through the real CLI: `check` refuses two entries writing one repository and warns on
an empty plan; a sync whose tag filter matches nothing says so and lists the tags that are there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.helpers import entry_plan, images, run_cli, seed, write_plan
from tests.testbed.registry import RegistryServer

pytestmark = pytest.mark.integration


async def test_check_refuses_two_entries_writing_one_repository(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "mirrord.yaml",
        """
        version: 1
        sync:
          - name: app
            source: src.example.com/team/app
            target: mirror.example.com/app
          - name: app-typo
            source: src.example.com/team/aap
            target: mirror.example.com/app
            prune: true
        """,
    )
    result = await run_cli("check", "-c", str(plan))
    assert result.code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"mirrord: {plan}:8: sync[1].target: entry 'app-typo' writes mirror.example.com/app, which entry "
        "'app' (line 5) writes too: their tags would overwrite each other (and a prune would delete the "
        "other's); give each its own target repository, or both fixed, disjoint tags"
    ]


async def test_check_warns_on_an_empty_plan(tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "mirrord.yaml", "version: 1\nsync: []\n")
    result = await run_cli("check", "-c", str(plan))
    assert result.code == 0
    assert result.stderr.splitlines() == [
        f"mirrord: warning: {plan}: sync: the plan has no entries; nothing will be mirrored"
    ]


async def test_a_filter_matching_nothing_warns_with_the_available_tags(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("1.0.0", "1.1.0", "2.0.0"))
    plan = entry_plan(
        tmp_path / "p.yaml", plain_registry.host, target.host, unique_repo, "{include: ['^v1']}", name="app"
    )
    result = await run_cli("sync", "-c", str(plan))
    assert result.code == 0, result.output
    warnings = [json.loads(line) for line in result.stderr.splitlines() if '"warning"' in line]
    assert len(warnings) == 1, result.stderr
    assert warnings[0]["msg"] == "tag filter matches none of the source's tags"
    assert warnings[0]["entry"] == "app"
    assert warnings[0]["available"] == ["2.0.0", "1.1.0", "1.0.0"]  # newest first
    assert "nothing to do" in result.stdout


async def test_a_missing_tag_lists_the_tags_that_are_there(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("1.0.0", "1.1.0"))
    plan = entry_plan(
        tmp_path / "p.yaml", plain_registry.host, target.host, unique_repo, "['1.0.0', '1.2.0']", name="app"
    )
    report = tmp_path / "r.json"
    result = await run_cli("sync", "-c", str(plan), "--report", str(report))
    assert result.code == 1
    failed = [i for i in json.loads(report.read_text())["images"] if i["result"] == "failed"]
    assert [i["source"].rsplit(":", 1)[1] for i in failed] == ["1.2.0"]
    assert failed[0]["error"].endswith("not found; tags there: 1.1.0, 1.0.0")
    assert "tags there: 1.1.0, 1.0.0" in result.stdout
