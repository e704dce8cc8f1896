"""Hints a pass gives: a filter that selects nothing, and the tags there when a named one is missing."""

from __future__ import annotations

import logging

import pytest

from mirrord.registry.errors import RegistryError
from mirrord.sync.hints import listing, missing_tags, warn_if_nothing_selected
from mirrord.testing.hub import MemoryRegistries
from tests.sync.runkit import plan, push_tags, repo, results, run


async def test_missing_tags_reads_the_tag_list_once_and_never_reports_digests() -> None:
    hub = MemoryRegistries()
    source = repo(hub, "src.example.com/app")
    await push_tags(source, "1.0.0", "1.10.0", "1.2.0")
    digest = "sha256:" + "0" * 64
    missing, present = await missing_tags(source, ["1.2.0", "9.9", digest])
    assert missing == {"9.9"}
    assert present == ["1.10.0", "1.2.0", "1.0.0"]  # newest first, by version
    assert await missing_tags(source, [digest]) == (set(), [])


async def test_missing_tags_says_nothing_when_the_tag_list_cannot_be_read() -> None:
    hub = MemoryRegistries()
    source = repo(hub, "src.example.com/app")
    await push_tags(source, "1.0")

    async def refuse(method: str, repository: object, reference: str) -> None:
        if method == "tags_list":
            raise RegistryError("refused")

    hub.faults.hook = refuse
    assert await missing_tags(source, ["2.0"]) == (set(), [])


async def test_a_pass_names_the_tags_there_for_a_missing_exact_tag() -> None:
    hub = MemoryRegistries()
    await push_tags(repo(hub, "src.example.com/app"), "1.0", "2.0")
    the_plan = plan(
        "  - {name: app, source: src.example.com/app, target: dst.example.com/app, tags: ['1.0', '3.0']}\n"
    )
    (report,) = await run(hub, the_plan)
    assert results(report, ["copied", "failed"]) == [
        ("src.example.com/app:1.0", "copied"),
        ("src.example.com/app:3.0", "failed"),
    ]
    failed = next(i for i in report.images if i.result == "failed")
    assert failed.error is not None
    assert failed.error.endswith("; tags there: 2.0, 1.0")


async def test_a_mistyped_source_with_exact_tags_says_the_repository_is_not_there() -> None:
    hub = MemoryRegistries()
    await push_tags(repo(hub, "src.example.com/app"), "1.0")
    the_plan = plan(
        "  - {name: app, source: src.example.com/aap, target: dst.example.com/app, tags: ['1.0', '2.0']}\n"
    )
    (report,) = await run(hub, the_plan)
    assert [i.result for i in report.images] == ["failed", "failed"]
    for image in report.images:
        assert image.error is not None
        assert image.error.endswith("; repository src.example.com/aap not found (NAME_UNKNOWN)"), image.error


def test_a_filter_selecting_nothing_warns_once_with_the_newest_tags(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mirrord.sync")
    entry = plan("  - {name: app, source: src.example.com/app, target: dst.example.com/app}\n").entries[0]
    tags = [f"1.{i}.0" for i in range(15)]
    warn_if_nothing_selected(entry, tags, ["1.0.0"])
    assert caplog.records == []
    warn_if_nothing_selected(entry, tags, [])
    warn_if_nothing_selected(entry, [], [])
    first, second = caplog.records
    assert first.getMessage() == "tag filter matches none of the source's tags"
    assert first.fields["available"] == [f"1.{i}.0" for i in range(14, 4, -1)]  # type: ignore[attr-defined]
    assert first.fields["tags"] == 15  # type: ignore[attr-defined]
    assert second.getMessage() == "the source has no tags"


def test_listing() -> None:
    assert listing([]) == "none"
    assert listing(["a"]) == "a"
    assert listing([str(i) for i in range(22)]).endswith(", 19, and 2 more")
