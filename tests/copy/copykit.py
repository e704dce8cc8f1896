"""Small images built in a MemoryRegistry for the copy engine's tests (no network, no tools)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from mirrord.core.events import BlobDone, Event, EventBus
from mirrord.oci import Digest, ImageIndex, ImageManifest, parse_manifest
from mirrord.oci import mediatypes as mt
from mirrord.testing.memory import MemoryRepository

ATTESTATION = {"vnd.docker.reference.type": "attestation-manifest"}


def layer(seed: str, size: int = 1000) -> bytes:
    """Deterministic layer bytes of ``size`` (distinct per seed)."""
    pattern = (seed.encode() + b"\x00") * (size // (len(seed) + 1) + 1)
    return pattern[:size]


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data), **extra}


async def push_image(
    repo: MemoryRepository,
    layers: Sequence[bytes],
    *,
    tag: str | None = None,
    docker: bool = False,
    config: bytes | None = None,
    foreign: Sequence[bytes] = (),
) -> ImageManifest:
    """Store blobs and a manifest (OCI or Docker schema2) in ``repo``; optionally tag it."""
    registry = repo.registry
    config = (
        config if config is not None else json.dumps({"layers": [str(Digest.of(x)) for x in layers]}).encode()
    )
    registry.add_blob(repo.name, config)
    layer_type = mt.DOCKER_LAYER_GZIP if docker else mt.OCI_LAYER_GZIP
    descriptors = []
    for data in layers:
        registry.add_blob(repo.name, data)
        descriptors.append(_descriptor(layer_type, data))
    for data in foreign:  # not stored: served elsewhere, like Windows base layers
        descriptors.append(
            _descriptor(mt.DOCKER_LAYER_FOREIGN_GZIP, data, urls=["https://example.invalid/x"])
        )
    media_type = mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST
    obj = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": _descriptor(mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG, config),
        "layers": descriptors,
    }
    raw = json.dumps(obj, indent=3).encode()  # indented: re-serialising would change the digest
    await repo.manifest_put(tag or str(Digest.of(raw)), raw, media_type)
    manifest = parse_manifest(raw, media_type)
    assert isinstance(manifest, ImageManifest)
    return manifest


async def push_index(
    repo: MemoryRepository,
    entries: Sequence[tuple[ImageManifest | ImageIndex, str | None, dict[str, str] | None]],
    *,
    tag: str | None = None,
    docker: bool = False,
) -> ImageIndex:
    """Store an index of ``(manifest, "os/arch[/variant]" or None, annotations)`` entries."""
    manifests = []
    for child, platform, notes in entries:
        entry = _descriptor(child.media_type, child.raw)
        if platform is not None:
            parts = platform.split("/")
            entry["platform"] = {"os": parts[0], "architecture": parts[1]}
            if len(parts) > 2:
                entry["platform"]["variant"] = parts[2]
        if notes:
            entry["annotations"] = notes
        manifests.append(entry)
    media_type = mt.DOCKER_MANIFEST_LIST if docker else mt.OCI_INDEX
    raw = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}, indent=2).encode()
    await repo.manifest_put(tag or str(Digest.of(raw)), raw, media_type)
    index = parse_manifest(raw, media_type)
    assert isinstance(index, ImageIndex)
    return index


async def push_multiarch(
    repo: MemoryRepository,
    tag: str,
    *,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    attestations: bool = True,
    shared: bytes | None = None,
    size: int = 1000,
) -> ImageIndex:
    """A BuildKit-like index: one image per platform (+ a shared base layer when given), each with
    an attestation manifest (platform unknown/unknown) referring to it."""
    entries: list[tuple[ImageManifest | ImageIndex, str | None, dict[str, str] | None]] = []
    for platform in platforms:
        base = [shared] if shared is not None else []
        image = await push_image(repo, [*base, layer(f"{repo.name}-{tag}-{platform}", size)])
        entries.append((image, platform, None))
        if attestations:
            statement = await push_image(repo, [layer(f"att-{repo.name}-{tag}-{platform}", 100)])
            notes = {**ATTESTATION, "vnd.docker.reference.digest": str(image.digest)}
            entries.append((statement, "unknown/unknown", notes))
    return await push_index(repo, entries, tag=tag)


class Recorder:
    """Collects every event of a bus."""

    def __init__(self, bus: EventBus) -> None:
        self.events: list[Event] = []
        bus.subscribe(self.events.append)

    def of(self, kind: type[Any]) -> list[Any]:
        """The events of one type, in order."""
        return [e for e in self.events if isinstance(e, kind)]

    def blob_outcomes(self) -> Counter[str]:
        """How many BlobDone events per outcome."""
        return Counter(e.outcome for e in self.of(BlobDone))


async def until(condition: Callable[[], bool], within: float = 30.0) -> None:
    """Wait until ``condition()`` holds, looking every millisecond; fail after ``within`` seconds
    (a deadline for a broken test, generous under load, never a timing assertion)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - state without an event to wait on
            await asyncio.sleep(0.001)
