"""Prune never works from a tag list that was not read: a mistyped source, a registry answering 404
for the tag list (some do for an expired token) or a source listing no tag keeps every mirrored tag.
Through the real CLI against real registries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    images,
    read_report,
    registries_yaml,
    run_cli,
    seed,
    tags_at,
    write_plan,
)
from tests.testbed.proxy import FaultProxy
from tests.testbed.registry import RegistryServer

pytestmark = [pytest.mark.integration]

MIRRORED = ("1.0.0", "1.1.0", "2.0.0")


def _prune_plan(path: Path, source: str, target: str, source_repo: str, target_repo: str) -> Path:
    return write_plan(
        path,
        f"""
version: 1
{registries_yaml([source, target])}
sync:
  - name: app
    source: {source}/{source_repo}
    target: {target}/{target_repo}
    tags: {{semver: '>=0.1.0'}}
    prune: true
    prune_max: 100
""",
    )


async def test_a_mistyped_source_with_prune_keeps_every_mirrored_tag(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, f"{unique_repo}/app", images(*MIRRORED))
    await seed(target.host, f"{unique_repo}/app", images(*MIRRORED))
    # team/aap for team/app: the tag list of a repository that does not exist answers NAME_UNKNOWN.
    plan = _prune_plan(
        tmp_path / "plan.yaml", plain_registry.host, target.host, f"{unique_repo}/aap", f"{unique_repo}/app"
    )
    for extra in (["--dry-run"], []):
        result = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r.json"), *extra)
        assert result.code == 1, result.output
        missing = f"{plain_registry.host}/{unique_repo}/aap"
        line = f"app: FAILED: repository {missing} not found (HTTP 404 NAME_UNKNOWN)"
        assert line in result.stdout.splitlines(), result.stdout
        assert result.stdout.splitlines()[-1].endswith("1 entry failed"), result.stdout
        assert [r for r in read_report(tmp_path / "r.json") if "prune" in r["result"]] == []
        entries = json.loads((tmp_path / "r.json").read_text())["entries"]
        assert [(e["entry"], e["ok"]) for e in entries] == [("app", False)]
        assert await tags_at(target.host, f"{unique_repo}/app") == list(MIRRORED)


async def test_a_tag_list_answering_404_is_an_entry_error_not_an_empty_list(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images(*MIRRORED))
    await seed(target.host, unique_repo, images(*MIRRORED, "0.9.0"))
    async with FaultProxy(plain_registry.url) as src:
        # As some registries answer for an expired token: 404 on the tag list, however often asked.
        src.add_fault("status", method="GET", path_re=r"/tags/list", status=404, times=None)
        plan = _prune_plan(tmp_path / "plan.yaml", src.host, target.host, unique_repo, unique_repo)
        result = await run_cli("sync", "-c", str(plan))
        assert result.code == 1, result.output
        assert f"app: FAILED: repository {src.host}/{unique_repo} not found" in result.stdout
        assert src.count("GET", "tags") >= 1
        # Without the fault the same plan prunes 0.9.0 (the source does not list it): the fault
        # alone kept it.
        assert "0.9.0" in await tags_at(target.host, unique_repo)
        src.clear_faults()
        result = await run_cli("sync", "-c", str(plan))
        assert result.code == 0, result.output
    assert await tags_at(target.host, unique_repo) == list(MIRRORED)


async def test_a_source_listing_no_tag_prunes_nothing(
    registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(target.host, unique_repo, images(*MIRRORED))
    layout = tmp_path / "empty-layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    plan = write_plan(
        tmp_path / "plan.yaml",
        f"""
version: 1
{registries_yaml([target.host])}
sync:
  - name: app
    source: oci:{layout}
    target: {target.host}/{unique_repo}
    prune: true
""",
    )
    result = await run_cli("sync", "-c", str(plan))
    assert result.code == 0, result.output
    assert "prune skipped: the source lists no tags" in result.stderr
    assert await tags_at(target.host, unique_repo) == list(MIRRORED)


async def test_prune_max_caps_a_pass_across_every_target(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    first, second = registry_factory("plain"), registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("1.0.0"))
    for mirror in (first, second):
        await seed(mirror.host, unique_repo, images("0.1.0", "0.2.0", "0.3.0", seed_base=20))
    plan = write_plan(
        tmp_path / "plan.yaml",
        f"""
version: 1
{registries_yaml([plain_registry.host, first.host, second.host])}
sync:
  - name: app
    source: {plain_registry.host}/{unique_repo}
    targets: [{first.host}/{unique_repo}, {second.host}/{unique_repo}]
    prune: true
    prune_max: 4
""",
    )
    result = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r.json"))
    assert result.code == 0, result.output
    assert [r["result"] for r in read_report(tmp_path / "r.json")].count("pruned") == 4
    left = [t for m in (first, second) for t in await tags_at(m.host, unique_repo) if t.startswith("0.")]
    assert len(left) == 6 - 4
