"""The scheduler, with fake run functions and, where a test is about time, a fake clock.

No test measures wall time from above: "nothing else starts" is checked after :func:`settle` (the
event loop ran every ready callback, which is where a wrongly started run would begin, since the
intervals here never elapse), and delays are read from ``next_run`` on a frozen fake clock.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from mirrord.daemon.scheduler import Scheduler

LONG = 3600.0  # an interval that never elapses during a test


class Recorder:
    """A run function: records starts, tracks concurrency, can block or fail on demand."""

    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.starts: dict[str, list[float]] = {}
        self.active: dict[str, int] = {}
        self.max_active = 0
        self.gate: asyncio.Event | None = None  # when set up, runs wait for it
        self.cancelled: list[str] = []

    def count(self, name: str) -> int:
        return len(self.starts.get(name, []))

    async def __call__(self, name: str) -> bool:
        self.starts.setdefault(name, []).append(time.monotonic())
        self.active[name] = self.active.get(name, 0) + 1
        self.max_active = max(self.max_active, self.active[name])
        try:
            if self.gate is not None:
                await self.gate.wait()
            return self.ok
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        finally:
            self.active[name] -= 1


async def until(condition: Callable[[], bool], within: float = 2.0) -> None:
    """Wait until ``condition()`` holds; fail the test after ``within`` seconds."""
    async with asyncio.timeout(within):
        # Polling: the conditions look at scheduler state that has no event to wait on.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


async def settle(rounds: int = 50) -> None:
    """Let the event loop run every callback that is ready, ``rounds`` times over (no wall clock)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``scheduler`` in a task; stop it on exit and check that ``run`` returns."""
    task = asyncio.create_task(scheduler.run())
    try:
        yield task
    finally:
        scheduler.stop()
        async with asyncio.timeout(2):
            await task


async def test_first_pass_of_every_entry_at_start() -> None:
    rec = Recorder()
    scheduler = Scheduler(rec)
    scheduler.set_entries({"a": LONG, "b": LONG})
    async with running(scheduler):
        await until(lambda: rec.count("a") == 1 and rec.count("b") == 1)
        await settle()
    assert rec.count("a") == rec.count("b") == 1


async def test_repeats_every_interval() -> None:
    rec = Recorder()
    scheduler = Scheduler(rec, jitter=0.0)
    scheduler.set_entries({"a": 0.02})
    async with running(scheduler):
        await until(lambda: rec.count("a") >= 4)
    gaps = [b - a for a, b in zip(rec.starts["a"], rec.starts["a"][1:], strict=False)]
    assert all(gap >= 0.019 for gap in gaps), gaps


async def test_next_run_follows_the_interval() -> None:
    rec = Recorder()
    clock = FakeClock()
    scheduler = Scheduler(rec, jitter=0.0, clock=clock)
    scheduler.set_entries({"a": LONG})
    async with running(scheduler):
        await until(lambda: rec.count("a") == 1 and not scheduler.running("a"))
        assert scheduler.next_run("a") == 1000.0 + LONG


async def jittered_delays(seed: int, runs: int) -> list[float]:
    """The delays drawn after ``runs`` successful runs (interval 100 s, jitter 0.25).

    The clock is frozen, so ``next_run - now`` is exactly the drawn delay; each follow-up run is
    started by a trigger instead of waiting out the interval.
    """
    rec = Recorder()
    scheduler = Scheduler(rec, jitter=0.25, clock=lambda: 1000.0, rng=random.Random(seed))
    scheduler.set_entries({"a": 100.0})
    delays = []
    async with running(scheduler):
        for n in range(1, runs + 1):
            await until(lambda n=n: rec.count("a") == n and not scheduler.running("a"))  # type: ignore[misc]
            next_run = scheduler.next_run("a")
            assert next_run is not None
            delays.append(next_run - 1000.0)
            assert scheduler.trigger("a")
    return delays


async def test_jitter_stays_within_bounds_and_follows_the_seed() -> None:
    delays = await jittered_delays(seed=7, runs=30)
    assert all(100.0 <= d <= 125.0 for d in delays), delays
    assert len(set(delays)) > 25  # the jitter actually varies
    assert await jittered_delays(seed=7, runs=30) == delays
    assert await jittered_delays(seed=8, runs=30) != delays


async def test_no_overlap_and_one_queued_follow_up() -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()
    scheduler = Scheduler(rec)
    scheduler.set_entries({"a": LONG})
    async with running(scheduler):
        await until(lambda: scheduler.running("a"))
        assert scheduler.next_run("a") is None
        for _ in range(5):
            assert scheduler.trigger("a")
        assert scheduler.next_run("a") is not None  # the queued follow-up
        await settle()
        assert rec.count("a") == 1
        rec.gate.set()
        await until(lambda: rec.count("a") == 2 and not scheduler.running("a"))
        await settle()
    assert rec.count("a") == 2
    assert rec.max_active == 1


async def test_trigger_idle_entry_and_all() -> None:
    rec = Recorder()
    scheduler = Scheduler(rec)
    scheduler.set_entries({"a": LONG, "b": LONG})
    async with running(scheduler):
        await until(lambda: rec.count("a") == 1 and rec.count("b") == 1)
        await until(lambda: not scheduler.running("a"))
        assert scheduler.trigger("a")
        await until(lambda: rec.count("a") == 2)
        assert scheduler.trigger()
        await until(lambda: rec.count("a") == 3 and rec.count("b") == 2)
        assert not scheduler.trigger("nope")


async def test_backoff_after_failures_then_reset() -> None:
    rec = Recorder(ok=False)
    clock = FakeClock()
    scheduler = Scheduler(
        rec, jitter=0.0, backoff_base=10.0, backoff_max=40.0, clock=clock, rng=random.Random(11)
    )
    scheduler.set_entries({"a": LONG})
    retries: list[float] = []
    clocks: list[float] = []
    async with running(scheduler):
        for n in range(1, 6):
            if n > 1:
                clock.now = scheduler.next_run("a") or 0.0  # the backoff elapses
                assert scheduler.trigger("a")  # wakes the loop, which sees the entry due
            await until(lambda n=n: rec.count("a") == n and not scheduler.running("a"))  # type: ignore[misc]
            next_run = scheduler.next_run("a")
            assert next_run is not None
            retries.append(next_run)
            clocks.append(clock.now)
        rec.ok = True
        clock.now += 1.0
        assert scheduler.trigger("a")
        await until(lambda: rec.count("a") == 6 and not scheduler.running("a"))
        # The success reset the backoff: the next run is a full interval after this one started.
        assert scheduler.next_run("a") == clock.now + LONG
    twin = random.Random(11)  # the draws the scheduler made: the failure jitter, half by default
    ceilings = (10.0, 20.0, 40.0, 40.0, 40.0)
    expected = [now + c * (1.0 - twin.uniform(0.0, 0.5)) for now, c in zip(clocks, ceilings, strict=True)]
    assert retries == expected  # next_run, exactly: ended at now, waits the jittered backoff


async def test_entries_failing_together_retry_spread_out() -> None:
    # A registry down fails every entry at once; their retries must not all land at once.
    rec = Recorder(ok=False)
    scheduler = Scheduler(rec, backoff_base=30.0, clock=lambda: 1000.0, rng=random.Random(5))
    names = [f"e{i}" for i in range(20)]
    scheduler.set_entries(dict.fromkeys(names, LONG))
    async with running(scheduler):
        await until(lambda: all(rec.count(n) == 1 and not scheduler.running(n) for n in names))
        retries = [scheduler.next_run(n) or 0.0 for n in names]
    twin = random.Random(5)
    assert sorted(retries) == sorted(1000.0 + 30.0 * (1.0 - twin.uniform(0.0, 0.5)) for _ in names)
    assert all(1015.0 <= t <= 1030.0 for t in retries), retries  # at most the backoff, at least half
    assert len(set(retries)) == len(names)


def test_backoff_jitter_is_bounded() -> None:
    with pytest.raises(ValueError, match="backoff_jitter"):
        Scheduler(Recorder(), backoff_jitter=1.0)
    exact = Scheduler(Recorder(), backoff_base=30.0, backoff_jitter=0.0)
    assert exact.failure_delay(3, 86400.0) == 120.0


def test_backoff_formula() -> None:
    scheduler = Scheduler(Recorder(), backoff_base=30.0, backoff_max=3600.0)
    assert [scheduler.backoff(n, 86400.0) for n in range(1, 9)] == [
        30.0,
        60.0,
        120.0,
        240.0,
        480.0,
        960.0,
        1920.0,
        3600.0,
    ]
    assert scheduler.backoff(1000, 86400.0) == 3600.0
    assert scheduler.backoff(5, 300.0) == 300.0  # never longer than the entry's interval


async def test_an_exception_is_a_failure_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    async def explode(name: str) -> bool:
        calls.append(name)
        raise RuntimeError("registry on fire")

    scheduler = Scheduler(explode, backoff_base=0.01, backoff_max=0.01)
    scheduler.set_entries({"a": LONG})
    async with running(scheduler):
        await until(lambda: len(calls) >= 3)
    assert "registry on fire" in caplog.text


async def test_set_entries_adds_keeps_and_removes() -> None:
    rec = Recorder()
    scheduler = Scheduler(rec, jitter=0.0)
    scheduler.set_entries({"a": LONG})
    async with running(scheduler):
        await until(lambda: rec.count("a") == 1 and not scheduler.running("a"))
        before = scheduler.next_run("a")
        scheduler.set_entries({"a": LONG, "b": LONG})
        await until(lambda: rec.count("b") == 1)  # a new entry runs soon
        assert scheduler.next_run("a") == before  # a kept entry keeps its timing
        assert rec.count("a") == 1
        scheduler.set_entries({"b": LONG})
        assert scheduler.next_run("a") is None
        assert not scheduler.trigger("a")
        await settle()
    assert rec.count("a") == 1


async def test_shorter_interval_brings_the_next_run_forward() -> None:
    rec = Recorder()
    scheduler = Scheduler(rec, jitter=0.0)
    scheduler.set_entries({"a": LONG})
    async with running(scheduler):
        await until(lambda: rec.count("a") == 1 and not scheduler.running("a"))
        scheduler.set_entries({"a": 0.03})
        await until(lambda: rec.count("a") == 2)
    assert rec.starts["a"][1] - rec.starts["a"][0] >= 0.029


async def test_removed_entry_finishes_its_run_in_flight() -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()
    scheduler = Scheduler(rec)
    scheduler.set_entries({"a": LONG, "b": LONG})
    async with running(scheduler):
        await until(lambda: scheduler.running("a"))
        scheduler.trigger("a")  # a queued follow-up must be dropped with the entry
        scheduler.set_entries({"b": LONG})
        assert scheduler.running("a")
        rec.gate.set()
        await until(lambda: not scheduler.running("a"))
        await settle()
    assert rec.count("a") == 1
    assert rec.cancelled == []


async def test_readding_an_entry_in_flight_keeps_it() -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()
    scheduler = Scheduler(rec)
    scheduler.set_entries({"a": LONG})
    async with running(scheduler):
        await until(lambda: scheduler.running("a"))
        scheduler.set_entries({})
        scheduler.set_entries({"a": LONG})
        rec.gate.set()
        await until(lambda: not scheduler.running("a"))
        assert scheduler.next_run("a") is not None
        assert rec.count("a") == 1


async def test_stop_waits_for_runs_in_flight() -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()
    scheduler = Scheduler(rec)
    scheduler.set_entries({"a": LONG})
    task = asyncio.create_task(scheduler.run())
    await until(lambda: scheduler.running("a"))
    scheduler.stop()
    await settle()
    assert not task.done()
    rec.gate.set()
    async with asyncio.timeout(2):
        await task
    assert rec.cancelled == []


async def test_nothing_starts_after_stop() -> None:
    # "a" hangs in flight, so run() is still looping (waiting for it) when "b" is triggered.
    gate = asyncio.Event()
    starts: list[str] = []

    async def run_entry(name: str) -> bool:
        starts.append(name)
        if name == "a":
            await gate.wait()
        return True

    scheduler = Scheduler(run_entry)
    scheduler.set_entries({"a": LONG, "b": LONG})
    task = asyncio.create_task(scheduler.run())
    await until(lambda: scheduler.running("a") and starts.count("b") == 1 and not scheduler.running("b"))
    scheduler.stop()
    assert scheduler.trigger("b")  # accepted, but must not start: the scheduler is stopping
    assert scheduler.trigger()
    await settle()  # a run wrongly started by the triggers would begin here
    assert not task.done()
    gate.set()
    async with asyncio.timeout(2):
        await task
    await settle()
    assert starts == ["a", "b"]


async def test_drain_cancels_after_grace() -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()  # never set: the run hangs
    scheduler = Scheduler(rec)
    scheduler.set_entries({"a": LONG, "b": LONG})
    task = asyncio.create_task(scheduler.run())
    await until(lambda: scheduler.running("a") and scheduler.running("b"))
    started = time.monotonic()
    await scheduler.drain(0.05)
    assert time.monotonic() - started >= 0.045
    assert sorted(rec.cancelled) == ["a", "b"]
    async with asyncio.timeout(2):
        await task
    assert not scheduler.running("a")


async def test_drain_lets_quick_runs_finish() -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()
    scheduler = Scheduler(rec)
    scheduler.set_entries({"a": LONG})
    task = asyncio.create_task(scheduler.run())
    await until(lambda: scheduler.running("a"))
    # The run ends only once drain is already waiting; the grace never runs out during the test.
    asyncio.get_running_loop().call_soon(rec.gate.set)
    await scheduler.drain(LONG)
    assert rec.cancelled == []
    assert rec.count("a") == 1
    async with asyncio.timeout(2):
        await task


async def test_cancelling_run_cancels_runs_in_flight() -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()
    scheduler = Scheduler(rec)
    scheduler.set_entries({"a": LONG})
    task = asyncio.create_task(scheduler.run())
    await until(lambda: scheduler.running("a"))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rec.cancelled == ["a"]


async def test_run_twice_is_an_error() -> None:
    scheduler = Scheduler(Recorder())
    async with running(scheduler):
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already running"):
            await scheduler.run()


def test_invalid_settings() -> None:
    with pytest.raises(ValueError, match="interval"):
        Scheduler(Recorder()).set_entries({"a": 0.0})
    with pytest.raises(ValueError, match="jitter"):
        Scheduler(Recorder(), jitter=-1.0)


def test_unknown_entry_queries() -> None:
    scheduler = Scheduler(Recorder())
    assert scheduler.next_run("a") is None
    assert not scheduler.running("a")
    assert not scheduler.trigger("a")
    assert scheduler.trigger()  # nothing to run, but not an error
