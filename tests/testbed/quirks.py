"""A quirks proxy: the real registry behind a proxy that bends the protocol the way public ones do.

::

    async with QuirksProxy(token_registry.url) as proxy:
        proxy.quirks.head_without_digest = True        # Artifactory
        proxy.quirks.cdn_redirect = True               # Docker Hub, S3-backed registries
        ... talk to proxy.host (plain HTTP) ...
        assert proxy.cdn.saw_credentials == 0

Each field of :class:`Quirks` switches one behaviour seen in the field (see "Quirks seen in the
field" in ``shared/docs/protocol.md``); all are off by default, so the proxy starts transparent and
the switches can change while it runs. ``requests`` records every request with the ``Accept`` it
carried and whether it carried credentials.

Token mode: the registry's challenges name the token server; the proxy rewrites their ``realm`` to
its own ``/token`` and relays token requests there (GET and the OAuth2 POST), so token answers can be
reshaped (``token_shape``, ``token_expires_in``) and counted. ``token_uses`` makes every bearer token
go stale after that many registry requests (answered 401 with the registry's challenge, as a token
revoked or expired early is), which exercises re-authentication in the middle of a copy.

Blob GETs redirected (``cdn_redirect``) go to a second port, the "CDN" (:class:`Cdn`): it serves the
bytes (``Range`` too) with the credentials the registry saw, like a pre-signed URL, and counts the
requests that reached it carrying an ``Authorization`` header.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from tests.testbed.proxy import _HOP_BY_HOP

_CHUNK = 64 * 1024
_BLOB_GET = re.compile(r"^/v2/.+/blobs/(sha256|sha512):[0-9a-f]+$")
_TAGS = re.compile(r"^/v2/(.+)/tags/list$")
_MANIFEST = re.compile(r"^/v2/.+/manifests/")
_REALM = re.compile(r'realm="([^"]*)"')
_GONE_SESSION = "/blobs/uploads/gone-"

#: ``token_expires_in`` value that removes ``expires_in`` from token answers.
ABSENT = "absent"
TOKEN_SHAPES = ("token", "access_token", "both")


@dataclass
class Quirks:
    """The behaviours the proxy bends; every one off by default."""

    #: Manifest HEAD answers lose ``Docker-Content-Digest`` (Artifactory, some Red Hat registries).
    head_without_digest: bool = False
    #: Manifest and blob PUT answers lose ``Docker-Content-Digest`` and ``Location`` (ECR).
    put_without_digest: bool = False
    #: ``POST ?mount=&from=`` is answered like a plain upload start: 202 and a session (GAR, ECR).
    ignore_mounts: bool = False
    #: ``POST ?mount=&from=`` is answered 202 with a session the registry does not keep: using it
    #: gets 404 BLOB_UPLOAD_UNKNOWN (Nexus and Keppel answer mounts oddly).
    mount_session_gone: bool = False
    #: ``POST ?mount=&from=`` is answered 401 (Harbor, mounting from a project it will not show).
    mount_unauthorized: bool = False
    #: Chunk ``PATCH`` answers say 201 instead of 202 (ECR).
    patch_201: bool = False
    #: Chunk ``PATCH`` is refused with 405 UNSUPPORTED, nothing forwarded (GAR).
    refuse_patch: bool = False
    #: Tag lists come in pages of at most this many tags, with ``Link`` to the next (ECR: 1000).
    tags_page_cap: int | None = None
    #: A tag list asking for more than this ``n`` is refused (400 PAGINATION_NUMBER_INVALID); pages
    #: are then this size.
    tags_max_n: int | None = None
    #: Tag list pages carry no ``Link``: the client must ask on with ``last`` (older registries).
    tags_without_link: bool = False
    #: An empty tag list (page) is ``"tags": null`` (Nexus).
    tags_null: bool = False
    #: Blob GETs are answered 307 to the CDN port (Docker Hub, S3-backed registries).
    cdn_redirect: bool = False
    #: Which key token answers carry the token under: ``token``, ``access_token`` or ``both``.
    token_shape: str = "both"
    #: Token answers' ``expires_in``: None keeps the token server's, ``ABSENT`` drops it, else this.
    token_expires_in: int | str | None = None
    #: A bearer token is refused (401 and the challenge) once it was used for this many requests.
    token_uses: int | None = None
    #: The token that starts the Nth upload session is refused from then on (it expired while the
    #: blob streamed): that upload's last request, and those of uploads sharing the token, get 401.
    token_expires_during_upload: int | None = None
    #: The registry's 401s (except on ``/v2/``) become 404 NAME_UNKNOWN without a challenge.
    not_found_for_unauthorized: bool = False

    def everything_source(self) -> None:
        """The source side of the issue's "every behaviour at once"."""
        self.head_without_digest = True
        self.tags_page_cap = 2
        self.tags_null = True
        self.cdn_redirect = True

    def everything_target(self) -> None:
        """The target side of the issue's "every behaviour at once"."""
        self.ignore_mounts = True
        self.patch_201 = True
        self.put_without_digest = True


@dataclass(frozen=True, slots=True)
class Seen:
    """One request the proxy answered."""

    method: str
    path_qs: str
    status: int
    accept: str | None
    authorization: bool


@dataclass
class Cdn:
    """The second "host" that redirected blob GETs land on."""

    requests: list[tuple[str, bool]] = field(default_factory=list)
    _grants: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the CDN."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def saw_credentials(self) -> int:
        """How many requests reached the CDN with an ``Authorization`` header."""
        return sum(1 for _, authorized in self.requests if authorized)

    def grant(self, path: str, authorization: str | None) -> str:
        """A one-off URL serving ``path`` of the registry with the credentials it was asked with."""
        key = secrets.token_urlsafe(12)
        self._grants[key] = (path, authorization)
        return f"{self.url}/cdn/{key}"


class QuirksProxy:
    """Reverse proxy to the registry at ``upstream_url`` on 127.0.0.1 (random ports), with a CDN."""

    def __init__(self, upstream_url: str, quirks: Quirks | None = None) -> None:
        self.upstream = URL(upstream_url.rstrip("/"))
        self.quirks = quirks or Quirks()
        self.cdn = Cdn()
        self.requests: list[Seen] = []
        self.token_requests: list[tuple[str, str]] = []  # (method, query or form, secrets removed)
        self._token_realm: str | None = None
        self._token_uses: dict[str, int] = {}
        self._expired: set[str] = set()
        self._uploads_started = 0
        self._challenge: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.ServerRunner | None = None
        self._port = 0

    def __repr__(self) -> str:
        return f"QuirksProxy({self.url} -> {self.upstream})"

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT`` of the proxy."""
        return f"127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the proxy (plain HTTP)."""
        return f"http://{self.host}"

    def count(self, method: str, pattern: str = "") -> int:
        """Answered requests with this method whose path matches the regular expression ``pattern``."""
        return sum(1 for s in self.requests if s.method == method and re.search(pattern, s.path_qs))

    def clear(self) -> None:
        """Forget the recorded requests (proxy and CDN), to count one phase of a test."""
        self.requests.clear()
        self.token_requests.clear()
        self.cdn.requests.clear()

    async def __aenter__(self) -> QuirksProxy:
        self._session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
        )
        self._runner = web.ServerRunner(web.Server(self._handle, access_log=None), shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        app = web.Application()
        app.router.add_get("/cdn/{key}", self._cdn_get)
        self.cdn._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.cdn._runner.setup()
        cdn_site = web.TCPSite(self.cdn._runner, "127.0.0.1", 0)
        await cdn_site.start()
        self.cdn.port = int(self.cdn._runner.addresses[0][1])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for runner in (self._runner, self.cdn._runner):
            if runner is not None:
                await runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # -- dispatch ---------------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/token":
            return await self._token(request)
        stale = self._stale_token(request)
        if stale is not None:
            await request.read()  # a server refusing the token after reading the body
            return await self._answer(request, stale)
        q = self.quirks
        if _GONE_SESSION in request.path:
            await request.read()
            return await self._answer(request, _error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown"))
        if request.method == "POST" and q.mount_session_gone and "mount=" in request.raw_path:
            location = request.path + _GONE_SESSION.rsplit("/", 1)[-1] + secrets.token_hex(8)
            return await self._answer(request, web.Response(status=202, headers={"Location": location}))
        if request.method == "POST" and q.mount_unauthorized and "mount=" in request.raw_path:
            challenge = self._challenge or 'Basic realm="quirks"'
            refused = _error(401, "UNAUTHORIZED", "mount refused", {"WWW-Authenticate": challenge})
            return await self._answer(request, refused)
        if request.method == "PATCH" and q.refuse_patch:
            await request.read()  # take the body, as a server refusing it after reading would
            return await self._answer(request, _error(405, "UNSUPPORTED", "chunked upload not supported"))
        if (
            request.method == "GET"
            and _TAGS.match(request.path)
            and (q.tags_page_cap or q.tags_null or q.tags_max_n)
        ):
            return await self._tags_page(request)
        if request.method == "GET" and q.cdn_redirect and _BLOB_GET.match(request.path):
            redirect = await self._redirect_to_cdn(request)
            if redirect is not None:
                return await self._answer(request, redirect)
        return await self._forward(request)

    async def _answer(self, request: web.BaseRequest, response: web.Response) -> web.Response:
        self._record(request, response.status)
        return response

    def _record(self, request: web.BaseRequest, status: int) -> None:
        self.requests.append(
            Seen(
                request.method, request.path_qs, status, request.headers.get("Accept"),
                "Authorization" in request.headers,
            )
        )  # fmt: skip

    # -- forwarding with the header quirks ----------------------------------------------------------

    def _upstream_url(self, request: web.BaseRequest) -> URL:
        raw = request.raw_path
        if self.quirks.ignore_mounts and request.method == "POST" and "mount=" in raw:
            raw = request.path  # the mount is ignored: a plain upload start
        return URL(f"{self.upstream}{raw}", encoded=True)

    async def _forward(self, request: web.BaseRequest) -> web.StreamResponse:
        assert self._session is not None
        async with self._session.request(
            request.method,
            self._upstream_url(request),
            headers=_request_headers(request),
            data=request.content.iter_chunked(_CHUNK) if request.can_read_body else None,
            allow_redirects=False,
        ) as upstream:
            status = self._status(request, upstream.status)
            headers = self._response_headers(request, upstream)
            if request.method == "POST" and status == 202:
                self._upload_started(request)
            if status == 404 and upstream.status == 401:
                return await self._answer(request, _error(404, "NAME_UNKNOWN", "repository name not known"))
            self._record(request, status)
            response = web.StreamResponse(status=status)
            response.headers.extend(headers)
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(_CHUNK):
                await response.write(chunk)
            await response.write_eof()
            return response

    def _status(self, request: web.BaseRequest, status: int) -> int:
        q = self.quirks
        if status == 401 and q.not_found_for_unauthorized and request.path != "/v2/":
            return 404
        if status == 202 and request.method == "PATCH" and q.patch_201:
            return 201
        return status

    def _response_headers(
        self, request: web.BaseRequest, upstream: aiohttp.ClientResponse
    ) -> CIMultiDict[str]:
        q = self.quirks
        drop = set(_HOP_BY_HOP)
        if request.method == "HEAD" and q.head_without_digest and _MANIFEST.match(request.path):
            drop.add("docker-content-digest")
        if request.method == "PUT" and q.put_without_digest:
            drop |= {"docker-content-digest", "location"}
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in upstream.headers.items():
            lower = name.lower()
            if lower in drop:
                continue
            if lower == "location" and value.startswith(str(self.upstream)):
                value = self.url + value[len(str(self.upstream)) :]
            if lower == "www-authenticate":
                value = self._rewrite_challenge(value)
            headers.add(name, value)
        return headers

    # -- tokens -------------------------------------------------------------------------------------

    def _upload_started(self, request: web.BaseRequest) -> None:
        nth = self.quirks.token_expires_during_upload
        sent = request.headers.get("Authorization", "")
        self._uploads_started += 1
        if nth and sent.startswith("Bearer ") and self._uploads_started == nth:
            self._expired.add(sent)

    def _rewrite_challenge(self, value: str) -> str:
        match = _REALM.search(value)
        if match is None or not value.lower().startswith("bearer"):
            return value
        self._token_realm = match.group(1)
        value = value[: match.start(1)] + f"{self.url}/token" + value[match.end(1) :]
        self._challenge = value
        return value

    def _stale_token(self, request: web.BaseRequest) -> web.Response | None:
        limit = self.quirks.token_uses
        sent = request.headers.get("Authorization", "")
        if not sent.startswith("Bearer ") or self._challenge is None:
            return None
        uses = self._token_uses.get(sent, 0) + 1
        self._token_uses[sent] = uses
        if (limit is None or uses <= limit) and sent not in self._expired:
            return None
        return _error(401, "UNAUTHORIZED", "token expired", {"WWW-Authenticate": self._challenge})

    async def _token(self, request: web.BaseRequest) -> web.Response:
        assert self._session is not None
        if self._token_realm is None:
            return _error(404, "NOT_FOUND", "no challenge seen yet")
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        body = await request.read() if request.method == "POST" else None
        shown = body.decode() if body else request.query_string
        fields = dict(parse_qsl(shown))
        for secret_field in ("refresh_token", "password"):
            if secret_field in fields:
                fields[secret_field] = "***"
        self.token_requests.append((request.method, urlencode(fields)))
        url = (
            URL(self._token_realm).with_query(request.query_string)
            if body is None
            else URL(self._token_realm)
        )
        async with self._session.request(request.method, url, headers=headers, data=body) as upstream:
            data = await upstream.read()
            status = upstream.status
        self._record(request, status)
        if status != 200:
            return web.Response(status=status, body=data, content_type="application/json")
        return web.json_response(self._reshape(json.loads(data)))

    def _reshape(self, answer: dict[str, Any]) -> dict[str, Any]:
        q = self.quirks
        value = answer.get("token") or answer.get("access_token")
        answer.pop("token", None)
        answer.pop("access_token", None)
        if q.token_shape in ("token", "both"):
            answer["token"] = value
        if q.token_shape in ("access_token", "both"):
            answer["access_token"] = value
        if q.token_expires_in == ABSENT:
            answer.pop("expires_in", None)
            answer.pop("issued_at", None)
        elif q.token_expires_in is not None:
            answer["expires_in"] = q.token_expires_in
        return answer

    # -- tag list pages -----------------------------------------------------------------------------

    async def _tags_page(self, request: web.BaseRequest) -> web.StreamResponse:
        """distribution ignores ``n`` on tag lists: page its whole list here, the way ECR does."""
        assert self._session is not None
        wanted = request.query.get("n", "")
        limit = self.quirks.tags_max_n
        if limit is not None and wanted.isdigit() and int(wanted) > limit:
            refused = _error(400, "PAGINATION_NUMBER_INVALID", f"n must be at most {limit}")
            return await self._answer(request, refused)
        async with self._session.get(
            URL(f"{self.upstream}{request.path}"), headers=_request_headers(request)
        ) as upstream:
            body = await upstream.read()
            if upstream.status != 200:
                status = self._status(request, upstream.status)
                headers = self._response_headers(request, upstream)
                self._record(request, status)
                if status == 404 and upstream.status == 401:
                    return _error(404, "NAME_UNKNOWN", "repository name not known")
                return web.Response(status=status, body=body, headers=headers)
        data = json.loads(body)
        tags = sorted(data.get("tags") or [])
        last = request.query.get("last")
        if last is not None:
            tags = [t for t in tags if t > last]
        size = int(wanted) if wanted.isdigit() else len(tags)
        for cap in (self.quirks.tags_page_cap, limit):
            if cap is not None:
                size = min(size, cap)
        page = tags[:size]
        headers = {}
        if (
            page and len(page) == size and not self.quirks.tags_without_link
        ):  # a full page: eager registries link on even if it was the last
            query = urlencode({"n": str(size), "last": page[-1]})
            headers["Link"] = f'<{request.path}?{query}>; rel="next"'
        listed: list[str] | None = page
        if not page and self.quirks.tags_null:
            listed = None
        self._record(request, 200)
        return web.json_response({"name": data.get("name"), "tags": listed}, headers=headers)

    # -- CDN ----------------------------------------------------------------------------------------

    async def _redirect_to_cdn(self, request: web.BaseRequest) -> web.Response | None:
        """307 to the CDN when the registry would serve the blob (asked with a HEAD); None else."""
        assert self._session is not None
        headers = _request_headers(request)
        headers.popall("Range", None)
        async with self._session.head(
            URL(f"{self.upstream}{request.raw_path}", encoded=True), headers=headers
        ) as upstream:
            if upstream.status != 200:
                return None
        location = self.cdn.grant(request.raw_path, request.headers.get("Authorization"))
        return web.Response(status=307, headers={"Location": location})

    async def _cdn_get(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        self.cdn.requests.append((request.path, "Authorization" in request.headers))
        grant = self.cdn._grants.get(request.match_info["key"])
        if grant is None:
            return web.Response(status=403, text="unknown or expired grant")
        path, authorization = grant
        headers = {"Authorization": authorization} if authorization else {}
        if "Range" in request.headers:
            headers["Range"] = request.headers["Range"]
        async with self._session.get(
            URL(f"{self.upstream}{path}", encoded=True), headers=headers
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for name in ("Content-Length", "Content-Range", "Content-Type"):
                if name in upstream.headers:
                    response.headers[name] = upstream.headers[name]
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(_CHUNK):
                await response.write(chunk)
            await response.write_eof()
            return response


def _request_headers(request: web.BaseRequest) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        if name.lower() not in _HOP_BY_HOP:
            headers.add(name, value)
    return headers


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)
