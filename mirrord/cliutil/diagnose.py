"""After a failed ``mirrord copy``: say what would have worked (the tags that are there).

Only called on the failure path, so a successful copy never pays for the extra requests.
"""

from __future__ import annotations

from mirrord.copy.request import CopyResult
from mirrord.registry.base import Repository
from mirrord.registry.errors import NotFound
from mirrord.sync.hints import listing, missing_tags


async def explain_copy_failure(result: CopyResult, source: Repository) -> str:
    """``result.error``, followed by the source's tags when the reference is a tag not there."""
    error = result.error or "unknown error"
    try:
        missing, present = await missing_tags(source, [result.reference])
    except NotFound as exc:  # the repository is not there at all
        return f"{error}; {exc}"
    return f"{error}; tags there: {listing(present)}" if missing else error
