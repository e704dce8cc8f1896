"""After a failed ``mirrord copy``: say what would have worked (the tags that are there).

Only called on the failure path, so a successful copy never pays for the extra requests.
"""

from __future__ import annotations

from mirrord.cliutil.checks import listing
from mirrord.copy.request import CopyResult
from mirrord.registry.base import Repository
from mirrord.registry.errors import RegistryError


async def explain_copy_failure(result: CopyResult, source: Repository) -> str:
    """``result.error``, followed by the source's tags when the reference named no manifest there."""
    error = result.error or "unknown error"
    if ":" in result.reference:  # a digest: there is no list of valid digests to offer
        return error
    try:
        if await source.manifest_head(result.reference) is not None:
            return error
        tags = sorted(await source.tags_list())
    except RegistryError:
        return error
    return f"{error}; tags there: {listing(tags)}"
