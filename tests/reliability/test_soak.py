"""Soak: `mirrord run` syncs every ~1 s for ~25 s (MIRRORD_SOAK_SECONDS) through faults while new
tags keep arriving at the source; RSS and open file descriptors, sampled from /proc, stay flat."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import pytest

from tests.conftest import RegistryFactory
from tests.e2e.helpers import seed, tags_at
from tests.e2e.test_daemon import Daemon, daemon
from tests.reliability.kit import corpus, sync_plan
from tests.testbed.proxy import FaultProxy
from tests.testbed.registry import RegistryServer

pytestmark = pytest.mark.integration

SOAK_SECONDS = float(os.environ.get("MIRRORD_SOAK_SECONDS", "25"))
RSS_SLACK_KIB = 8 * 1024
FD_SLACK = 8


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _flat(samples: list[int], slack: int) -> tuple[bool, int, int]:
    third = max(1, len(samples) // 3)
    first, last = max(samples[:third]), max(samples[-third:])
    return last <= first * 1.2 + slack, first, last


async def _feed(host: str, repo: str, stop: float) -> list[str]:
    """Push a new tag to the source every ~1.5 s until ``stop`` (monotonic); the tags pushed."""
    pushed: list[str] = []
    n = 0
    while time.monotonic() < stop:
        n += 1
        tag = f"n{n}"
        await seed(host, repo, {tag: corpus(1, prefix=f"n{n}-")[f"n{n}-1"]})
        pushed.append(tag)
        await asyncio.sleep(1.5)
    return pushed


async def test_daemon_soak_memory_and_fds_stay_flat(
    plain_registry: RegistryServer, registry_factory: RegistryFactory, unique_repo: str, tmp_path: Path
) -> None:
    await seed(plain_registry.host, unique_repo, corpus(2, prefix="s"))
    target = registry_factory("plain")
    async with FaultProxy(plain_registry.url) as src, FaultProxy(target.url) as dst:
        faults = [
            src.add_fault(
                "reset", method="GET", path_re=r"/blobs/sha256:", after_bytes=300, probability=0.2,
                times=None, seed=11,
            ),
            src.add_fault("status", status=503, probability=0.03, times=None, seed=12),
            dst.add_fault("status", status=429, probability=0.03, times=None, seed=13),
            dst.add_fault("status", method="PATCH", status=500, probability=0.2, times=None, seed=14),
        ]  # fmt: skip
        plan = sync_plan(
            tmp_path / "plan.yaml", src.host, dst.host, unique_repo, [],
            registry_extra={dst.host: "chunk_size: 64KiB"},
        )  # fmt: skip
        text = plan.read_text().replace("tags: []", "tags: {include: ['^(s|n)']}\n    interval: 1s")
        plan.write_text(text)
        async with daemon(plan, tmp_path) as d:
            await d.wait_for(lambda: _first_pass_done(d), what="the first pass")
            assert d.proc is not None
            pid = d.proc.pid
            rss: list[int] = []
            fds: list[int] = []
            stop = time.monotonic() + SOAK_SECONDS
            feeding = asyncio.create_task(_feed(plain_registry.host, unique_repo, stop))
            while time.monotonic() < stop:
                rss.append(_rss_kib(pid))
                fds.append(_fds(pid))
                await asyncio.sleep(0.5)
            pushed = await feeding

            async def mirrored() -> bool:  # the last pushed tags get their pass
                return set(pushed) <= set(await tags_at(target.host, unique_repo))

            await d.wait_for(mirrored, 60, "the last pushed tags at the target")
            status = await d.status()
            _, metrics = await d.get("/metrics")
            assert await d.stop() == 0
    entry = next(iter(status["entries"].values()))
    present = await tags_at(target.host, unique_repo)
    assert set(pushed) <= set(present), (pushed, present, entry)
    rss_ok, rss_first, rss_last = _flat(rss, RSS_SLACK_KIB)
    fds_ok, fds_first, fds_last = _flat(fds, FD_SLACK)
    retries = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("mirrord_retries_total{")
    )
    print(
        f"\nsoak {SOAK_SECONDS:.0f}s: {entry['runs']} passes, {len(pushed)} new tags, faults "
        f"{[f.triggered for f in faults]}, mirrord_retries_total {retries:.0f}; RSS KiB first-third max "
        f"{rss_first} last-third max {rss_last}; fds {fds_first} -> {fds_last}"
    )
    assert sum(f.triggered for f in faults) > 0
    assert retries > 0
    assert entry["runs"] >= SOAK_SECONDS / 3
    assert rss_ok, rss
    assert fds_ok, repr(fds)


async def _first_pass_done(d: Daemon) -> bool:
    status = await d.status()
    return any(e["last_end"] is not None for e in status["entries"].values())
