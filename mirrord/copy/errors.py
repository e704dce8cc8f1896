"""Errors of the copy engine. An image that cannot be copied fails with one of these (or with the
registry error that caused it); :meth:`CopyEngine.copy` reports them in the result, never raises them.

    CopyError                 base: carries the source display name
    ├── NoMatchingPlatform    a platform filter kept nothing of an index
    ├── ManifestTooDeep       indexes nested deeper than the engine follows
    └── BlobCopyFailed        a blob could not be brought to a target (``cause`` says why)
"""

from __future__ import annotations

from mirrord.core.errors import MirrordError


class CopyError(MirrordError):
    """An image could not be copied; ``source`` is the display name of the source image."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source


class NoMatchingPlatform(CopyError):
    """The platform filter matched no instance of the source index."""


class ManifestTooDeep(CopyError):
    """Indexes nest deeper than :data:`mirrord.copy.planner.MAX_DEPTH`."""


class BlobCopyFailed(CopyError):
    """A blob could not be brought to one target; ``cause`` is the underlying error."""

    def __init__(self, message: str, *, cause: BaseException, source: str | None = None) -> None:
        super().__init__(message, source=source)
        self.cause = cause
