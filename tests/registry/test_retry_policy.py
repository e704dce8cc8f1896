"""The one retry policy: its loop (``RetryPolicy.run``) and its counter (``Tries``), with a fake
clock, and the copy engine's blob retries drawn from it (jittered, like every other retry)."""

from __future__ import annotations

import asyncio
import random

import pytest

from mirrord.copy.limits import Limits
from mirrord.registry.errors import NotFound, RateLimited, RegistryError, TransportError
from mirrord.registry.http.retry import RetryPolicy, Sleep, Tries


class FakeSleep:
    """Records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.waits.append(delay)


async def test_run_retries_retryable_errors_until_the_limit_and_reports_each_wait() -> None:
    policy = RetryPolicy(attempts=3, base=0.0)
    calls: list[int] = []
    reported: list[tuple[str, float]] = []

    async def attempt() -> str:
        calls.append(1)
        raise TransportError(f"reset #{len(calls)}")

    with pytest.raises(TransportError, match="reset #3"):
        await policy.run(attempt, lambda error, delay: reported.append((str(error), delay)))
    assert len(calls) == 3
    assert reported == [("reset #1", 0.0), ("reset #2", 0.0)]


async def test_run_gives_a_result_after_a_retry_and_raises_a_final_error_at_once() -> None:
    policy = RetryPolicy(attempts=5, base=0.0)
    outcomes: list[BaseException | str] = [TransportError("reset"), "ok"]

    async def flaky() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert await policy.run(flaky, lambda error, delay: None) == "ok"

    calls = 0

    async def missing() -> None:
        nonlocal calls
        calls += 1
        raise NotFound("gone")

    with pytest.raises(NotFound):
        await policy.run(missing, lambda error, delay: None)
    assert calls == 1


async def test_tries_honour_retry_after_capped_and_jitter_otherwise() -> None:
    sleep = FakeSleep()
    policy = RetryPolicy(base=1.0, cap=8.0, retry_after_cap=10.0)
    tries = policy.tries(4, sleep=sleep)
    reported: list[float] = []
    assert not tries.spent
    await tries.pause(reported.append, retry_after=3.0)
    await tries.pause(reported.append, retry_after=3600.0)
    await tries.pause(reported.append)
    assert tries.spent
    assert sleep.waits == reported
    assert reported[:2] == [3.0, 10.0]
    assert 0.0 <= reported[2] <= 4.0  # third try: full jitter below base * 2**2


def test_a_registry_error_carries_the_servers_hint_whatever_its_class() -> None:
    assert RateLimited("slow down", retry_after=7.0).retry_after == 7.0
    assert RegistryError("plain").retry_after is None


def test_blob_retries_use_the_jittered_policy_of_the_limits() -> None:
    policy = Limits(blob_attempts=4, retry_backoff=0.5).blob_retry
    assert policy.attempts == 4
    rng = random.Random(3)
    delays = [policy.backoff(2, rng) for _ in range(200)]
    assert all(0.0 <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 100  # jittered, not the same doubling for every client
    assert Limits(retry_backoff=0).blob_retry.backoff(3) == 0.0


async def test_a_request_that_succeeds_at_once_builds_no_tries() -> None:
    made: list[int | None] = []

    class Counting(RetryPolicy):
        def tries(self, limit: int | None = None, *, sleep: Sleep = asyncio.sleep) -> Tries:
            made.append(limit)
            return super().tries(limit, sleep=sleep)

    async def ok() -> str:
        return "done"

    assert await Counting().run(ok, lambda error, delay: None) == "done"
    assert made == []


async def test_run_goes_on_after_a_first_try_the_caller_made() -> None:
    """``failed``: the caller made the first try itself (the client's fast path); the loop waits,
    reports that failure, and makes at most ``attempts - 1`` more tries."""
    policy = RetryPolicy(attempts=3, base=0.0)
    calls: list[int] = []
    reported: list[str] = []

    async def attempt() -> str:
        calls.append(1)
        raise TransportError(f"reset #{len(calls) + 1}")

    with pytest.raises(TransportError, match="reset #3"):
        await policy.run(
            attempt, lambda error, delay: reported.append(str(error)), failed=TransportError("reset #1")
        )
    assert len(calls) == 2
    assert reported == ["reset #1", "reset #2"]
    with pytest.raises(TransportError, match="only"):
        await RetryPolicy(attempts=1).run(attempt, lambda error, delay: None, failed=TransportError("only"))
    assert len(calls) == 2
