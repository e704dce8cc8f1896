"""AIMD concurrency and quota pacing (pure asyncio, fake clocks)."""

from __future__ import annotations

import asyncio

from mirrord.registry.http.adaptive import AdaptiveConcurrency, QuotaPacer
from mirrord.registry.http.retry import parse_ratelimit_window
from mirrord.registry.http.transport import HostLimits


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_throttled_halves_once_per_generation_and_recovers_slowly() -> None:
    limit = AdaptiveConcurrency(16)
    sent_before = [await limit.acquire() for _ in range(3)]
    limit.throttled(sent_before[0])
    limit.throttled(sent_before[1])  # sent under the old capacity: the same signal
    assert limit.capacity == 8
    sent_after = await limit.acquire()
    limit.throttled(sent_after)
    assert limit.capacity == 4
    for _ in range(3):
        limit.succeeded()
    assert limit.capacity == 4  # one slot takes a round of about `capacity` answers
    for _ in range(2):
        limit.succeeded()
    assert limit.capacity == 5
    for _ in range(1000):
        limit.succeeded()
    assert limit.capacity == 16  # never above the configured ceiling


def test_capacity_never_below_one() -> None:
    limit = AdaptiveConcurrency(2)
    for _ in range(10):
        limit.throttled(limit.generation)
    assert limit.capacity == 1


async def test_shrunk_capacity_bounds_new_requests() -> None:
    limit = AdaptiveConcurrency(4)
    await limit.acquire()
    await limit.acquire()
    limit.throttled(limit.generation)
    limit.throttled(limit.generation)  # capacity 1 while 2 are held
    waiter = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0)
    limit.release()
    await asyncio.sleep(0)
    assert not waiter.done()  # still 1 in use, capacity 1
    limit.release()
    await asyncio.wait_for(waiter, 1)
    assert limit.in_use == 1


async def test_cancelled_waiter_leaves_no_slot_behind() -> None:
    limit = AdaptiveConcurrency(1)
    await limit.acquire()
    waiter = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0)
    limit.release()  # granted to the waiter ...
    waiter.cancel()  # ... which is cancelled before it runs
    await asyncio.gather(waiter, return_exceptions=True)
    assert limit.in_use == 0
    await asyncio.wait_for(limit.acquire(), 1)


async def test_pacer_spaces_requests_when_quota_is_low() -> None:
    clock = FakeClock()
    pacer = QuotaPacer(low_water=20, max_spacing=10, clock=clock, sleep=clock.sleep)
    pacer.observe(500, 3600)
    for _ in range(3):
        await pacer.wait()
    assert clock.slept == []
    pacer.observe(10, 20)  # 10 left in a 20 s window: one per 2 s
    for _ in range(3):
        await pacer.wait()
    assert clock.slept == [2.0, 2.0]
    pacer.observe(1, 21600)  # Docker Hub's 6 h window: capped, never parked for hours
    assert pacer.spacing == 10


def test_window_parsing() -> None:
    assert parse_ratelimit_window("100;w=21600") == 21600.0
    assert parse_ratelimit_window("100") is None
    assert parse_ratelimit_window("100;w=x") is None
    assert parse_ratelimit_window(None) is None


def test_host_limits_adapt_to_answers() -> None:
    limits = HostLimits(8, None)
    limits.answered(429, None, 0)
    assert limits.concurrency.capacity == 4
    limits.answered(200, "5;w=10", 0)
    assert limits.pacer.spacing == 2.0
