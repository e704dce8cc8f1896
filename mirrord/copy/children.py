"""The child manifests of an image: the one walk through nested indexes, for the engine and the dry run.

Every child the platform filter keeps is read level by level (all of one level at once), each checked
against its descriptor's digest and size; nesting deeper than :data:`MAX_DEPTH` is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from mirrord.copy.errors import ManifestTooDeep, first_leaf
from mirrord.copy.planner import MAX_DEPTH, select_children
from mirrord.oci import AnyManifest, Descriptor, Digest, ImageIndex, Platform
from mirrord.registry.base import Repository
from mirrord.registry.errors import DigestMismatch


async def fetch_children(
    source: Repository,
    root: AnyManifest,
    platforms: Sequence[Platform] | None,
    *,
    slots: asyncio.Semaphore | None = None,
) -> dict[Digest, AnyManifest]:
    """Every child of ``root`` the filter keeps, by digest (empty for a plain manifest).

    ``slots`` bounds the GETs in flight. Raises ManifestTooDeep past :data:`MAX_DEPTH` levels,
    DigestMismatch for a child that does not match its descriptor, and the source's RegistryError."""
    fetched: dict[Digest, AnyManifest] = {}
    frontier = [root] if isinstance(root, ImageIndex) else []
    depth = 0
    while frontier:
        depth += 1
        if depth > MAX_DEPTH:
            raise ManifestTooDeep(f"indexes nest deeper than {MAX_DEPTH} levels under {root.digest}")
        wanted: dict[Digest, Descriptor] = {}
        for index in frontier:
            for child in select_children(index, platforms):
                if child.digest not in fetched:
                    wanted.setdefault(child.digest, child)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(_fetch_child(source, d, slots)) for d in wanted.values()]
        except ExceptionGroup as failed:
            # The error that matters, as documented; the group stays its cause, so nothing a
            # sibling raised (an Unreachable, say) is lost to callers that look through causes.
            raise first_leaf(failed) from failed
        got = {d: t.result() for d, t in zip(wanted, tasks, strict=True)}
        fetched.update(got)
        frontier = [m for m in got.values() if isinstance(m, ImageIndex)]
    return fetched


async def _fetch_child(
    source: Repository, descriptor: Descriptor, slots: asyncio.Semaphore | None
) -> AnyManifest:
    async with slots if slots is not None else contextlib.nullcontext():
        manifest = await source.manifest_get(str(descriptor.digest))
    if manifest.digest != descriptor.digest or manifest.size != descriptor.size:
        raise DigestMismatch(
            f"manifest {descriptor.digest} from {source} does not match its descriptor",
            registry=source.registry_key,
            repository=source.name,
            reference=str(descriptor.digest),
        )
    return manifest
