"""Repository patterns in the plan: parsing and validation, target naming, check output round trip."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from mirrord.plan import PlanError, parse_plan, plan_to_dict
from mirrord.plan.patterns import RepositoryFilter, RepositoryPattern, is_pattern


def _entry_plan(entry: str, defaults: str = "") -> str:
    return (
        "version: 1\n" + defaults + "sync:\n" + textwrap.indent(textwrap.dedent(entry).strip(), "  ") + "\n"
    )


@pytest.mark.parametrize(
    ("pattern", "matching", "other"),
    [
        ("h:5000/team/**", ["team/a", "team/a/b/c"], ["team", "teams/a", "x/team/a"]),
        ("h:5000/*/app", ["a/app", "b/app"], ["app", "a/b/app", "a/app/x"]),
        ("h:5000/**", ["a", "a/b"], []),
        ("h:5000/team/*/**", ["team/a/b", "team/a/b/c"], ["team/a"]),
    ],
)
def test_matching(pattern: str, matching: list[str], other: list[str]) -> None:
    parsed = RepositoryPattern.parse(pattern)
    assert all(parsed.matches(r) for r in matching)
    assert not any(parsed.matches(r) for r in other)


def test_prefix_below_and_target_mapping() -> None:
    pattern = RepositoryPattern.parse("src.example.com/team/**")
    assert pattern.prefix == "team"
    assert (
        pattern.target_for("mirror.example.com/team-mirror/**", "team/a/b")
        == "mirror.example.com/team-mirror/a/b"
    )
    whole = RepositoryPattern.parse("src.example.com/**")
    assert whole.prefix == ""
    assert whole.target_for("m.example.com/all/**", "x/y") == "m.example.com/all/x/y"
    assert RepositoryPattern.parse("h.io/*/app").below("a/app") == "a/app"


@pytest.mark.parametrize("bad", ["h.io/te*m/**", "h.io/**/x", "h.io/team"])
def test_bad_patterns(bad: str) -> None:
    with pytest.raises(ValueError, match=r"segment|not a pattern"):
        RepositoryPattern.parse(bad)


def test_is_pattern_and_filter() -> None:
    assert is_pattern("h.io/team/**")
    assert not is_pattern("h.io/team/app")
    keep = RepositoryFilter(
        include=(__import__("re").compile("^team/"),), exclude=(__import__("re").compile("-old$"),)
    )
    assert keep.keeps("team/a")
    assert not keep.keeps("team/a-old")
    assert not keep.keeps("other/a")


def test_a_pattern_entry_loads_with_targets_and_filter() -> None:
    plan = parse_plan(
        _entry_plan(
            """
            - source: src.example.com:5000/team/**
              target: mirror.example.com/team-mirror/**
              repositories: {include: ['^team/a'], exclude: '-old$'}
              tags: {include: ['^v']}
            """
        ),
        "p.yaml",
    )
    entry = plan.entries[0]
    assert entry.source == "src.example.com:5000/team/**"
    assert entry.pattern is not None
    assert entry.pattern.prefix == "team"
    assert entry.targets[0].ref == "mirror.example.com/team-mirror/**"
    assert entry.repositories is not None
    assert entry.repositories.keeps("team/a/b")
    assert not entry.repositories.keeps("team/a/b-old")


def test_target_prefix_keeps_the_whole_repository_path() -> None:
    plan = parse_plan(
        _entry_plan("- source: src.example.com/*/app", "defaults: {target_prefix: mirror.example.com/m}\n"),
        "p.yaml",
    )
    assert plan.entries[0].targets[0].ref == "mirror.example.com/m/src.example.com/**"
    plan = parse_plan(
        _entry_plan("- source: src.example.com/team/**", "defaults: {target_prefix: mirror.example.com/m}\n"),
        "p.yaml",
    )
    assert plan.entries[0].targets[0].ref == "mirror.example.com/m/src.example.com/team/**"


def test_docker_hub_patterns_normalise() -> None:
    plan = parse_plan(_entry_plan("- {source: 'docker.io/*', target: 'm.example.com/hub/**'}"), "p.yaml")
    assert plan.entries[0].source == "docker.io/library/*"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("- {source: 'src.example.com/team/**', target: m.example.com/x}", "must end in /\\*\\*"),
        ("- {source: src.example.com/team/app, target: 'm.example.com/x/**'}", "needs a source pattern"),
        ("- {source: 'team/**', target: 'm.example.com/x/**'}", "must name its registry"),
        ("- {source: 'src.example.com/te*m/**', target: 'm.example.com/x/**'}", "whole path segment"),
        ("- {source: 'src.example.com/**/x', target: 'm.example.com/x/**'}", "only be the last"),
        ("- {source: 'src.example.com/t/**:v1', target: 'm.example.com/x/**'}", "repository pattern"),
        ("- {source: 'src.example.com/t/**', target: 'm.example.com/**/x'}", "only as its last"),
        (
            "- {source: src.example.com/t/app, target: m.example.com/x, repositories: {include: a}}",
            "needs a source pattern",
        ),
        (
            "- {source: 'src.example.com/t/**', target: 'm.example.com/x/**', repositories: {only: a}}",
            "only",
        ),
        (
            "- {source: 'src.example.com/t/**', target: 'm.example.com/x/**', repositories: {include: '('}}",
            "not a regular expression",
        ),
    ],
)
def test_invalid_pattern_entries(entry: str, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        parse_plan(_entry_plan(entry), "p.yaml")


def test_check_output_round_trips() -> None:
    text = _entry_plan(
        """
        - name: ns
          source: src.example.com:5000/team/**
          target: mirror.example.com/team-mirror/**
          repositories: {include: ['^team/a'], exclude: ['-old$']}
        """
    )
    plan = parse_plan(text, "p.yaml")
    resolved = plan_to_dict(plan)
    assert resolved["sync"][0]["source"] == "src.example.com:5000/team/**"
    assert resolved["sync"][0]["repositories"] == {"include": ["^team/a"], "exclude": ["-old$"]}
    again = parse_plan(yaml.safe_dump(resolved, sort_keys=False), "p.yaml")
    assert again.entries[0].targets == plan.entries[0].targets
    assert again.entries[0].source == plan.entries[0].source
    assert again.entries[0].repositories is not None
