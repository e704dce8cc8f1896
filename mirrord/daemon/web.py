"""The daemon's HTTP endpoints: metrics, probes, status and a manual trigger.

=====================  =========================================================================
``GET /metrics``       Prometheus text format
``GET /healthz``       200 ``ok`` while the event loop runs (answering at all is the proof)
``GET /readyz``        200 ``ready`` / 503 ``not ready`` (:meth:`ServiceState.is_ready`), with the reason
                       when the last plan reload was rejected
``GET /status``        JSON from :meth:`ServiceState.status`
``POST /sync``         202 ``{"triggered": NAME | null, "started": [NAME...], "queued": [NAME...]}``
                       (``triggered`` null: every entry; ``started``: passes begun now; ``queued``:
                       entries running already, which run once more right after); ``?entry=NAME``
                       for one; 404 for an unknown entry (listing the entries); 401 without the
                       right bearer token when one is set; 403 from a non-loopback client when no
                       token is set
``POST /notify``       a registry's push notification (:mod:`mirrord.daemon.notify`): 202
                       ``{"accepted", "ignored", "invalid"}`` event counts; 400 for a body that is no
                       notification; the same token rules as ``POST /sync``; ``?registry=HOST`` names
                       the sender
=====================  =========================================================================

Any other path answers 404, any other method on a known path 405 (aiohttp's router does both).
The trigger token is never logged, echoed or put in an error.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from mirrord.core.errors import MirrordError
from mirrord.daemon.notify import InvalidNotification, PushEvent, parse_notification
from mirrord.observe.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

_STATE: web.AppKey[ServiceState] = web.AppKey("state")
_METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
_TOKEN: web.AppKey[Callable[[], str | None]] = web.AppKey("trigger_token")

_BEARER = "bearer "


@dataclass(frozen=True, slots=True)
class Triggered:
    """The answer to a trigger: entries whose pass started now, and entries already running, which
    run once more right after (always truthy, so ``if state.trigger(...)`` reads as "accepted")."""

    started: tuple[str, ...] = ()
    queued: tuple[str, ...] = ()


class ServiceState(Protocol):
    """What the HTTP layer needs from the running service."""

    def is_ready(self) -> bool:
        """True once the plan is loaded and serving and no entry is stale (> 3 intervals)."""
        ...

    def status(self) -> dict[str, Any]:
        """The JSON-able ``/status`` body; it must hold no secrets."""
        ...

    def trigger(self, entry: str | None) -> Triggered | None:
        """Start a pass now over ``entry`` (every entry when None); None when the entry is unknown."""
        ...

    def notify(self, pushes: list[PushEvent]) -> tuple[int, int]:
        """Sync what ``pushes`` name that some entry covers; (accepted, ignored) event counts."""
        ...


class ListenError(MirrordError, OSError):
    """The HTTP server cannot listen on the address asked for; ``str(e)`` names it and says why."""


def make_app(
    state: ServiceState, metrics: Metrics, *, trigger_token: Callable[[], str | None]
) -> web.Application:
    """The daemon's application.

    ``trigger_token`` is called on every ``POST /sync`` (so a rotated token file takes effect without a
    restart); when it returns a token the request must carry ``Authorization: Bearer <token>``. When it
    raises, the trigger fails closed with 503.
    """
    app = web.Application()
    app[_STATE] = state
    app[_METRICS] = metrics
    app[_TOKEN] = trigger_token
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/status", _status)
    app.router.add_post("/sync", _sync)
    app.router.add_post("/notify", _notify)
    return app


async def start_server(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (port 0: any free port); returns the runner and the bound port.

    The caller stops the server with ``await runner.cleanup()``. ListenError when the address cannot
    be bound (in use, not an address of this host, a privileged port).
    """
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
    except OSError as exc:
        await runner.cleanup()
        # asyncio's message repeats the address; the errno's own text is the reason.
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ListenError(f"cannot listen on {host}:{port}: {reason}") from None
    except BaseException:
        await runner.cleanup()
        raise
    log.info("http server listening", extra={"fields": {"host": host, "port": bound}})
    return runner, int(bound)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[_METRICS].render()
    # CONTENT_TYPE carries parameters (version, charset), so it goes in the header verbatim.
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _readyz(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    if state.is_ready():
        return web.Response(text="ready")
    config = state.status().get("config") or {}
    if config.get("reload_ok") is False:
        # The plan on disk was rejected: say so, the old plan is still the one running.
        reason = f"plan reload rejected: {config.get('last_reload_error')}"
        return web.Response(status=503, text=f"not ready: {reason}")
    return web.Response(status=503, text="not ready")


async def _status(request: web.Request) -> web.Response:
    return web.json_response(request.app[_STATE].status())


async def _sync(request: web.Request) -> web.Response:
    denied = _check_token(request)
    if denied is not None:
        return denied
    entry = request.query.get("entry")
    if entry == "":
        return _error(400, "entry must not be empty")
    triggered = request.app[_STATE].trigger(entry)
    if triggered is None:
        # The caller passed the token check (or is local): naming the valid entries tells nothing new.
        entries = list(request.app[_STATE].status().get("entries", {}))
        return web.json_response({"error": f"unknown entry {entry!r}", "entries": entries}, status=404)
    body = {"triggered": entry, "started": list(triggered.started), "queued": list(triggered.queued)}
    return web.json_response(body, status=202)


async def _notify(request: web.Request) -> web.Response:
    denied = _check_token(request)
    if denied is not None:
        return denied
    metrics = request.app[_METRICS]
    try:
        parsed = parse_notification(await request.read(), request.query.get("registry") or None)
    except InvalidNotification as exc:
        metrics.notifications_counted(invalid=1)
        return _error(400, str(exc))
    accepted, ignored = request.app[_STATE].notify(parsed.pushes)
    ignored += parsed.ignored
    metrics.notifications_counted(accepted=accepted, ignored=ignored, invalid=parsed.invalid)
    body = {"accepted": accepted, "ignored": ignored, "invalid": parsed.invalid}
    return web.json_response(body, status=202)


def _check_token(request: web.Request) -> web.Response | None:
    """None when the request may trigger; otherwise the response that refuses it."""
    try:
        expected = request.app[_TOKEN]()
    except Exception:
        # The reason (a path, an OS error) stays in the log; the client learns nothing about it.
        log.exception("cannot read the trigger token; refusing POST /sync")
        return _error(503, "trigger token unavailable")
    if not expected:
        # Without a token anyone who can reach the port could start passes: only this host may.
        if is_loopback(request.remote):
            return None
        return _error(403, "without server.trigger_token_file only loopback clients may POST")
    if _bearer_matches(request.headers.get("Authorization", ""), expected):
        return None
    response = _error(401, "a valid bearer token is required")
    response.headers["WWW-Authenticate"] = 'Bearer realm="mirrord"'
    return response


def is_loopback(remote: str | None) -> bool:
    """True for a loopback peer address (``127.0.0.0/8``, ``::1``, ``::ffff:127.0.0.1``)."""
    try:
        address = ipaddress.ip_address((remote or "").split("%", 1)[0])
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


def _bearer_matches(header: str, expected: str) -> bool:
    """Constant-time comparison of an ``Authorization: Bearer`` header with the expected token."""
    if header[: len(_BEARER)].lower() != _BEARER:
        return False
    presented = header[len(_BEARER) :].strip()
    # Bytes, because compare_digest refuses non-ASCII str; utf-8 keeps every token comparable.
    return hmac.compare_digest(presented.encode(), expected.encode())


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
