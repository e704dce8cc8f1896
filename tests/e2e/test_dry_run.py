"""``mirrord sync --dry-run`` runs the checks of a real pass and tells the truth per tag and target:
would-copy (bytes), unchanged, missing, refused. Through the real CLI against real registries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    entry_plan,
    images,
    read_report,
    registries_yaml,
    run_cli,
    seed,
    tags_at,
    write_plan,
)
from tests.e2e.test_unreachable import closed_port
from tests.testbed.proxy import FaultProxy
from tests.testbed.registry import RegistryServer

pytestmark = [pytest.mark.integration]


async def test_present_and_absent_tags_are_both_reported_and_the_real_run_agrees(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("present"))
    async with FaultProxy(plain_registry.url) as src, FaultProxy(target.url) as dst:
        plan = entry_plan(
            tmp_path / "plan.yaml", src.host, dst.host, unique_repo, "[present, absent]", name="e2e"
        )
        dry = await run_cli("sync", "-c", str(plan), "--dry-run", "--report", str(tmp_path / "dry.json"))
        assert dry.code == 1, dry.output  # the real pass would fail on 'absent'
        rows = {r["source"].rsplit(":", 1)[1]: r for r in read_report(tmp_path / "dry.json")}
        assert rows["present"]["result"] == "would-copy"
        assert rows["present"]["target"] == f"{dst.host}/{unique_repo}"
        assert rows["present"]["bytes"] > 0
        assert rows["absent"]["result"] == "missing"
        printed = dry.stdout.splitlines()
        assert any(line.startswith("e2e: would-copy") and ":present -> " in line for line in printed), printed
        assert any(line.startswith("e2e: missing") and ":absent" in line for line in printed), printed
        assert "nothing to do" not in dry.stdout
        # The same checks as a real pass (target HEADed), and nothing written or read in bulk.
        assert dst.count("HEAD", "manifest") >= 1
        assert [m for m, _, _ in dst.requests if m not in ("HEAD", "GET")] == []
        assert src.count("GET", "blob") == 0
        assert await tags_at(target.host, unique_repo) == []
        real = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "real.json"))
        assert real.code == 1, real.output
        copied = {r["source"].rsplit(":", 1)[1]: r for r in read_report(tmp_path / "real.json")}
        assert {tag: r["result"] for tag, r in copied.items()} == {"present": "copied", "absent": "failed"}
        assert rows["present"]["bytes"] >= copied["present"]["bytes"] > 0
        again = await run_cli("sync", "-c", str(plan), "--dry-run", "--report", str(tmp_path / "again.json"))
    after = {r["source"].rsplit(":", 1)[1]: r["result"] for r in read_report(tmp_path / "again.json")}
    assert after == {"present": "unchanged", "absent": "missing"}, again.output


async def test_a_pinned_digest_that_does_not_exist_is_missing_not_would_copy(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("1.0"))
    nowhere = "sha256:" + "0" * 64
    plan = write_plan(
        tmp_path / "plan.yaml",
        f"""
version: 1
{registries_yaml([plain_registry.host, target.host])}
sync:
  - name: pinned
    source: {plain_registry.host}/{unique_repo}@{nowhere}
    target: {target.host}/{unique_repo}:pinned
""",
    )
    dry = await run_cli("sync", "-c", str(plan), "--dry-run", "--report", str(tmp_path / "dry.json"))
    assert dry.code == 1, dry.output
    (row,) = read_report(tmp_path / "dry.json")
    assert row["result"] == "missing", row
    assert row["error"] == "source digest not found"


async def test_each_target_gets_its_own_row_and_an_unreachable_one_is_refused(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("1.0"))
    await seed(target.host, unique_repo, images("1.0"))  # the same image: up to date there
    dead = closed_port()
    plan = write_plan(
        tmp_path / "plan.yaml",
        f"""
version: 1
{registries_yaml([plain_registry.host, target.host, dead])}
sync:
  - name: two
    source: {plain_registry.host}/{unique_repo}
    targets: [{target.host}/{unique_repo}, {dead}/{unique_repo}]
    tags: ['1.0']
""",
    )
    dry = await run_cli("sync", "-c", str(plan), "--dry-run", "--report", str(tmp_path / "dry.json"))
    assert dry.code == 1, dry.output
    rows = {r["target"]: r for r in read_report(tmp_path / "dry.json")}
    assert rows[f"{target.host}/{unique_repo}"]["result"] == "unchanged"
    assert rows[f"{dead}/{unique_repo}"]["result"] == "refused"
    assert "cannot connect" in rows[f"{dead}/{unique_repo}"]["error"]
    assert json.loads((tmp_path / "dry.json").read_text())["interrupted"] is False
