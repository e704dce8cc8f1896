"""Which registries a pass found unreachable, so it stops asking them.

A registry that refuses connections (or whose name does not resolve, or whose TLS handshake fails)
raises :class:`mirrord.registry.errors.Unreachable`, which is not retried. The first such error per
registry is noted here and logged once (``registry unreachable``); from then on every image of the
pass that needs that registry fails for that target at once, with the same summarised error, instead
of costing one connection attempt, one retry storm and one source read per blob. One instance per
engine, so per pass: the next pass asks again.
"""

from __future__ import annotations

import logging

from mirrord.registry.base import Repository
from mirrord.registry.errors import Unreachable

log = logging.getLogger(__name__)

#: How deep :func:`unreachable_in` follows causes and exception groups (they do not nest deeper).
_MAX_DEPTH = 8


class Reachability:
    """Registries (by ``registry_key``) found unreachable in this pass, with the first error."""

    def __init__(self) -> None:
        self._down: dict[str, Unreachable] = {}

    def note(self, error: BaseException | None) -> None:
        """Remember the registry of the :class:`Unreachable` in ``error`` (itself, a cause, or inside
        an exception group), logging it the first time; anything else is ignored."""
        found = unreachable_in(error)
        if found is None or found.registry is None or found.registry in self._down:
            return
        self._down[found.registry] = found
        log.warning(
            "registry unreachable",
            extra={
                "fields": {
                    "registry": found.registry,
                    "error": str(found),
                    "effect": "images that need it fail for the rest of this pass",
                }
            },
        )

    def error_for(self, repository: Repository) -> Unreachable | None:
        """A fresh error for ``repository`` when its registry was found unreachable, else None."""
        first = self._down.get(repository.registry_key)
        if first is None:
            return None
        return Unreachable(
            f"{repository.registry_key} unreachable: {first.reason or first}; not tried again in this pass",
            registry=repository.registry_key,
            repository=repository.name,
        )


def unreachable_in(error: BaseException | None, depth: int = 0) -> Unreachable | None:
    """The :class:`Unreachable` that ``error`` is, wraps (``cause``, ``__cause__``) or groups."""
    if error is None or depth > _MAX_DEPTH:
        return None
    if isinstance(error, Unreachable):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := unreachable_in(inner, depth + 1)) is not None:
                return found
        return None
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return unreachable_in(cause, depth + 1)
    return unreachable_in(error.__cause__, depth + 1)
