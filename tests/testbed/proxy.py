"""A fault-injecting reverse proxy in front of a registry, on the test's own event loop.

::

    async with FaultProxy(plain_registry.url) as proxy:
        proxy.add_fault("status", path_re=r"/blobs/sha256:", status=503, retry_after=1)
        proxy.add_fault("reset", method="GET", path_re=r"/blobs/", after_bytes=1000)
        ... talk to proxy.url / proxy.host instead of the registry ...
        assert proxy.count("GET", "manifest") == 0

Bodies stream both ways in chunks (a blob is never held whole). Headers are preserved except the
hop-by-hop ones; a ``Location`` that points at the upstream is rewritten to point at the proxy, so
upload sessions and redirects keep going through it. Every answered request is recorded in
``proxy.requests`` as ``(method, path_qs, status)``; a reset connection records its status too.

A token registry's challenges name the token server itself, so token fetches bypass the proxy
(count them with ``RegistryServer.token_requests``); put a second FaultProxy in front of
``server.token_server.realm``'s host to inject faults there.

Fault kinds (first matching rule with uses left wins; each use consumes one of ``times``, ``None``
means unlimited; ``probability`` draws from a ``random.Random(seed)``, so runs are repeatable):

- ``status``: answer ``status`` (default 503) without asking upstream, with a distribution error body
  and ``Retry-After`` when ``retry_after`` is given;
- ``reset``: forward, send the headers and ``after_bytes`` (default 0) of the body, then abort;
- ``flip``: forward, but XOR the body byte at offset ``after_bytes`` (default 0) with 0xFF;
- ``slow``: forward; with ``after_bytes`` send that many bytes, stall ``delay`` seconds, then send the
  rest; without it trickle the body in 1 KiB pieces, ``delay`` seconds apart;
- ``delay``: sleep ``delay`` seconds before forwarding.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import ssl as ssl_module
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

FAULT_KINDS = ("status", "reset", "flip", "slow", "delay")
REQUEST_KINDS = ("manifest", "blob", "upload", "tags", "token", "other")

_CHUNK = 64 * 1024
_TRICKLE = 1024
_HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
        "Transfer-Encoding", "Upgrade", "Host",
    )
)  # fmt: skip
_ERROR_CODES = {429: "TOOMANYREQUESTS", 401: "UNAUTHORIZED", 403: "DENIED", 404: "NAME_UNKNOWN"}


def request_kind(path: str) -> str:
    """Classify a request path: manifest, blob, upload, tags, token or other."""
    if re.search(r"/token\b", path) and not path.startswith("/v2/"):
        return "token"
    if re.search(r"/blobs/uploads/", path):
        return "upload"
    if re.search(r"/blobs/", path):
        return "blob"
    if re.search(r"/manifests/", path):
        return "manifest"
    if re.search(r"/tags/list", path):
        return "tags"
    return "other"


@dataclass
class Fault:
    """One fault rule; see the module docstring for what each ``kind`` does."""

    kind: str
    method: str | None
    path_re: re.Pattern[str] | None
    times: int | None
    probability: float | None
    status: int
    retry_after: float | None
    after_bytes: int | None
    delay: float
    rng: random.Random
    triggered: int = 0

    def matches(self, method: str, path_qs: str) -> bool:
        """True when the rule applies to this request and (if probabilistic) the draw says so."""
        if self.times is not None and self.times <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path_re is not None and not self.path_re.search(path_qs):
            return False
        return self.probability is None or self.rng.random() < self.probability

    def consume(self) -> None:
        """Count one use."""
        self.triggered += 1
        if self.times is not None:
            self.times -= 1


class FaultProxy:
    """Reverse proxy to ``upstream_url`` on 127.0.0.1, random port; ``ssl`` verifies an HTTPS upstream."""

    def __init__(self, upstream_url: str, *, ssl: ssl_module.SSLContext | None = None) -> None:
        self.upstream = URL(upstream_url.rstrip("/"))
        self._ssl = ssl
        self.requests: list[tuple[str, str, int]] = []
        self.faults: list[Fault] = []
        self._runner: web.ServerRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port = 0

    def __repr__(self) -> str:
        return f"FaultProxy({self.url} -> {self.upstream})"

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT`` of the proxy."""
        return f"127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the proxy (it always listens in plain HTTP)."""
        return f"http://{self.host}"

    def add_fault(
        self,
        kind: str,
        *,
        method: str | None = None,
        path_re: str | None = None,
        times: int | None = 1,
        probability: float | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        after_bytes: int | None = None,
        delay: float | None = None,
        seed: int = 0,
    ) -> Fault:
        """Add a fault rule (module docstring); returns it so a test can read ``triggered``."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, not {kind!r}")
        fault = Fault(
            kind=kind, method=method, path_re=re.compile(path_re) if path_re else None, times=times,
            probability=probability, status=status or 503, retry_after=retry_after,
            after_bytes=after_bytes, delay=delay if delay is not None else 1.0, rng=random.Random(seed),
        )  # fmt: skip
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self.faults.clear()

    def clear_requests(self) -> None:
        """Forget the recorded requests (to count one phase of a test)."""
        self.requests.clear()

    def count(self, method: str | None = None, kind: str | None = None) -> int:
        """Recorded requests with this method (any if None) of this kind (any if None)."""
        if kind is not None and kind not in REQUEST_KINDS:
            raise ValueError(f"kind must be one of {REQUEST_KINDS}, not {kind!r}")
        return sum(
            1
            for m, path, _ in self.requests
            if (method is None or m == method.upper()) and (kind is None or request_kind(path) == kind)
        )

    async def __aenter__(self) -> FaultProxy:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120),
        )
        self._runner = web.ServerRunner(web.Server(self._handle, access_log=None), shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # -- request handling -----------------------------------------------------------------------

    def _pick_fault(self, request: web.BaseRequest) -> Fault | None:
        for fault in self.faults:
            if fault.matches(request.method, request.path_qs):
                fault.consume()
                return fault
        return None

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        fault = self._pick_fault(request)
        if fault is not None and fault.kind == "status":
            return self._fault_status(request, fault)
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.delay)
        assert self._session is not None
        async with self._session.request(
            request.method,
            URL(f"{self.upstream}{request.raw_path}", encoded=True),
            headers=self._request_headers(request),
            data=request.content.iter_chunked(_CHUNK) if request.can_read_body else None,
            allow_redirects=False,
        ) as upstream:
            return await self._relay(request, upstream, fault)

    def _fault_status(self, request: web.BaseRequest, fault: Fault) -> web.Response:
        code = _ERROR_CODES.get(fault.status, "UNAVAILABLE")
        body = {"errors": [{"code": code, "message": f"injected fault: status {fault.status}"}]}
        headers = {"Content-Type": "application/json"}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        self.requests.append((request.method, request.path_qs, fault.status))
        return web.Response(status=fault.status, body=json.dumps(body).encode(), headers=headers)

    def _request_headers(self, request: web.BaseRequest) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                headers.add(name, value)
        return headers

    def _response_headers(self, upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in upstream.headers.items():
            if name.lower() in _HOP_BY_HOP:
                continue
            if name.lower() == "location" and value.startswith(str(self.upstream)):
                value = self.url + value[len(str(self.upstream)) :]
            headers.add(name, value)
        return headers

    async def _relay(
        self, request: web.BaseRequest, upstream: aiohttp.ClientResponse, fault: Fault | None
    ) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs, upstream.status))
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        response.headers.extend(self._response_headers(upstream))
        await response.prepare(request)
        body = _body_chunks(upstream)
        if fault is not None and fault.kind == "reset":
            await _write_then_abort(request, response, body, fault.after_bytes or 0)
            return response
        if fault is not None and fault.kind == "flip":
            body = _flipped(body, fault.after_bytes or 0)
        elif fault is not None and fault.kind == "slow":
            body = _slowed(body, fault.after_bytes, fault.delay)
        async for chunk in body:
            await response.write(chunk)
        await response.write_eof()
        return response


async def _body_chunks(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in upstream.content.iter_chunked(_CHUNK):
        yield chunk


async def _split_at(body: AsyncIterator[bytes], offset: int) -> AsyncIterator[tuple[bool, bytes]]:
    """Yield ``(before_offset, piece)`` with pieces cut exactly at ``offset``."""
    position = 0
    async for chunk in body:
        cut = offset - position
        if 0 < cut < len(chunk):
            yield True, chunk[:cut]
            yield False, chunk[cut:]
        else:
            yield position + len(chunk) <= offset, chunk
        position += len(chunk)


async def _flipped(body: AsyncIterator[bytes], offset: int) -> AsyncIterator[bytes]:
    flipped = False
    async for before, piece in _split_at(body, offset):
        if not before and not flipped and piece:
            piece = bytes([piece[0] ^ 0xFF]) + piece[1:]
            flipped = True
        yield piece


async def _slowed(body: AsyncIterator[bytes], after_bytes: int | None, delay: float) -> AsyncIterator[bytes]:
    if after_bytes is None:
        async for chunk in body:
            for start in range(0, len(chunk), _TRICKLE):
                yield chunk[start : start + _TRICKLE]
                await asyncio.sleep(delay)
        return
    stalled = False
    async for before, piece in _split_at(body, after_bytes):
        if not before and not stalled:
            await asyncio.sleep(delay)
            stalled = True
        yield piece


async def _write_then_abort(
    request: web.BaseRequest, response: web.StreamResponse, body: AsyncIterator[bytes], after_bytes: int
) -> None:
    async for before, piece in _split_at(body, after_bytes):
        if not before:
            break
        await response.write(piece)
    # Let the bytes already written reach the client, then drop the connection mid-body.
    transport = request.transport
    if transport is not None:
        transport.close()
