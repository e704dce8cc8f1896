"""Warnings a pass gives when an entry is valid but selects nothing, with what it could have selected.

A tag filter that matches none of the source's tags is usually a typo (``^v1\\.`` for tags ``1.2.3``);
the pass is not failed for it (the source may simply not have published yet), but a warning names the
entry and lists the newest tags that are there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mirrord.plan import Entry
from mirrord.plan.tags import sort_tags

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
