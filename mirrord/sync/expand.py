"""Pattern entries: the source's catalog -> one plain entry per matching repository, run as usual.

A pattern entry (``source: host/team/**``) is expanded at the start of every pass: the catalog is
listed (every page), the repositories the pattern and the entry's ``repositories`` filter keep (and,
with ``--shard K/N``, that this shard owns) each become an :class:`~mirrord.plan.Entry` of their own
with the pattern's name, the concrete source and the targets' ``/**`` replaced. The runner runs those
as it runs any entry (one tag list per repository, HEAD-only checks for unchanged tags), and
:func:`run_pattern` folds their reports into one report for the pattern entry, so logs, metrics and
``/status`` keep speaking of the entry the user wrote.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import replace
from typing import Any

from mirrord.plan import Entry
from mirrord.plan.patterns import RepositoryPattern
from mirrord.registry.errors import RegistryError
from mirrord.sync.report import EntryReport, ImageReport
from mirrord.sync.shard import shard_of

log = logging.getLogger(__name__)

#: host -> every repository path its catalog lists.
CatalogLister = Callable[[str], Awaitable[list[str]]]


def owns_repository(source: str, shard: tuple[int, int] | None) -> bool:
    """True when shard ``(K, N)`` owns the repository ``source`` (``host/path``); always without shards.

    The owner is a stable hash of the repository (the same one entries use), so N replicas split one
    namespace between them and together cover every repository exactly once.
    """
    if shard is None:
        return True
    k, n = shard
    return shard_of(source, n) == k


def covers(entry: Entry, pattern: RepositoryPattern, path: str, shard: tuple[int, int] | None) -> bool:
    """True when ``entry`` (whose pattern is ``pattern``) mirrors the repository ``path`` of the
    pattern's registry: the pattern matches it, the ``repositories`` filter keeps it and ``shard``
    owns it. The one rule for the catalog's expansion and for push notifications."""
    return (
        pattern.matches(path)
        and (entry.repositories is None or entry.repositories.keeps(path))
        and owns_repository(f"{pattern.registry}/{path}", shard)
    )


def select_repositories(
    entry: Entry, catalog: Iterable[str], shard: tuple[int, int] | None = None
) -> list[str]:
    """The catalog's repository paths ``entry``'s pattern covers, kept by its filter and owned by
    ``shard``, sorted. ``entry`` must be a pattern entry."""
    pattern = entry.pattern
    if pattern is None:
        raise ValueError(f"entry {entry.name!r} is not a pattern")
    return sorted({name for name in catalog if covers(entry, pattern, name, shard)})


def repository_entry(entry: Entry, repository: str) -> Entry:
    """The plain entry that mirrors one matching ``repository`` (a path) of pattern ``entry``.

    Same name, tag filter and options; the concrete source; each target's ``/**`` replaced by the
    part of ``repository`` below the pattern's fixed prefix.
    """
    pattern = entry.pattern
    if pattern is None:
        raise ValueError(f"entry {entry.name!r} is not a pattern")
    targets = tuple(replace(t, ref=pattern.target_for(t.ref, repository)) for t in entry.targets)
    return replace(entry, source=f"{pattern.registry}/{repository}", targets=targets, repositories=None)


async def run_pattern(
    entry: Entry,
    catalog: CatalogLister,
    run_one: Callable[[Entry], Coroutine[Any, Any, EntryReport]],
    shard: tuple[int, int] | None = None,
) -> EntryReport:
    """One pass over a pattern entry: list, expand, run every repository at once, fold the reports.

    A catalog that cannot be read fails the entry (``error``); a repository that fails (its tag list,
    say) becomes one ``failed`` row naming the repository, and the others still run. The report's
    ``repositories`` lists the repositories this pass covered.
    """
    report = EntryReport(entry=entry.name, started=time.time())
    pattern = entry.pattern
    assert pattern is not None
    try:
        names = select_repositories(entry, await catalog(pattern.registry), shard)
    except RegistryError as exc:
        report.error, report.finished = str(exc), time.time()
        log.error("entry failed", extra={"fields": {"entry": entry.name, "error": str(exc)}})
        return report
    report.repositories = names
    log.info(
        "pattern expanded",
        extra={"fields": {"entry": entry.name, "pattern": str(pattern), "repositories": len(names)}},
    )
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(run_one(repository_entry(entry, name))) for name in names]
    for name, task in zip(names, tasks, strict=True):
        _fold(report, task.result(), f"{pattern.registry}/{name}")
    report.finished = time.time()
    return report


def _fold(report: EntryReport, part: EntryReport, source: str) -> None:
    report.images += part.images
    if part.error is not None:
        # A repository that failed as a whole is one failed row; the entry still reports the others.
        report.images.append(
            ImageReport(entry=report.entry, source=source, result="failed", error=part.error)
        )
