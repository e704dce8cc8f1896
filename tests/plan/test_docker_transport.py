"""skopeo's ``docker://`` prefix in a plan: accepted on sources and targets as in ``mirrord copy``,
dropped from the model and from ``mirrord check``'s output."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mirrord.plan import PlanError, parse_plan, plan_to_dict


def _plan(body: str) -> str:
    return "version: 1\nsync:\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "  ") + "\n"


PREFIXED = _plan(
    """
    - source: 'docker://quay.io/prometheus/node-exporter:v1.8.2'
      targets:
        - 'docker://mirror.example.com/prom/node-exporter'
        - {ref: 'docker://mirror.example.com/prom/pinned:stable'}
    - source: 'docker://nginx'
      target: 'docker://mirror.example.com/nginx'
    - source: 'docker://src.example.com/team/**'
      target: 'docker://mirror.example.com/team/**'
    """
)


def test_a_prefixed_plan_is_the_plan_without_the_prefix() -> None:
    assert plan_to_dict(parse_plan(PREFIXED, "p.yaml")) == plan_to_dict(
        parse_plan(PREFIXED.replace("docker://", ""), "p.yaml")
    )
    first, short, pattern = parse_plan(PREFIXED).entries
    assert (first.name, first.source, first.tag) == (
        "quay.io/prometheus/node-exporter:v1.8.2",
        "quay.io/prometheus/node-exporter",
        "v1.8.2",
    )
    assert [(t.ref, t.tag) for t in first.targets] == [
        ("mirror.example.com/prom/node-exporter", None),
        ("mirror.example.com/prom/pinned", "stable"),
    ]
    assert (short.source, short.source_is_short) == ("docker.io/library/nginx", True)
    assert (pattern.source, pattern.targets[0].ref) == (
        "src.example.com/team/**",
        "mirror.example.com/team/**",
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("- {source: 'docker://oci:/srv/x', target: m.example.com/x}", "sync[0].source"),
        ("- {source: 'docker://', target: m.example.com/x}", "sync[0].source"),
        ("- {source: a.example.com/x, target: 'docker://oci:/srv/x'}", "sync[0].target"),
    ],
)
def test_docker_prefix_before_no_registry_reference_is_a_clear_error(text: str, key: str) -> None:
    with pytest.raises(
        PlanError, match=r"docker:// names a registry image .*an OCI layout is written oci:"
    ) as info:
        parse_plan(_plan(text), "p.yaml")
    assert info.value.key == key


def test_mirrord_check_prints_the_normalised_references(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PREFIXED)
    ran = subprocess.run(
        [sys.executable, "-m", "mirrord", "check", "-c", str(plan)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert "docker://" not in ran.stdout
    assert "quay.io/prometheus/node-exporter:v1.8.2" in ran.stdout
    assert "mirror.example.com/prom/pinned:stable" in ran.stdout
