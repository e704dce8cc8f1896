"""Per-registry limits that adapt to what the registry says: AIMD concurrency and quota pacing.

:class:`AdaptiveConcurrency` is a semaphore whose capacity moves between 1 and the configured
``max_connections``: a 429 halves it (multiplicative decrease, once per "generation": 429s of
requests sent before the last halving say nothing about the new capacity, so a burst counts as one
signal, like TCP's one decrease per window), and each answered request adds ``1 / capacity``
(additive increase: about one slot more per round of requests), so a throttling registry is backed
off fast and re-approached slowly.

:class:`QuotaPacer` spaces requests out once a registry's ``ratelimit-remaining`` runs low (Docker
Hub counts pulls per window): below ``low_water`` remaining requests, requests start at least
``window / remaining`` seconds apart (capped), so the quota lasts rather than running out
mid-image. Both are pure asyncio, no I/O, and take a clock for tests.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: Below this many remaining requests the pacer starts spacing requests out.
LOW_WATER = 20
#: The quota window assumed when the header names none (``;w=`` missing).
DEFAULT_WINDOW = 60.0
#: The longest pause between two requests the pacer imposes: slower, never parked for hours.
MAX_SPACING = 10.0


class AdaptiveConcurrency:
    """A FIFO semaphore with a capacity between 1 and ``ceiling`` that follows AIMD.

    ``acquire`` returns the current generation, to hand back to ``throttled(generation)`` when that
    request is answered 429: it halves the capacity only if no halving happened since the request
    was admitted. ``succeeded()`` grows the capacity by ``1 / capacity`` up to ``ceiling``. Slots
    held when the capacity shrinks are not revoked: new requests wait until enough return.
    """

    def __init__(self, ceiling: int) -> None:
        self.ceiling = max(1, ceiling)
        self.limit = float(self.ceiling)
        self.in_use = 0
        self.generation = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def capacity(self) -> int:
        """How many requests may run now (the integer part of the AIMD limit, at least 1)."""
        return max(1, int(self.limit))

    async def acquire(self) -> int:
        """Wait for a free slot (first come, first served); the generation it was granted in."""
        if self.in_use < self.capacity and not self._waiters:
            self.in_use += 1
            return self.generation
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted, then cancelled before it ran: hand the slot on
            else:
                self._forget(waiter)
            raise
        return self.generation

    def try_acquire(self) -> int | None:
        """:meth:`acquire` when a slot is free and nobody waits (the generation), else None."""
        if self.in_use < self.capacity and not self._waiters:
            self.in_use += 1
            return self.generation
        return None

    def release(self) -> None:
        """Give a slot back and wake waiters the capacity allows."""
        self.in_use -= 1
        self._wake()

    def throttled(self, generation: int) -> None:
        """A request admitted in ``generation`` was answered 429: halve the capacity, unless it
        was already halved since that request was admitted."""
        if generation != self.generation:
            return
        self.generation += 1
        before = self.capacity
        self.limit = max(1.0, self.limit / 2)
        log.info("registry throttles: concurrency %d -> %d", before, self.capacity)

    def succeeded(self) -> None:
        """A request was answered without throttling: grow the capacity by ``1 / capacity``."""
        if self.limit < self.ceiling:
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
            self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_use < self.capacity:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self.in_use += 1
            waiter.set_result(None)

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):  # already handed a slot by _wake
            self._waiters.remove(waiter)


class QuotaPacer:
    """Spaces requests out while a registry's remaining quota is below ``low_water``.

    ``observe(remaining, window)`` takes the latest ``ratelimit-remaining`` figure; ``wait()``
    returns at once while the quota is ample, else no earlier than ``spacing`` seconds after the
    previous request's turn, where ``spacing = min(max_spacing, window / max(remaining, 1))``.
    """

    def __init__(
        self,
        *,
        low_water: float = LOW_WATER,
        default_window: float = DEFAULT_WINDOW,
        max_spacing: float = MAX_SPACING,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.low_water = low_water
        self.default_window = default_window
        self.max_spacing = max_spacing
        self.spacing = 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = -math.inf

    def observe(self, remaining: float, window: float | None = None) -> None:
        """Record the registry's remaining quota (and its window in seconds, when it said)."""
        if remaining >= self.low_water:
            self.spacing = 0.0
            return
        per_request = (window or self.default_window) / max(remaining, 1.0)
        self.spacing = min(self.max_spacing, per_request)

    async def wait(self) -> None:
        """Wait for this request's turn (immediately while the quota is ample)."""
        if self.spacing <= 0:
            return
        now = self._clock()
        turn = max(now, self._next)
        self._next = turn + self.spacing
        if turn > now:
            await self._sleep(turn - now)
