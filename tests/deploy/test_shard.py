"""Sharding: ``--shard K/N`` and ``auto/N`` (StatefulSet ordinal) split a plan so every entry is synced by
exactly one process, as the Kubernetes StatefulSet variant relies on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from mirrord.sync.shard import resolve_shard, shard_of
from tests.e2e.helpers import images, registries_yaml, run_cli, seed, tags_at, write_plan
from tests.testbed.registry import RegistryServer

ENTRIES = 10


@pytest.mark.parametrize(
    ("text", "hostname", "expected"),
    [
        ("1/2", "anything", (1, 2)),
        ("2/2", None, (2, 2)),
        ("auto/3", "mirrord-0", (1, 3)),
        ("auto/3", "mirrord-2", (3, 3)),
        ("auto/1", "my-mirror-sts-0", (1, 1)),
        ("auto/12", "mirrord-11", (12, 12)),
        (None, "mirrord-1", None),
        ("", "mirrord-1", None),
    ],
)
def test_resolve_shard(text: str | None, hostname: str | None, expected: tuple[int, int] | None) -> None:
    assert resolve_shard(text, hostname) == expected


@pytest.mark.parametrize(
    ("text", "hostname", "message"),
    [
        ("auto/2", "mirrord", "no -ORDINAL suffix"),
        ("auto/2", "mirrord-2", "pod ordinal 2"),
        ("auto/0", "mirrord-0", "not auto/N"),
        ("auto", "mirrord-0", "not auto/N"),
        ("auto/x", "mirrord-0", "not auto/N"),
        ("3/2", "mirrord-0", "between 1 and N"),
        ("one/two", "mirrord-0", "not K/N"),
    ],
)
def test_resolve_shard_rejects(text: str, hostname: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_shard(text, hostname)


def test_auto_reads_the_hostname_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTNAME", "mirrord-4")
    assert resolve_shard("auto/5") == (5, 5)


def _names() -> list[str]:
    return [f"app-{i:02d}" for i in range(ENTRIES)]


def _plan(path: Path, source: str, target: str, repos: dict[str, str]) -> Path:
    entries = "".join(
        f"  - name: {name}\n    source: {source}/{repo}\n    target: {target}/{repo}\n    tags: ['1.0']\n"
        for name, repo in repos.items()
    )
    return write_plan(path, f"version: 1\n{registries_yaml([source, target])}sync:\n{entries}")


def _report(path: Path) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(path.read_text())
    return body


def _entries(report: dict[str, Any]) -> set[str]:
    return {e["entry"] for e in report["entries"]}


def test_the_test_plan_spreads_over_both_shards() -> None:
    # Otherwise the process test below could pass with one shard doing everything.
    shards = {shard_of(name, 2) for name in _names()}
    assert shards == {1, 2}


@pytest.mark.integration
async def test_two_processes_cover_the_plan_exactly_once(
    plain_registry: RegistryServer, registry_factory: Any, unique_repo: str, tmp_path: Path
) -> None:
    target: RegistryServer = registry_factory("plain")
    repos = {name: f"{unique_repo}/{name}" for name in _names()}
    for i, repo in enumerate(repos.values()):
        await seed(plain_registry.host, repo, images("1.0", seed_base=10 * i))
    plan = _plan(tmp_path / "plan.yaml", plain_registry.host, target.host, repos)

    reports = [tmp_path / f"shard{k}.json" for k in (1, 2)]
    runs = await asyncio.gather(
        *(
            run_cli("sync", "-c", str(plan), "--shard", f"{k}/2", "--report", str(reports[k - 1]))
            for k in (1, 2)
        )
    )
    for run in runs:
        assert run.code == 0, run.output
    first, second = (_entries(_report(r)) for r in reports)
    assert first
    assert second
    assert first.isdisjoint(second)
    assert first | second == set(repos)
    for report in map(_report, reports):
        assert [i["result"] for i in report["images"]] == ["copied"] * len(report["entries"])
    for repo in repos.values():
        assert await tags_at(target.host, repo) == ["1.0"]

    # The StatefulSet path: the same split from $MIRRORD_SHARD=auto/2 and the pod's hostname ordinal.
    for ordinal, expected in ((0, first), (1, second)):
        out = tmp_path / f"auto{ordinal}.json"
        env = {"MIRRORD_SHARD": "auto/2", "HOSTNAME": f"mirrord-{ordinal}"}
        run = await run_cli("sync", "-c", str(plan), "--dry-run", "--report", str(out), env=env)
        assert run.code == 0, run.output
        assert _entries(_report(out)) == expected
        assert {i["result"] for i in _report(out)["images"]} == {"unchanged"}


@pytest.mark.integration
async def test_auto_shard_without_an_ordinal_is_a_usage_error(tmp_path: Path) -> None:
    body = "version: 1\nsync:\n  - source: oci:/nonexistent\n    target: oci:/nowhere\n"
    plan = write_plan(tmp_path / "plan.yaml", body)
    run = await run_cli("sync", "-c", str(plan), "--shard", "auto/2", env={"HOSTNAME": "laptop"})
    assert run.code == 2
    assert "no -ORDINAL suffix" in run.stderr


@pytest.mark.integration
async def test_the_daemon_refuses_more_replicas_than_shards(tmp_path: Path) -> None:
    # A StatefulSet scaled past N: the extra pod exits 2 (visible as CrashLoopBackOff), never idles.
    body = "version: 1\nsync:\n  - source: oci:/nonexistent\n    target: oci:/nowhere\n"
    plan = write_plan(tmp_path / "plan.yaml", body)
    run = await run_cli(
        "run", "-c", str(plan), env={"MIRRORD_SHARD": "auto/2", "HOSTNAME": "mirrord-2"}, timeout=30
    )
    assert run.code == 2
    assert "pod ordinal 2" in run.stderr
