"""A small in-process distribution API (aiohttp) for unit tests of the HTTP client.

It behaves like a registry where the tests need it to and misbehaves on request: tag pages with
``Link``, Bearer or Basic auth with a token endpoint, redirecting blob GETs to another server,
cutting a blob download mid-body, failing with 5xx/429 a number of times. Every request is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from mirrord.registry.settings import CredentialSpec, RegistrySettings, TLSSettings


@dataclass
class Seen:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeRegistry:
    """State and knobs of the fake; ``host`` is set once it listens."""

    auth: str = "none"  # none | basic | bearer
    username: str = "alice"
    password: str = "s3cret"
    challenge_on_v2_only: bool = False  # 401 without WWW-Authenticate except on /v2/
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    tags: dict[str, list[str]] = field(default_factory=dict)
    uploads: dict[str, bytearray] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    token_requests: list[Seen] = field(default_factory=list)
    #: Answer the next N requests matching a path regex with this status (and headers).
    failures: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)
    redirect_blobs_to: str | None = None
    cut_blob_after: int | None = None  # close the connection after N bytes, once per GET
    cuts_left: int = 0
    ignore_range: bool = False
    corrupt_blobs: bool = False
    chunk_min_length: int | None = None
    tags_page_max: int = 2
    token_lifetime: int = 300
    response_headers: dict[str, str] = field(default_factory=dict)  # added to every answer
    issued_tokens: set[str] = field(default_factory=set)
    host: str = ""

    # -- helpers ---------------------------------------------------------------------------------

    def settings(self, **overrides: Any) -> RegistrySettings:
        """Settings to talk to the fake (plain HTTP, credentials inline)."""
        auth = CredentialSpec(username=self.username, password=self.password)
        values: dict[str, Any] = {"host": self.host, "tls": TLSSettings(enabled=False), "auth": auth}
        values.update(overrides)
        return RegistrySettings(**values)

    def fail(self, pattern: str, status: int, count: int = 1, **headers: str) -> None:
        """Answer the next ``count`` requests whose path matches ``pattern`` with ``status``."""
        self.failures.extend([(pattern, status, headers)] * count)

    def put_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    def seen(self, method: str, path_regex: str = "") -> list[Seen]:
        return [r for r in self.requests if r.method == method and re.search(path_regex, r.path)]

    # -- app -------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record, self._auth, self._failures])
        app.router.add_get("/token", self._token)
        app.router.add_get("/v2/", self._base)
        app.router.add_route("*", r"/v2/{name:.+}/manifests/{ref}", self._manifest)
        app.router.add_route("*", r"/v2/{name:.+}/blobs/uploads/", self._upload_start)
        app.router.add_route("*", r"/v2/{name:.+}/blobs/uploads/{id}", self._upload)
        app.router.add_route("*", r"/v2/{name:.+}/blobs/{digest}", self._blob)
        app.router.add_get(r"/v2/{name:.+}/tags/list", self._tags_list)
        app.router.add_get(r"/v2/{name:.+}/referrers/{digest}", self._referrers)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        seen = Seen(request.method, request.path, dict(request.query), dict(request.headers))
        (self.token_requests if request.path == "/token" else self.requests).append(seen)
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(self.response_headers)
            raise
        if not response.prepared:
            response.headers.update(self.response_headers)
        return response

    @web.middleware
    async def _failures(self, request: web.Request, handler: Any) -> web.StreamResponse:
        for i, (pattern, status, headers) in enumerate(self.failures):
            if re.search(pattern, request.path):
                del self.failures[i]
                return web.json_response(
                    {"errors": [{"code": "UNAVAILABLE", "message": "injected"}]},
                    status=status,
                    headers=headers,
                )
        return await handler(request)  # type: ignore[no-any-return]

    def _challenge(self, request: web.Request) -> dict[str, str]:
        if self.challenge_on_v2_only and request.path != "/v2/":
            return {}
        if self.auth == "basic":
            return {"WWW-Authenticate": 'Basic realm="fake"'}
        scope = ""
        match = re.match(r"/v2/(.+)/(manifests|blobs|tags|referrers)/", request.path)
        if match:
            scope = f',scope="repository:{match.group(1)}:pull"'
        realm = f"http://{self.host}/token"
        return {"WWW-Authenticate": f'Bearer realm="{realm}",service="fake"{scope}'}

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.auth == "none" or request.path == "/token" or self._authorized(request):
            return await handler(request)  # type: ignore[no-any-return]
        body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
        return web.json_response(body, status=401, headers=self._challenge(request))

    def _basic_ok(self, header: str) -> bool:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return header == f"Basic {expected}"

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.auth == "basic":
            return self._basic_ok(header)
        return header.removeprefix("Bearer ") in self.issued_tokens

    async def _token(self, request: web.Request) -> web.Response:
        if not self._basic_ok(request.headers.get("Authorization", "")):
            return web.json_response({"details": "bad credentials"}, status=401)
        token = uuid.uuid4().hex
        self.issued_tokens.add(token)
        return web.json_response({"token": token, "expires_in": self.token_lifetime})

    async def _base(self, request: web.Request) -> web.Response:
        return web.json_response({})

    # -- manifests -------------------------------------------------------------------------------

    async def _manifest(self, request: web.Request) -> web.StreamResponse:
        name, ref = request.match_info["name"], request.match_info["ref"]
        if request.method == "PUT":
            raw = await request.read()
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            media_type = request.headers.get("Content-Type", "")
            self.manifests[(name, digest)] = self.manifests[(name, ref)] = (raw, media_type)
            if ":" not in ref:
                self.tags.setdefault(name, []).append(ref)
            return web.Response(status=201, headers={"Docker-Content-Digest": digest})
        found = self.manifests.get((name, ref))
        if found is None:
            return _error(404, "MANIFEST_UNKNOWN")
        if request.method == "DELETE":
            del self.manifests[(name, ref)]
            return web.Response(status=202)
        raw, media_type = found
        headers = {
            "Docker-Content-Digest": "sha256:" + hashlib.sha256(raw).hexdigest(),
            "Content-Type": media_type,
        }
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(raw))
            return web.Response(status=200, headers=headers)
        return web.Response(body=raw, headers=headers)

    # -- blobs -----------------------------------------------------------------------------------

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        data = self.blobs.get(digest)
        if data is None:
            return _error(404, "BLOB_UNKNOWN")
        if self.redirect_blobs_to and request.method == "GET":
            raise web.HTTPTemporaryRedirect(f"{self.redirect_blobs_to}/data/{digest}")
        if request.method == "HEAD":
            return web.Response(headers={"Content-Length": str(len(data))})
        return await serve_bytes(request, data, self)

    async def _upload_start(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        mount, source = request.query.get("mount"), request.query.get("from")
        if mount and source and mount in self.blobs:
            return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{mount}"})
        upload_id = uuid.uuid4().hex
        self.uploads[upload_id] = bytearray()
        headers = {"Location": f"/v2/{name}/blobs/uploads/{upload_id}?_state=abc%3D%3D"}
        if self.chunk_min_length:
            headers["OCI-Chunk-Min-Length"] = str(self.chunk_min_length)
        return web.Response(status=202, headers=headers)

    async def _upload(self, request: web.Request) -> web.Response:
        upload_id = request.match_info["id"]
        if upload_id not in self.uploads:
            return _error(404, "BLOB_UPLOAD_UNKNOWN")
        if request.query.get("_state") != "abc==":
            return _error(400, "BLOB_UPLOAD_INVALID")
        if request.method == "DELETE":
            del self.uploads[upload_id]
            return web.Response(status=204)
        buffer = self.uploads[upload_id]
        if request.method == "PATCH":
            return await self._patch(request, buffer)
        async for chunk in request.content.iter_any():
            buffer += chunk
        digest = request.query.get("digest", "")
        if "sha256:" + hashlib.sha256(buffer).hexdigest() != digest:
            return _error(400, "DIGEST_INVALID")
        self.blobs[digest] = bytes(self.uploads.pop(upload_id))
        return web.Response(status=201, headers={"Docker-Content-Digest": digest})

    async def _patch(self, request: web.Request, buffer: bytearray) -> web.Response:
        start, _, end = request.headers.get("Content-Range", "").partition("-")
        if int(start) != len(buffer):
            return web.Response(status=416)
        body = await request.read()
        if self.chunk_min_length and len(body) < self.chunk_min_length:
            return _error(400, "SIZE_INVALID")
        if int(end) - int(start) + 1 != len(body):
            return _error(400, "SIZE_INVALID")
        buffer += body
        return web.Response(
            status=202, headers={"Location": request.path_qs, "Range": f"0-{len(buffer) - 1}"}
        )

    # -- tags and referrers ----------------------------------------------------------------------

    async def _tags_list(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.tags:
            return _error(404, "NAME_UNKNOWN")
        tags = sorted(self.tags[name])
        count = min(int(request.query.get("n", "1000")), self.tags_page_max)
        last = request.query.get("last")
        rest = [t for t in tags if last is None or t > last]
        page = rest[:count]
        headers = {}
        if len(rest) > count:
            headers["Link"] = f'</v2/{name}/tags/list?n={count}&last={page[-1]}>; rel="next"'
        body: dict[str, Any] = {"name": name, "tags": page if tags else None}
        return web.json_response(body, headers=headers)

    async def _referrers(self, request: web.Request) -> web.Response:
        digest = request.match_info["digest"]
        found = self.manifests.get((request.match_info["name"], f"referrers-{digest}"))
        if found is None:
            return _error(404, "NAME_UNKNOWN")
        return web.Response(body=found[0], content_type="application/vnd.oci.image.index.v1+json")


def _error(status: int, code: str) -> web.Response:
    return web.json_response({"errors": [{"code": code, "message": code.lower()}]}, status=status)


async def serve_bytes(
    request: web.Request, data: bytes, fake: FakeRegistry | None = None
) -> web.StreamResponse:
    """Serve ``data`` honouring ``Range: bytes=N-``; the fake may cut the connection or corrupt."""
    start = 0
    match = re.match(r"bytes=(\d+)-$", request.headers.get("Range", ""))
    response = web.StreamResponse(status=200)
    if match and not (fake and fake.ignore_range):
        start = int(match.group(1))
        response.set_status(206)
        response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
    if fake is not None and fake.corrupt_blobs:
        data = bytes([data[0] ^ 1]) + data[1:]
    body = data[start:]
    response.content_length = len(body)
    await response.prepare(request)
    if fake is not None and fake.cut_blob_after is not None and fake.cuts_left > 0:
        fake.cuts_left -= 1
        await response.write(body[: fake.cut_blob_after])
        assert request.transport is not None
        request.transport.close()
        return response
    view = memoryview(body)
    for offset in range(0, len(body), 256 * 1024):
        await response.write(view[offset : offset + 256 * 1024])
    await response.write_eof()
    return response


@asynccontextmanager
async def running(fake: FakeRegistry) -> AsyncIterator[FakeRegistry]:
    """Serve ``fake`` on 127.0.0.1 at a random port for the duration of the block."""
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.host = f"127.0.0.1:{server.port}"
    try:
        yield fake
    finally:
        await server.close()


@asynccontextmanager
async def data_server(blobs: dict[str, bytes], seen: list[Seen]) -> AsyncIterator[str]:
    """A second host (the "CDN") serving ``/data/<digest>``; yields its base URL."""

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(Seen(request.method, request.path, dict(request.query), dict(request.headers)))
        data = blobs.get(request.match_info["digest"])
        if data is None:
            return web.Response(status=404)
        return await serve_bytes(request, data)

    app = web.Application()
    app.router.add_get("/data/{digest}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(obj, separators=(",", ":")).encode()
