"""The one HTTP session of the process, with per-registry limits, TLS and instrumentation.

A :class:`Transport` owns a single ``aiohttp.ClientSession`` (created in ``async with``) whose
connector has no global limit: limits are per registry, done here, so one slow registry cannot
starve the others. Each request to a registry first passes that registry's rate limiter
(``requests_per_second``) and takes one of its ``max_connections`` slots.

A slot is held until the response is released, except for streaming downloads that ask to give it
back once the headers arrived (``hold_slot=False``): a blob body being copied to another
repository of the *same* registry must not wait for the upload's slot while holding its own, or
``max_connections`` concurrent copies would deadlock. The engine bounds concurrent streams itself.

The limits adapt (:mod:`mirrord.registry.http.adaptive`): a 429 halves the registry's concurrency and
answers grow it back slowly; a low ``ratelimit-remaining`` spaces requests out. A registry's
``stall_timeout`` replaces the read timeout for its requests: no byte for that long fails them.

A network failure becomes a :class:`TransportError` in one place, :func:`network_error` (or the
block :func:`network_errors_as_transport`), wherever in the registry layer it is caught.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import time
from collections.abc import Coroutine, Iterator, Mapping
from typing import Any

import aiohttp
from asyncio_throttle.throttler import Throttler
from yarl import URL

from mirrord import __version__
from mirrord.core.events import Event, EventBus, HttpRequestDone, RateLimitObserved
from mirrord.registry.errors import TransportError, Unreachable
from mirrord.registry.http.adaptive import AdaptiveConcurrency, QuotaPacer
from mirrord.registry.http.retry import parse_ratelimit_remaining, parse_ratelimit_window
from mirrord.registry.settings import RegistrySettings, TLSSettings

DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_READ_TIMEOUT = 60.0
USER_AGENT = f"mirrord/{__version__}"
#: Socket read buffer per response: large reads keep per-chunk overhead low on fast links.
READ_BUFFER = 1024 * 1024

#: How long closing a transport waits for its cleanups (cancelled upload sessions) to be sent.
CLEANUP_TIMEOUT = 10.0

#: aiohttp exceptions that mean "the network failed", as opposed to a programming error.
NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


def network_error(
    exc: BaseException | None,
    place: str,
    *,
    detail: str = "",
    registry: str | None = None,
    repository: str | None = None,
    reference: str | None = None,
) -> TransportError:
    """The one mapping of a network failure to the error tree: a TransportError
    ``"<place>: <what failed>[ <detail>]"``, chained to ``exc``. ``exc`` None means the connection
    ended cleanly before the body did. Messages never carry a header, URL query or secret.

    A connection that could not be made at all (refused, DNS, no route, TLS handshake or
    certificate: aiohttp's ClientConnectorError) is :class:`Unreachable`, which is not retried;
    anything else (reset, timeout, a broken body) a retryable TransportError."""
    what = describe_network_error(exc) if exc is not None else "connection closed early"
    cls = Unreachable if isinstance(exc, aiohttp.ClientConnectorError) else TransportError
    error = cls(
        f"{place}: {what}{' ' + detail if detail else ''}",
        registry=registry, repository=repository, reference=reference,
    )  # fmt: skip
    if isinstance(error, Unreachable):
        error.reason = what
    error.__cause__ = exc
    return error


@contextlib.contextmanager
def network_errors_as_transport(
    place: str, *, registry: str | None = None, repository: str | None = None, reference: str | None = None
) -> Iterator[None]:
    """Raise :func:`network_error` for a network failure inside the block (other errors pass)."""
    try:
        yield
    except NETWORK_ERRORS as exc:
        raise network_error(
            exc, place, registry=registry, repository=repository, reference=reference
        ) from exc


def describe_network_error(exc: BaseException) -> str:
    """A short, secret-free description of a network failure."""
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = (
            getattr(exc.certificate_error, "verify_message", None) or type(exc.certificate_error).__name__
        )
        return f"TLS certificate verification failed ({reason}): trust its CA with tls.ca_file"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake failed ({type(exc.os_error).__name__})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        number = exc.os_error.errno
        # asyncio words a refused connection as "Connect call failed ('127.0.0.1', 5000)"; the errno
        # says it plainly.
        said = os.strerror(number) if isinstance(number, int) and number > 0 else exc.os_error.strerror
        return f"cannot connect ({said or type(exc.os_error).__name__})"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "connection broke while reading the body"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


#: Every character an already-encoded URL may hold (RFC 3986 reserved + unreserved + '%').
_ENCODED_URL = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]*")


def encoded_url(url: str) -> URL | str:
    """``url`` as a ``yarl.URL(..., encoded=True)`` when it is already encoded (the paths we build
    quote their parts; registries' Locations are URLs): yarl then skips parsing and re-quoting it,
    which it would otherwise do for every request (each tag's URL is new, so its cache misses).
    Anything else is left to aiohttp to encode, as before."""
    return URL(url, encoded=True) if _ENCODED_URL.fullmatch(url) else url


def build_ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """An SSL context for ``tls``: system trust plus ``ca_file`` (like docker's certs.d, so a
    redirect to a public CDN still verifies), optional client certificate, and no verification at
    all when ``verify`` is False."""
    context = ssl.create_default_context()
    if tls.ca_file is not None:
        context.load_verify_locations(cafile=tls.ca_file)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.client_cert is not None:
        context.load_cert_chain(tls.client_cert, tls.client_key)
    return context


class HostLimits:
    """The request budget of one registry: a rate limiter (optional), a quota pacer and an
    adaptive concurrency cap (AIMD between 1 and ``max_connections``, see
    :mod:`mirrord.registry.http.adaptive`)."""

    def __init__(self, max_connections: int, requests_per_second: float | None) -> None:
        self.concurrency = AdaptiveConcurrency(max_connections)
        self.pacer = QuotaPacer()
        self.throttler: Throttler | None = None
        if requests_per_second is not None and requests_per_second > 0:
            # Throttler counts whole requests per period: allow int(rps) per int(rps)/rps seconds,
            # which keeps fractional rates exact (0.5/s = 1 per 2 s) with a burst of int(rps).
            burst = max(1, int(requests_per_second))
            self.throttler = Throttler(rate_limit=burst, period=burst / requests_per_second)

    async def acquire(self) -> int:
        """Wait for the rate limiter and the quota pacer, then for a free slot; returns the
        concurrency generation to pass to :meth:`answered`."""
        if self.throttler is not None:
            await self.throttler.acquire()  # type: ignore[no-untyped-call]
        await self.pacer.wait()
        return await self.concurrency.acquire()

    def try_acquire(self) -> int | None:
        """:meth:`acquire` without waiting: the generation when nothing would have made it wait
        (no rate limiter, no pacing, a free slot and nobody queued), else None (then await
        :meth:`acquire`). The usual request takes this path and needs no coroutine for its slot."""
        if self.throttler is None and self.pacer.spacing <= 0:
            return self.concurrency.try_acquire()
        return None

    def release(self) -> None:
        """Give the slot back."""
        self.concurrency.release()

    def answered(self, status: int, quota: str | None, generation: int) -> None:
        """Adapt to a response to a request admitted in ``generation``: 429 halves the concurrency
        (once per generation), any other answer grows it slowly; ``quota``, the response's
        ``ratelimit-remaining`` header (None without one), feeds the pacer."""
        if status == 429:
            self.concurrency.throttled(generation)
        else:
            self.concurrency.succeeded()
        if quota:
            remaining = parse_ratelimit_remaining(quota)
            if remaining is not None:
                self.pacer.observe(remaining, parse_ratelimit_window(quota))


class Transport:
    """The process-wide HTTP session (``async with Transport() as transport``).

    ``send`` performs exactly one HTTP exchange (no redirects, no retries, no auth: the client
    does those) and yields the response, which is released when the context exits. Network
    failures raise :class:`TransportError`. Every exchange emits :class:`HttpRequestDone`;
    ``ratelimit-remaining`` headers emit :class:`RateLimitObserved`.
    """

    def __init__(
        self,
        *,
        events: EventBus | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        self.events = events
        # No total timeout: a large blob may legitimately stream for hours; a stalled one trips
        # sock_read instead.
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None
        self._limits: dict[str, HostLimits] = {}
        self._ssl: dict[TLSSettings, ssl.SSLContext] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._cleanups: set[asyncio.Task[None]] = set()

    def cleanup(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` (cancelling an abandoned upload session, say) as a task that cancelling its
        caller does not stop, and that closing the transport waits for (up to CLEANUP_TIMEOUT), so
        an interrupted run still sends it."""
        task = asyncio.ensure_future(work)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        return task

    async def __aenter__(self) -> Transport:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        # Content is addressed by the digest of its exact bytes: ask for them as stored
        # (identity), and never let the client transparently decompress anything.
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self.timeout,
            auto_decompress=False,
            read_bufsize=READ_BUFFER,
            headers={"Accept-Encoding": "identity", "User-Agent": USER_AGENT},
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._cleanups:
            await asyncio.wait(set(self._cleanups), timeout=CLEANUP_TIMEOUT)
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session; RuntimeError outside ``async with``."""
        if self._session is None:
            raise RuntimeError("Transport is not open: use `async with Transport() as transport`")
        return self._session

    def emit(self, event: Event) -> None:
        """Send ``event`` to the bus, if there is one."""
        if self.events is not None:
            self.events.emit(event)

    def limits_for(self, settings: RegistrySettings) -> HostLimits:
        """The (shared) limits of ``settings.host``, created on first use."""
        limits = self._limits.get(settings.host)
        if limits is None:
            limits = HostLimits(settings.max_connections, settings.requests_per_second)
            self._limits[settings.host] = limits
        return limits

    def forget_limits(self, host: str) -> None:
        """Drop the limits of ``host`` so new settings take effect (plan reload)."""
        self._limits.pop(host, None)

    def timeout_for(self, settings: RegistrySettings) -> aiohttp.ClientTimeout:
        """The session's timeouts, with ``settings.stall_timeout`` (when set) as the read timeout:
        a response that moves no bytes that long fails with TransportError and is retried."""
        stall = settings.stall_timeout
        if stall is None:
            return self.timeout
        timeout = self._timeouts.get(stall)
        if timeout is None:
            base = self.timeout
            timeout = aiohttp.ClientTimeout(
                total=base.total, connect=base.connect, sock_connect=base.sock_connect, sock_read=stall
            )
            self._timeouts[stall] = timeout
        return timeout

    def ssl_for(self, tls: TLSSettings) -> ssl.SSLContext:
        """The cached SSL context for ``tls``."""
        context = self._ssl.get(tls)
        if context is None:
            context = self._ssl[tls] = build_ssl_context(tls)
        return context

    def send(
        self,
        settings: RegistrySettings,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        tls: TLSSettings | None = None,
        hold_slot: bool = True,
    ) -> Exchange:
        """One exchange with ``url`` under ``settings.host``'s limits, as an async context manager
        yielding the response (released, and its slot given back, when the context exits).

        ``tls`` overrides the registry's TLS settings (a redirect to another host gets defaults).
        """
        return Exchange(self, settings, method, url, headers, data, tls or settings.tls, hold_slot)


class Exchange:
    """What :meth:`Transport.send` returns: ``async with`` takes a slot of the registry's limits
    (waiting only when they say so), sends, and yields the response; leaving releases the
    response, then the slot (unless ``hold_slot`` False gave it back once the headers arrived).
    A class rather than ``@asynccontextmanager``: every manifest HEAD passes here, and a generator
    based context manager costs a generator, its frames and several calls more per request."""

    __slots__ = (
        "_data",
        "_headers",
        "_hold_slot",
        "_holding",
        "_limits",
        "_method",
        "_response",
        "_settings",
        "_tls",
        "_transport",
        "_url",
    )  # fmt: skip

    def __init__(
        self,
        transport: Transport,
        settings: RegistrySettings,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        data: Any,
        tls: TLSSettings,
        hold_slot: bool,
    ) -> None:
        self._transport = transport
        self._settings = settings
        self._method = method
        self._url = url
        self._headers = headers
        self._data = data
        self._tls = tls
        self._hold_slot = hold_slot
        self._limits: HostLimits | None = None
        self._response: aiohttp.ClientResponse | None = None
        self._holding = False

    async def __aenter__(self) -> aiohttp.ClientResponse:
        transport = self._transport
        limits = transport.limits_for(self._settings)
        generation = limits.try_acquire()
        if generation is None:
            generation = await limits.acquire()
        self._limits, self._holding = limits, True
        settings, method, url = self._settings, self._method, self._url
        events = transport.events
        timed = events is not None and events.wants(HttpRequestDone)
        started = time.monotonic() if timed else 0.0
        try:
            response = await transport.session.request(
                method,
                encoded_url(url),
                headers=self._headers,  # aiohttp merges it into a new CIMultiDict: no copy here
                data=self._data,
                allow_redirects=False,
                ssl=transport.ssl_for(self._tls) if url.startswith("https:") else True,
                timeout=transport.timeout_for(settings),
            )
        except BaseException as exc:
            self._release_slot()
            if isinstance(exc, NETWORK_ERRORS):
                if timed:
                    transport.emit(HttpRequestDone(settings.host, method, 0, time.monotonic() - started))
                raise network_error(exc, f"{method} {settings.host}", registry=settings.host) from exc
            raise
        self._response = response
        try:
            if timed:
                elapsed = time.monotonic() - started
                transport.emit(HttpRequestDone(settings.host, method, response.status, elapsed))
            quota = response.headers.get("ratelimit-remaining")
            if quota and events is not None:
                remaining = parse_ratelimit_remaining(quota)
                if remaining is not None:
                    transport.emit(RateLimitObserved(settings.host, remaining))
            limits.answered(response.status, quota, generation)
        except BaseException:
            self._release()
            raise
        if not self._hold_slot:
            self._release_slot()
        return response

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        response, self._response = self._response, None
        try:
            if response is not None:
                response.release()
        finally:
            self._release_slot()

    def _release_slot(self) -> None:
        if self._holding and self._limits is not None:
            self._holding = False
            self._limits.release()
