"""A pattern entry through the runner, in memory: every matching repository mirrored below the
target's /**, nothing outside the pattern, and a repository added later picked up on the next pass
with one tag list and no manifest GET for each unchanged repository."""

from __future__ import annotations

from mirrord.sync import SyncRunner
from mirrord.testing.hub import MemoryRegistries
from tests.sync.runkit import plan, push_tags, repo

ENTRY = """\
  - name: team
    source: src.example/team/**
    target: dst.example/mirror/**
    tags: {exclude: ['^skip']}
    repositories: {exclude: ['-old$']}
"""


async def _seeded() -> MemoryRegistries:
    hub = MemoryRegistries()
    for name in ("team/a", "team/b/c", "team/d-old", "other/x"):
        await push_tags(repo(hub, f"src.example/{name}"), "1", "skip-1", seed=name)
    return hub


async def test_a_pattern_entry_mirrors_each_matching_repository() -> None:
    hub = await _seeded()
    [report] = await SyncRunner(plan(ENTRY), hub).run_pass()
    assert report.ok, report
    assert report.entry == "team"
    assert report.repositories == ["team/a", "team/b/c"]
    assert await hub.catalog("dst.example") == ["mirror/a", "mirror/b/c"]
    assert await repo(hub, "dst.example/mirror/b/c").tags_list() == ["1"]


async def test_the_next_pass_picks_up_a_new_repository_without_manifest_gets_for_the_rest() -> None:
    hub = await _seeded()
    runner = SyncRunner(plan(ENTRY), hub)
    await runner.run_pass()
    await runner.run_pass()  # the pass after a copy looks for the copied images' artifacts once
    await push_tags(repo(hub, "src.example/team/new"), "1", seed="new")
    hub.reset_calls()
    [report] = await runner.run_pass()
    assert report.ok, report
    assert "mirror/new" in await hub.catalog("dst.example")
    for name in ("team/a", "team/b/c"):
        calls = repo(hub, f"src.example/{name}").calls
        assert calls["tags_list"] == 1, (name, calls)
        assert calls["manifest_get"] == 0, (name, calls)
    assert sorted((i.source, i.result) for i in report.images) == [
        ("src.example/team/a:1", "unchanged"),
        ("src.example/team/b/c:1", "unchanged"),
        ("src.example/team/new:1", "copied"),
    ]


async def test_dry_run_lists_the_repositories_and_writes_nothing() -> None:
    hub = await _seeded()
    [report] = await SyncRunner(plan(ENTRY), hub).run_pass(dry_run=True)
    assert report.repositories == ["team/a", "team/b/c"]
    assert {i.result for i in report.images} == {"would-copy"}
    assert await hub.catalog("dst.example") == []
