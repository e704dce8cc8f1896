"""Tag selection: exact lists, regular-expression filters, npm-style semver ranges and "latest N".

A :class:`TagFilter` is what an entry's ``tags:`` says. Filters apply in a fixed order (include,
exclude, semver, latest) so a plan reads the same way it runs. :class:`SemverRange` follows npm's
range grammar (comparator sets ANDed by spaces, sets ORed by ``||``, ``~``, ``^``, x-ranges, hyphen
ranges, partial versions) and its pre-release rule; tags count as versions only when they are full
SemVer 2.0 (``x.y.z[-pre][+build]``), optionally with a leading ``v``.

The ``semver`` library is loaded at the first version parsed or built, not at import: a plan whose
entries list their tags (every ``mirrord sync`` parses the plan) never needs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, cmp_to_key
from typing import TYPE_CHECKING, Literal, cast

if TYPE_CHECKING:
    import semver

__all__ = ["SemverRange", "TagFilter", "parse_tag_version", "sort_tags"]

Op = Literal["<", "<=", ">", ">=", "="]

_OPERATOR_RE = re.compile(r"^(<=|>=|<|>|=|~>|~|\^)?\s*(.*)$")
_PARTIAL_RE = re.compile(
    r"^v?(?P<major>[xX*]|0|[1-9]\d*)"
    r"(?:\.(?P<minor>[xX*]|0|[1-9]\d*)"
    r"(?:\.(?P<patch>[xX*]|0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?)?)?$"
)
_WILDCARDS = frozenset({"x", "X", "*"})
#: The lowest pre-release of a version: ``<2.0.0-0`` excludes 2.0.0's pre-releases too (npm's desugaring).
_LOWEST_PRE = "0"


def parse_tag_version(tag: str) -> semver.Version | None:
    """The SemVer version a tag names (``1.2.3``, ``v1.2.3-rc.1``), or None when it names none.

    Only full ``x.y.z`` versions count: ``1.2``, ``1``, ``latest`` and ``01.2.3`` are None.
    """
    import semver

    text = tag[1:] if tag.startswith("v") else tag
    try:
        return semver.Version.parse(text)
    except (ValueError, TypeError):
        return None


def _version(major: int, minor: int, patch: int, prerelease: str | None = None) -> semver.Version:
    """``semver.Version(major, minor, patch, prerelease)``, loading the library at first use."""
    import semver

    return semver.Version(major, minor, patch, prerelease)


@dataclass(frozen=True, slots=True)
class _Partial:
    """A possibly partial version as written in a range: missing or wildcard parts are None."""

    major: int | None
    minor: int | None
    patch: int | None
    prerelease: str | None

    @property
    def wild(self) -> bool:
        return self.major is None or self.minor is None or self.patch is None

    def floor(self) -> semver.Version:
        """The lowest version the partial covers (wildcards as 0)."""
        return _version(self.major or 0, self.minor or 0, self.patch or 0, self.prerelease)

    def ceiling(self) -> semver.Version:
        """The first version above everything the partial covers (``1.2`` -> ``1.3.0-0``)."""
        if self.minor is None:
            return _version((self.major or 0) + 1, 0, 0, _LOWEST_PRE)
        return _version(self.major or 0, self.minor + 1, 0, _LOWEST_PRE)


@dataclass(frozen=True, slots=True)
class _Comparator:
    op: Op
    version: semver.Version

    def test(self, version: semver.Version) -> bool:
        cmp = version.compare(self.version)
        if self.op == "=":
            return cmp == 0
        if self.op == "<":
            return cmp < 0
        if self.op == "<=":
            return cmp <= 0
        if self.op == ">":
            return cmp > 0
        return cmp >= 0


@cache
def _any() -> tuple[_Comparator, ...]:
    """Every version: ``>=0.0.0``."""
    return (_Comparator(">=", _version(0, 0, 0)),)


@cache
def _none() -> tuple[_Comparator, ...]:
    """No version: ``<0.0.0-0``."""
    return (_Comparator("<", _version(0, 0, 0, _LOWEST_PRE)),)


class SemverRange:
    """An npm-style version range, parsed and validated once, then tested against tags.

    Grammar: comparator sets separated by ``||`` are ORed; within a set, comparators separated by
    spaces are ANDed. A comparator is ``[op]VERSION`` with op one of ``= > >= < <= ~ ^``; versions may
    be partial (``<2`` = ``<2.0.0`` and below its pre-releases) or x-ranges (``1.x``, ``1.2.*``, ``*``,
    also after ``~`` and ``^``); ``A - B`` is an inclusive hyphen range. A wildcard after a comparison
    operator (``>=1.x``) is rejected as ambiguous: write ``>=1``. Pre-release rule (npm's): a
    pre-release version matches only if some comparator of the same set names a pre-release of the same
    ``major.minor.patch``.
    """

    __slots__ = ("_sets", "text")

    text: str
    _sets: tuple[tuple[_Comparator, ...], ...]

    def __init__(self, text: str, sets: tuple[tuple[_Comparator, ...], ...]) -> None:
        self.text = text
        self._sets = sets

    @classmethod
    def parse(cls, text: str) -> SemverRange:
        """Parse ``text``; raise ValueError ``"'TEXT' is not a version range (why)"`` when malformed."""
        try:
            sets = tuple(_parse_set(part.strip()) for part in text.split("||"))
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a version range ({exc})") from None
        return cls(text, sets)

    def matches(self, version: str) -> bool:
        """True when the tag ``version`` (optional leading ``v``) is a full SemVer inside the range."""
        parsed = parse_tag_version(version)
        return parsed is not None and self.contains(parsed)

    def contains(self, version: semver.Version) -> bool:
        """True when ``version`` satisfies some comparator set, honouring the pre-release rule."""
        return any(_set_contains(comparators, version) for comparators in self._sets)

    def __str__(self) -> str:
        """The range as written."""
        return self.text

    def __repr__(self) -> str:
        """``SemverRange('>=1.2 <2')``."""
        return f"SemverRange({self.text!r})"

    def __eq__(self, other: object) -> bool:
        """Ranges are equal when they were written the same."""
        return isinstance(other, SemverRange) and other.text == self.text

    def __hash__(self) -> int:
        """Hash of the text, consistent with equality."""
        return hash(self.text)


def _set_contains(comparators: tuple[_Comparator, ...], version: semver.Version) -> bool:
    if not all(c.test(version) for c in comparators):
        return False
    if not version.prerelease:
        return True
    release = (version.major, version.minor, version.patch)
    return any(
        c.version.prerelease and (c.version.major, c.version.minor, c.version.patch) == release
        for c in comparators
    )


def _parse_set(text: str) -> tuple[_Comparator, ...]:
    if not text:
        raise ValueError("an empty comparator set (write '*' to accept any version)")
    hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", text)
    if hyphen:
        return _hyphen(_partial(hyphen[1]), _partial(hyphen[2]))
    # npm allows a space between an operator and its version (">= 1.2.3"): glue them first.
    tokens = re.sub(r"(<=|>=|<|>|=|~>|~|\^)\s+", r"\1", text).split()
    out: list[_Comparator] = []
    for token in tokens:
        out.extend(_comparator(token))
    return tuple(out)


def _partial(text: str, written: str | None = None) -> _Partial:
    m = _PARTIAL_RE.match(text)
    if m is None:
        raise ValueError(f"{written or text!r} is not a version")
    parts: list[int | None] = []
    for name in ("major", "minor", "patch"):
        value = m[name]
        if value is None or value in _WILDCARDS or (parts and parts[-1] is None):
            parts.append(None)
        else:
            parts.append(int(value))
    if m["pre"] is not None and None in parts:
        raise ValueError(f"{text!r}: a pre-release needs a full version")
    return _Partial(parts[0], parts[1], parts[2], m["pre"])


def _comparator(token: str) -> tuple[_Comparator, ...]:
    m = _OPERATOR_RE.match(token)
    assert m is not None  # the pattern matches any string
    op, rest = m[1] or "=", m[2]
    if not rest:
        raise ValueError(f"{op!r} needs a version")
    partial = _partial(rest, token)
    if op in ("~", "~>"):
        return _tilde(partial)
    if op == "^":
        return _caret(partial)
    parts = rest.lstrip("v").split(".")
    if op != "=" and any(part in _WILDCARDS for part in parts):
        kept = ".".join(p for p in parts if p not in _WILDCARDS)
        hint = f": write '{op}{kept}'" if kept else ""
        raise ValueError(f"a wildcard after {op!r} is ambiguous{hint}")
    return _primitive(cast(Op, op), partial)


def _primitive(op: Op, p: _Partial) -> tuple[_Comparator, ...]:
    if not p.wild:
        return (_Comparator(op, p.floor()),)
    if p.major is None:
        return _none() if op in ("<", ">") else _any()
    if op == "=":
        return (_Comparator(">=", p.floor()), _Comparator("<", p.ceiling()))
    if op == ">":
        return (_Comparator(">=", _strip_pre(p.ceiling())),)
    if op == ">=":
        return (_Comparator(">=", p.floor()),)
    if op == "<":
        return (_Comparator("<", _version(p.major, p.minor or 0, 0, _LOWEST_PRE)),)
    return (_Comparator("<", p.ceiling()),)  # "<="


def _strip_pre(version: semver.Version) -> semver.Version:
    return _version(version.major, version.minor, version.patch)


def _tilde(p: _Partial) -> tuple[_Comparator, ...]:
    """``~1.2.3`` := ``>=1.2.3 <1.3.0-0``; ``~1`` := ``>=1.0.0 <2.0.0-0``."""
    if p.major is None:
        return _any()
    upper = p.ceiling() if p.minor is not None else _version(p.major + 1, 0, 0, _LOWEST_PRE)
    return (_Comparator(">=", p.floor()), _Comparator("<", upper))


def _caret(p: _Partial) -> tuple[_Comparator, ...]:
    """``^`` allows changes that do not touch the left-most non-zero part of the version."""
    if p.major is None:
        return _any()
    if p.major > 0 or p.minor is None:
        upper = _version(p.major + 1, 0, 0, _LOWEST_PRE)
    elif p.minor > 0 or p.patch is None:
        upper = _version(0, p.minor + 1, 0, _LOWEST_PRE)
    else:
        upper = _version(0, 0, p.patch + 1, _LOWEST_PRE)
    return (_Comparator(">=", p.floor()), _Comparator("<", upper))


def _hyphen(low: _Partial, high: _Partial) -> tuple[_Comparator, ...]:
    """``1.2 - 2.3.4`` := ``>=1.2.0 <=2.3.4``; a partial upper end covers its whole span."""
    out: list[_Comparator] = []
    if low.major is not None:
        out.append(_Comparator(">=", low.floor()))
    if high.major is not None:
        out.append(_Comparator("<", high.ceiling()) if high.wild else _Comparator("<=", high.floor()))
    return tuple(out) or _any()


@dataclass(frozen=True, slots=True)
class TagFilter:
    """Which source tags an entry mirrors.

    ``exact`` (a list of tags) excludes the other fields. Otherwise filters apply in order: ``include``
    (a tag is kept when any pattern matches, ``re.search``; none given keeps all), ``exclude`` (dropped
    when any matches), ``semver`` (kept when the tag is a version inside the range), ``latest`` (the
    newest N left: by SemVer precedence when every remaining tag parses as a version, else by name).
    """

    exact: tuple[str, ...] | None = None
    include: tuple[re.Pattern[str], ...] = ()
    exclude: tuple[re.Pattern[str], ...] = ()
    semver: SemverRange | None = None
    latest: int | None = None

    def select(self, tags: Iterable[str]) -> list[str]:
        """The tags to mirror from ``tags``: an exact list's present tags in list order; else the
        filtered tags, oldest first (SemVer order when all are versions, else by name).
        """
        kept = self.select_unbounded(tags)
        if self.exact is not None or self.latest is None:
            return kept
        return kept[max(len(kept) - self.latest, 0) :]

    def select_unbounded(self, tags: Iterable[str]) -> list[str]:
        """Like :meth:`select` without the ``latest`` cap: every tag this filter could ever mirror.

        Used for pruning, so that a tag that merely fell out of the newest N is not a prune candidate
        unless the source dropped it too.
        """
        unique = list(dict.fromkeys(tags))
        if self.exact is not None:
            present = set(unique)
            return [t for t in dict.fromkeys(self.exact) if t in present]
        kept = [t for t in unique if self._passes(t)]
        return sort_tags(kept)

    def _passes(self, tag: str) -> bool:
        if self.include and not any(p.search(tag) for p in self.include):
            return False
        if any(p.search(tag) for p in self.exclude):
            return False
        return self.semver is None or self.semver.matches(tag)


def sort_tags(tags: Iterable[str]) -> list[str]:
    """Oldest first: by SemVer precedence (ties by name) when every tag is a version, else by name."""
    items = list(tags)
    pairs = [(v, t) for t in items if (v := parse_tag_version(t)) is not None]
    if len(pairs) < len(items):
        return sorted(items)
    return [t for _, t in sorted(pairs, key=cmp_to_key(_compare_pairs))]


def _compare_pairs(a: tuple[semver.Version, str], b: tuple[semver.Version, str]) -> int:
    # Build metadata does not order versions; the tag text breaks ties so the order is total.
    return a[0].compare(b[0]) or (a[1] > b[1]) - (a[1] < b[1])
