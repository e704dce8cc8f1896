"""When to retry and how long to wait: the one retry policy of mirrord, and its one loop.

Exponential backoff with full jitter (the AWS architecture blog's variant: a uniform delay between
0 and ``min(cap, base * 2**attempt)``), spreading retries of many clients; a server's
``Retry-After`` wins when present, capped so a hostile value cannot park a worker for hours.

Every retry in mirrord goes through :class:`RetryPolicy`: whole requests
(:meth:`RetryPolicy.run`, used by the HTTP client), and the loops that must do something between
tries (resuming a download, settling a PATCH part, restarting a blob in the copy engine) count
their tries and wait with a :class:`Tries`. The header parsers below are pure functions.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

from mirrord.registry.errors import RegistryError

T = TypeVar("T")
#: How a loop waits (``asyncio.sleep``; tests pass a fake).
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently requests are retried.

    ``attempts`` counts the first try. ``retry_after_cap`` bounds a server's ``Retry-After`` hint.
    ``resume_attempts`` bounds how often a broken blob download is resumed with ``Range``;
    ``upload_attempts`` bounds the tries of one PATCH part of a chunked upload. The copy engine
    builds its own instance for whole-blob restarts (:attr:`mirrord.copy.limits.Limits.blob_retry`).
    """

    attempts: int = 5
    base: float = 0.2
    cap: float = 30.0
    retry_after_cap: float = 60.0
    resume_attempts: int = 5
    upload_attempts: int = 3

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter delay before retry number ``attempt`` (1 = the first retry)."""
        ceiling = min(self.cap, self.base * (2 ** max(0, attempt - 1)))
        return (rng or random).uniform(0.0, ceiling)

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random | None = None) -> float:
        """The wait before retry ``attempt``: the server's hint (capped) if any, else backoff."""
        if retry_after is not None:
            return min(max(0.0, retry_after), self.retry_after_cap)
        return self.backoff(attempt, rng)

    def tries(self, limit: int | None = None, *, sleep: Sleep = asyncio.sleep) -> Tries:
        """A fresh count of tries, at most ``limit`` (default ``attempts``) including the first."""
        return Tries(self, self.attempts if limit is None else limit, sleep)

    async def run(
        self,
        attempt: Callable[[], Awaitable[T]],
        report: Callable[[RegistryError, float], None],
        *,
        limit: int | None = None,
        failed: RegistryError | None = None,
    ) -> T:
        """Await ``attempt()`` until it returns, raises anything but a retryable
        :class:`RegistryError`, or ``limit`` tries are spent (then the last error is raised).
        ``report(error, delay)`` is called before each wait (metrics and logs see every retry).
        ``failed``: the caller made the first try itself (outside this loop) and it failed with
        this retryable error; the loop goes on with the wait before the second."""
        tries: Tries | None = None  # made at the first failure: most requests succeed at once
        while True:
            if failed is None:
                try:
                    return await attempt()
                except RegistryError as error:
                    if not error.retryable:
                        raise
                    failed = error
            if tries is None:
                tries = self.tries(limit)
            if tries.spent:
                raise failed
            await tries.pause(functools.partial(report, failed), failed.retry_after)
            failed = None


class Tries:
    """The tries of one operation under a :class:`RetryPolicy`: counts them and waits between them.

    ``number`` is the try under way (1 = the first); :attr:`spent` is True once it is the last
    allowed; :meth:`pause` waits the policy's delay before the next one.
    """

    def __init__(self, policy: RetryPolicy, limit: int, sleep: Sleep = asyncio.sleep) -> None:
        self.policy = policy
        self.limit = limit
        self.number = 1
        self._sleep = sleep

    @property
    def spent(self) -> bool:
        """True when no further try is allowed."""
        return self.number >= self.limit

    async def pause(self, report: Callable[[float], None], retry_after: float | None = None) -> None:
        """Wait before the next try: the server's ``retry_after`` hint (capped) or a jittered
        backoff; ``report(delay)`` is called first."""
        delay = self.policy.delay(self.number, retry_after)
        report(delay)
        self.number += 1
        await self._sleep(delay)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait per a ``Retry-After`` header (delta seconds or an HTTP date); None if absent
    or unreadable. A date in the past gives 0."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # str.isdigit also accepts '¹', which float() refuses
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_ratelimit_remaining(value: str | None) -> float | None:
    """The quota number of a ``ratelimit-remaining`` header (``100;w=21600`` -> 100.0)."""
    if not value:
        return None
    try:
        return float(value.split(";", 1)[0].strip())
    except ValueError:
        return None


def parse_ratelimit_window(value: str | None) -> float | None:
    """The window in seconds of a ``ratelimit-remaining`` header (``100;w=21600`` -> 21600.0)."""
    for part in (value or "").split(";")[1:]:
        name, _, number = part.strip().partition("=")
        if name.strip().lower() == "w":
            try:
                window = float(number.strip())
            except ValueError:
                return None
            return window if window > 0 else None
    return None
