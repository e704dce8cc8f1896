"""When each sync entry runs: first at start, then every interval (plus jitter), backing off on failure.

The scheduler knows entries only by name and interval and calls ``run_entry(name) -> ok``; it knows
nothing of plans or the copy engine. Guarantees:

- every entry runs once as soon as :meth:`Scheduler.run` starts (or as soon as it is added);
- after a successful run the next one starts ``interval * (1 + U(0, jitter))`` after this one started
  (never before this one ended); jitter spreads entries that share an interval;
- after the n-th failing run in a row the next one starts ``min(backoff_base * 2**(n-1), backoff_max,
  interval) * (1 - U(0, backoff_jitter))`` after it ended, so a broken source is retried sooner than a
  full interval but not hammered, and entries failing together (their registry down) do not all
  retry at the same instant: their retries spread over the lower ``backoff_jitter`` share of the
  delay (half of it by default), never past the unjittered delay nor below the rest of it;
- one entry never runs twice at once: a trigger during a run queues exactly one follow-up run;
- an exception from ``run_entry`` counts as a failure and is logged; it never stops the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Slot:
    """One entry's schedule and run state."""

    interval: float
    next_at: float
    failures: int = 0
    last_start: float | None = None
    task: asyncio.Task[None] | None = None
    follow_up: bool = False  # a trigger arrived while running
    removed: bool = False  # dropped from the plan; forgotten once its in-flight run ends


class Scheduler:
    """Runs entries on their intervals until :meth:`stop`; see the module docstring for the rules.

    ``clock`` is a monotonic clock in seconds (injectable for tests); every time this class returns is
    on that clock. ``rng`` draws both jitters, of intervals and of failure backoffs (seed it for
    reproducible tests).
    """

    def __init__(
        self,
        run_entry: Callable[[str], Awaitable[bool]],
        *,
        jitter: float = 0.1,
        backoff_base: float = 30.0,
        backoff_max: float = 3600.0,
        backoff_jitter: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if jitter < 0 or backoff_base <= 0 or backoff_max <= 0:
            raise ValueError("jitter must be >= 0 and the backoff bounds > 0")
        if not 0 <= backoff_jitter < 1:
            raise ValueError("backoff_jitter must be >= 0 and < 1 (a retry never comes at once)")
        self._run_entry = run_entry
        self._jitter = jitter
        self._backoff_jitter = backoff_jitter
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._clock = clock
        self._rng = rng or random.Random()
        self._slots: dict[str, _Slot] = {}
        self._wake = asyncio.Event()
        self._stopped = False
        self._running = False

    # -- configuration ------------------------------------------------------------------------------

    def set_entries(self, intervals: Mapping[str, float]) -> None:
        """Make ``intervals`` (name -> seconds) the scheduled set; safe to call while running (reload).

        Kept entries keep their timing and failure count; when the interval shrinks, the next run is
        brought forward to the new interval after the last start. New entries run soon. Removed entries
        are not started again; a run in flight finishes first.
        """
        for name, interval in intervals.items():
            if interval <= 0:
                raise ValueError(f"entry {name!r}: interval must be > 0, got {interval}")
        now = self._clock()
        for name, slot in list(self._slots.items()):
            if name not in intervals:
                self._remove(name, slot)
        for name, interval in intervals.items():
            self._upsert(name, interval, now)
        self._wake.set()

    def _remove(self, name: str, slot: _Slot) -> None:
        if slot.task is None:
            del self._slots[name]
        else:
            slot.removed, slot.follow_up = True, False

    def _upsert(self, name: str, interval: float, now: float) -> None:
        slot = self._slots.get(name)
        if slot is None:
            self._slots[name] = _Slot(interval=interval, next_at=now)
            return
        slot.removed = False
        if interval < slot.interval and slot.last_start is not None and slot.failures == 0:
            slot.next_at = min(slot.next_at, max(now, slot.last_start + interval))
        slot.interval = interval

    # -- queries ------------------------------------------------------------------------------------

    def next_run(self, entry: str) -> float | None:
        """When ``entry`` next starts (on ``clock``); None when unknown or running (its next start is
        decided when the run ends) unless a follow-up is queued, which starts right after."""
        slot = self._slots.get(entry)
        if slot is None or slot.removed:
            return None
        if slot.task is not None:
            return self._clock() if slot.follow_up else None
        return slot.next_at

    def running(self, entry: str) -> bool:
        """True while a run of ``entry`` is in flight."""
        slot = self._slots.get(entry)
        return slot is not None and slot.task is not None

    # -- control ------------------------------------------------------------------------------------

    def trigger(self, entry: str | None = None) -> bool:
        """Run ``entry`` (every entry when None) now, or right after its run in flight.

        Returns False only for an unknown entry. After :meth:`stop` a trigger is accepted and ignored.
        """
        if entry is None:
            names = [name for name, slot in self._slots.items() if not slot.removed]
        elif entry in self._slots and not self._slots[entry].removed:
            names = [entry]
        else:
            return False
        now = self._clock()
        for name in names:
            slot = self._slots[name]
            if slot.task is not None:
                slot.follow_up = True
            else:
                slot.next_at = now
        self._wake.set()
        return True

    def stop(self) -> None:
        """Start no new runs; :meth:`run` returns once the runs in flight have ended."""
        self._stopped = True
        self._wake.set()

    async def drain(self, grace: float) -> None:
        """Stop, wait up to ``grace`` seconds for runs in flight, then cancel those still going and wait
        for them to unwind."""
        self.stop()
        tasks = {slot.task for slot in self._slots.values() if slot.task is not None}
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, grace))
        if pending:
            log.warning("cancelling %d sync run(s) still going after %.1fs", len(pending), grace)
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)

    # -- the loop -----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Start due entries until :meth:`stop`; returns after the runs in flight have ended.

        Cancelling ``run`` cancels the runs in flight and re-raises.
        """
        if self._running:
            raise RuntimeError("Scheduler.run is already running")
        self._running = True
        try:
            async with asyncio.TaskGroup() as group:
                while not self._stopped:
                    self._wake.clear()
                    self._start_due(group)
                    await self._sleep(self._next_due())
        finally:
            self._running = False

    def _start_due(self, group: asyncio.TaskGroup) -> None:
        now = self._clock()
        # A copy: under an eager task factory a run may finish (and unlink its slot) right here.
        for name, slot in list(self._slots.items()):
            if slot.task is None and not slot.removed and slot.next_at <= now:
                task = group.create_task(self._run_one(name, slot), name=f"sync:{name}")
                if not task.done():
                    slot.task = task

    def _next_due(self) -> float | None:
        """Seconds until the earliest idle entry is due; None when nothing is waiting."""
        waiting = [s.next_at for s in self._slots.values() if s.task is None and not s.removed]
        return max(0.0, min(waiting) - self._clock()) if waiting else None

    async def _sleep(self, delay: float | None) -> None:
        """Sleep ``delay`` seconds (forever when None) or until something changes."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    async def _run_one(self, name: str, slot: _Slot) -> None:
        started = self._clock()
        slot.last_start = started
        try:
            ok = await self._call(name)
            self._reschedule(slot, ok, started)
        finally:
            slot.task = None
            if slot.removed and self._slots.get(name) is slot:
                del self._slots[name]
            self._wake.set()

    async def _call(self, name: str) -> bool:
        try:
            return bool(await self._run_entry(name))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sync run of entry %r raised; counted as a failure", name)
            return False

    def _reschedule(self, slot: _Slot, ok: bool, started: float) -> None:
        now = self._clock()
        if ok:
            slot.failures = 0
            spread = slot.interval * (1.0 + self._rng.uniform(0.0, self._jitter))
            slot.next_at = max(now, started + spread)
        else:
            slot.failures += 1
            slot.next_at = now + self.failure_delay(slot.failures, slot.interval)
        if slot.follow_up:
            slot.follow_up, slot.next_at = False, now

    def backoff(self, failures: int, interval: float) -> float:
        """The delay after ``failures`` (>= 1) failing runs in a row: base * 2**(n-1), capped by
        ``backoff_max`` and by the entry's own interval."""
        exponent = min(failures - 1, 62)  # bounded so the float never overflows
        return min(self._backoff_base * 2.0**exponent, self._backoff_max, interval)

    def failure_delay(self, failures: int, interval: float) -> float:
        """:meth:`backoff` less a random share (``U(0, backoff_jitter)``) of it, drawn from ``rng``."""
        return self.backoff(failures, interval) * (1.0 - self._rng.uniform(0.0, self._backoff_jitter))
