"""Hints a pass gives about what would have worked: the tags a filter could have selected, the tags
there when a named one is missing.

A tag filter that matches none of the source's tags is usually a typo (``^v1\\.`` for tags ``1.2.3``);
the pass is not failed for it (the source may simply not have published yet), but a warning names the
entry and lists the newest tags that are there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mirrord.oci import is_digest
from mirrord.plan import Entry
from mirrord.plan.tags import sort_tags
from mirrord.registry.base import Repository
from mirrord.registry.errors import NotFound, RegistryError
from mirrord.sync.report import ImageReport

log = logging.getLogger("mirrord.sync")

#: How many of the newest source tags the warning lists.
SHOWN_TAGS = 10


def warn_if_nothing_selected(entry: Entry, source_tags: Sequence[str], selected: Sequence[str]) -> None:
    """Log one warning when ``entry`` selected no tag: its filter matched nothing, or the source has
    no tags at all."""
    if selected:
        return
    if not source_tags:
        log.warning("the source has no tags", extra={"fields": {"entry": entry.name, "source": entry.source}})
        return
    newest = sort_tags(list(source_tags))[-SHOWN_TAGS:][::-1]
    fields = {"entry": entry.name, "source": entry.source, "available": newest, "tags": len(source_tags)}
    log.warning("tag filter matches none of the source's tags", extra={"fields": fields})


#: How many names a hint lists before it says "and N more".
SHOWN_NAMES = 20


def listing(names: Sequence[str], shown: int = SHOWN_NAMES) -> str:
    """``a, b, c`` (``none`` when empty; ``..., and N more`` past ``shown``)."""
    if not names:
        return "none"
    head = ", ".join(names[:shown])
    return head if len(names) <= shown else f"{head}, and {len(names) - shown} more"


async def missing_tags(source: Repository, references: Sequence[str]) -> tuple[set[str], list[str]]:
    """Which of ``references`` are tags ``source`` does not have, and its tags, newest first.

    Digests are never reported missing (there is no list of digests to offer). When the tag list
    cannot be read, nothing is reported; when the repository itself does not exist (a typo), NotFound
    naming it is raised. One tag-list read; call it on failure paths only.
    """
    tags = [r for r in references if not is_digest(r)]
    if not tags:
        return set(), []
    try:
        present = await source.tags_list(must_exist=True)
    except NotFound:
        raise
    except RegistryError:
        return set(), []
    return set(tags) - set(present), sort_tags(list(present))[::-1]


async def missing_tag_hints(source: Repository, references: Sequence[str]) -> dict[str, str]:
    """What to append to the error of each of ``references`` that failed to copy: the tags there
    (``tags there: ...``) for each tag ``source`` does not have; for every one, when the repository
    itself is not there, the NotFound naming it (not "tags there: none"). One tag-list read (see
    :func:`missing_tags`); {} when it cannot be read. The one wording of ``sync`` and ``copy``."""
    try:
        missing, present = await missing_tags(source, references)
    except NotFound as exc:
        return {r: str(exc) for r in references}
    return {r: f"tags there: {listing(present)}" for r in missing}


async def add_missing_tag_hints(
    source: Repository, versions: Sequence[str], reports: Sequence[ImageReport]
) -> None:
    """Append ``tags there: ...`` to the error of each image that failed because its tag is missing."""
    failed = {
        v: r
        for v, r in zip(versions, reports, strict=True)
        if r.result == "failed" and "not found" in (r.error or "").lower()
    }
    if not failed:
        return
    for version, hint in (await missing_tag_hints(source, list(failed))).items():
        failed[version].error = f"{failed[version].error}; {hint}"
