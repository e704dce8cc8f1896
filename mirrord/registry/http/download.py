"""Blob downloads over HTTP: a verifying stream that resumes after a break.

Downloads read large chunks straight from the socket buffer, hash while streaming, and on a
connection break mid-body resume with ``Range: bytes=N-`` into the same hasher, so the caller sees
one uninterrupted, verified stream; a read that moves no byte for the registry's ``stall_timeout``
resumes the same way (retry reason ``stall``).
"""

from __future__ import annotations

import contextlib
import logging
import re

import aiohttp

from mirrord.core.events import BytesTransferred
from mirrord.oci import Digest, DigestHasher
from mirrord.registry.errors import DigestMismatch, TransportError
from mirrord.registry.http.session import HTTPSession, RepositoryAddress
from mirrord.registry.http.transport import NETWORK_ERRORS, network_error

log = logging.getLogger(__name__)

READ_CHUNK = 1024 * 1024
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def open_blob(http: HTTPSession, address: RepositoryAddress, digest: Digest, offset: int) -> BlobDownload:
    """GET the blob of ``address`` through ``http`` (redirects followed; Authorization only to the
    registry) from ``offset``: ``async with open_blob(...) as stream`` sends the GET and releases the
    response at the end (the stream is its own context manager: no generator per blob)."""
    return BlobDownload(http, address, digest, offset)


class BlobDownload:
    """A :class:`mirrord.registry.base.BlobStream` over HTTP, resuming after connection breaks.

    ``size`` is the total blob size when the registry said it. From offset 0 the stream is
    verified at its end (digest and size): the last step raises DigestMismatch instead of ending.
    """

    #: Declares the end-of-stream verification, so readers need not hash the bytes a second time.
    verifies_digest = True

    def __init__(self, http: HTTPSession, address: RepositoryAddress, digest: Digest, offset: int) -> None:
        self.http = http
        self.address = address
        self.digest = digest
        self.size: int | None = None
        self._position = offset
        self._hasher: DigestHasher | None = digest.hasher() if offset == 0 and digest.verifiable else None
        self._request: contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse] | None = None
        self._response: aiohttp.ClientResponse | None = None
        self._tries = http.retry.tries(http.retry.resume_attempts + 1)
        self._done = False

    async def __aenter__(self) -> BlobDownload:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Send the GET (with ``Range`` past offset 0) and check the answer's range."""
        headers = {"Range": f"bytes={self._position}-"} if self._position else {}
        request = self.http.request(
            "GET", self.address.path("blobs", str(self.digest)), scopes=self.address.pull_scopes,
            headers=headers, ok=(200, 206), stream=True,
            repository=self.address.name, reference=str(self.digest),
        )  # fmt: skip
        response = await request.__aenter__()
        try:
            self._check_range(response)
        except BaseException:
            await request.__aexit__(None, None, None)
            raise
        self._request, self._response = request, response

    def _check_range(self, response: aiohttp.ClientResponse) -> None:
        if self._position == 0:
            if response.status == 200 and response.content_length is not None:
                self.size = response.content_length
            return
        match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
        if response.status != 206 or match is None or int(match.group(1)) != self._position:
            where = f"{self.address}: blob {self.digest}"
            raise TransportError(
                f"{where}: registry did not honour Range from byte {self._position}",
                registry=self.address.registry, repository=self.address.name, reference=str(self.digest),
            )  # fmt: skip
        if match.group(3) != "*":
            self.size = int(match.group(3))

    async def close(self) -> None:
        """Release the current response."""
        request, self._request, self._response = self._request, None, None
        if request is not None:
            await request.__aexit__(None, None, None)

    def __aiter__(self) -> BlobDownload:
        return self

    async def __anext__(self) -> bytes:
        while not self._done:
            assert self._response is not None, "iterate inside `async with blob_open(...)`"
            try:
                chunk = await self._response.content.read(READ_CHUNK)
            except NETWORK_ERRORS as exc:
                await self._resume(exc)
                continue
            if chunk:
                return self._account(chunk)
            if self.size is not None and self._position < self.size:
                await self._resume(None)  # clean EOF before the announced size: a cut connection
                continue
            self._done = True
            self._verify()
        raise StopAsyncIteration

    def _account(self, chunk: bytes) -> bytes:
        self._position += len(chunk)
        if self._hasher is not None:
            self._hasher.update(chunk)
        if self.size is not None and self._position > self.size:
            raise self._mismatch(f"is longer than its announced {self.size} bytes")
        self.http.emit(BytesTransferred(self.address.registry, "pulled", len(chunk)))
        return chunk

    def _verify(self) -> None:
        if self._hasher is None:
            return
        if self.size is not None and self._hasher.size != self.size:
            raise self._mismatch(f"has {self._hasher.size} bytes, expected {self.size}")
        if self._hasher.digest() != self.digest:
            raise self._mismatch(f"content hashes to {self._hasher.digest()}")

    def _mismatch(self, what: str) -> DigestMismatch:
        return DigestMismatch(
            f"{self.address}: blob {self.digest} {what}",
            registry=self.address.registry, repository=self.address.name, reference=str(self.digest),
        )  # fmt: skip

    async def _resume(self, cause: BaseException | None) -> None:
        if self._tries.spent:
            detail = f"at byte {self._position}, gave up resuming"
            raise network_error(
                cause, f"{self.address}: blob {self.digest}", detail=detail,
                registry=self.address.registry, repository=self.address.name, reference=str(self.digest),
            ) from cause  # fmt: skip
        # A read timeout here means no byte arrived for the stall time (sock_read).
        reason = "stall" if isinstance(cause, TimeoutError) else "reset"
        log.debug("resuming %s of %s at byte %d", self.digest, self.address, self._position)
        await self.close()
        await self._tries.pause(lambda delay: self.http.emit_retry(reason, delay))
        await self.open()
