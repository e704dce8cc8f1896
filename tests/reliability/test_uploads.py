"""Broken uploads against a real registry: chunked parts resume from the registry's offset,
a failed monolithic upload cancels its session (DELETE) so nothing is left behind."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from mirrord.core.events import Event, EventBus, RetryScheduled
from mirrord.oci import Digest, Reference
from mirrord.registry.base import Repository
from mirrord.registry.errors import ServerError
from mirrord.registry.http.upload import upload_offset
from mirrord.registry.hub import Registries
from mirrord.registry.settings import RegistrySettings, TLSSettings
from tests.testbed.proxy import FaultProxy
from tests.testbed.registry import RegistryServer

pytestmark = pytest.mark.integration

PART = 64 * 1024
BLOB = random.Random(6).randbytes(4 * PART + 123)
DIGEST = Digest.of(BLOB)


async def _chunks() -> AsyncIterator[bytes]:
    for start in range(0, len(BLOB), 10_000):
        yield BLOB[start : start + 10_000]


def _registries(proxy: FaultProxy, chunk_size: int | None, events: EventBus) -> Registries:
    settings = RegistrySettings(host=proxy.host, tls=TLSSettings(enabled=False), chunk_size=chunk_size)
    return Registries({proxy.host: settings}, events=events)


def _repo(registries: Registries, proxy: FaultProxy, name: str) -> Repository:
    return registries.repository(Reference.parse(f"{proxy.host}/{name}", default_tag=None))


def test_upload_offset_reads_distribution_ranges() -> None:
    assert upload_offset("0-1023") == 1024
    assert upload_offset("bytes=0-9") == 10
    assert upload_offset("0-0") == 0
    assert upload_offset(None) is None
    assert upload_offset("5-9") is None
    assert upload_offset("junk") is None


@pytest.mark.parametrize("kind", ["status", "reset"])
async def test_failed_part_resumes_from_the_registry_offset(
    plain_registry: RegistryServer, unique_repo: str, kind: str
) -> None:
    """A part refused (status: not stored) or whose answer is lost (reset: stored) is settled by
    asking the registry for its offset; the blob arrives without restarting the upload."""
    seen: list[Event] = []
    bus = EventBus()
    bus.subscribe(seen.append)
    digest = DIGEST
    async with FaultProxy(plain_registry.url) as proxy:
        # The second PATCH fails once.
        proxy.add_fault("delay", method="PATCH", delay=0, times=1)
        fault = proxy.add_fault(kind, method="PATCH", status=500, times=1)
        async with _registries(proxy, PART, bus) as registries:
            repo = _repo(registries, proxy, unique_repo)
            await repo.blob_put(digest, len(BLOB), _chunks())
            assert await repo.blob_head(digest) == len(BLOB)
        assert fault.triggered == 1
        assert proxy.count("POST", "upload") == 1  # one session, never restarted
        assert proxy.count("GET", "upload") == 1  # the offset query
        assert proxy.count("DELETE") == 0
    if kind == "status":
        assert [e.reason for e in seen if isinstance(e, RetryScheduled)] == ["upload"]


async def test_failed_monolithic_upload_cancels_its_session(
    plain_registry: RegistryServer, unique_repo: str
) -> None:
    bus = EventBus()
    digest = DIGEST
    async with FaultProxy(plain_registry.url) as proxy:
        proxy.add_fault("status", method="PUT", path_re="/blobs/uploads/", status=500, times=1)
        async with _registries(proxy, None, bus) as registries:
            repo = _repo(registries, proxy, unique_repo)
            with pytest.raises(ServerError):
                await repo.blob_put(digest, len(BLOB), _chunks())
            deletes = [path for method, path, _ in proxy.requests if method == "DELETE"]
            assert len(deletes) == 1
            assert "/blobs/uploads/" in deletes[0]
            assert await repo.blob_head(digest) is None
        # The registry accepted the cancellation: the session is gone, not left to expire.
        assert [s for m, _, s in proxy.requests if m == "DELETE"] in ([202], [204])
