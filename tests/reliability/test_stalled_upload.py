"""A target that stops reading an upload body: aiohttp's read timeout never fires while a body is
written, so the upload's own stall guard must abort it (TransportError, session DELETEd)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mirrord.oci import Digest, Reference
from mirrord.registry.errors import TransportError
from mirrord.registry.hub import Registries
from mirrord.registry.settings import RegistrySettings, TLSSettings

CHUNK = 1024 * 1024
TOTAL = 64 * CHUNK  # more than any socket buffer holds


class StallingTarget:
    """Raw HTTP: POST starts an upload, PUT reads a little of the body and then never more."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self.port = 0
        self.release = asyncio.Event()
        self.active = 0  # connections being handled

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.active += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method = head.split(b" ", 1)[0].decode()
            self.methods.append(method)
            if method == "PUT":
                await reader.read(100)
                await self.release.wait()  # set when the test is over
                return
            status = "202 Accepted" if method == "POST" else "204 No Content"
            location = f"Location: http://127.0.0.1:{self.port}/v2/a/b/blobs/uploads/u1\r\n"
            writer.write(
                f"HTTP/1.1 {status}\r\n{location}Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.active -= 1


async def _chunks() -> AsyncIterator[bytes]:
    block = b"\x5a" * CHUNK
    for _ in range(TOTAL // CHUNK):
        yield block


@pytest.fixture
async def target() -> AsyncIterator[StallingTarget]:
    stalling = StallingTarget()
    server = await asyncio.start_server(stalling.handle, "127.0.0.1", 0)
    stalling.port = server.sockets[0].getsockname()[1]
    try:
        yield stalling
    finally:
        stalling.release.set()
        server.close()
        await server.wait_closed()
        async with asyncio.timeout(10):  # let the handlers finish
            while stalling.active:  # noqa: ASYNC110 - a counter, no event to wait on
                await asyncio.sleep(0.001)


async def test_upload_to_a_target_that_stops_reading_is_aborted(target: StallingTarget) -> None:
    host = f"127.0.0.1:{target.port}"
    settings = RegistrySettings(host=host, tls=TLSSettings(enabled=False), stall_timeout=0.5)
    digest = Digest.of(b"\x5a" * 0)  # never reached: the body stalls long before verification
    async with Registries({host: settings}) as registries:
        repo = registries.repository(Reference.parse(f"{host}/a/b", default_tag=None))
        # The target never reads on: only the stall guard can end this (the deadline fails the test).
        async with asyncio.timeout(60):
            with pytest.raises(TransportError, match=r"stalled: no bytes taken for 0\.5 s") as caught:
                await repo.blob_put(digest, TOTAL, _chunks())
    assert caught.value.retryable
    assert target.methods == ["POST", "PUT", "DELETE"]  # the abandoned session is cancelled
