"""When to retry a registry request and how long to wait: pure functions, no I/O.

Exponential backoff with full jitter (the AWS architecture blog's variant: a uniform delay between
0 and ``min(cap, base * 2**attempt)``), spreading retries of many clients; a server's
``Retry-After`` wins when present, capped so a hostile value cannot park a worker for hours.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently requests are retried.

    ``attempts`` counts the first try. ``retry_after_cap`` bounds a server's ``Retry-After`` hint.
    ``resume_attempts`` bounds how often a broken blob download is resumed with ``Range``;
    ``upload_attempts`` bounds restarts (POST again) of re-readable uploads.
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
