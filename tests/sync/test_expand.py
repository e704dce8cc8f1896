"""Pattern expansion: which repositories an entry covers, where each goes, how shards split them,
and how the per-repository reports fold into the entry's."""

from __future__ import annotations

import textwrap
import time

import pytest

from mirrord.plan import Entry, parse_plan
from mirrord.registry.errors import AuthError
from mirrord.sync.expand import owns_repository, repository_entry, run_pattern, select_repositories
from mirrord.sync.report import EntryReport, ImageReport
from mirrord.sync.shard import shard_entries

CATALOG = [f"team/r{i}" for i in range(200)] + ["team/deep/a/b", "team/r5-old", "other/x", "teams/y"]


def _entry(extra: str = "") -> Entry:
    text = f"""
    version: 1
    sync:
      - name: team
        source: src.example.com/team/**
        targets: ['mirror.example.com/m/**', 'oci:/srv/air/**']
        tags: {{include: ['^v']}}
    {textwrap.indent(textwrap.dedent(extra).strip(), "    ")}
    """
    return parse_plan(textwrap.dedent(text).lstrip(), "p.yaml").entries[0]


def test_selection_follows_the_pattern_and_the_filter() -> None:
    chosen = select_repositories(_entry(), CATALOG)
    assert "team/deep/a/b" in chosen
    assert "other/x" not in chosen
    assert "teams/y" not in chosen
    assert len(chosen) == 202
    filtered = select_repositories(_entry("repositories: {exclude: ['-old$', '^team/deep/']}"), CATALOG)
    assert len(filtered) == 200


def test_a_repository_entry_keeps_the_options_and_maps_the_targets() -> None:
    entry = _entry()
    one = repository_entry(entry, "team/deep/a/b")
    assert one.name == "team"
    assert one.source == "src.example.com/team/deep/a/b"
    assert [t.ref for t in one.targets] == ["mirror.example.com/m/deep/a/b", "oci:/srv/air/deep/a/b"]
    assert one.tags == entry.tags
    assert one.pattern is None
    assert one.repositories is None


@pytest.mark.parametrize("count", [2, 3])
def test_shards_together_cover_every_repository_exactly_once(count: int) -> None:
    entry = _entry()
    everything = select_repositories(entry, CATALOG)
    parts = [select_repositories(entry, CATALOG, (k, count)) for k in range(1, count + 1)]
    assert sorted(r for part in parts for r in part) == everything
    assert all(part for part in parts)  # 202 repositories spread: no shard is left empty
    # Stable: the same owner on every call (and host: sha256, not Python's salted hash).
    assert parts == [select_repositories(entry, CATALOG, (k, count)) for k in range(1, count + 1)]
    assert owns_repository("src.example.com/team/r1", None)


def test_every_shard_keeps_a_pattern_entry() -> None:
    entry = _entry()
    assert all(shard_entries([entry], (k, 4)) == [entry] for k in range(1, 5))


async def test_run_pattern_runs_each_repository_and_folds_the_reports() -> None:
    ran: list[str] = []

    async def catalog(host: str) -> list[str]:
        assert host == "src.example.com"
        return ["team/a", "team/b", "other/c"]

    async def run_one(entry: Entry) -> EntryReport:
        ran.append(entry.source)
        report = EntryReport(entry=entry.name, started=time.time())
        if entry.source.endswith("/b"):
            report.error = "src.example.com/team/b: HTTP 500"
        else:
            report.images = [ImageReport(entry=entry.name, source=entry.source + ":v1", result="copied")]
        return report

    report = await run_pattern(_entry(), catalog, run_one)
    assert sorted(ran) == ["src.example.com/team/a", "src.example.com/team/b"]
    assert report.repositories == ["team/a", "team/b"]
    assert report.error is None
    assert [(i.source, i.result) for i in report.images] == [
        ("src.example.com/team/a:v1", "copied"),
        ("src.example.com/team/b", "failed"),
    ]
    assert report.images[1].error == "src.example.com/team/b: HTTP 500"
    assert not report.ok


async def test_a_catalog_failure_fails_the_entry() -> None:
    async def catalog(host: str) -> list[str]:
        raise AuthError("src.example.com does not list its repositories (HTTP 403)")

    async def run_one(entry: Entry) -> EntryReport:
        raise AssertionError("nothing to run")

    report = await run_pattern(_entry(), catalog, run_one)
    assert report.error is not None
    assert "does not list" in report.error
    assert report.repositories is None
