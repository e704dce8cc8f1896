"""After a failed ``mirrord copy``: say what would have worked (the tags that are there).

Only called on the failure path, so a successful copy never pays for the extra requests.
"""

from __future__ import annotations

from mirrord.copy.request import CopyResult
from mirrord.registry.base import Repository
from mirrord.sync.hints import missing_tag_hints


async def explain_copy_failure(result: CopyResult, source: Repository) -> str:
    """``result.error``, followed by the source's tags when the reference is a tag not there."""
    error = result.error or "unknown error"
    hint = (await missing_tag_hints(source, [result.reference])).get(result.reference)
    return f"{error}; {hint}" if hint is not None else error
