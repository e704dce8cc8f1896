"""Blob uploads over HTTP: streamed, verified before the last byte leaves, cancelled on failure.

Uploads stream the caller's chunks (monolithic ``PUT`` with Content-Length, or ``PATCH`` parts then
``PUT``), verifying digest and size *before* the last bytes leave: content that does not match never
completes an upload. A failed ``PATCH`` part is settled with the registry's reported offset (``GET``
of the session) and resent (reason ``upload``, ``upload_attempts`` per part); an upload the target
stops reading is aborted after ``stall_timeout``. A failed upload is cancelled (``DELETE`` of its
Location, best effort, shielded, short timeout) and the error re-raised: the caller restarts the blob.

Registries bend this (see "Quirks seen in the field" in the protocol notes): a ``PATCH`` may be
answered 201 instead of 202; a registry without chunked uploads refuses ``PATCH`` (405, 501,
``UNSUPPORTED``), and then the rest of the blob goes in the final ``PUT`` (so a refused first part
makes the upload monolithic) and the registry's later uploads skip ``PATCH``; the final ``PUT``'s
answer need carry neither ``Location`` nor ``Docker-Content-Digest`` (the digest is what we sent). A
session handed over by a mount answered 202 that the registry no longer knows (``BLOB_UPLOAD_UNKNOWN``)
fails the attempt as retryable, so the caller starts over in a fresh session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from urllib.parse import quote

from mirrord.core.events import BytesTransferred
from mirrord.oci import Digest
from mirrord.registry.base import UploadSession, verifies_digest
from mirrord.registry.errors import DigestMismatch, NotFound, ProtocolError, RegistryError, TransportError
from mirrord.registry.http.session import Fetched, HTTPSession, RepositoryAddress
from mirrord.registry.http.transport import DEFAULT_READ_TIMEOUT
from mirrord.registry.whole import WholeBlob

log = logging.getLogger(__name__)

OCTET_STREAM = "application/octet-stream"
#: How long cancelling an abandoned upload may take (it is best effort).
ABANDON_TIMEOUT = 5.0
_UPLOAD_RANGE_RE = re.compile(r"^(?:bytes=)?(\d+)-(\d+)$")
#: PATCH answers that mean "this registry does not take chunks" (GAR: no chunked upload at all).
_PATCH_REFUSED_STATUSES = frozenset({405, 501})
_PATCH_REFUSED_CODES = frozenset({"UNSUPPORTED"})
#: Answers saying an upload session is not (or no longer) known to the registry.
_SESSION_GONE_CODES = frozenset({"BLOB_UPLOAD_UNKNOWN"})


@dataclass(frozen=True, slots=True)
class HTTPUploadSession:
    """A started upload: its absolute Location and the registry's minimum PATCH size, if any."""

    location: str
    repository: str
    min_chunk: int | None = None


def session_from(http: HTTPSession, address: RepositoryAddress, fetched: Fetched) -> HTTPUploadSession:
    """The upload session a 202 (POST uploads/ or a refused mount) announced."""
    location = fetched.headers.get("Location")
    if not location:
        raise ProtocolError(f"{address}: upload started without a Location", registry=address.registry)
    minimum = fetched.headers.get("OCI-Chunk-Min-Length", "")
    return HTTPUploadSession(http.url(location), address.name, int(minimum) if minimum.isdigit() else None)


class StallGuard:
    """Aborts an upload whose registry stops taking bytes for ``seconds``.

    aiohttp's read timeout does not run while a request body is being written (rightly: a slow
    source must not fail the upload), so a target that stops reading would hang the upload for
    ever. The body arms a deadline each time it hands a chunk over and disarms it while it waits
    for the source (which has its own stall timeout) and once it is spent; inside :meth:`watching`
    an expired deadline cancels the upload and raises TransportError.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._timeout: asyncio.Timeout | None = None

    def arm(self) -> None:
        """A chunk was handed to the connection: it must be taken within ``seconds``."""
        if self._timeout is not None:
            self._timeout.reschedule(asyncio.get_running_loop().time() + self.seconds)

    def disarm(self) -> None:
        """Waiting for the source, or the body is spent: no deadline."""
        if self._timeout is not None and not self._timeout.expired():
            self._timeout.reschedule(None)

    @contextlib.asynccontextmanager
    async def watching(self, address: RepositoryAddress, digest: Digest) -> AsyncIterator[None]:
        """Run the upload under the guard; a stall becomes a (retryable) TransportError."""
        try:
            async with asyncio.timeout(None) as timeout:
                self._timeout = timeout
                yield
        except TimeoutError as exc:
            if not timeout.expired():
                raise
            raise TransportError(
                f"{address}: upload of {digest} stalled: no bytes taken for {self.seconds:g} s",
                registry=address.registry, repository=address.name, reference=str(digest),
            ) from exc  # fmt: skip
        finally:
            self._timeout = None


class VerifyingBody:
    """Async-iterates the caller's chunks, counting, hashing and holding back the last chunk
    until the total size and digest are checked: a mismatch raises before the body completes.
    Chunks that declare :func:`~mirrord.registry.base.verifies_digest` (they raise at their end
    instead of ending on a mismatch) are counted but not hashed a second time.

    ``error`` keeps whatever the iteration raised (aiohttp wraps it in a connection error).
    """

    def __init__(
        self,
        chunks: AsyncIterable[bytes],
        digest: Digest,
        size: int,
        http: HTTPSession,
        address: RepositoryAddress,
        guard: StallGuard | None = None,
    ) -> None:
        self._source = chunks.__aiter__()
        self._guard = guard
        self._digest = digest
        self._size = size
        self._http = http
        self._address = address
        self._hasher = None if verifies_digest(chunks) or not digest.verifiable else digest.hasher()
        self._received = 0
        self._pending: bytes | None = None
        self._finished = False
        self.error: BaseException | None = None

    def __aiter__(self) -> VerifyingBody:
        return self

    async def __anext__(self) -> bytes:
        if self._guard is not None:
            self._guard.disarm()  # the previous chunk was taken; now we wait for the source
        try:
            chunk = await self._next()
        except StopAsyncIteration:
            raise
        except BaseException as exc:
            self.error = exc
            raise
        self._http.emit(BytesTransferred(self._address.registry, "pushed", len(chunk)))
        if self._guard is not None:
            self._guard.arm()
        return chunk

    async def _next(self) -> bytes:
        while not self._finished:
            try:
                chunk = bytes(await anext(self._source))
            except StopAsyncIteration:
                self._finished = True
                self._verify()
                break
            if not chunk:
                continue
            self._received += len(chunk)
            if self._hasher is not None:
                self._hasher.update(chunk)
            if self._received > self._size:
                raise self._mismatch(f"chunks exceed the announced {self._size} bytes")
            out, self._pending = self._pending, chunk
            if out is not None:
                return out
        out, self._pending = self._pending, None
        if out is None:
            raise StopAsyncIteration
        return out

    def _verify(self) -> None:
        if self._received != self._size:
            raise self._mismatch(f"chunks total {self._received} bytes, expected {self._size}")
        if self._hasher is not None and self._hasher.digest() != self._digest:
            raise self._mismatch(f"content hashes to {self._hasher.digest()}")

    def _mismatch(self, what: str) -> DigestMismatch:
        return DigestMismatch(
            f"{self._address}: upload of {self._digest}: {what}",
            registry=self._address.registry, repository=self._address.name, reference=str(self._digest),
        )  # fmt: skip


def with_digest(location: str, digest: Digest) -> str:
    """The Location with ``digest=`` added, keeping its query (the registry's ``_state``)."""
    return f"{location}{'&' if '?' in location else '?'}digest={quote(str(digest), safe=':')}"


async def start_upload(http: HTTPSession, address: RepositoryAddress) -> HTTPUploadSession:
    """POST ``/v2/<name>/blobs/uploads/`` -> the session (retried: nothing is sent yet)."""
    fetched = await http.fetch(
        "POST", address.uploads_path, scopes=address.push_scopes, ok=(202,), repository=address.name
    )
    return session_from(http, address, fetched)


async def put_blob(
    http: HTTPSession,
    address: RepositoryAddress,
    digest: Digest,
    size: int,
    chunks: AsyncIterable[bytes],
    upload: UploadSession | None,
) -> None:
    """Upload ``chunks`` (``size`` bytes of ``digest``) into a new or the given session.

    Monolithic unless the registry settings name a ``chunk_size``. Any failure, including the
    chunks iterator raising, cancels the upload and re-raises; the iterator is not re-readable,
    so the caller retries the whole blob. A :class:`~mirrord.registry.whole.WholeBlob` goes
    monolithic as one bytes body (read once the session is open), no streamed body.
    """
    handed_over = isinstance(upload, HTTPUploadSession)
    session = upload if isinstance(upload, HTTPUploadSession) else await _open_session(http, address)
    guard = StallGuard(stall_seconds(http))
    body = VerifyingBody(chunks, digest, size, http, address, guard)
    chunk_size = http.settings.chunk_size
    try:
        try:
            async with guard.watching(address, digest):
                if chunk_size and http.chunked_uploads is not False:
                    await _put_chunked(http, address, session, digest, size, body, chunk_size)
                elif isinstance(chunks, WholeBlob):
                    await _put_whole(http, address, session, digest, size, chunks, guard)
                else:
                    await _put_monolithic(http, address, session, digest, size, body)
        except RegistryError as exc:
            if isinstance(body.error, Exception) and body.error is not exc:
                raise body.error from exc  # the caller's or our verification error, not aiohttp's wrap
            if handed_over and session_gone(exc):
                # A mount answered 202 with a session the registry does not keep: a fresh one works.
                exc.retryable = True
            raise
    except BaseException:
        await _abandon(http, address, session)
        raise


def session_gone(error: RegistryError) -> bool:
    """True when ``error`` says the upload session is unknown to the registry."""
    return error.code in _SESSION_GONE_CODES or (isinstance(error, NotFound) and error.code is None)


def patch_refused(error: RegistryError) -> bool:
    """True when a PATCH answer says the registry takes no chunked uploads (405, 501, UNSUPPORTED)."""
    return error.status in _PATCH_REFUSED_STATUSES or error.code in _PATCH_REFUSED_CODES


def stall_seconds(http: HTTPSession) -> float:
    """The registry's ``stall_timeout``, else the transport's read timeout, else the default."""
    stall = http.settings.stall_timeout or http.read_timeout
    return stall or DEFAULT_READ_TIMEOUT


async def _put_monolithic(
    http: HTTPSession,
    address: RepositoryAddress,
    session: HTTPUploadSession,
    digest: Digest,
    size: int,
    body: VerifyingBody,
) -> None:
    headers = {"Content-Length": str(size), "Content-Type": OCTET_STREAM}
    async with http.request(
        "PUT", with_digest(session.location, digest), scopes=address.push_scopes, headers=headers, data=body,
        ok=(201, 204), retry=False, repository=address.name, reference=str(digest),
    ):  # fmt: skip
        pass


async def _put_whole(
    http: HTTPSession,
    address: RepositoryAddress,
    session: HTTPUploadSession,
    digest: Digest,
    size: int,
    blob: WholeBlob,
    guard: StallGuard,
) -> None:
    """The monolithic PUT of a blob read whole: a bytes body, sent only after its read verified it
    (the stall guard runs from the first byte sent to the answer)."""
    data = await blob.read()
    if len(data) != size:
        raise DigestMismatch(
            f"{address}: upload of {digest}: {len(data)} bytes, expected {size}",
            registry=address.registry, repository=address.name, reference=str(digest),
        )  # fmt: skip
    http.emit(BytesTransferred(address.registry, "pushed", size))
    guard.arm()
    headers = {"Content-Length": str(size), "Content-Type": OCTET_STREAM}
    await http.fetch(
        "PUT", with_digest(session.location, digest), scopes=address.push_scopes, headers=headers, data=data,
        ok=(201, 204), retry=False, repository=address.name, reference=str(digest),
    )  # fmt: skip


async def _put_chunked(
    http: HTTPSession,
    address: RepositoryAddress,
    session: HTTPUploadSession,
    digest: Digest,
    size: int,
    body: VerifyingBody,
    chunk_size: int,
) -> None:
    part_size = max(chunk_size, session.min_chunk or 0)
    buffer = bytearray()
    location, start = session.location, 0
    async for chunk in body:
        buffer += chunk
        while len(buffer) >= part_size:
            part = bytes(buffer[:part_size])
            del buffer[:part_size]
            try:
                location = await _patch(http, address, location, part, start, digest)
            except RegistryError as error:
                if not patch_refused(error):
                    raise
                log.info("%s refuses chunked uploads (HTTP %s): uploading whole blobs", address, error.status)
                http.chunked_uploads = False
                rest = _rest(part, buffer, body)
                await _put_rest(http, address, location, digest, size - start, rest)
                return
            start += len(part)
    headers = {"Content-Length": str(len(buffer)), "Content-Type": OCTET_STREAM}
    await http.fetch(
        "PUT", with_digest(location, digest), scopes=address.push_scopes, headers=headers, data=bytes(buffer),
        ok=(201, 204), retry=False, repository=address.name, reference=str(digest),
    )  # fmt: skip


async def _rest(part: bytes, buffer: Iterable[int], body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The refused part, what was buffered behind it, then the rest of the body."""
    yield part
    if buffer:
        yield bytes(buffer)
    async for chunk in body:
        yield chunk


async def _put_rest(
    http: HTTPSession,
    address: RepositoryAddress,
    location: str,
    digest: Digest,
    length: int,
    rest: AsyncIterable[bytes],
) -> None:
    """The final PUT carrying every byte the session does not hold yet (streamed)."""
    headers = {"Content-Length": str(length), "Content-Type": OCTET_STREAM}
    async with http.request(
        "PUT", with_digest(location, digest), scopes=address.push_scopes, headers=headers, data=rest,
        ok=(201, 204), retry=False, repository=address.name, reference=str(digest),
    ):  # fmt: skip
        pass


async def _patch(
    http: HTTPSession, address: RepositoryAddress, location: str, part: bytes, start: int, digest: Digest
) -> str:
    """PATCH one part (parts strictly in order; answered 202, or 201 as ECR does), resuming from
    the registry-reported offset after a retryable failure (the part is in memory); returns the
    next Location. Bounded by the retry policy's ``upload_attempts`` per part; past that, or when
    the registry's offset fits neither "before" nor "after" this part, the error goes up and the
    caller restarts the blob."""
    tries = http.retry.tries(http.retry.upload_attempts)
    while True:
        try:
            return await _patch_once(http, address, location, part, start, digest)
        except RegistryError as error:
            if not error.retryable or tries.spent or patch_refused(error):
                raise
            offset, location = await _resume_point(http, address, location, error)
            if offset == start + len(part):
                return location  # the part arrived; only its answer was lost
            if offset != start:
                raise
            failed = error
        await tries.pause(lambda delay: http.emit_retry("upload", delay), failed.retry_after)


async def _patch_once(
    http: HTTPSession, address: RepositoryAddress, location: str, part: bytes, start: int, digest: Digest
) -> str:
    headers = {
        "Content-Range": f"{start}-{start + len(part) - 1}",
        "Content-Length": str(len(part)),
        "Content-Type": OCTET_STREAM,
    }
    async with http.request(
        "PATCH", location, scopes=address.push_scopes, headers=headers, data=part, ok=(201, 202, 204),
        retry=False, repository=address.name, reference=str(digest),
    ) as response:  # fmt: skip
        next_location = response.headers.get("Location")
    return http.url(next_location) if next_location else location


async def _resume_point(
    http: HTTPSession, address: RepositoryAddress, location: str, cause: RegistryError
) -> tuple[int, str]:
    """How many bytes the upload at ``location`` holds (``GET`` -> 204 ``Range: 0-N``) and its
    current Location; ``cause`` is raised when the registry cannot say."""
    try:
        fetched = await http.fetch(
            "GET", location, scopes=address.push_scopes, ok=(204,), repository=address.name
        )
    except RegistryError as exc:
        raise cause from exc
    offset = upload_offset(fetched.headers.get("Range"))
    if offset is None:
        raise cause
    next_location = fetched.headers.get("Location")
    return offset, http.url(next_location) if next_location else location


def upload_offset(range_header: str | None) -> int | None:
    """Bytes held by an upload per its status ``Range`` (``0-1023`` -> 1024; ``bytes=0-9`` too).

    ``0-0`` is read as empty: distribution answers it for 0 bytes (and for 1, which a part
    boundary never is in practice); None when the header is missing or unreadable.
    """
    match = _UPLOAD_RANGE_RE.match((range_header or "").strip())
    if match is None:
        return None
    first, last = int(match.group(1)), int(match.group(2))
    if first != 0:
        return None
    return 0 if last == 0 else last + 1


async def _open_session(http: HTTPSession, address: RepositoryAddress) -> HTTPUploadSession:
    """:func:`start_upload`, finished even when we are cancelled meanwhile: the registry may have
    opened the session already, so it is then cancelled in the background instead of left behind."""
    opening = asyncio.ensure_future(start_upload(http, address))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        http.cleanup(_abandon_when_open(http, address, opening))
        raise


async def _abandon_when_open(
    http: HTTPSession, address: RepositoryAddress, opening: asyncio.Future[HTTPUploadSession]
) -> None:
    try:
        session = await opening
    except Exception:  # no session was opened: nothing to cancel
        return
    await _abandon(http, address, session)


async def _abandon(http: HTTPSession, address: RepositoryAddress, session: HTTPUploadSession) -> None:
    """Cancel the upload, best effort: shielded from our own cancellation, bounded in time, and
    waited for when the transport closes."""

    async def cancel() -> None:
        await http.fetch(
            "DELETE",
            session.location,
            scopes=address.delete_scopes,
            ok=(200, 202, 204),
            repository=address.name,
        )

    async def bounded() -> None:
        try:
            await asyncio.wait_for(cancel(), ABANDON_TIMEOUT)
        except Exception as exc:  # it is only cleanup; the original error matters
            log.debug("could not cancel upload %s of %s: %s", session.location, address, type(exc).__name__)

    # A cleanup of the transport: a second cancellation of ours (a task group tearing down) neither
    # stops it nor loses it, and closing the transport waits for it.
    await asyncio.shield(http.cleanup(bounded()))
