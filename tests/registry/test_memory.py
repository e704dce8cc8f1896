"""MemoryRegistry behaves like distribution where the engine relies on it, and is observable."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mirrord.core.events import BytesTransferred, Event, EventBus
from mirrord.oci import Digest, ImageIndex
from mirrord.oci import mediatypes as mt
from mirrord.registry.base import Repository
from mirrord.registry.errors import DigestMismatch, NotFound, RequestRejected, ServerError
from mirrord.testing.memory import Faults, MemoryRegistry, MemoryRepository

CONFIG = b'{"architecture":"amd64","os":"linux"}'
LAYER = b"layer-bytes " * 100


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}


def manifest_bytes(*layers: bytes, subject: bytes | None = None) -> bytes:
    obj: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(mt.OCI_CONFIG, CONFIG),
        "layers": [descriptor(mt.OCI_LAYER_GZIP, x) for x in layers],
    }
    if subject is not None:
        obj["subject"] = descriptor(mt.OCI_MANIFEST, subject)
        obj["artifactType"] = "application/vnd.example.sig"
    return json.dumps(obj).encode()


def index_bytes(*children: bytes) -> bytes:
    entries = [descriptor(mt.OCI_MANIFEST, c) for c in children]
    return json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}).encode()


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read(repo: MemoryRepository, digest: Digest, offset: int = 0) -> bytes:
    data = b""
    async with repo.blob_open(digest, offset=offset) as stream:
        async for chunk in stream:
            data += chunk
    return data


@pytest.fixture
def registry() -> MemoryRegistry:
    return MemoryRegistry("mem.example", chunk_size=256)


@pytest.fixture
def repo(registry: MemoryRegistry) -> MemoryRepository:
    registry.add_blob("app", CONFIG)
    registry.add_blob("app", LAYER)
    return registry.repository("app")


def test_is_a_repository(repo: MemoryRepository) -> None:
    as_protocol: Repository = repo
    assert as_protocol.registry_key == "mem.example"
    assert as_protocol.name == "app"
    assert str(as_protocol) == "mem.example/app"
    assert repo.registry.repository("app") is repo


async def test_manifest_round_trip_keeps_bytes(repo: MemoryRepository) -> None:
    raw = manifest_bytes(LAYER)
    digest = await repo.manifest_put("v1", raw, mt.OCI_MANIFEST)
    assert digest == Digest.of(raw)
    head = await repo.manifest_head("v1")
    assert head is not None
    assert (head.digest, head.size, head.media_type) == (digest, len(raw), mt.OCI_MANIFEST)
    assert (await repo.manifest_get(str(digest))).raw == raw
    assert await repo.manifest_head("v2") is None
    assert await repo.tags_list() == ["v1"]
    assert await repo.registry.repository("nothing").tags_list() == []
    with pytest.raises(NotFound):
        await repo.registry.repository("nothing").tags_list(must_exist=True)
    assert await repo.tags_list(must_exist=True) == ["v1"]


async def test_manifest_put_by_wrong_digest_is_rejected(repo: MemoryRepository) -> None:
    with pytest.raises(RequestRejected) as caught:
        await repo.manifest_put(str(Digest.of(b"other")), manifest_bytes(LAYER), mt.OCI_MANIFEST)
    assert caught.value.code == "DIGEST_INVALID"


async def test_index_before_its_children_is_rejected(repo: MemoryRepository) -> None:
    child = manifest_bytes(LAYER)
    with pytest.raises(RequestRejected) as caught:
        await repo.manifest_put("multi", index_bytes(child), mt.OCI_INDEX)
    assert caught.value.code == "MANIFEST_BLOB_UNKNOWN"
    await repo.manifest_put(str(Digest.of(child)), child, mt.OCI_MANIFEST)
    await repo.manifest_put("multi", index_bytes(child), mt.OCI_INDEX)


async def test_manifest_needs_its_blobs_linked_in_that_repository(registry: MemoryRegistry) -> None:
    registry.add_blob("elsewhere", CONFIG)
    registry.add_blob("elsewhere", LAYER)
    with pytest.raises(RequestRejected) as caught:
        await registry.repository("app").manifest_put("v1", manifest_bytes(LAYER), mt.OCI_MANIFEST)
    assert caught.value.code == "MANIFEST_BLOB_UNKNOWN"


async def test_manifest_delete(repo: MemoryRepository) -> None:
    raw = manifest_bytes(LAYER)
    digest = await repo.manifest_put("a", raw, mt.OCI_MANIFEST)
    await repo.manifest_put("b", raw, mt.OCI_MANIFEST)
    await repo.manifest_delete("a")
    assert await repo.tags_list() == ["b"]
    await repo.manifest_delete(str(digest))
    assert await repo.tags_list() == []
    with pytest.raises(NotFound):
        await repo.manifest_delete(str(digest))
    with pytest.raises(NotFound):
        await repo.manifest_get("a")


async def test_blob_stream_in_chunks_from_an_offset(repo: MemoryRepository, registry: MemoryRegistry) -> None:
    digest = Digest.of(LAYER)
    assert await repo.blob_head(digest) == len(LAYER)
    assert await read(repo, digest) == LAYER
    assert await read(repo, digest, offset=1000) == LAYER[1000:]
    async with repo.blob_open(digest) as stream:
        assert stream.size == len(LAYER)
        sizes = [len(c) async for c in stream]
        assert registry.open_streams == 1
    assert sizes[0] == 256
    assert registry.open_streams == 0
    assert registry.max_open_streams == 1
    with pytest.raises(NotFound):
        await read(repo, Digest.of(b"absent"))
    assert await repo.blob_head(Digest.of(b"absent")) is None


async def test_corrupt_blob_fails_at_the_end_of_the_stream(
    repo: MemoryRepository, registry: MemoryRegistry
) -> None:
    digest = Digest.of(LAYER)
    registry.faults.corrupt_blobs.add(digest)
    received: list[bytes] = []

    async def drain() -> None:
        async with repo.blob_open(digest) as stream:
            async for chunk in stream:
                received.append(chunk)

    with pytest.raises(DigestMismatch):
        await drain()
    assert 0 < len(b"".join(received)) < len(LAYER)  # the last chunk is never handed out


async def test_blob_put_verifies_and_stores_nothing_on_failure(registry: MemoryRegistry) -> None:
    repo = registry.repository("new")
    data = b"x" * 1000
    digest = Digest.of(data)
    with pytest.raises(RequestRejected) as caught:
        await repo.blob_put(digest, len(data), chunks_of(data[:500], b"y" * 500))
    assert caught.value.code == "DIGEST_INVALID"
    with pytest.raises(RequestRejected) as caught:
        await repo.blob_put(digest, 999, chunks_of(data))
    assert caught.value.code == "SIZE_INVALID"

    async def broken() -> AsyncIterator[bytes]:
        yield data[:10]
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError):
        await repo.blob_put(digest, len(data), broken())
    assert await repo.blob_head(digest) is None
    assert digest not in registry.blobs

    await repo.blob_put(digest, len(data), chunks_of(data[:300], data[300:]))
    assert await repo.blob_head(digest) == len(data)


async def test_mount_links_or_starts_an_upload_session(
    repo: MemoryRepository, registry: MemoryRegistry
) -> None:
    other = registry.repository("other")
    digest = Digest.of(LAYER)
    mounted = await other.blob_mount(digest, "app")
    assert mounted.mounted
    assert mounted.upload is None
    assert await other.blob_head(digest) == len(LAYER)

    data = b"fresh"
    fallback = await other.blob_mount(Digest.of(data), "app")
    assert not fallback.mounted
    assert fallback.upload is not None
    with pytest.raises(RequestRejected):  # a session belongs to its repository
        await repo.blob_put(Digest.of(data), len(data), chunks_of(data), upload=fallback.upload)
    await other.blob_put(Digest.of(data), len(data), chunks_of(data), upload=fallback.upload)
    with pytest.raises(RequestRejected):  # and is used once
        await other.blob_put(Digest.of(data), len(data), chunks_of(data), upload=fallback.upload)


async def test_calls_are_counted_per_repository_and_registry(
    repo: MemoryRepository, registry: MemoryRegistry
) -> None:
    await repo.manifest_head("x")
    await registry.repository("b").manifest_head("x")
    await repo.blob_head(Digest.of(LAYER))
    assert repo.calls == {"manifest_head": 1, "blob_head": 1}
    assert registry.calls == {"manifest_head": 2, "blob_head": 1}
    registry.reset_calls()
    assert not registry.calls
    assert not repo.calls


async def test_faults_fail_the_nth_call_and_run_hooks(
    repo: MemoryRepository, registry: MemoryRegistry
) -> None:
    seen: list[tuple[str, str, str]] = []

    async def hook(method: str, repository: str, reference: str) -> None:
        seen.append((method, repository, reference))

    registry.faults = Faults(fail_calls={("manifest_head", 2): ServerError("boom")}, hook=hook)
    assert await repo.manifest_head("x") is None
    with pytest.raises(ServerError):
        await repo.manifest_head("x")
    assert await repo.manifest_head("x") is None
    assert seen == [("manifest_head", "app", "x")] * 3

    registry.faults.fail_calls[("blob_put", 1)] = ServerError("mid-upload")
    data = b"z" * 600
    with pytest.raises(ServerError):
        await repo.blob_put(Digest.of(data), len(data), chunks_of(data[:300], data[300:]))
    assert await repo.blob_head(Digest.of(data)) is None


async def test_events_report_bytes_both_ways() -> None:
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    registry = MemoryRegistry("ev.example", chunk_size=100, events=bus)
    repo = registry.repository("r")
    data = b"q" * 250
    await repo.blob_put(Digest.of(data), len(data), chunks_of(data))
    await read(repo, Digest.of(data))
    moved = [(e.direction, e.count) for e in events if isinstance(e, BytesTransferred)]
    assert moved == [("pushed", 250), ("pulled", 100), ("pulled", 100), ("pulled", 50)]


async def test_referrers(repo: MemoryRepository, registry: MemoryRegistry) -> None:
    subject = manifest_bytes(LAYER)
    await repo.manifest_put("v1", subject, mt.OCI_MANIFEST)
    signature = manifest_bytes(subject=subject)
    await repo.manifest_put(str(Digest.of(signature)), signature, mt.OCI_MANIFEST)
    assert await repo.referrers(Digest.of(subject)) is None
    registry.referrers_api = True
    found = await repo.referrers(Digest.of(subject))
    assert isinstance(found, ImageIndex)
    assert [d.digest for d in found.manifests] == [Digest.of(signature)]
    none = await repo.referrers(Digest.of(subject), "application/other")
    assert none is not None
    assert none.manifests == ()
