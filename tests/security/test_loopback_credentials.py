"""Credentials go over plain HTTP only when the plan says ``tls: false`` for that registry, not because a
loopback host defaults to plain HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.helpers import images, run_cli, seed, write_plan
from tests.testbed.registry import RegistryServer

pytestmark = pytest.mark.integration


def _plan(path: Path, source: RegistryServer, target: RegistryServer, repo: str, tls_line: str) -> Path:
    return write_plan(
        path,
        f"""
version: 1
registries:
  {source.host}:
    tls: false
  {target.host}:
{tls_line}    auth: {{username: {target.username}, password_env: TARGET_PASSWORD}}
sync:
  - source: {source.host}/{repo}
    target: {target.host}/{repo}
    tags: ['1']
""",
    )


async def test_loopback_default_plain_http_never_carries_credentials(
    plain_registry: RegistryServer, basic_registry: RegistryServer, unique_repo: str, tmp_path: Path
) -> None:
    await seed(plain_registry.host, unique_repo, images("1"))
    assert basic_registry.password is not None
    env = {"TARGET_PASSWORD": basic_registry.password}

    implicit = _plan(tmp_path / "implicit.yaml", plain_registry, basic_registry, unique_repo, "")
    refused = await run_cli("sync", "-c", str(implicit), env=env)
    assert refused.code == 1, refused.output
    assert "refusing to send credentials over plain HTTP" in refused.output

    explicit = _plan(
        tmp_path / "explicit.yaml", plain_registry, basic_registry, unique_repo, "    tls: false\n"
    )
    allowed = await run_cli("sync", "-c", str(explicit), env=env)
    assert allowed.code == 0, allowed.output
    assert basic_registry.password not in allowed.output
