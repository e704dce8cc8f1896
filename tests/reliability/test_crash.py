"""kill -9 in the middle of `mirrord sync`, while a poller checks the target without pause: no tag
may ever reference missing content; a rerun completes byte-identical (skopeo)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RegistryFactory
from tests.e2e.helpers import cli_env, run_cli, seed, tags_at
from tests.reliability.kit import assert_identical, corpus, incomplete_tags, sync_plan
from tests.testbed.proxy import FaultProxy
from tests.testbed.registry import RegistryServer

pytestmark = [pytest.mark.integration, pytest.mark.tools("skopeo")]


class Poller:
    """Checks every tag at the target for completeness, over and over, until stopped."""

    def __init__(self, host: str, repo: str) -> None:
        self.host, self.repo = host, repo
        self.rounds = 0
        self.most_tags = 0
        self.violations: list[tuple[int, list[str]]] = []
        self._stop = asyncio.Event()
        self.some_tag = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            broken = await incomplete_tags(self.host, self.repo)
            if broken:
                self.violations.append((self.rounds, broken))
            self.most_tags = max(self.most_tags, len(await tags_at(self.host, self.repo)))
            if self.most_tags:
                self.some_tag.set()
            self.rounds += 1

    def stop(self) -> None:
        self._stop.set()


async def _start_sync(plan: Path, state: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mirrord", "--log-format", "json", "sync", "-c", str(plan),
        "--state-dir", str(state), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env(),
    )  # fmt: skip


async def test_kill_9_mid_sync_then_rerun_completes(
    plain_registry: RegistryServer, registry_factory: RegistryFactory, unique_repo: str, tmp_path: Path
) -> None:
    images = corpus(6, prefix="k")
    await seed(plain_registry.host, unique_repo, images)
    target = registry_factory("plain")
    poller = Poller(target.host, unique_repo)
    async with FaultProxy(plain_registry.url) as src, asyncio.TaskGroup() as group:
        src.add_fault("delay", method="GET", path_re=r"/blobs/sha256:", delay=0.25, times=None)
        plan = sync_plan(tmp_path / "plan.yaml", src.host, target.host, unique_repo, images)
        polling = group.create_task(poller.run())
        proc = await _start_sync(plan, tmp_path / "state")
        # Kill once some (not all) tags are at the target, mid-transfer.
        await asyncio.wait_for(poller.some_tag.wait(), 30)
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
        tags_at_kill = poller.most_tags
        src.clear_faults()
        rerun = await run_cli("sync", "-c", str(plan), "--state-dir", str(tmp_path / "state"))
        # Two more full rounds: at least one of them began after the rerun ended.
        after = poller.rounds
        async with asyncio.timeout(60):
            while poller.rounds < after + 2:  # noqa: ASYNC110 - a counter, no event to wait on
                await asyncio.sleep(0.01)
        poller.stop()
        await polling
    assert 0 < tags_at_kill < len(images), "the kill must land mid-sync"
    assert rerun.code == 0, rerun.output
    assert poller.rounds > 10
    assert poller.violations == []
    assert await tags_at(target.host, unique_repo) == sorted(images)
    assert_identical(plain_registry, target, unique_repo, images)
    print(f"\nkilled with {tags_at_kill}/{len(images)} tags at the target; {poller.rounds} poll rounds")
