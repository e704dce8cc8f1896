"""Blob downloads and uploads against a fake :class:`HTTPSession`: the seam lets the resume, the
verification, the PATCH retry and the abandon be checked without a client, a transport or a network."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from mirrord.core.events import BytesTransferred, Event
from mirrord.oci import Digest
from mirrord.registry.errors import DigestMismatch, RegistryError, ServerError, TransportError
from mirrord.registry.http.download import open_blob
from mirrord.registry.http.retry import RetryPolicy
from mirrord.registry.http.session import Fetched, HTTPSession, RepositoryAddress
from mirrord.registry.http.upload import HTTPUploadSession, put_blob
from mirrord.registry.settings import RegistrySettings
from mirrord.registry.whole import WholeBlob

ADDRESS = RepositoryAddress("r.example", "lib/app")
BLOB = bytes(range(256)) * 40
DIGEST = Digest.of(BLOB)


class FakeContent:
    """``response.content``: hands out ``body``, then breaks with ``error`` if one is given."""

    def __init__(self, body: bytes, error: BaseException | None) -> None:
        self._body, self._error = body, error

    async def read(self, n: int) -> bytes:
        if not self._body and self._error is not None:
            raise self._error
        chunk, self._body = self._body[:n], self._body[n:]
        return chunk


@dataclass
class FakeResponse:
    status: int
    headers: CIMultiDict[str]
    content: FakeContent
    content_length: int | None


@dataclass
class Sent:
    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes


Answer = Callable[[Sent], FakeResponse | Fetched | BaseException]


@dataclass
class FakeSession:
    """An :class:`HTTPSession` that records what was sent and answers with ``answer``."""

    answer: Answer
    settings: RegistrySettings = field(default_factory=lambda: RegistrySettings(host="r.example"))
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(base=0.0))
    read_timeout: float | None = 5.0
    referrers_api: bool | None = None
    chunked_uploads: bool | None = None
    sent: list[Sent] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.settings.host

    def url(self, target: str) -> str:
        return target if target.startswith("http") else "http://r.example" + target

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def emit_retry(self, reason: str, delay: float) -> None:
        self.retries.append(reason)

    def cleanup(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return asyncio.ensure_future(work)

    async def _send(self, method: str, target: str, headers: Mapping[str, str] | None, data: Any) -> Any:
        sent = Sent(method, target, dict(headers or {}), b"")
        self.sent.append(sent)
        if isinstance(data, bytes | bytearray):
            sent.body = bytes(data)
        elif data is not None:
            try:
                sent.body = b"".join([chunk async for chunk in data])
            except Exception as exc:  # aiohttp wraps what the body raised in a connection error
                raise TransportError("the request body failed") from exc
        answer = self.answer(sent)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def fetch(
        self,
        method: str,
        target: str,
        *,
        scopes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        ok: Collection[int] = (200,),
        limit: int = 0,
        retry: bool = True,
        repository: str | None = None,
        reference: str | None = None,
    ) -> Fetched:
        answer = await self._send(method, target, headers, data)
        assert isinstance(answer, Fetched)
        return answer

    @contextlib.asynccontextmanager
    async def request(
        self,
        method: str,
        target: str,
        *,
        scopes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        ok: Collection[int] = (200,),
        retry: bool = True,
        stream: bool = False,
        repository: str | None = None,
        reference: str | None = None,
    ) -> AsyncIterator[FakeResponse]:
        answer = await self._send(method, target, headers, data)
        if isinstance(answer, Fetched):
            answer = response(answer.status, b"", **dict(answer.headers))
        yield answer


def response(status: int, body: bytes, **headers: str) -> FakeResponse:
    return FakeResponse(status, CIMultiDict(headers), FakeContent(body, None), len(body))


def fetched(status: int, **headers: str) -> Fetched:
    return Fetched(status, CIMultiDict(headers), b"")


def test_the_client_is_a_session() -> None:
    from mirrord.registry.http.client import RegistryClient
    from mirrord.registry.http.transport import Transport

    client: HTTPSession = RegistryClient(RegistrySettings(host="r.example"), Transport())
    assert client.read_timeout == Transport().timeout.sock_read


# -- downloads --------------------------------------------------------------------------------------


async def read_all(http: FakeSession) -> bytes:
    async with open_blob(http, ADDRESS, DIGEST, 0) as stream:
        return b"".join([chunk async for chunk in stream])


async def test_a_broken_download_resumes_with_range_through_the_session() -> None:
    def answer(sent: Sent) -> FakeResponse:
        if "Range" not in sent.headers:
            return FakeResponse(
                200, CIMultiDict(), FakeContent(BLOB[:1000], aiohttp.ClientPayloadError()), len(BLOB)
            )
        assert sent.headers["Range"] == "bytes=1000-"
        rest = BLOB[1000:]
        return response(206, rest, **{"Content-Range": f"bytes 1000-{len(BLOB) - 1}/{len(BLOB)}"})

    http = FakeSession(answer)
    assert await read_all(http) == BLOB
    assert [s.target for s in http.sent] == [ADDRESS.path("blobs", str(DIGEST))] * 2
    assert http.retries == ["reset"]
    pulled = [e for e in http.events if isinstance(e, BytesTransferred)]
    assert sum(e.count for e in pulled) == len(BLOB)
    assert {(e.registry, e.direction) for e in pulled} == {("r.example", "pulled")}


async def test_a_download_gives_up_after_the_policys_resumes() -> None:
    def answer(sent: Sent) -> FakeResponse:
        start = int(sent.headers.get("Range", "bytes=0-")[6:-1])
        headers = {"Content-Range": f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"} if start else {}
        cut = FakeContent(BLOB[start : start + 10], aiohttp.ServerDisconnectedError())
        return FakeResponse(
            206 if start else 200, CIMultiDict(headers), cut, len(BLOB) if not start else None
        )

    http = FakeSession(answer, retry=RetryPolicy(base=0.0, resume_attempts=2))
    with pytest.raises(TransportError, match=r"r\.example/lib/app: blob .* gave up resuming") as caught:
        await read_all(http)
    assert len(http.sent) == 3  # the first GET and two resumes
    assert caught.value.repository == "lib/app"


async def test_a_download_whose_bytes_do_not_match_fails_verification() -> None:
    http = FakeSession(lambda sent: response(200, b"x" * len(BLOB)))
    with pytest.raises(DigestMismatch):
        await read_all(http)


# -- uploads ----------------------------------------------------------------------------------------


async def chunks_of(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_a_monolithic_upload_posts_then_puts_the_verified_body() -> None:
    def answer(sent: Sent) -> Fetched:
        if sent.method == "POST":
            return fetched(202, Location="/v2/lib/app/blobs/uploads/u1?_state=s")
        return fetched(201)

    http = FakeSession(answer)
    await put_blob(http, ADDRESS, DIGEST, len(BLOB), chunks_of(BLOB), None)

    post, put = http.sent
    assert (post.method, post.target) == ("POST", ADDRESS.uploads_path)
    assert put.target == f"http://r.example/v2/lib/app/blobs/uploads/u1?_state=s&digest={DIGEST}"
    assert put.body == BLOB
    assert sum(e.count for e in http.events if isinstance(e, BytesTransferred)) == len(BLOB)


async def test_a_failed_patch_part_is_settled_and_resent_with_the_policy() -> None:
    failures = [ServerError("503", retry_after=0.0)]

    def answer(sent: Sent) -> Fetched | BaseException:
        if sent.method == "PATCH" and sent.headers["Content-Range"].startswith("1024-") and failures:
            return failures.pop()
        if sent.method == "GET":
            return fetched(204, Range="0-1023", Location="/v2/lib/app/blobs/uploads/u1")
        return fetched(202 if sent.method == "PATCH" else 201, Location="/v2/lib/app/blobs/uploads/u1")

    settings = RegistrySettings(host="r.example", chunk_size=1024)
    http = FakeSession(answer, settings=settings)
    upload = HTTPUploadSession("http://r.example/v2/lib/app/blobs/uploads/u1", "lib/app")
    await put_blob(http, ADDRESS, DIGEST, len(BLOB), chunks_of(BLOB), upload)

    methods = [(s.method, s.headers.get("Content-Range")) for s in http.sent]
    assert methods[:4] == [("PATCH", "0-1023"), ("PATCH", "1024-2047"), ("GET", None), ("PATCH", "1024-2047")]
    assert http.retries == ["upload"]
    patched = b"".join(s.body for s in http.sent if s.method == "PATCH" and s is not http.sent[1])
    assert patched + http.sent[-1].body == BLOB


async def test_content_that_does_not_match_is_never_completed_and_the_upload_is_abandoned() -> None:
    def answer(sent: Sent) -> Fetched | BaseException:
        return fetched(202 if sent.method == "POST" else 204, Location="/v2/lib/app/blobs/uploads/u2")

    http = FakeSession(answer)
    with pytest.raises(DigestMismatch):
        await put_blob(http, ADDRESS, DIGEST, len(BLOB), chunks_of(b"y" * len(BLOB)), None)
    assert [s.method for s in http.sent] == ["POST", "PUT", "DELETE"]
    assert not any(isinstance(e, RegistryError) for e in http.events)


class ReadLog:
    """A :class:`WholeBlob` read that records when it ran (between which requests)."""

    def __init__(self, data: bytes, http: FakeSession, error: BaseException | None = None) -> None:
        self.data, self.http, self.error = data, http, error
        self.reads_after: list[list[str]] = []

    async def __call__(self) -> bytes:
        self.reads_after.append([s.method for s in self.http.sent])
        if self.error is not None:
            raise self.error
        return self.data


class BodyTypes(FakeSession):
    """Also records the type of each request body as handed to the session."""

    def __init__(self, answer: Answer, **kwargs: Any) -> None:
        super().__init__(answer, **kwargs)
        self.bodies: list[tuple[str, type]] = []

    async def _send(self, method: str, target: str, headers: Mapping[str, str] | None, data: Any) -> Any:
        self.bodies.append((method, type(data)))
        return await super()._send(method, target, headers, data)


def posts_then_creates(sent: Sent) -> Fetched:
    if sent.method == "POST":
        return fetched(202, Location="/v2/lib/app/blobs/uploads/u1?_state=s")
    return fetched(201 if sent.method == "PUT" else 204)


async def test_a_whole_blob_is_read_once_the_session_is_open_and_put_as_one_bytes_body() -> None:
    http = BodyTypes(posts_then_creates)
    read = ReadLog(BLOB, http)
    await put_blob(http, ADDRESS, DIGEST, len(BLOB), WholeBlob(read), None)

    assert read.reads_after == [["POST"]]  # read after the session opened, before the PUT
    assert http.bodies == [("POST", type(None)), ("PUT", bytes)]
    put = http.sent[1]
    assert put.target == f"http://r.example/v2/lib/app/blobs/uploads/u1?_state=s&digest={DIGEST}"
    assert put.body == BLOB
    assert put.headers["Content-Length"] == str(len(BLOB))
    assert [(e.direction, e.count) for e in http.events if isinstance(e, BytesTransferred)] == [
        ("pushed", len(BLOB))
    ]


async def test_a_whole_blob_whose_read_fails_sends_no_put_and_abandons_the_upload() -> None:
    http = BodyTypes(posts_then_creates)
    read = ReadLog(BLOB, http, error=DigestMismatch("rotten"))
    with pytest.raises(DigestMismatch, match="rotten"):
        await put_blob(http, ADDRESS, DIGEST, len(BLOB), WholeBlob(read), None)
    assert [s.method for s in http.sent] == ["POST", "DELETE"]


async def test_a_whole_blob_of_the_wrong_size_is_never_put() -> None:
    http = BodyTypes(posts_then_creates)
    with pytest.raises(DigestMismatch):
        await put_blob(http, ADDRESS, DIGEST, len(BLOB), WholeBlob(ReadLog(BLOB[:-1], http)), None)
    assert [s.method for s in http.sent] == ["POST", "DELETE"]


async def test_a_whole_blob_still_goes_in_parts_where_the_registry_names_a_chunk_size() -> None:
    def answer(sent: Sent) -> Fetched:
        if sent.method == "PATCH":
            return fetched(202, Location="/v2/lib/app/blobs/uploads/u1")
        return posts_then_creates(sent)

    http = BodyTypes(answer, settings=RegistrySettings(host="r.example", chunk_size=4096))
    await put_blob(http, ADDRESS, DIGEST, len(BLOB), WholeBlob(ReadLog(BLOB, http)), None)

    assert [s.method for s in http.sent] == ["POST", "PATCH", "PATCH", "PUT"]
    assert b"".join(s.body for s in http.sent) == BLOB


async def test_a_whole_blob_upload_cancelled_while_its_read_waits_is_deleted() -> None:
    http = BodyTypes(posts_then_creates)
    reading = asyncio.Event()

    async def read_forever() -> bytes:
        reading.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    upload = asyncio.ensure_future(put_blob(http, ADDRESS, DIGEST, len(BLOB), WholeBlob(read_forever), None))
    await reading.wait()
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert [s.method for s in http.sent] == ["POST", "DELETE"]
