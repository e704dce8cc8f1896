"""Concurrency and retry limits of one copy engine: one limit per concern, never nested."""

from __future__ import annotations

from dataclasses import dataclass

from mirrord.registry.http.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class Limits:
    """How much one :class:`~mirrord.copy.engine.CopyEngine` does at once.

    - ``checks``: images whose unchanged check (a few HEADs) runs at once in ``copy_many``.
    - ``images``: images being copied (fetched, planned, blobs, manifests) at once (engine-wide);
      an image takes this slot only once its check found a target out of date.
    - ``blob_streams``: blob transfers in flight (engine-wide); each reads the source at most once at
      a time and tees it into every target that needs it.
    - ``blob_attempts``: tries per blob transfer when the failure is retryable (>= 1).
    - ``manifest_requests``: manifest GETs and PUTs in flight (engine-wide).
    - ``retry_backoff``: the longest wait before the second attempt; doubled for each further
      attempt. The wait itself is drawn with full jitter below that ceiling (:attr:`blob_retry`).
    - ``tee_queue``: chunks buffered per target while teeing, so memory stays bounded and the slowest
      target sets the pace.

    Every count must be at least 1; ``ValueError`` otherwise.
    """

    checks: int = 8
    #: Small images are a chain of round trips (manifest GET, a POST and PUT per blob, the manifest
    #: PUT) with little data each: four at a time left the registries idle between them. Bytes in
    #: flight stay bounded by ``blob_streams``, so more images at once only costs their manifests.
    images: int = 16
    blob_streams: int = 8
    blob_attempts: int = 3
    manifest_requests: int = 16
    retry_backoff: float = 0.25
    tee_queue: int = 4

    def __post_init__(self) -> None:
        for name in ("checks", "images", "blob_streams", "blob_attempts", "manifest_requests", "tee_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"limits.{name} must be at least 1")
        if self.retry_backoff < 0:
            raise ValueError("limits.retry_backoff must not be negative")

    @property
    def blob_retry(self) -> RetryPolicy:
        """The retry policy of blob transfers: ``blob_attempts`` tries, ``retry_backoff`` base."""
        return RetryPolicy(attempts=self.blob_attempts, base=self.retry_backoff)
