"""Short-name resolution in memory: ``search_registries`` in order, docker.io's ``library/`` prefix."""

from __future__ import annotations

import logging

import pytest

from mirrord.testing.hub import MemoryRegistries
from tests.sync.runkit import plan, push_tags, repo, run


def _entry(source: str, hosts: str, target: str = "dst.example/resolved") -> str:
    return f"  - source: {source}\n    target: {target}\n    search_registries: [{hosts}]\n"


async def _digest(hub: MemoryRegistries, text: str, tag: str) -> str:
    found = await repo(hub, text).manifest_head(tag)
    assert found is not None, f"{text}:{tag} is missing"
    return str(found.digest)


async def test_the_first_search_registry_that_has_it_wins_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = MemoryRegistries()
    await push_tags(repo(hub, "first.example/shortname/app"), "1.0", seed="first")
    await push_tags(repo(hub, "second.example/shortname/app"), "1.0", seed="second")
    with caplog.at_level(logging.WARNING, logger="mirrord.sync.runner"):
        [report] = await run(hub, plan(_entry("shortname/app:1.0", "second.example, first.example")))
    assert report.ok, report
    assert await _digest(hub, "dst.example/resolved", "1.0") == await _digest(
        hub, "second.example/shortname/app", "1.0"
    )
    [warning] = [r for r in caplog.records if r.getMessage() == "ambiguous short name"]
    fields = warning.__dict__["fields"]
    assert fields["using"] == "second.example/shortname/app"
    assert fields["also"] == ["first.example/shortname/app"]


async def test_a_registry_without_it_is_skipped() -> None:
    hub = MemoryRegistries()
    await push_tags(repo(hub, "first.example/shortname/app"), "1.0", "2.0")
    [report] = await run(hub, plan(_entry("shortname/app", "second.example, first.example")))
    assert report.ok, report
    assert sorted(i.source for i in report.images) == [
        "first.example/shortname/app:1.0",
        "first.example/shortname/app:2.0",
    ]
    assert await repo(hub, "dst.example/resolved").tags_list() == ["1.0", "2.0"]


async def test_a_pinned_tag_is_probed_not_just_the_repository() -> None:
    hub = MemoryRegistries()
    await push_tags(repo(hub, "first.example/shortname/app"), "0.9", seed="first")
    await push_tags(repo(hub, "second.example/shortname/app"), "1.0", seed="second")
    [report] = await run(hub, plan(_entry("shortname/app:1.0", "first.example, second.example")))
    assert report.ok, report
    assert [i.source for i in report.images] == ["second.example/shortname/app:1.0"]


async def test_not_found_anywhere_is_the_entry_error_naming_the_registries() -> None:
    hub = MemoryRegistries()
    [report] = await run(hub, plan(_entry("shortname/app:1.0", "first.example, second.example")))
    assert not report.ok
    assert report.error is not None
    assert "shortname/app" in report.error
    assert "first.example, second.example" in report.error
    assert await repo(hub, "dst.example/resolved").tags_list() == []


@pytest.mark.parametrize("source", ["nginx:1.25", "library/nginx:1.25", "docker.io/library/nginx:1.25"])
async def test_docker_io_gets_library_and_other_registries_get_the_bare_name(source: str) -> None:
    hub = MemoryRegistries()
    # Docker Hub keeps official images under library/; another registry keeps them by the bare name.
    await push_tags(repo(hub, "docker.io/library/nginx"), "1.25", seed="hub")
    await push_tags(repo(hub, "mirror.example/nginx"), "1.25", seed="mirror")
    [report] = await run(hub, plan(_entry(source, "mirror.example, docker.io")))
    assert report.ok, report
    if source.startswith("docker.io/"):
        # Fully qualified: no search, docker.io it is.
        assert [i.source for i in report.images] == ["docker.io/library/nginx:1.25"]
    else:
        assert [i.source for i in report.images] == ["mirror.example/nginx:1.25"]


async def test_docker_io_alone_resolves_a_bare_name_to_library() -> None:
    hub = MemoryRegistries()
    await push_tags(repo(hub, "docker.io/library/nginx"), "1.25")
    [report] = await run(hub, plan(_entry("nginx:1.25", "docker.io")))
    assert report.ok, report
    assert [i.source for i in report.images] == ["docker.io/library/nginx:1.25"]
    assert await _digest(hub, "dst.example/resolved", "1.25") == await _digest(
        hub, "docker.io/library/nginx", "1.25"
    )
