"""The unchanged check: is every target already up to date with the source? HEADs only, plus one
small GET at a target holding a rewritten manifest (platform filter, conversion, recompression),
whose annotations say which source digest, filter and transform it was made from. The source sees
one HEAD per tag (none for a digest reference), never a GET."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence

from mirrord.copy.convert import SOURCE_TRANSFORM_ANNOTATION
from mirrord.copy.planner import SOURCE_DIGEST_ANNOTATION, SOURCE_PLATFORMS_ANNOTATION, platforms_text
from mirrord.copy.request import CopyRequest, Target
from mirrord.core.together import gather_in_order
from mirrord.oci import Descriptor, Digest, OCIError, Platform, is_digest, name_with_reference
from mirrord.registry.errors import NotFound, RegistryError

log = logging.getLogger(__name__)


async def check_targets(
    request: CopyRequest,
    *,
    skip: Collection[int] = (),
    on_error: Callable[[BaseException], None] | None = None,
) -> tuple[Digest, list[Digest | None]]:
    """The source digest, and per target the digest there when it is up to date (else None).
    Raises RegistryError (NotFound when the source reference does not exist).

    A target with a tag is HEADed at the same time as the source (one round trip, not two); one
    without a tag is looked up by the source digest, so after it. Targets whose index is in ``skip``
    are not asked (None); ``on_error`` hears every target error that reads as "not up to date"."""
    by_tag = {
        i: asyncio.create_task(t.repository.manifest_head(t.tag))
        for i, t in enumerate(request.targets)
        if t.tag is not None and i not in skip
    }
    try:
        source_digest = await source_digest_of(request)
    except BaseException:
        for task in by_tag.values():
            task.cancel()
        await asyncio.gather(*by_tag.values(), return_exceptions=True)
        raise
    asked = [i for i in range(len(request.targets)) if i not in skip]
    states = await gather_in_order(
        [target_state(request.targets[i], source_digest, request, by_tag.get(i), on_error) for i in asked]
    )
    found = dict(zip(asked, states, strict=True))
    return source_digest, [found.get(i) for i in range(len(request.targets))]


async def source_digest_of(request: CopyRequest) -> Digest:
    """The digest of the source reference: parsed for a digest, one HEAD for a tag."""
    if is_digest(request.reference):
        return Digest.parse(request.reference)
    head = await request.source.manifest_head(request.reference)
    if head is None:
        raise NotFound(
            f"{display(request)} not found",
            registry=request.source.registry_key,
            repository=request.source.name,
            reference=request.reference,
        )
    return head.digest


async def target_state(
    target: Target,
    source_digest: Digest,
    request: CopyRequest,
    head_under_way: asyncio.Task[Descriptor | None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
) -> Digest | None:
    """The digest at ``target`` when it is up to date with ``source_digest``, else None (also when
    the target cannot be read: the copy will meet the same problem and report it; ``on_error``
    hears why). ``head_under_way``: the target's HEAD, already sent."""
    try:
        if head_under_way is not None:
            head = await head_under_way
        else:
            head = await target.repository.manifest_head(target.tag or str(source_digest))
        if head is None or head.digest == source_digest:
            return None if head is None else head.digest
        platforms = request.platforms or None
        if platforms is None and target.transform.identity:
            return None
        return await _rewritten_from(target, head, source_digest, platforms)
    except (RegistryError, OCIError) as exc:
        log.debug(
            "target check failed", extra={"fields": {"target": str(target.repository), "error": str(exc)}}
        )
        if on_error is not None:
            on_error(exc)
        return None


async def _rewritten_from(
    target: Target, head: Descriptor, source_digest: Digest, platforms: Sequence[Platform] | None
) -> Digest | None:
    """The target digest when the manifest there was made from ``source_digest`` with the same
    platform filter and transform (read from its annotations), else None."""
    current = await target.repository.manifest_get(str(head.digest))
    notes = current.annotations
    transform = target.transform
    expected = {
        SOURCE_DIGEST_ANNOTATION: str(source_digest),
        SOURCE_PLATFORMS_ANNOTATION: platforms_text(platforms) if platforms else None,
        SOURCE_TRANSFORM_ANNOTATION: None if transform.identity else transform.text(),
    }
    same = all(notes.get(key) == value for key, value in expected.items())
    return head.digest if same else None


def display(request: CopyRequest) -> str:
    """``source:tag`` or ``source@digest``."""
    return name_with_reference(str(request.source), request.reference)
