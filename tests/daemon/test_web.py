"""The daemon's HTTP endpoints, served for real on 127.0.0.1 with a random port."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mirrord.daemon.web import Triggered, is_loopback, make_app, start_server
from mirrord.observe.metrics import Metrics

TOKEN = "s3cr3t-trigger-token"


@dataclass
class FakeState:
    """A ServiceState with two entries, recording triggers."""

    ready: bool = True
    entries: tuple[str, ...] = ("nginx", "alpine")
    triggered: list[str | None] = field(default_factory=list)
    running: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=lambda: {"reload_ok": True})

    def is_ready(self) -> bool:
        return self.ready

    def status(self) -> dict[str, Any]:
        entries = {name: {"result": "success", "next_run": 1.5} for name in self.entries}
        return {"config": self.config, "entries": entries}

    def trigger(self, entry: str | None) -> Triggered | None:
        if entry is not None and entry not in self.entries:
            return None
        self.triggered.append(entry)
        names = [entry] if entry else list(self.entries)
        return Triggered(
            started=tuple(n for n in names if n not in self.running),
            queued=tuple(n for n in names if n in self.running),
        )

    def notify(self, pushes: list[Any]) -> tuple[int, int]:
        return len(pushes), 0


@dataclass
class Server:
    state: FakeState
    metrics: Metrics
    session: aiohttp.ClientSession
    base: str
    token: list[str | None]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state, metrics = FakeState(), Metrics()
    token: list[str | None] = [None]
    metrics.declare_entries(state.entries)
    app = make_app(state, metrics, trigger_token=lambda: token[0])
    runner, port = await start_server(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            yield Server(state, metrics, session, f"http://127.0.0.1:{port}", token)
    finally:
        await runner.cleanup()


async def get(server: Server, path: str) -> tuple[int, str, str]:
    async with server.session.get(server.base + path) as response:
        return response.status, response.content_type, await response.text()


async def post(server: Server, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with server.session.post(server.base + path, headers=headers or {}) as response:
        return response.status, await response.json()


async def test_start_server_binds_a_free_port(server: Server) -> None:
    assert int(server.base.rsplit(":", 1)[1]) > 0


async def test_metrics_text_format(server: Server) -> None:
    server.metrics.sync_run_finished("nginx", True, 2.0, 1_700_000_000.0)
    status, content_type, body = await get(server, "/metrics")
    assert status == 200
    assert content_type == "text/plain"
    names = {f.name for f in text_string_to_metric_families(body)}
    assert {"mirrord_sync_runs", "mirrord_build_info"} <= names


async def test_metrics_content_type_parameters(server: Server) -> None:
    async with server.session.get(server.base + "/metrics") as response:
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"


async def test_healthz(server: Server) -> None:
    assert await get(server, "/healthz") == (200, "text/plain", "ok")


async def test_readyz_follows_the_state(server: Server) -> None:
    assert (await get(server, "/readyz"))[0] == 200
    server.state.ready = False
    assert (await get(server, "/readyz"))[0] == 503


async def test_status_is_json(server: Server) -> None:
    async with server.session.get(server.base + "/status") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.json() == server.state.status()


async def test_sync_all_and_one(server: Server) -> None:
    assert await post(server, "/sync") == (
        202,
        {"triggered": None, "started": ["nginx", "alpine"], "queued": []},
    )
    assert await post(server, "/sync?entry=nginx") == (
        202,
        {"triggered": "nginx", "started": ["nginx"], "queued": []},
    )
    assert server.state.triggered == [None, "nginx"]


async def test_sync_says_which_entries_started_and_which_were_queued(server: Server) -> None:
    server.state.running = ("alpine",)
    body = {"triggered": None, "started": ["nginx"], "queued": ["alpine"]}
    assert await post(server, "/sync") == (202, body)


async def test_readyz_names_a_rejected_reload(server: Server) -> None:
    server.state.ready = False
    server.state.config = {"reload_ok": False, "last_reload_error": "plan.yaml:3: sync: bad"}
    assert await get(server, "/readyz") == (
        503,
        "text/plain",
        "not ready: plan reload rejected: plan.yaml:3: sync: bad",
    )


@pytest.mark.parametrize(
    ("remote", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.5", False),
        ("192.168.1.2", False),
        ("::ffff:10.0.0.5", False),
        ("fe80::1%eth0", False),
        (None, False),
        ("", False),
        ("not-an-address", False),
    ],
)
def test_is_loopback(remote: str | None, loopback: bool) -> None:
    assert is_loopback(remote) is loopback


@pytest.mark.parametrize("remote", ["10.0.0.5", "192.168.1.2"])
async def test_without_a_token_only_loopback_clients_may_post(remote: str) -> None:
    from unittest import mock

    from aiohttp.test_utils import make_mocked_request

    state, metrics = FakeState(), Metrics()
    app = make_app(state, metrics, trigger_token=_none)
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (remote, 40000) if name == "peername" else default
    )
    request = make_mocked_request("POST", "/sync", app=app, transport=transport)
    match_info = await app.router.resolve(request)
    response = await match_info.handler(request)
    assert response.status == 403
    assert state.triggered == []


async def test_sync_unknown_or_empty_entry(server: Server) -> None:
    assert await post(server, "/sync?entry=nope") == (
        404,
        {"error": "unknown entry 'nope'", "entries": ["nginx", "alpine"]},
    )
    assert (await post(server, "/sync?entry="))[0] == 400
    assert server.state.triggered == []


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong",
        "Basic czNjcjN0",
        f"Bearer {TOKEN}x",
        f"Token {TOKEN}",
        "Bearer ",
        "Bearer \u00e9",
    ],
)
async def test_sync_refuses_without_the_token(
    server: Server, authorization: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    server.token[0] = TOKEN
    headers = {} if authorization is None else {"Authorization": authorization}
    async with server.session.post(server.base + "/sync?entry=nginx", headers=headers) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        body = await response.text()
    assert TOKEN not in body
    assert TOKEN not in caplog.text
    assert server.state.triggered == []


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_sync_accepts_the_token(server: Server, scheme: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server.token[0] = TOKEN
    status, body = await post(server, "/sync?entry=nginx", {"Authorization": f"{scheme} {TOKEN}"})
    assert (status, body) == (202, {"triggered": "nginx", "started": ["nginx"], "queued": []})
    assert TOKEN not in caplog.text


async def test_auth_is_checked_before_the_entry(server: Server) -> None:
    # An unauthenticated caller must not learn which entries exist.
    server.token[0] = TOKEN
    assert (await post(server, "/sync?entry=nope"))[0] == 401


async def test_unreadable_token_fails_closed(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> str | None:
        raise PermissionError("/run/secrets/trigger: permission denied")

    app = make_app(server.state, server.metrics, trigger_token=broken)
    runner, port = await start_server(app, "127.0.0.1", 0)
    try:
        async with server.session.post(f"http://127.0.0.1:{port}/sync") as response:
            assert response.status == 503
            assert "/run/secrets" not in await response.text()
    finally:
        await runner.cleanup()
    assert server.state.triggered == []


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/nope", 404),
        ("GET", "/", 404),
        ("GET", "/sync", 405),
        ("POST", "/metrics", 405),
        ("DELETE", "/status", 405),
        ("PUT", "/healthz", 405),
    ],
)
async def test_everything_else(server: Server, method: str, path: str, expected: int) -> None:
    async with server.session.request(method, server.base + path) as response:
        assert response.status == expected


async def test_start_server_reports_a_busy_port() -> None:
    metrics = Metrics()
    first, port = await start_server(make_app(FakeState(), metrics, trigger_token=_none), "127.0.0.1", 0)
    try:
        with pytest.raises(OSError, match=r"(?i)in use"):
            await start_server(make_app(FakeState(), metrics, trigger_token=_none), "127.0.0.1", port)
    finally:
        await first.cleanup()


_none: Callable[[], str | None] = lambda: None  # noqa: E731
