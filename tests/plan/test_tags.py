"""Tag filters and npm-style semver ranges."""

from __future__ import annotations

import itertools
import re

import pytest
import semver
from hypothesis import given
from hypothesis import strategies as st

from mirrord.plan.tags import SemverRange, TagFilter, parse_tag_version, sort_tags

NGINX = [
    "1.25.5",
    "1.26.0",
    "1.27.0",
    "1.27.1",
    "1.27.1-perl",
    "1.27.2",
    "1.27.2-alpine",
    "1.28.0-rc.1",
    "1.28.0",
    "1.29.0",
    "2.0.0-beta.1",
    "mainline",
    "stable",
    "latest",
]


def _filter(
    *,
    exact: list[str] | None = None,
    include: list[str] = (),  # type: ignore[assignment]
    exclude: list[str] = (),  # type: ignore[assignment]
    semver_range: str | None = None,
    latest: int | None = None,
) -> TagFilter:
    return TagFilter(
        exact=tuple(exact) if exact is not None else None,
        include=tuple(re.compile(p) for p in include),
        exclude=tuple(re.compile(p) for p in exclude),
        semver=SemverRange.parse(semver_range) if semver_range is not None else None,
        latest=latest,
    )


FILTER_CASES = [
    pytest.param({}, NGINX, sorted(NGINX), id="no filter keeps all, by name when some are not versions"),
    pytest.param({"exact": ["stable", "1.27.0"]}, NGINX, ["stable", "1.27.0"], id="exact keeps list order"),
    pytest.param({"exact": ["stable", "9.9.9"]}, NGINX, ["stable"], id="exact drops absent tags"),
    pytest.param({"exact": ["a", "a"]}, ["a"], ["a"], id="exact de-duplicates"),
    pytest.param({"include": ["^stable$"]}, NGINX, ["stable"], id="include anchored"),
    pytest.param(
        {"include": ["stable"]}, ["stable", "unstable"], ["stable", "unstable"], id="include searches"
    ),
    pytest.param(
        {"include": [r"^1\.27\.", "^stable$"]},
        NGINX,
        ["1.27.0", "1.27.1", "1.27.1-perl", "1.27.2", "1.27.2-alpine", "stable"],
        id="include any of several",
    ),
    pytest.param(
        {"include": [r"^1\.27\."], "exclude": ["-perl$", "-alpine$"]},
        NGINX,
        ["1.27.0", "1.27.1", "1.27.2"],
        id="exclude after include",
    ),
    pytest.param({"exclude": ["."]}, NGINX, [], id="exclude everything"),
    pytest.param(
        {"semver_range": ">=1.27.0 <2"},
        NGINX,
        ["1.27.0", "1.27.1", "1.27.2", "1.28.0", "1.29.0"],
        id="semver range skips pre-releases and non-versions",
    ),
    pytest.param(
        {"semver_range": ">=1.28.0-rc.1 <1.29.0"},
        NGINX,
        ["1.28.0-rc.1", "1.28.0"],
        id="a range naming a pre-release admits that release's pre-releases",
    ),
    pytest.param(
        {"semver_range": ">=1.27.0-0 <3"},
        NGINX,
        ["1.27.0", "1.27.1", "1.27.2", "1.28.0", "1.29.0"],
        id="pre-releases of other releases stay out",
    ),
    pytest.param({"semver_range": "~1.27.1"}, NGINX, ["1.27.1", "1.27.2"], id="tilde"),
    pytest.param({"semver_range": "^1.27.1"}, NGINX, ["1.27.1", "1.27.2", "1.28.0", "1.29.0"], id="caret"),
    pytest.param({"semver_range": "1.27.x"}, NGINX, ["1.27.0", "1.27.1", "1.27.2"], id="x-range"),
    pytest.param(
        {"semver_range": "1.26 - 1.27"}, NGINX, ["1.26.0", "1.27.0", "1.27.1", "1.27.2"], id="hyphen"
    ),
    pytest.param(
        {"semver_range": "<1.26 || >=1.29"}, NGINX, ["1.25.5", "1.29.0"], id="or of comparator sets"
    ),
    pytest.param(
        {"semver_range": ">=1.0.0"},
        ["v1.0.0", "v1.1.0", "1.0", "1", "v0.9.0"],
        ["v1.0.0", "v1.1.0"],
        id="v prefix counts, partial tags do not",
    ),
    pytest.param({"latest": 2}, NGINX, ["mainline", "stable"], id="latest by name when not all versions"),
    pytest.param(
        {"semver_range": "*", "latest": 3}, NGINX, ["1.27.2", "1.28.0", "1.29.0"], id="latest by semver"
    ),
    pytest.param(
        {"latest": 2}, ["1.9.0", "1.10.0", "1.2.0"], ["1.9.0", "1.10.0"], id="semver order, not string order"
    ),
    pytest.param(
        {"latest": 2}, ["1.0.0-rc.1", "1.0.0", "0.9.0"], ["1.0.0-rc.1", "1.0.0"], id="pre-release below"
    ),
    pytest.param({"latest": 10}, ["b", "a"], ["a", "b"], id="latest larger than the set"),
    pytest.param(
        {"include": ["^v"], "exclude": ["rc"], "semver_range": "^1", "latest": 1},
        ["v1.2.0", "v1.3.0-rc.1", "v1.1.0", "v2.0.0", "1.9.0"],
        ["v1.2.0"],
        id="all four in order",
    ),
    pytest.param({"include": ["^x"]}, NGINX, [], id="nothing included"),
    pytest.param({}, [], [], id="no tags"),
    pytest.param({}, ["b", "a", "b"], ["a", "b"], id="duplicate input tags"),
    pytest.param({"latest": 1}, ["v1.0.0", "1.0.0"], ["v1.0.0"], id="equal versions tie-break by name"),
]


@pytest.mark.parametrize(("kwargs", "tags", "expected"), FILTER_CASES)
def test_select(kwargs: dict[str, object], tags: list[str], expected: list[str]) -> None:
    assert _filter(**kwargs).select(tags) == expected  # type: ignore[arg-type]


def test_select_unbounded_ignores_latest() -> None:
    tag_filter = _filter(semver_range="^1", latest=1)
    assert tag_filter.select(["1.0.0", "1.1.0", "2.0.0"]) == ["1.1.0"]
    assert tag_filter.select_unbounded(["1.0.0", "1.1.0", "2.0.0"]) == ["1.0.0", "1.1.0"]


RANGE_CASES = [
    # (range, version, matches)
    (">=1.2.3", "1.2.3", True),
    (">1.2.3", "1.2.3", False),
    ("<=1.2.3", "1.2.3", True),
    ("<1.2.3", "1.2.3-rc.1", False),
    ("<1.2.3-rc.2", "1.2.3-rc.1", True),
    ("=1.2.3", "1.2.3", True),
    ("1.2.3", "1.2.4", False),
    (">= 1.2.3", "1.2.4", True),
    ("<2", "1.99.99", True),
    ("<2", "2.0.0-rc.1", False),
    ("<2", "2.0.0", False),
    (">1", "1.9.0", False),
    (">1", "2.0.0", True),
    (">1.2", "1.3.0", True),
    ("<=1.2", "1.2.9", True),
    ("<=1.2", "1.3.0", False),
    (">=1", "1.0.0", True),
    ("1", "1.5.0", True),
    ("1.2.*", "1.2.7", True),
    ("1.X", "2.0.0", False),
    ("*", "0.0.1", True),
    ("*", "1.0.0-alpha", False),
    ("~1.2.3", "1.2.9", True),
    ("~1.2.3", "1.3.0", False),
    ("~1", "1.9.9", True),
    ("~0.2", "0.2.5", True),
    ("~1.2.3-beta.2", "1.2.3-beta.4", True),
    ("~1.2.3-beta.2", "1.2.4-beta.2", False),
    ("^1.2.3", "1.9.9", True),
    ("^1.2.3", "2.0.0", False),
    ("^0.2.3", "0.2.9", True),
    ("^0.2.3", "0.3.0", False),
    ("^0.0.3", "0.0.4", False),
    ("^0.0", "0.0.9", True),
    ("^0.x", "0.9.0", True),
    ("^1.2.3-beta.2", "1.2.3-beta.4", True),
    ("^1.2.3-beta.2", "1.2.4-beta.2", False),
    ("1.2.3 - 2.3.4", "2.3.4", True),
    ("1.2 - 2.3.4", "1.2.0", True),
    ("1.2.3 - 2.3", "2.3.9", True),
    ("1.2.3 - 2", "2.9.9", True),
    ("1.2.3 - 2", "3.0.0", False),
    (">=1.0.0 <2 || 3.x", "3.1.0", True),
    (">=1.0.0 <2 || 3.x", "2.5.0", False),
    (">=1.0.0", "v1.0.0", True),
    (">=1.0.0", "1.0", False),
    (">=1.0.0", "latest", False),
    (">=1.0.0", "1.0.0+build.5", True),
]


@pytest.mark.parametrize(("text", "version", "expected"), RANGE_CASES)
def test_range_matches(text: str, version: str, expected: bool) -> None:
    assert SemverRange.parse(text).matches(version) is expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (">=1.x", "a wildcard after '>=' is ambiguous: write '>=1'"),
        ("abc", "'abc' is not a version"),
        ("1.2.3.4", "'1.2.3.4' is not a version"),
        (">=", "'>=' needs a version"),
        ("", "an empty comparator set (write '*' to accept any version)"),
        ("1.0.0 ||", "an empty comparator set (write '*' to accept any version)"),
        ("1.x-rc.1", "'1.x-rc.1' is not a version"),
        ("01.2.3", "'01.2.3' is not a version"),
        ("=>1.2.3", "'=>1.2.3' is not a version"),
    ],
)
def test_range_errors(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match="is not a version range") as info:
        SemverRange.parse(text)
    assert str(info.value) == f"{text!r} is not a version range ({reason})"


def test_range_value_semantics() -> None:
    assert SemverRange.parse("^1") == SemverRange.parse("^1")
    assert SemverRange.parse("^1") != SemverRange.parse("1.x")
    assert hash(SemverRange.parse("^1")) == hash(SemverRange.parse("^1"))
    assert str(SemverRange.parse(">=1 <2")) == ">=1 <2"
    assert repr(SemverRange.parse("^1")) == "SemverRange('^1')"


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("1.2.3", semver.Version(1, 2, 3)),
        ("v1.2.3-rc.1", semver.Version(1, 2, 3, "rc.1")),
        ("1.2", None),
        ("V1.2.3", None),
        ("latest", None),
        ("vv1.2.3", None),
    ],
)
def test_parse_tag_version(tag: str, expected: semver.Version | None) -> None:
    assert parse_tag_version(tag) == expected


versions = st.builds(
    lambda a, b, c, pre: f"{a}.{b}.{c}" + (f"-{pre}" if pre else ""),
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(0, 3),
    st.sampled_from(["", "rc.1", "alpha", "0"]),
)


@given(st.lists(versions, max_size=12), st.integers(1, 5))
def test_latest_is_the_top_of_the_sorted_list(tags: list[str], count: int) -> None:
    ordered = sort_tags(set(tags))
    assert _filter(latest=count).select(tags) == ordered[max(len(ordered) - count, 0) :]
    parsed = [semver.Version.parse(t) for t in ordered]
    assert all(a.compare(b) <= 0 for a, b in itertools.pairwise(parsed))


@given(versions, st.sampled_from(["<", "<=", ">", ">=", "="]), versions)
def test_full_version_comparators_agree_with_semver(version: str, op: str, bound: str) -> None:
    v, b = semver.Version.parse(version), semver.Version.parse(bound)
    cmp = v.compare(b)
    want = {"<": cmp < 0, "<=": cmp <= 0, ">": cmp > 0, ">=": cmp >= 0, "=": cmp == 0}[op]
    if v.prerelease and not (b.prerelease and v.finalize_version() == b.finalize_version()):
        want = False  # npm's pre-release rule
    assert SemverRange.parse(f"{op}{bound}").matches(version) is want
