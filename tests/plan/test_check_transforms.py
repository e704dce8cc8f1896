"""A target the engine would refuse on every pass fails the plan check, with file, line and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mirrord.plan import PlanError, TargetConfig, parse_plan

BOTH_ON_TARGET = (
    "version: 1\nsync:\n  - source: a.io/b\n    target: {ref: c.io/d, format: docker, compression: zstd}\n"
)
REFUSED = "format docker with compression zstd: Docker has no zstd layer type (no pass could copy to it)"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        pytest.param(
            BOTH_ON_TARGET,
            "mirrord.yaml:4: sync[0].target.compression",
            id="both on the target",
        ),
        pytest.param(
            "version: 1\nsync:\n  - source: a.io/b\n    compression: zstd\n"
            "    target: {ref: c.io/d, format: docker}\n",
            "mirrord.yaml:5: sync[0].target.format",
            id="the target's format against the entry's compression",
        ),
        pytest.param(
            "version: 1\ndefaults:\n  format: docker\nsync:\n  - source: a.io/b\n    target: c.io/d\n"
            "    compression: zstd\n",
            "mirrord.yaml:7: sync[0].compression",
            id="the entry's compression against the defaults' format",
        ),
        pytest.param(
            "version: 1\ndefaults:\n  format: docker\n  compression: zstd\nsync:\n  - source: a.io/b\n"
            "    targets: [c.io/d]\n",
            "mirrord.yaml:4: defaults.compression",
            id="both from defaults",
        ),
    ],
)
def test_docker_with_zstd_fails_the_check_where_it_was_set(text: str, where: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan(text, "mirrord.yaml")
    assert str(info.value) == f"{where}: target c.io/d: {REFUSED}"


def test_transforms_the_engine_can_do_still_load() -> None:
    plan = parse_plan(
        "version: 1\nsync:\n  - source: a.io/b\n    targets:\n"
        "      - {ref: c.io/docker-gzip, format: docker, compression: gzip}\n"
        "      - {ref: c.io/oci-zstd, format: oci, compression: zstd}\n"
        "      - {ref: c.io/keep-zstd, compression: zstd}\n",
        "mirrord.yaml",
    )
    formats = [(t.format, t.compression) for t in plan.entries[0].targets]
    assert formats == [("docker", "gzip"), ("oci", "zstd"), ("keep", "zstd")]
    assert all(isinstance(t, TargetConfig) for t in plan.entries[0].targets)


def test_mirrord_check_refuses_the_plan_naming_file_line_and_key(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(BOTH_ON_TARGET)
    ran = subprocess.run(
        [sys.executable, "-m", "mirrord", "check", "-c", str(plan)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode != 0
    assert f"{plan}:4: sync[0].target.compression: target c.io/d: {REFUSED}" in ran.stderr
