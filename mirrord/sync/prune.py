"""When an entry may prune: the data-safety rules that sit before any tag is deleted at a target.

Prune deletes target tags the source no longer lists, so it must only ever work from a tag list that
was read whole and successfully. A missing source repository raises before this point (see
``Repository.tags_list(must_exist=True)``); a source that lists no tag at all is far more often a
broken source (a registry that lost its data, a token scoped wrong) than a real "delete every
mirrored tag" intent, so it prunes nothing and says why. The cap (``prune_max`` per entry and
pass) is applied by the runner while it collects the tags to delete.
"""

from __future__ import annotations

import logging
from typing import TypeGuard

from mirrord.plan import Entry

log = logging.getLogger(__name__)


def prune_allowed(source_tags: list[str] | None, entry: Entry) -> TypeGuard[list[str]]:
    """True when ``entry`` prunes and ``source_tags`` (the source's full tag list, None when it was
    not read) is a list prune may work from: read, and not empty. Logs a warning when it is not."""
    if not entry.prune:
        return False
    if source_tags is None:
        return False
    if not source_tags:
        log.warning(
            "prune skipped: the source lists no tags",
            extra={"fields": {"entry": entry.name, "source": entry.source}},
        )
        return False
    return True
