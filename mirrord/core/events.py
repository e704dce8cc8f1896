"""Small immutable events that the engine and the registry client emit.

The core never imports Prometheus, a logger's specifics or a progress bar: metrics, logs and progress
subscribe to an :class:`EventBus`. Subscribers must be quick and must not raise (an exception in a
subscriber is logged and swallowed, never propagated into a copy).

Labels: ``entry`` is the sync entry's name ("" for ``mirrord copy``); ``registry`` is a host such as
``registry.example.com:5000`` or ``oci`` for layout directories. Tags and digests travel in events for
logs and reports, never as metric labels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger(__name__)

BlobOutcome = Literal["copied", "exists", "mounted", "deduplicated"]
Direction = Literal["pulled", "pushed"]
ImageOutcome = Literal["copied", "unchanged"]


@dataclass(frozen=True, slots=True)
class ImageStarted:
    """A copy of one source reference to its targets began."""

    entry: str
    source: str
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BlobDone:
    """A blob is present at one target repository, and how it got there."""

    entry: str
    registry: str
    repository: str
    digest: str
    size: int
    outcome: BlobOutcome


@dataclass(frozen=True, slots=True)
class BytesTransferred:
    """``count`` bytes moved from (pulled) or to (pushed) ``registry``; emitted per chunk."""

    registry: str
    direction: Direction
    count: int


@dataclass(frozen=True, slots=True)
class TransferStarted:
    """A blob stream began (for the in-flight gauge)."""

    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class TransferFinished:
    """A blob stream ended, successfully or not."""

    digest: str
    ok: bool


@dataclass(frozen=True, slots=True)
class ManifestPushed:
    """A manifest or index was stored at a target under ``reference`` (tag or digest)."""

    entry: str
    registry: str
    repository: str
    reference: str
    digest: str
    media_type: str


@dataclass(frozen=True, slots=True)
class ImageDone:
    """A source reference is complete at every target.

    ``digest_map`` maps old -> new digests for every manifest rewritten (platform filter,
    conversion); empty when digests were preserved.
    """

    entry: str
    source: str
    source_digest: str
    target_digests: Mapping[str, str]
    outcome: ImageOutcome
    bytes: int
    digest_map: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImageFailed:
    """A source reference could not be copied; nothing referencing bad content was tagged."""

    entry: str
    source: str
    error: str


@dataclass(frozen=True, slots=True)
class ImageRejected:
    """A source reference was refused (by the signature policy) before any of its blobs was read;
    it was copied to no target. ``reason`` says why (no secrets)."""

    entry: str
    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class HttpRequestDone:
    """One HTTP request finished (``code`` 0 when no response arrived)."""

    registry: str
    method: str
    code: int
    seconds: float


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    """A request or transfer will be retried; ``reason`` is a short word (``429``, ``5xx``, ``reset``)."""

    registry: str
    reason: str
    delay: float


@dataclass(frozen=True, slots=True)
class RateLimitObserved:
    """A registry reported its remaining request quota (``ratelimit-remaining``)."""

    registry: str
    remaining: float


Event = (
    ImageStarted
    | BlobDone
    | BytesTransferred
    | TransferStarted
    | TransferFinished
    | ManifestPushed
    | ImageDone
    | ImageFailed
    | ImageRejected
    | HttpRequestDone
    | RetryScheduled
    | RateLimitObserved
)
Subscriber = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class Heard:
    """A subscriber together with the event types it handles: :meth:`EventBus.subscribe` hears it
    only for those (so an emitter can skip an event nobody handles). Callable like the subscriber."""

    subscriber: Subscriber
    kinds: frozenset[type[Event]]

    def __call__(self, event: Event) -> None:
        self.subscriber(event)


class EventBus:
    """Fan events out to subscribers, synchronously and in subscription order.

    A subscriber may name the event types it handles (``kinds``); it then hears only those, and
    :meth:`wants` lets an emitter skip building an event nobody hears (the transport's
    per-request :class:`HttpRequestDone`)."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[Subscriber, frozenset[type[Event]] | None]] = []
        self._wanted: dict[type[Event], bool] = {}

    def subscribe(
        self, subscriber: Subscriber, kinds: Iterable[type[Event]] | None = None
    ) -> Callable[[], None]:
        """Add ``subscriber`` (for every event, or only those of ``kinds``, by default the kinds
        of a :class:`Heard`); returns a function that removes it again."""
        if kinds is None and isinstance(subscriber, Heard):
            kinds = subscriber.kinds
        entry = (subscriber, None if kinds is None else frozenset(kinds))
        self._subscribers.append(entry)
        self._wanted.clear()

        def unsubscribe() -> None:
            self._subscribers.remove(entry)
            self._wanted.clear()

        return unsubscribe

    def wants(self, kind: type[Event]) -> bool:
        """True when some subscriber hears events of type ``kind``."""
        wanted = self._wanted.get(kind)
        if wanted is None:
            wanted = any(kinds is None or kind in kinds for _, kinds in self._subscribers)
            self._wanted[kind] = wanted
        return wanted

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber that hears it; a failing subscriber is logged,
        never raised."""
        for subscriber, kinds in tuple(self._subscribers):
            if kinds is not None and type(event) not in kinds:
                continue
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber failed on %s", type(event).__name__)
