"""Checks across entries: two entries writing one target repository, and an empty plan."""

from __future__ import annotations

import textwrap

import pytest

from mirrord.plan import PlanError, parse_plan, plan_warnings


def _plan(body: str) -> str:
    return "version: 1\nsync:\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "  ") + "\n"


def test_two_filtered_entries_into_one_repository_are_refused_naming_both() -> None:
    text = _plan(
        """
        - name: app
          source: src.example.com/team/app
          target: mirror.example.com/app
          tags: {semver: '>=1'}
        - name: app-typo
          source: src.example.com/team/aap
          target: mirror.example.com/app
          prune: true
        """
    )
    with pytest.raises(PlanError) as info:
        parse_plan(text, "mirrord.yaml")
    error = info.value
    assert (error.path, error.line, error.key) == ("mirrord.yaml", 9, "sync[1].target")
    assert str(error).startswith(
        "mirrord.yaml:9: sync[1].target: entry 'app-typo' writes mirror.example.com/app, "
        "which entry 'app' (line 5) writes too"
    )


def test_defaults_target_shared_by_entries_is_refused_at_the_entry() -> None:
    text = "version: 1\ndefaults:\n  target: mirror.example.com/common\n" + _plan(
        """
        - source: src.example.com/a
        - source: src.example.com/b
        """
    ).removeprefix("version: 1\n")
    with pytest.raises(PlanError, match=r"^p.yaml:6: sync\[1\]: entry 'src.example.com/b' writes "):
        parse_plan(text, "p.yaml")


@pytest.mark.parametrize(
    "second",
    [
        "{source: 'src.example.com/a:1.0', target: mirror.example.com/x}",  # the same tag
        "{source: src.example.com/b, target: mirror.example.com/x, tags: [1.0, 3.0]}",  # overlapping lists
        "{source: src.example.com/b, targets: [mirror.example.com/y, mirror.example.com/x]}",
        "{source: 'oci:/srv/a', target: mirror.example.com/x}",
    ],
)
def test_overlapping_tags_are_refused(second: str) -> None:
    text = _plan(
        f"- {{source: src.example.com/a, target: mirror.example.com/x, tags: [1.0, 2.0]}}\n- {second}"
    )
    with pytest.raises(PlanError, match=r"writes mirror\.example\.com/x, which entry"):
        parse_plan(text)


def test_fixed_disjoint_tags_may_share_a_repository() -> None:
    pinned = "src.example.com/alpine@sha256:" + "0" * 64
    text = _plan(
        f"""
        - {{name: a, source: 'src.example.com/alpine:3.19', target: mirror.example.com/alpine}}
        - {{name: b, source: 'src.example.com/alpine:3.20', target: mirror.example.com/alpine}}
        - {{name: c, source: src.example.com/other, target: mirror.example.com/alpine, tags: [edge]}}
        - {{name: d, source: 'src.example.com/x:1', target: 'mirror.example.com/alpine:pinned'}}
        - name: e
          source: {pinned}
          target: mirror.example.com/alpine
        """
    )
    assert [e.name for e in parse_plan(text).entries] == ["a", "b", "c", "d", "e"]


def test_same_layout_directory_is_one_repository() -> None:
    text = _plan(
        """
        - {source: src.example.com/a, target: 'oci:/srv/airgap'}
        - {source: src.example.com/b, target: 'oci:/srv/airgap'}
        """
    )
    with pytest.raises(PlanError, match=r"writes oci:/srv/airgap"):
        parse_plan(text)


def test_an_empty_plan_is_valid_with_a_warning() -> None:
    for text in ("version: 1\nsync: []\n", "version: 1\n"):
        plan = parse_plan(text, "p.yaml")
        assert plan_warnings(plan) == ["p.yaml: sync: the plan has no entries; nothing will be mirrored"]
    assert plan_warnings(parse_plan(_plan("- {source: a.example.com/a, target: b.example.com/a}"))) == []


def test_a_pattern_target_covering_a_later_entrys_target_is_refused_naming_both() -> None:
    text = _plan(
        """
        - name: team
          source: 'src.example.com/team/**'
          target: 'mirror.example.com/team/**'
        - name: app
          source: src.example.com/other/app
          target: mirror.example.com/team/app
        """
    )
    with pytest.raises(PlanError) as info:
        parse_plan(text, "mirrord.yaml")
    error = info.value
    assert (error.path, error.line, error.key) == ("mirrord.yaml", 8, "sync[1].target")
    assert str(error).startswith(
        "mirrord.yaml:8: sync[1].target: entry 'app' writes mirror.example.com/team/app, "
        "which mirror.example.com/team/** of entry 'team' covers (line 5)"
    )


def test_a_pattern_entry_after_the_entry_it_covers_is_refused_at_the_pattern() -> None:
    text = _plan(
        """
        - {name: app, source: src.example.com/x, target: mirror.example.com/m/a/b}
        - {name: all, source: 'src.example.com/*/b', target: 'mirror.example.com/m/**'}
        """
    )
    with pytest.raises(PlanError) as info:
        parse_plan(text, "p.yaml")
    assert (info.value.line, info.value.key) == (4, "sync[1].target")
    assert (
        "entry 'all' writes mirror.example.com/m/**, covering mirror.example.com/m/a/b of entry 'app'"
        in str(info.value)
    )


@pytest.mark.parametrize(
    "other",
    [
        "{source: src.example.com/x, target: mirror.example.com/elsewhere/app}",  # outside the namespace
        "{source: src.example.com/x, target: mirror.example.com/team}",  # the namespace itself
        "{source: src.example.com/x, target: mirror.example.com/team/a/c}",  # team/*/b cannot map to it
        "{source: src.example.com/x, target: mirror.example.com/team/z/b}",  # filtered out below
        "{source: src.example.com/x, target: mirror.example.com/team/a/b, tags: [edge]}",  # disjoint tags
    ],
)
def test_what_a_pattern_target_cannot_write_may_sit_beside_it(other: str) -> None:
    text = _plan(
        f"""
        - source: 'src.example.com/team/*/b'
          target: 'mirror.example.com/team/**'
          repositories: {{exclude: ['^team/z/']}}
          tags: [stable]
        - {other}
        """
    )
    assert len(parse_plan(text).entries) == 2
