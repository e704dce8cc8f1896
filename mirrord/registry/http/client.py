"""The HTTP client of one registry: auth, redirects, retries, and the one error-mapping function.

Sending is a chain of small steps, one concern each::

    fetch() / request()  retries (backoff + jitter, Retry-After) for retryable requests (fetch
                         makes the first try itself and enters the policy's loop only after a
                         failure)
      _attempt_whole() / _Streamed._attempt()
                         one try: on 401 record the challenge and try once more with new auth
                         (a 404 to an anonymous request, when we hold credentials, likewise)
        _Exchange        follows redirects; Authorization only to the registry's own origin
          Transport.send one HTTP exchange under the registry's limits (an Exchange)

The steps that hold a response are class-based async context managers, not generator-based ones:
every manifest HEAD passes through them, and a generator context manager costs several calls and
frames more per request.

:func:`error_from_response` is the only place mapping HTTP statuses and distribution error codes to
:mod:`mirrord.registry.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from mirrord.core.events import Event, RetryScheduled
from mirrord.oci import name_with_reference
from mirrord.registry.errors import (
    AuthError,
    NotFound,
    ProtocolError,
    RateLimited,
    RegistryError,
    RequestRejected,
    ServerError,
)
from mirrord.registry.http.auth import (
    Authenticator,
    CredentialSource,
    basic_header,
    parse_www_authenticate,
)
from mirrord.registry.http.catalog import list_catalog
from mirrord.registry.http.credentials import Credentials, resolve_credentials
from mirrord.registry.http.repository import HTTPRepository
from mirrord.registry.http.retry import RetryPolicy, parse_retry_after
from mirrord.registry.http.session import MAX_ERROR_BODY, Fetched
from mirrord.registry.http.transport import NETWORK_ERRORS, Exchange, Transport, network_errors_as_transport
from mirrord.registry.settings import RegistrySettings, TLSSettings

T = TypeVar("T")

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
#: Token endpoint answers are small JSON (a JWT of a few KiB).
MAX_TOKEN_BODY = 1024 * 1024

_NOT_FOUND_CODES = frozenset({"MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_UNKNOWN", "BLOB_UPLOAD_UNKNOWN"})
_AUTH_CODES = frozenset({"UNAUTHORIZED", "DENIED"})


def _first_error(body: bytes) -> tuple[str | None, str | None]:
    """The first ``{"errors":[{"code","message"}]}`` entry of a body, if it has one."""
    try:
        data = json.loads(body)
        first = data["errors"][0]
        code, message = first.get("code"), first.get("message")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None, None
    return (code if isinstance(code, str) else None), (message if isinstance(message, str) else None)


def _error_class(status: int, code: str | None) -> type[RegistryError]:
    if status in (401, 403):
        return AuthError
    if status == 404:
        return NotFound
    if status == 429:
        return RateLimited
    if status >= 500:
        return ServerError
    if 400 <= status < 500:
        # Some registries answer other 4xx with a telling code.
        if code in _AUTH_CODES:
            return AuthError
        if code in _NOT_FOUND_CODES:
            return NotFound
        return RateLimited if code == "TOOMANYREQUESTS" else RequestRejected
    return ProtocolError


def error_from_response(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    registry: str,
    repository: str | None = None,
    reference: str | None = None,
    method: str | None = None,
) -> RegistryError:
    """The error for an unexpected response: class by status, refined by the distribution code.

    401/403 -> AuthError, 404 -> NotFound, 429 -> RateLimited, 5xx -> ServerError (both with
    ``retry_after`` from the header), other 4xx -> by code (UNAUTHORIZED/DENIED -> AuthError, *_UNKNOWN ->
    NotFound, TOOMANYREQUESTS -> RateLimited) else RequestRejected; anything else ProtocolError.
    The message names the place and the registry's own message, never a header value.
    """
    code, message = _first_error(body)
    where = "/".join(x for x in (registry, repository) if x)
    if reference:
        where = name_with_reference(where, reference)
    text = f"{where}: {method + ' ' if method else ''}HTTP {status}"
    if code:
        text += f" {code}"
    if message:
        text += f": {message[:300]}"
    cls = _error_class(status, code)
    retry_after = parse_retry_after(headers.get("Retry-After")) if cls in (RateLimited, ServerError) else None
    return cls(
        text, registry=registry, repository=repository, reference=reference, status=status, code=code,
        retry_after=retry_after,
    )  # fmt: skip


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most ``limit`` bytes of the body (more is dropped with the connection)."""
    data = bytearray()
    while len(data) < limit:
        chunk = await response.content.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _with_authorization(headers: Mapping[str, str] | None, sent: str | None) -> Mapping[str, str] | None:
    """``headers`` with ``Authorization: sent`` (when not None) and no other Authorization. The
    caller's mapping itself when it has none and none is sent: no dict built per request (the
    transport and aiohttp only read it)."""
    if headers is not None:
        for key in headers:
            if key.lower() == "authorization":
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                break
    if sent is None:
        return headers
    return {**(headers or {}), "Authorization": sent}


def _retry_reason(error: RegistryError) -> str:
    if isinstance(error, RateLimited):
        return "429"
    if isinstance(error, ServerError):
        return "5xx"
    return "reset" if error.status is None else str(error.status)


class RegistryClient:
    """The HTTP client of one registry (``settings.host``), sharing the process' transport; the
    :class:`~mirrord.registry.http.session.HTTPSession` its repositories and blob streams use.

    ``api_host`` is where HTTP goes when it differs from the settings key (``docker.io`` ->
    ``registry-1.docker.io``). ``credentials`` overrides credential resolution (tests).
    """

    def __init__(
        self,
        settings: RegistrySettings,
        transport: Transport,
        *,
        api_host: str | None = None,
        retry: RetryPolicy | None = None,
        credentials: CredentialSource | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.retry = retry or RetryPolicy()
        #: False once the registry answered a referrers request with 404: it has no referrers API
        #: (a registry with one answers an empty index), so later passes need not ask again.
        self.referrers_api: bool | None = None
        #: False once the registry refused a chunk PATCH: later uploads go whole (monolithic).
        self.chunked_uploads: bool | None = None
        scheme = "https" if settings.tls.enabled else "http"
        self.base_url = f"{scheme}://{api_host or settings.host}"
        self._own_prefix = self.base_url + "/"
        self._credential_source = credentials
        self._credentials: tuple[Credentials | None] | None = None
        self._credentials_lock = asyncio.Lock()
        #: True once ``/v2/`` answered without a challenge: a 404 then means "not found", not
        #: "unauthorized" (some registries answer 404 to anonymous requests for private content).
        self._open_registry = False
        self.auth = Authenticator(
            self._fetch_token, self._resolve_credentials, self._may_send_credentials,
            post_token=self._post_token,
        )  # fmt: skip

    @property
    def host(self) -> str:
        """The registry's settings key (``127.0.0.1:5000``, ``docker.io``)."""
        return self.settings.host

    def repository(self, name: str) -> HTTPRepository:
        """The repository ``name`` of this registry."""
        return HTTPRepository(self, name)

    async def catalog(self) -> list[str]:
        """Every repository path this registry lists (:func:`~mirrord.registry.http.catalog.list_catalog`)."""
        return await list_catalog(self)

    def url(self, target: str) -> str:
        """``target`` (a path such as ``/v2/...`` or a Location, possibly relative) as an absolute URL."""
        if target.startswith("/v2/"):  # the paths we build ourselves: skip urljoin's parsing
            return self.base_url + target
        if target.startswith(self._own_prefix) and "#" not in target and not target.endswith("?"):
            # An absolute Location on our own origin (an upload session): urljoin would give it
            # back unchanged (it drops only an empty query or fragment), after parsing it twice.
            return target
        return urljoin(self.base_url + "/", target)

    @property
    def read_timeout(self) -> float | None:
        """The transport's read timeout (seconds without a byte), None when unbounded."""
        return self.transport.timeout.sock_read

    def emit(self, event: Event) -> None:
        """Send ``event`` to the transport's event bus, if there is one."""
        self.transport.emit(event)

    def emit_retry(self, reason: str, delay: float) -> None:
        """Report a retry (also used by blob streams resuming a download)."""
        self.transport.emit(RetryScheduled(self.host, reason, delay))

    def cleanup(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` as a cleanup of the transport (:meth:`Transport.cleanup`)."""
        return self.transport.cleanup(work)

    # -- credentials ------------------------------------------------------------------------------

    async def _resolve_credentials(self) -> Credentials | None:
        async with self._credentials_lock:
            if self._credentials is None:
                source = self._credential_source
                found = await source() if source else await resolve_credentials(self.settings.auth, self.host)
                self._credentials = (found,)
            return self._credentials[0]

    def _may_send_credentials(self, url: str | None) -> bool:
        # The registry URL's scheme follows tls.enabled: plain HTTP there is acceptable for
        # credentials only when the plan chose it (tls: false), not by the loopback default.
        if url is None or not self.settings.tls.enabled:
            return not self.settings.tls.implicit_plain
        return url.startswith("https://")

    def _is_own(self, url: str) -> bool:
        """True when ``url`` is on the registry's own origin (the URLs we build: a prefix test)."""
        return url.startswith(self._own_prefix) or _origin(url) == _origin(self.base_url)

    def _tls_for(self, url: str) -> TLSSettings:
        if self._is_own(url):
            return self.settings.tls
        # Another host (token realm, CDN): same trust, but never our client certificate.
        return TLSSettings(verify=self.settings.tls.verify, ca_file=self.settings.tls.ca_file)

    # -- token endpoint ---------------------------------------------------------------------------

    async def _fetch_token(
        self, realm: str, query: Sequence[tuple[str, str]], authorization: str | None
    ) -> bytes:
        url = str(URL(realm).extend_query(list(query)))
        headers = {"Authorization": authorization} if authorization else {}
        return await self.with_retries(lambda: self._token_attempt("GET", url, headers))

    async def _post_token(self, realm: str, form: Sequence[tuple[str, str]]) -> bytes:
        """The OAuth2 exchange of an identity token (refresh token) at the realm."""
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        data = urlencode(list(form)).encode()
        return await self.with_retries(lambda: self._token_attempt("POST", realm, headers, data))

    async def _token_attempt(
        self, method: str, url: str, headers: Mapping[str, str], data: bytes | None = None
    ) -> bytes:
        async with self.transport.send(
            self.settings, method, url, headers=headers, data=data, tls=self._tls_for(url)
        ) as resp:
            with network_errors_as_transport(f"{self.host}: token endpoint", registry=self.host):
                body = await read_bounded(resp, MAX_TOKEN_BODY)
            if resp.status == 200:
                return body
            error = error_from_response(
                resp.status, body, resp.headers, registry=self.host, method=f"token {method}"
            )
        # OAuth2 says a refused refresh token is 400 invalid_grant.
        if isinstance(error, AuthError) or (method == "POST" and error.status == 400):
            self._credentials = None  # re-read at the next use: the secret may have been rotated
            # Said plainly: the usual cause is a wrong password, and the body may echo request details.
            text = f"{self.host}: the token endpoint refused the credentials (HTTP {error.status})"
            raise AuthError(text, registry=self.host, status=error.status)
        raise error

    async def _probe_challenge(self) -> list[Any]:
        """Some registries (gcr.io) answer 401 without a challenge on some paths: ask ``/v2/``."""
        url = self.url("/v2/")
        async with self.transport.send(self.settings, "GET", url, tls=self.settings.tls) as resp:
            return parse_www_authenticate(resp.headers.get("WWW-Authenticate", ""))

    # -- sending ----------------------------------------------------------------------------------

    async def with_retries(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it succeeds, fails for good, or the policy's attempts run out."""
        return await self.retry.run(attempt, self._report_retry)

    def _report_retry(self, error: RegistryError, delay: float) -> None:
        self.emit_retry(_retry_reason(error), delay)

    async def fetch(
        self,
        method: str,
        target: str,
        *,
        scopes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        ok: Collection[int] = (200,),
        limit: int = MAX_ERROR_BODY,
        retry: bool = True,
        repository: str | None = None,
        reference: str | None = None,
    ) -> Fetched:
        """A request whose whole response is read (at most ``limit`` bytes, else ProtocolError),
        retried as a unit: a connection breaking mid-body is retried like one breaking before.
        ``retry`` False for steps that must not be repeated (the last PUT of a chunked upload)."""
        url = self.url(target)
        try:  # the first try here, not in the policy's loop: most requests need no other
            return await self._attempt_whole(
                method, url, scopes, headers, data, ok, limit, repository, reference
            )
        except RegistryError as error:
            if not retry or not error.retryable:
                raise
            failed = error
        attempt = functools.partial(
            self._attempt_whole, method, url, scopes, headers, data, ok, limit, repository, reference
        )
        return await self.retry.run(attempt, self._report_retry, failed=failed)

    async def _attempt_whole(
        self,
        method: str,
        url: str,
        scopes: Sequence[str],
        headers: Mapping[str, str] | None,
        data: bytes | None,
        ok: Collection[int],
        limit: int,
        repository: str | None,
        reference: str | None,
    ) -> Fetched:
        """:meth:`_attempt` for :meth:`fetch`: the response is read whole inside the exchange, so it
        needs none of the exit stacks that keep a streamed response open for the caller (two per
        request, on the path every manifest HEAD takes). Same auth, errors and release order."""
        for authorizing in (False, True):
            exchange = _Exchange(self, method, url, scopes, headers, data, False)
            try:
                async with exchange as response:
                    status = response.status
                    if status in ok:
                        if method == "HEAD":
                            body = b""
                        else:
                            body = await self._read_whole(response, limit, repository, reference)
                        links = tuple(response.headers.getall("Link", ()))
                        # The response's own (read-only) headers: aiohttp keeps them after release.
                        return Fetched(status, response.headers, body, links)
                    answer = CIMultiDict(response.headers)
                    body = await self._error_body(response)
            except RegistryError as error:
                error.repository = error.repository or repository
                error.reference = error.reference or reference
                raise
            # A bytes body (or none) can always be sent again.
            context = {"repository": repository, "reference": reference}
            await self._refused(status, answer, body, exchange.sent, True, authorizing, method, context)
        raise AssertionError("unreachable")

    async def _read_whole(
        self, response: aiohttp.ClientResponse, limit: int, repository: str | None, reference: str | None
    ) -> bytes:
        where: dict[str, Any] = {"registry": self.host, "repository": repository, "reference": reference}
        too_large = f"{self.host}/{repository}: response larger than {limit} bytes"
        if response.content_length is not None and response.content_length > limit:
            raise ProtocolError(too_large, **where)
        with network_errors_as_transport(self.host, **where):
            body = await read_bounded(response, limit + 1)
        if len(body) > limit:
            raise ProtocolError(too_large, **where)
        return body

    def request(
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
    ) -> _Streamed:
        """Send a request and yield (``async with``) a response whose status is in ``ok``; raise
        RegistryError else. The response is released when the context exits.

        ``retry`` False for bodies that cannot be sent twice. ``stream`` gives the registry's
        connection slot back once the headers arrived (long downloads; see the transport).
        """
        return _Streamed(
            self, method, self.url(target), scopes, headers, data, ok, retry, stream, repository, reference
        )

    async def _refused(
        self,
        status: int,
        answer: Mapping[str, str],
        body: bytes,
        sent: str | None,
        resendable: bool,
        authorizing: bool,
        method: str,
        context: Mapping[str, str | None],
    ) -> None:
        """After a response not in ``ok``, already released: return when the request is to be
        sent once more with new authorisation, else raise its error."""
        # The refused response is released before asking for a challenge or a token, so this
        # request never holds one of the registry's slots while waiting for another.
        retry = not authorizing and await self._worth_authorizing(status, answer, sent)
        if retry and resendable:
            return
        refused = error_from_response(status, body, answer, registry=self.host, method=method, **context)
        if retry and status == 401:
            # A spent body (a streamed upload): the caller may send it again with new auth.
            refused.retryable = True
        raise refused

    async def _worth_authorizing(self, status: int, headers: Mapping[str, str], sent: str | None) -> bool:
        """After a 401 (or a 404 some registries give anonymous requests instead), whether the
        same request with new authorisation may succeed: a challenge we can answer, a token the
        registry dropped (expired, revoked), or credentials that changed since they were sent."""
        if status == 404:
            return await self._unauthorized_not_found(sent)
        if status != 401:
            return False
        if await self._challenged(headers, sent):
            return True
        if sent is not None and sent.startswith("Basic "):
            return await self._renewed_basic(sent)
        return False

    async def _renewed_basic(self, sent: str) -> bool:
        """A refused Basic header: read the credentials again (a rotated secret, a helper's expired
        answer); True when they changed."""
        self._credentials = None
        fresh = await self._resolve_credentials()
        return fresh is not None and not fresh.identity_token and basic_header(fresh) != sent

    async def _unauthorized_not_found(self, sent: str | None) -> bool:
        """A 404 to a request sent without credentials, from a registry we hold credentials for and
        never saw challenge: ask ``/v2/`` for its challenge (once; an open registry is remembered)."""
        if sent is not None or self._open_registry or self.auth.challenge is not None:
            return False
        try:
            credentials = await self._resolve_credentials()
        except AuthError:
            credentials = None  # an unusable source: the 404 stands (a 401 would say why)
        if credentials is None:
            self._open_registry = True  # nothing to authenticate with: never ask again
            return False
        challenges = await self._probe_challenge()
        if not challenges:
            self._open_registry = True
            return False
        return self.auth.challenged(challenges, None)

    @staticmethod
    async def _error_body(response: aiohttp.ClientResponse) -> bytes:
        try:
            return await read_bounded(response, MAX_ERROR_BODY)
        except NETWORK_ERRORS:
            return b""  # the status alone still says what happened

    async def _challenged(self, headers: Mapping[str, str], sent: str | None) -> bool:
        challenges = parse_www_authenticate(headers.get("WWW-Authenticate", ""))
        if not challenges:
            challenges = await self._probe_challenge()
        return self.auth.challenged(challenges, sent)


class _Exchange:
    """One request of a client, following GET/HEAD redirects (at most MAX_REDIRECTS): ``async with``
    yields the final response; :attr:`sent` is then the Authorization the registry saw (None when
    none was sent or the response came from another origin). Authorization goes only to the
    registry's own origin. A class rather than ``@asynccontextmanager`` (every manifest HEAD passes
    here): the response, and the transport's exchange holding it, are released on exit."""

    __slots__ = ("_client", "_data", "_headers", "_held", "_method", "_scopes", "_stream", "_url", "sent")

    def __init__(
        self,
        client: RegistryClient,
        method: str,
        url: str,
        scopes: Sequence[str],
        headers: Mapping[str, str] | None,
        data: Any,
        stream: bool,
    ) -> None:
        self._client = client
        self._method = method
        self._url = url
        self._scopes = scopes
        self._headers = headers
        self._data = data
        self._stream = stream
        self._held: Exchange | None = None
        self.sent: str | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        client, method = self._client, self._method
        current, hops = self._url, 0
        while True:
            own = client._is_own(current)
            if own and client.auth.challenge is not None:
                sent = await client.auth.header(self._scopes)
            else:
                sent = None
            held = client.transport.send(
                client.settings, method, current, headers=_with_authorization(self._headers, sent),
                data=self._data, tls=client.settings.tls if own else client._tls_for(current),
                hold_slot=not self._stream,
            )  # fmt: skip
            response = await held.__aenter__()
            location = response.headers.get("Location") if response.status in REDIRECT_STATUSES else None
            if not location or method not in ("GET", "HEAD") or hops >= MAX_REDIRECTS:
                self._held, self.sent = held, sent
                return response
            await held.__aexit__(None, None, None)
            current, hops = urljoin(current, location), hops + 1

    async def __aexit__(self, *exc_info: object) -> None:
        held, self._held = self._held, None
        if held is not None:
            await held.__aexit__(*exc_info)


class _Streamed(contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]):
    """What :meth:`RegistryClient.request` returns: ``async with`` sends (retried unless ``retry``
    is False; a 401 answered once with new authorisation, as :meth:`RegistryClient.fetch` does)
    and yields the accepted response, held (with its slot) until the context exits. A class
    rather than ``@asynccontextmanager`` over two exit stacks: every blob GET and upload request
    passes here."""

    __slots__ = (
        "_client", "_data", "_headers", "_held", "_method", "_ok", "_reference", "_repository",
        "_retry", "_scopes", "_stream", "_url",
    )  # fmt: skip

    def __init__(
        self,
        client: RegistryClient,
        method: str,
        url: str,
        scopes: Sequence[str],
        headers: Mapping[str, str] | None,
        data: Any,
        ok: Collection[int],
        retry: bool,
        stream: bool,
        repository: str | None,
        reference: str | None,
    ) -> None:
        self._client = client
        self._method = method
        self._url = url
        self._scopes = scopes
        self._headers = headers
        self._data = data
        self._ok = ok
        self._retry = retry
        self._stream = stream
        self._repository = repository
        self._reference = reference
        self._held: _Exchange | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        if not self._retry:
            return await self._attempt()
        client = self._client
        return await client.retry.run(self._attempt, client._report_retry)

    async def __aexit__(self, *exc_info: object) -> None:
        held, self._held = self._held, None
        if held is not None:
            await held.__aexit__(*exc_info)

    async def _attempt(self) -> aiohttp.ClientResponse:
        client, method, data = self._client, self._method, self._data
        # A streamed body (an iterator) is spent: it cannot be sent again with new auth.
        resendable = data is None or isinstance(data, bytes | bytearray)
        context = {"repository": self._repository, "reference": self._reference}
        for authorizing in (False, True):
            exchange = _Exchange(client, method, self._url, self._scopes, self._headers, data, self._stream)
            try:
                response = await exchange.__aenter__()
            except RegistryError as error:
                error.repository = error.repository or self._repository
                error.reference = error.reference or self._reference
                raise
            if response.status in self._ok:
                self._held = exchange
                return response
            try:
                status, answer = response.status, CIMultiDict(response.headers)
                body = await client._error_body(response)
            finally:
                await exchange.__aexit__(None, None, None)
            await client._refused(
                status, answer, body, exchange.sent, resendable, authorizing, method, context
            )
        raise AssertionError("unreachable")
