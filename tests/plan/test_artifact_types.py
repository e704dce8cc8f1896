"""The ``artifact_types`` plan key: per target, as an entry or defaults value, validated, resolved."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from mirrord.plan import PlanError, parse_plan, plan_to_dict

SIG = "application/vnd.dev.cosign.simplesigning.v1+json"


def _plan(body: str) -> str:
    return textwrap.dedent(body).lstrip("\n")


def test_target_entry_and_defaults_values() -> None:
    plan = parse_plan(
        _plan(
            f"""
            version: 1
            defaults:
              artifact_types: [{SIG}]
            sync:
              - source: example.com/a
                targets:
                  - mirror.example.com/a
                  - {{ref: mirror.example.com/b, artifact_types: [application/spdx+json]}}
              - source: example.com/c
                target: mirror.example.com/c
                artifact_types: [text/spdx+json, {SIG}]
            """
        ),
        "mirrord.yaml",
    )
    a, c = plan.entries
    assert [t.artifact_types for t in a.targets] == [(SIG,), ("application/spdx+json",)]
    assert c.targets[0].artifact_types == ("text/spdx+json", SIG)


def test_default_is_every_type_and_round_trips() -> None:
    text = _plan(
        """
        version: 1
        sync:
          - source: example.com/a
            targets: [mirror.example.com/a, {ref: mirror.example.com/b, artifact_types: [a/b]}]
        """
    )
    plan = parse_plan(text, "mirrord.yaml")
    assert plan.entries[0].targets[0].artifact_types is None
    resolved = plan_to_dict(plan)
    assert "artifact_types" not in resolved["sync"][0]["targets"][0]
    assert resolved["sync"][0]["targets"][1]["artifact_types"] == ["a/b"]
    assert parse_plan(yaml.safe_dump(resolved, sort_keys=False), "mirrord.yaml") == plan


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[]", "at least one media type"),
        ("[signature]", "'signature' is not a media type"),
        ("sig", "'sig' is not a media type"),  # one string is a one-item list, as elsewhere
    ],
)
def test_invalid_values_name_the_line_and_key(value: str, message: str) -> None:
    text = f"version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d\n    artifact_types: {value}\n"
    with pytest.raises(PlanError) as info:
        parse_plan(text, "mirrord.yaml")
    assert str(info.value).startswith("mirrord.yaml:5: sync[0].artifact_types: ")
    assert message in str(info.value)
