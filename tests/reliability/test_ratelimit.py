"""Rate limits over real sockets: a stub registry that throttles (429 past a concurrency budget) and
counts down a ``ratelimit-remaining`` quota. The client backs its concurrency off (AIMD), spaces
requests out as the quota runs low, and the figures reach the metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from prometheus_client import generate_latest

from mirrord.core.events import EventBus, RateLimitObserved, RetryScheduled
from mirrord.observe.metrics import Metrics
from mirrord.oci import Reference
from mirrord.registry.http.adaptive import QuotaPacer
from mirrord.registry.hub import Registries
from mirrord.registry.settings import RegistrySettings, TLSSettings


@dataclass
class Throttling:
    """Answers manifest HEADs slowly; 429 (Retry-After: 0) while more than ``budget`` are in flight."""

    budget: int = 4
    quota: int | None = None
    window: int = 2
    in_flight: int = 0
    throttled: int = 0
    answered: int = 0

    async def head(self, request: web.Request) -> web.Response:
        headers = {}
        if self.quota is not None:
            self.quota = max(0, self.quota - 1)
            headers["ratelimit-remaining"] = f"{self.quota};w={self.window}"
        if self.in_flight >= self.budget:
            self.throttled += 1
            return web.Response(status=429, headers={**headers, "Retry-After": "0"})
        self.in_flight += 1
        try:
            await asyncio.sleep(0.05)
        finally:
            self.in_flight -= 1
        self.answered += 1
        return web.Response(status=404, headers=headers)


@pytest.fixture
async def stub() -> AsyncIterator[tuple[Throttling, str]]:
    state = Throttling()
    app = web.Application()
    app.router.add_route("HEAD", "/v2/a/b/manifests/{ref}", state.head)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield state, f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def _registries(host: str, bus: EventBus) -> Registries:
    settings = RegistrySettings(host=host, tls=TLSSettings(enabled=False), max_connections=16)
    return Registries({host: settings}, events=bus)


async def test_concurrency_halves_on_429_and_throttling_stops(stub: tuple[Throttling, str]) -> None:
    state, host = stub
    retries: list[RetryScheduled] = []
    bus = EventBus()
    bus.subscribe(lambda e: retries.append(e) if isinstance(e, RetryScheduled) else None)
    async with _registries(host, bus) as registries:
        repo = registries.repository(Reference.parse(f"{host}/a/b", default_tag=None))
        throttled_per_round = []
        for _ in range(3):  # rounds of 32 concurrent requests against a budget of 4
            before = state.throttled
            results = await asyncio.gather(*(repo.manifest_head(f"t{i}") for i in range(32)))
            assert results == [None] * 32  # every request finally answered (404: absent)
            throttled_per_round.append(state.throttled - before)
        capacity = registries.transport.limits_for(registries.settings_for(host)).concurrency.capacity
    assert state.answered == 96
    assert {e.reason for e in retries} == {"429"}
    assert len(retries) == state.throttled
    # Backed off near what the registry takes, probing above it now and then (AIMD), so later
    # rounds draw far fewer 429s than the first.
    assert capacity <= 2 * state.budget
    assert throttled_per_round[2] * 2 < throttled_per_round[0], throttled_per_round
    print(f"\n429s per round: {throttled_per_round}; final capacity {capacity}")


async def test_low_quota_spaces_requests_and_reaches_the_gauge(stub: tuple[Throttling, str]) -> None:
    state, host = stub
    state.budget, state.quota, state.window = 100, 25, 2
    metrics = Metrics()
    bus = EventBus()
    metrics.subscribe(bus)
    seen: list[float] = []
    bus.subscribe(lambda e: seen.append(e.remaining) if isinstance(e, RateLimitObserved) else None)
    # The pacer's clock and sleep are fakes: the pauses it imposes are read, not timed.
    now = [1000.0]
    waits: list[float] = []

    async def sleep(delay: float) -> None:
        waits.append(delay)
        now[0] += delay

    async with _registries(host, bus) as registries:
        registries.transport.limits_for(registries.settings_for(host)).pacer = QuotaPacer(
            clock=lambda: now[0], sleep=sleep
        )
        repo = registries.repository(Reference.parse(f"{host}/a/b", default_tag=None))
        for i in range(5):  # quota 24..20: ample, no pause
            await repo.manifest_head(f"t{i}")
        assert waits == []
        for i in range(4):  # quota 19..16 of a 2 s window: window / remaining apart
            await repo.manifest_head(f"u{i}")
    assert seen[:3] == [24, 23, 22]
    # u0 is answered with 19 left; u1 takes the first paced turn at once; u2 waits 2/19 after it,
    # u3 2/18 after u2 (the spacing each answer set).
    assert waits == pytest.approx([2 / 19, 2 / 18])
    text = generate_latest(metrics.registry).decode()
    assert f'mirrord_ratelimit_remaining{{registry="{host}"}} 16.0' in text
