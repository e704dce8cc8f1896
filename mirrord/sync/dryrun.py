"""``mirrord sync --dry-run``: the checks of a real pass, nothing written, one row per tag and target.

A dry run resolves what the real pass would: the source reference is HEADed (a pinned digest too,
so one that does not exist is ``missing``, not ``would-copy``), every target is HEADed as the
unchanged check does, and for a tag some target lacks, the source manifests are read (GETs, no
blob) to plan the copy as the engine would: the platform filter, the target's format and
compression and ``require_signatures`` are applied, so a target that cannot take the image is
``refused`` here rather than in the real pass. Rows:

- ``missing``: the source tag or digest does not exist (one row for the tag, no target);
- ``unchanged``: the target is up to date;
- ``would-copy``: the target is not; ``bytes`` is the size of every blob the image references,
  an upper bound (blobs the target already holds are not subtracted: that would cost a HEAD each);
- ``refused``: the target could not be checked (unreachable, denied) or cannot take the image.

One tag's trouble never hides another's: each tag is checked on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from mirrord.copy.children import fetch_children
from mirrord.copy.convert import placeholder_layers, transform_plan
from mirrord.copy.engine import describe
from mirrord.copy.errors import CopyError
from mirrord.copy.freshness import target_state
from mirrord.copy.planner import ImagePlan, build_plan
from mirrord.copy.request import CopyRequest, Target
from mirrord.oci import Digest, OCIError, is_digest, name_with_reference
from mirrord.registry.errors import RegistryError
from mirrord.sync.report import ImageReport

#: Tags checked at once (each costs a HEAD per side, and manifest GETs when some target is stale).
CONCURRENT_TAGS = 8


async def dry_run(
    entry: str, source_text: str, requests: Sequence[CopyRequest], versions: Sequence[str]
) -> list[ImageReport]:
    """The rows for ``requests`` (one per version, in order): what a real pass would do."""
    slots = asyncio.Semaphore(CONCURRENT_TAGS)

    async def one(request: CopyRequest, version: str) -> list[ImageReport]:
        async with slots:
            return await _check(entry, name_with_reference(source_text, version), request)

    rows = await asyncio.gather(*(one(r, v) for r, v in zip(requests, versions, strict=True)))
    return [row for tag_rows in rows for row in tag_rows]


async def _check(entry: str, source: str, request: CopyRequest) -> list[ImageReport]:
    try:
        head = await request.source.manifest_head(request.reference)
    except RegistryError as exc:
        return [ImageReport(entry=entry, source=source, result="failed", error=str(exc))]
    if head is None:
        what = "digest" if is_digest(request.reference) else "tag"
        return [ImageReport(entry=entry, source=source, result="missing", error=f"source {what} not found")]
    digest = head.digest
    rows = await asyncio.gather(*(_target_row(entry, source, request, t, digest) for t in request.targets))
    stale = [(row, t) for row, t in zip(rows, request.targets, strict=True) if row.result == "would-copy"]
    if stale:
        await _plan_copies(request, digest, stale)
    return list(rows)


async def _target_row(
    entry: str, source: str, request: CopyRequest, target: Target, digest: Digest
) -> ImageReport:
    errors: list[BaseException] = []
    state = await target_state(target, digest, request, on_error=errors.append)
    row = ImageReport(
        entry=entry,
        source=source,
        result="would-copy",
        source_digest=str(digest),
        target=str(target.repository),
    )
    if errors:
        row.result, row.error = "refused", describe(errors[0])
    elif state is not None:
        row.result = "unchanged"
        row.target_digests = {str(target.repository): str(state)}
    return row


async def _plan_copies(request: CopyRequest, digest: Digest, stale: list[tuple[ImageReport, Target]]) -> None:
    """Plan the copy as the engine would (manifest GETs only); fill in bytes, or refuse."""
    try:
        plan = await _source_plan(request, digest)
    except (RegistryError, OCIError, CopyError) as exc:
        for row, _ in stale:
            row.result, row.error = "failed", describe(exc)
        return
    size = plan.blob_bytes
    for row, target in stale:
        row.bytes = size
        try:
            changed = transform_plan(plan, target.transform, placeholder_layers(plan, target.transform))
        except OCIError as exc:
            row.result, row.error = "refused", f"conversion: {describe(exc)}"
            continue
        row.digest_map = {str(k): str(v) for k, v in changed.digest_map.items()}
        if request.require_signatures and changed.digest_map:
            row.result, row.error = "refused", "require_signatures: digests would change"


async def _source_plan(request: CopyRequest, digest: Digest) -> ImagePlan:
    """The plan the engine would make: the root and every child the filter keeps, verified."""
    root = await request.source.manifest_get(str(digest))
    platforms = request.platforms or None
    children = await fetch_children(request.source, root, platforms)
    return build_plan(
        root,
        children,
        platforms=platforms,
        include_foreign=request.include_foreign,
        source=str(request.source),
    )
