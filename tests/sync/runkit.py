"""Helpers for in-memory runner tests: a plan from YAML text, images pushed by tag, a pass."""

from __future__ import annotations

from collections.abc import Sequence

from mirrord.oci import Reference
from mirrord.plan import Plan, parse_plan
from mirrord.sync import EntryReport, SyncRunner
from mirrord.testing.hub import MemoryRegistries
from mirrord.testing.memory import MemoryRepository
from tests.copy.copykit import layer, push_image


def plan(sync_yaml: str) -> Plan:
    """A version-1 plan whose ``sync:`` section is ``sync_yaml`` (indented as a list)."""
    return parse_plan(f"version: 1\nsync:\n{sync_yaml}", "test.yaml")


def repo(hub: MemoryRegistries, text: str) -> MemoryRepository:
    """The repository ``text`` (``host/name``) names, parsed the way the runner parses it."""
    return hub.repository(Reference.parse(text, default_tag=None))


async def push_tags(repository: MemoryRepository, *tags: str, seed: str = "") -> None:
    """One distinct single-layer image per tag."""
    for tag in tags:
        await push_image(repository, [layer(f"{repository}-{seed}-{tag}", 200)], tag=tag)


async def run(hub: MemoryRegistries, the_plan: Plan, *, dry_run: bool = False) -> list[EntryReport]:
    """One pass over every entry of ``the_plan``."""
    return await SyncRunner(the_plan, hub).run_pass(dry_run=dry_run)


def results(report: EntryReport, kinds: Sequence[str]) -> list[tuple[str, str]]:
    """``(source, result)`` rows of ``report`` whose result is one of ``kinds``, sorted."""
    return sorted((i.source, i.result) for i in report.images if i.result in kinds)
