"""Repository patterns: a source that names a whole namespace (``host/team/**``, ``host/*/app``).

A pattern is a source repository path whose segments include ``*`` (exactly one segment) or end in
``**`` (any depth below, at least one segment). Its *fixed prefix* is the path before the first
wildcard. Each repository the source's catalog lists that :meth:`RepositoryPattern.matches` (and the
entry's ``repositories`` filter keeps) becomes an image set of its own; its targets are the entry's
targets with the trailing ``/**`` replaced by the part of the repository below the fixed prefix.

Pure: no I/O, so the plan (validation, ``check``), the sync pass (expansion) and the daemon
(notifications) share one definition of what a pattern covers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: A target (or target_prefix-derived target) of a pattern entry ends with this.
TARGET_WILDCARD = "/**"


def is_pattern(source: str) -> bool:
    """True when ``source`` (``host/path``) holds a ``*`` or ``**`` path segment."""
    return any(segment in ("*", "**") for segment in source.split("/")[1:])


def source_pattern(source: str) -> RepositoryPattern | None:
    """The pattern a normalised source (``host/path`` or ``oci:PATH``) is, else None (an ``oci:``
    layout path never is one). ValueError as :meth:`RepositoryPattern.parse` for a bad one."""
    if source.startswith("oci:") or not is_pattern(source):
        return None
    return RepositoryPattern.parse(source)


@dataclass(frozen=True, slots=True)
class RepositoryPattern:
    """A parsed pattern: ``registry`` (normalised host) and the path ``segments`` (with wildcards)."""

    registry: str
    segments: tuple[str, ...]

    @classmethod
    def parse(cls, source: str) -> RepositoryPattern:
        """``host/seg/.../**``; ValueError naming the problem when the wildcards are misplaced."""
        host, _, path = source.partition("/")
        segments = tuple(path.split("/")) if path else ()
        for i, segment in enumerate(segments):
            if "*" in segment and segment not in ("*", "**"):
                raise ValueError(f"{source!r}: '*' must be a whole path segment ('*' or '**')")
            if segment == "**" and i != len(segments) - 1:
                raise ValueError(f"{source!r}: '**' may only be the last path segment")
        if not any(s in ("*", "**") for s in segments):
            raise ValueError(f"{source!r} is not a pattern")
        return cls(host, segments)

    def __str__(self) -> str:
        return f"{self.registry}/{'/'.join(self.segments)}"

    @property
    def prefix(self) -> str:
        """The fixed path before the first wildcard (``team`` for ``team/**``; ``""`` for ``**``)."""
        fixed: list[str] = []
        for segment in self.segments:
            if segment in ("*", "**"):
                break
            fixed.append(segment)
        return "/".join(fixed)

    @property
    def regex(self) -> re.Pattern[str]:
        """The repository paths this pattern matches, as one anchored regular expression."""
        parts = []
        for segment in self.segments:
            if segment == "*":
                parts.append("[^/]+")
            elif segment == "**":
                parts.append("[^/]+(?:/[^/]+)*")
            else:
                parts.append(re.escape(segment))
        return re.compile("/".join(parts))

    def matches(self, repository: str) -> bool:
        """True when the repository path (no host) is covered by this pattern."""
        return self.regex.fullmatch(repository) is not None

    def below(self, repository: str) -> str:
        """The part of a matching repository path below :attr:`prefix` (``a/b`` for ``team/a/b``)."""
        prefix = self.prefix
        return repository[len(prefix) + 1 :] if prefix else repository

    def target_for(self, target: str, repository: str) -> str:
        """``target`` (ending in ``/**``) with the wildcard replaced by :meth:`below` of ``repository``."""
        return target[: -len(TARGET_WILDCARD)] + "/" + self.below(repository)


@dataclass(frozen=True, slots=True)
class RepositoryFilter:
    """``repositories: {include, exclude}``: regular expressions (``re.search``) on repository paths.

    A path is kept when any ``include`` matches (none given keeps all) and no ``exclude`` does.
    """

    include: tuple[re.Pattern[str], ...] = ()
    exclude: tuple[re.Pattern[str], ...] = ()

    def keeps(self, repository: str) -> bool:
        """True when ``repository`` (the path, no host) passes the filter."""
        if self.include and not any(p.search(repository) for p in self.include):
            return False
        return not any(p.search(repository) for p in self.exclude)
