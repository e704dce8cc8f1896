"""Errors of the copy engine. An image that cannot be copied fails with one of these (or with the
registry error that caused it); :meth:`CopyEngine.copy` reports them in the result, never raises them.

    CopyError                 base: carries the source display name
    ├── NoMatchingPlatform    a platform filter kept nothing of an index
    ├── ManifestTooDeep       indexes nested deeper than the engine follows
    ├── BlobCopyFailed        a blob could not be brought to a target (``cause`` says why)
    └── ImageRefused          the request's gate (the signature policy) refused the image

An error that is not a :class:`~mirrord.core.errors.MirrordError` is a programming error: the
engine still reports it per image, and :func:`log_unexpected` logs its traceback where it does.
"""

from __future__ import annotations

import logging

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


class ImageRefused(CopyError):
    """The request's :class:`mirrord.copy.hooks.Gate` refused the image; the message says why."""


_LOGGED = "_mirrord_traceback_logged"


def first_leaf(error: BaseException) -> BaseException:
    """The error that matters: the first leaf of an exception group, else ``error`` itself."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def log_unexpected(logger: logging.Logger, error: BaseException, what: str, /, **fields: object) -> bool:
    """Log ``error`` with its traceback when mirrord did not raise it on purpose (its first leaf
    is not a MirrordError); True when it is such an error. Callers still turn the error into a
    per-image failure: the user sees the image fail, the log keeps where the bug is. One error
    object is logged once, however many targets it failed."""
    if isinstance(first_leaf(error), MirrordError):
        return False
    if not getattr(error, _LOGGED, False):
        setattr(error, _LOGGED, True)
        logger.error(f"{what} failed unexpectedly", exc_info=error, extra={"fields": fields})
    return True
