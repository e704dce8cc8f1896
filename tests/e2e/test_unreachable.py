"""A registry that cannot be reached fails fast: no retry storm, one summarised error per registry,
and a dead target costs the source nothing. Through the real CLI against real registries."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.e2e.helpers import images, read_report, registries_yaml, run_cli, seed, write_plan
from tests.testbed.proxy import FaultProxy
from tests.testbed.registry import RegistryServer

pytestmark = [pytest.mark.integration]


def closed_port() -> str:
    """``127.0.0.1:PORT`` where nothing listens (bound once to pick it, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def _plan(path: Path, source: str, target: str, repos: list[str]) -> Path:
    entries = "".join(
        f"  - name: {repo.rsplit('/', 1)[-1]}\n    source: {source}/{repo}\n"
        f"    target: {target}/{repo}\n    tags: ['1.0']\n"
        for repo in repos
    )
    return write_plan(path, f"version: 1\n{registries_yaml([source, target])}sync:\n{entries}")


async def test_a_closed_target_fails_fast_without_reading_the_source(
    plain_registry: RegistryServer, unique_repo: str, tmp_path: Path
) -> None:
    repos = [f"{unique_repo}/app{n}" for n in range(3)]
    for n, repo in enumerate(repos):
        await seed(plain_registry.host, repo, images("1.0", seed_base=10 * n))
    dead = closed_port()
    async with FaultProxy(plain_registry.url) as src:
        plan = _plan(tmp_path / "plan.yaml", src.host, dead, repos)
        result = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r.json"))
        assert result.code == 1, result.output
        # Nothing read from the source for a target that cannot take it: no blob, not even a manifest.
        assert src.count("GET", "blob") == 0, src.requests
        assert src.count("GET", "manifest") == 0, src.requests
    lines = result.output.splitlines()
    assert len(lines) < 40, result.output
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert not [r for r in logged if "retry" in r["msg"]], result.stderr
    # One summarised error for the registry, not one per blob or image.
    unreachable = [r for r in logged if r["msg"] == "registry unreachable"]
    assert [r["registry"] for r in unreachable] == [dead], result.stderr
    rows = read_report(tmp_path / "r.json")
    assert [r["result"] for r in rows] == ["failed"] * 3
    assert all(dead in r["error"] and "cannot connect" in r["error"] for r in rows), rows


async def test_a_closed_source_fails_its_images_once_and_the_others_still_copy(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("1.0"))
    dead = closed_port()
    plan = write_plan(
        tmp_path / "plan.yaml",
        f"""
version: 1
{registries_yaml([plain_registry.host, dead, target.host])}
sync:
  - name: live
    source: {plain_registry.host}/{unique_repo}
    target: {target.host}/{unique_repo}
    tags: ['1.0']
  - name: dead
    source: {dead}/{unique_repo}
    target: {target.host}/dead/{unique_repo}
    tags: ['1.0', '2.0', '3.0']
""",
    )
    result = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r.json"))
    assert result.code == 1, result.output
    rows = {r["source"]: r for r in read_report(tmp_path / "r.json")}
    assert rows[f"{plain_registry.host}/{unique_repo}:1.0"]["result"] == "copied"
    dead_rows = [r for s, r in rows.items() if s.startswith(dead)]
    assert [r["result"] for r in dead_rows] == ["failed"] * 3
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert not [r for r in logged if "retry" in r["msg"]], result.stderr
    assert [r["registry"] for r in logged if r["msg"] == "registry unreachable"] == [dead]


async def test_a_target_refusing_uploads_costs_the_source_no_blob_read(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("1.0"))
    async with FaultProxy(plain_registry.url) as src, FaultProxy(target.url) as dst:
        # The target answers its HEADs but refuses every upload session: the source blob is opened
        # only once a target asks for the first byte, so no source blob is read at all.
        dst.add_fault("status", method="POST", path_re=r"/blobs/uploads/", status=403, times=None)
        plan = _plan(tmp_path / "plan.yaml", src.host, dst.host, [unique_repo])
        result = await run_cli("sync", "-c", str(plan))
        assert result.code == 1, result.output
        assert dst.count("POST", "upload") >= 1
        assert src.count("GET", "blob") == 0, src.requests
