"""Prune in memory: only tags inside the entry's filter, at most ``prune_max``, dry run deletes nothing."""

from __future__ import annotations

from mirrord.testing.hub import MemoryRegistries
from tests.copy.copykit import layer, push_image
from tests.sync.runkit import plan, push_tags, repo, results, run

ENTRY = """\
  - source: src.example/app
    target: dst.example/app
    tags: {semver: '>=0.1.0'}
    prune: true
    prune_max: %d
"""


async def _seeded() -> MemoryRegistries:
    hub = MemoryRegistries()
    await push_tags(repo(hub, "src.example/app"), "1.0.0")
    await push_tags(repo(hub, "dst.example/app"), "0.8.0", "0.9.0", "custom", seed="old")
    return hub


async def test_prune_deletes_only_tags_inside_the_filter() -> None:
    hub = await _seeded()
    [report] = await run(hub, plan(ENTRY % 10))
    assert report.ok, report
    assert results(report, ["pruned"]) == [
        ("dst.example/app:0.8.0", "pruned"),
        ("dst.example/app:0.9.0", "pruned"),
    ]
    # 'custom' is no version, so outside the semver filter: never touched.
    assert await repo(hub, "dst.example/app").tags_list() == ["1.0.0", "custom"]


async def test_prune_is_capped_by_prune_max() -> None:
    hub = await _seeded()
    [report] = await run(hub, plan(ENTRY % 1))
    assert results(report, ["pruned"]) == [("dst.example/app:0.8.0", "pruned")]
    assert await repo(hub, "dst.example/app").tags_list() == ["0.9.0", "1.0.0", "custom"]


async def test_prune_max_is_one_budget_for_every_target_of_the_entry() -> None:
    hub = await _seeded()
    await push_tags(repo(hub, "other.example/app"), "0.7.0", seed="other")
    entry = """\
  - source: src.example/app
    targets: [dst.example/app, other.example/app]
    tags: {semver: '>=0.1.0'}
    prune: true
    prune_max: 2
"""
    [report] = await run(hub, plan(entry))
    assert len(results(report, ["pruned"])) == 2
    left = await repo(hub, "dst.example/app").tags_list() + await repo(hub, "other.example/app").tags_list()
    assert len([t for t in left if t.startswith("0.")]) == 1


async def test_dry_run_shows_what_would_be_pruned_and_deletes_nothing() -> None:
    hub = await _seeded()
    hub.reset_calls()
    [report] = await run(hub, plan(ENTRY % 10), dry_run=True)
    assert report.ok, report
    assert results(report, ["would-prune", "pruned"]) == [
        ("dst.example/app:0.8.0", "would-prune"),
        ("dst.example/app:0.9.0", "would-prune"),
    ]
    assert results(report, ["would-copy"]) == [("src.example/app:1.0.0", "would-copy")]
    assert await repo(hub, "dst.example/app").tags_list() == ["0.8.0", "0.9.0", "custom"]
    writes = ("manifest_delete", "manifest_put", "blob_put", "blob_mount")
    assert not any(hub.registry("dst.example").calls[m] for m in writes)


async def test_a_tag_sharing_its_digest_with_a_kept_tag_is_not_pruned() -> None:
    hub = MemoryRegistries()
    await push_tags(repo(hub, "src.example/app"), "1.0.0")
    target = repo(hub, "dst.example/app")
    image = await push_image(target, [layer("shared", 200)], tag="0.9.0")
    await target.manifest_put("custom", image.raw, image.media_type)
    [report] = await run(hub, plan(ENTRY % 10))
    [row] = [i for i in report.images if i.source == "dst.example/app:0.9.0"]
    assert row.result == "failed"
    assert row.error is not None
    assert "custom" in row.error
    assert "0.9.0" in await target.tags_list()


async def test_no_prune_without_prune_true() -> None:
    hub = await _seeded()
    [report] = await run(hub, plan((ENTRY % 10).replace("prune: true", "prune: false")))
    assert results(report, ["pruned", "would-prune"]) == []
    assert await repo(hub, "dst.example/app").tags_list() == ["0.8.0", "0.9.0", "1.0.0", "custom"]
