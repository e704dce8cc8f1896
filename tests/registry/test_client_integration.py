"""The HTTP client against the real registry (distribution 2.8.2) in all four modes.

Every Repository method, chunked and monolithic pushes, cross-repository mounts, Docker and OCI
manifests by tag and digest, token caching, a 64 MiB blob streamed both ways in bounded memory,
and faults injected by the testbed's proxy (reset and stalled downloads resume, 5xx are retried,
flipped bytes are caught).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from mirrord.core.events import Event, EventBus, RetryScheduled
from mirrord.oci import Digest, ImageIndex, ImageManifest
from mirrord.oci import mediatypes as mt
from mirrord.registry.errors import AuthError, DigestMismatch, NotFound, TransportError
from mirrord.registry.http.client import RegistryClient
from mirrord.registry.http.repository import HTTPRepository
from mirrord.registry.http.retry import RetryPolicy
from mirrord.registry.http.transport import Transport
from mirrord.registry.settings import CredentialSpec, RegistrySettings, TLSSettings
from tests.testbed.proxy import FaultProxy
from tests.testbed.registry import RegistryServer

from .fakeregistry import dumps

pytestmark = pytest.mark.integration

FAST = RetryPolicy(base=0.01, cap=0.05)
MiB = 1024 * 1024


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
async def transport(events: list[Event]) -> AsyncIterator[Transport]:
    bus = EventBus()
    bus.subscribe(events.append)
    async with Transport(events=bus, connect_timeout=10, read_timeout=30) as transport:
        yield transport


def repo_at(settings: RegistrySettings, transport: Transport, name: str) -> HTTPRepository:
    return RegistryClient(settings, transport, retry=FAST).repository(name)


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def push(repo: HTTPRepository, data: bytes) -> Digest:
    digest = Digest.of(data)
    await repo.blob_put(digest, len(data), chunks_of(data))
    return digest


async def read_all(repo: HTTPRepository, digest: Digest) -> bytes:
    out = bytearray()
    async with repo.blob_open(digest) as stream:
        async for chunk in stream:
            out += chunk
    return bytes(out)


def manifest_bytes(kind: str, config: bytes, layer: bytes) -> tuple[bytes, str]:
    """A Docker schema2 or OCI image manifest over ``config`` and one ``layer``."""
    docker = kind == "docker"
    media_type = mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST
    raw = dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG,
                "digest": str(Digest.of(config)),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": mt.DOCKER_LAYER_GZIP if docker else mt.OCI_LAYER_GZIP,
                    "digest": str(Digest.of(layer)),
                    "size": len(layer),
                }
            ],
        }
    )
    return raw, media_type


# -- every method, every mode ----------------------------------------------------------------------


async def test_blobs_monolithic_and_chunked(
    any_registry: RegistryServer, transport: Transport, unique_repo: str
) -> None:
    settings = any_registry.settings()
    repo = repo_at(settings, transport, unique_repo)
    small = os.urandom(300_000)
    digest = await push(repo, small)
    assert await repo.blob_head(digest) == len(small)
    assert await read_all(repo, digest) == small
    chunked_repo = repo_at(dataclasses.replace(settings, chunk_size=100_000), transport, unique_repo)
    big = os.urandom(350_000)
    big_digest = await push(chunked_repo, big)
    assert await repo.blob_head(big_digest) == len(big)
    assert await read_all(repo, big_digest) == big
    async with repo.blob_open(big_digest, offset=1000) as stream:
        tail = b"".join([chunk async for chunk in stream])
    assert tail == big[1000:]
    assert await repo.blob_head(Digest.of(b"never pushed")) is None
    with pytest.raises(NotFound):
        await read_all(repo, Digest.of(b"never pushed"))


async def test_mount_between_repositories(
    any_registry: RegistryServer, transport: Transport, unique_repo: str
) -> None:
    settings = any_registry.settings()
    source = repo_at(settings, transport, unique_repo + "/src")
    target = repo_at(settings, transport, unique_repo + "/dst")
    digest = await push(source, os.urandom(10_000))
    result = await target.blob_mount(digest, source.name)
    assert result.mounted
    assert await target.blob_head(digest) == 10_000
    missing = await target.blob_mount(Digest.of(b"not anywhere"), source.name)
    assert not missing.mounted
    assert missing.upload is not None
    data = b"uploaded into the mount's session"
    await target.blob_put(Digest.of(data), len(data), chunks_of(data), upload=missing.upload)
    assert await target.blob_head(Digest.of(data)) == len(data)


@pytest.mark.parametrize("kind", ["docker", "oci"])
async def test_manifests_tags_and_delete(
    any_registry: RegistryServer, transport: Transport, unique_repo: str, kind: str
) -> None:
    repo = repo_at(any_registry.settings(), transport, unique_repo)
    config, layer = b'{"architecture":"amd64","os":"linux"}', os.urandom(2000)
    await push(repo, config)
    await push(repo, layer)
    raw, media_type = manifest_bytes(kind, config, layer)
    digest = await repo.manifest_put("v1", raw, media_type)
    assert digest == Digest.of(raw)
    assert await repo.manifest_put(str(digest), raw, media_type) == digest
    for reference in ("v1", str(digest)):
        head = await repo.manifest_head(reference)
        assert head is not None
        assert (head.digest, head.size, head.media_type) == (digest, len(raw), media_type)
        manifest = await repo.manifest_get(reference)
        assert isinstance(manifest, ImageManifest)
        assert (manifest.raw, manifest.media_type) == (raw, media_type)

    index_type = mt.DOCKER_MANIFEST_LIST if kind == "docker" else mt.OCI_INDEX
    entry = {"mediaType": media_type, "digest": str(digest), "size": len(raw)}
    entry["platform"] = {"architecture": "amd64", "os": "linux"}
    index_raw = dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": [entry]})
    index_digest = await repo.manifest_put("multi", index_raw, index_type)
    index = await repo.manifest_get("multi")
    assert isinstance(index, ImageIndex)
    assert index.digest == index_digest
    assert sorted(await repo.tags_list()) == ["multi", "v1"]
    assert await repo.has_tags() is True

    await repo.manifest_delete(str(index_digest))
    assert await repo.manifest_head(str(index_digest)) is None
    assert await repo.manifest_head("does-not-exist") is None
    with pytest.raises(NotFound):
        await repo.manifest_get("does-not-exist")


async def test_unknown_repository_and_missing_referrers_api(
    any_registry: RegistryServer, transport: Transport, unique_repo: str
) -> None:
    repo = repo_at(any_registry.settings(), transport, unique_repo)
    assert await repo.tags_list() == []
    assert await repo.has_tags() is False
    # distribution 2.8 has no referrers API: 404 -> None.
    assert await repo.referrers(Digest.of(b"subject")) is None


# -- auth ------------------------------------------------------------------------------------------


async def test_token_mode_caches_tokens(
    registry_factory: Any, transport: Transport, unique_repo: str
) -> None:
    server: RegistryServer = registry_factory("token")
    repo = repo_at(server.settings(), transport, unique_repo)
    config, layer = b"{}", os.urandom(1000)
    await push(repo, config)
    await push(repo, layer)
    raw, media_type = manifest_bytes("oci", config, layer)
    await repo.manifest_put("v1", raw, media_type)
    for _ in range(20):
        assert await repo.manifest_head("v1") is not None
        await repo.blob_head(Digest.of(layer))
        await repo.tags_list()
    # One push-scope token covers every later pull.
    assert server.token_requests <= 2


@pytest.mark.parametrize("mode", ["basic", "token"])
async def test_wrong_password_is_an_auth_error(
    request: pytest.FixtureRequest, transport: Transport, unique_repo: str, mode: str
) -> None:
    server: RegistryServer = request.getfixturevalue(f"{mode}_registry")
    settings = dataclasses.replace(
        server.settings(), auth=CredentialSpec(username="nobody", password="bad-pw")
    )
    with pytest.raises(AuthError) as caught:
        await repo_at(settings, transport, unique_repo).tags_list()
    assert "bad-pw" not in str(caught.value)


async def test_tls_without_the_ca_fails_verification(
    tls_registry: RegistryServer, transport: Transport, unique_repo: str
) -> None:
    settings = RegistrySettings(host=tls_registry.host, tls=TLSSettings(enabled=True))
    with pytest.raises(TransportError):
        await repo_at(settings, transport, unique_repo).tags_list()
    insecure = RegistrySettings(host=tls_registry.host, tls=TLSSettings(enabled=True, verify=False))
    assert await repo_at(insecure, transport, unique_repo).tags_list() == []


# -- big blobs, bounded memory ---------------------------------------------------------------------

BIG = 64 * MiB


def big_chunks(seed: bytes) -> Iterator[bytes]:
    """64 MiB of deterministic, incompressible-looking content, 1 MiB at a time."""
    block = hashlib.sha512(seed).digest() * (MiB // 64)
    for i in range(BIG // MiB):
        yield i.to_bytes(8, "big") + block[8:]


async def async_big_chunks(seed: bytes) -> AsyncIterator[bytes]:
    for chunk in big_chunks(seed):
        yield chunk


async def test_64_mib_blob_streams_up_and_down_in_bounded_memory(
    plain_registry: RegistryServer, transport: Transport, unique_repo: str
) -> None:
    seed = unique_repo.encode()
    hasher = hashlib.sha256()
    for chunk in big_chunks(seed):
        hasher.update(chunk)
    digest = Digest("sha256", hasher.hexdigest())
    repo = repo_at(plain_registry.settings(), transport, unique_repo)

    tracemalloc.start()
    try:
        await repo.blob_put(digest, BIG, async_big_chunks(seed))
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        received = 0
        async with repo.blob_open(digest) as stream:
            assert stream.size == BIG
            async for chunk in stream:
                received += len(chunk)
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == BIG
    assert upload_peak < 16 * MiB, upload_peak
    assert download_peak < 16 * MiB, download_peak


# -- faults injected by the testbed's proxy ---------------------------------------------------------


def via(proxy: FaultProxy) -> RegistrySettings:
    return RegistrySettings(host=proxy.host, tls=TLSSettings(enabled=False))


async def test_download_resumes_after_the_connection_is_reset(
    plain_registry: RegistryServer, transport: Transport, unique_repo: str, events: list[Event]
) -> None:
    data = os.urandom(3 * MiB)
    digest = await push(repo_at(plain_registry.settings(), transport, unique_repo), data)
    async with FaultProxy(plain_registry.url) as proxy:
        reset = proxy.add_fault(
            "reset", method="GET", path_re=r"/blobs/sha256:", after_bytes=MiB + 17, times=2
        )
        assert await read_all(repo_at(via(proxy), transport, unique_repo), digest) == data
    assert reset.triggered == 2
    assert proxy.count("GET", "blob") == 3
    assert [e.reason for e in events if isinstance(e, RetryScheduled)] == ["reset", "reset"]


async def test_stalled_download_resumes_after_the_read_timeout(
    plain_registry: RegistryServer, unique_repo: str, events: list[Event]
) -> None:
    bus = EventBus()
    bus.subscribe(events.append)
    data = os.urandom(MiB)
    async with Transport(events=bus, read_timeout=0.3) as transport:
        digest = await push(repo_at(plain_registry.settings(), transport, unique_repo), data)
        async with FaultProxy(plain_registry.url) as proxy:
            proxy.add_fault("slow", method="GET", path_re=r"/blobs/sha256:", after_bytes=1000, delay=3)
            assert await read_all(repo_at(via(proxy), transport, unique_repo), digest) == data
    assert any(isinstance(e, RetryScheduled) and e.reason == "stall" for e in events)


async def test_503_with_retry_after_is_retried(
    plain_registry: RegistryServer, transport: Transport, unique_repo: str, events: list[Event]
) -> None:
    data = os.urandom(1000)
    digest = await push(repo_at(plain_registry.settings(), transport, unique_repo), data)
    async with FaultProxy(plain_registry.url) as proxy:
        proxy.add_fault("status", path_re=r"/blobs/sha256:", status=503, retry_after=30, times=2)
        # Retry-After is honoured, capped by the policy (here low, to keep the test fast).
        policy = dataclasses.replace(FAST, retry_after_cap=0.05)
        repo = RegistryClient(via(proxy), transport, retry=policy).repository(unique_repo)
        assert await repo.blob_head(digest) == len(data)
    retries = [e for e in events if isinstance(e, RetryScheduled)]
    assert [(e.reason, e.delay) for e in retries] == [("5xx", 0.05), ("5xx", 0.05)]


async def test_flipped_bytes_are_caught_for_blobs_and_manifests(
    plain_registry: RegistryServer, transport: Transport, unique_repo: str
) -> None:
    repo = repo_at(plain_registry.settings(), transport, unique_repo)
    config, layer = b"{}", os.urandom(5000)
    await push(repo, config)
    digest = await push(repo, layer)
    raw, media_type = manifest_bytes("oci", config, layer)
    manifest_digest = await repo.manifest_put("v1", raw, media_type)
    async with FaultProxy(plain_registry.url) as proxy:
        proxied = repo_at(via(proxy), transport, unique_repo)
        proxy.add_fault("flip", method="GET", path_re=r"/blobs/sha256:", after_bytes=100)
        with pytest.raises(DigestMismatch):
            await read_all(proxied, digest)
        proxy.add_fault("flip", method="GET", path_re=r"/manifests/", after_bytes=10, times=2)
        for reference in ("v1", str(manifest_digest)):
            with pytest.raises(DigestMismatch):
                await proxied.manifest_get(reference)
