"""Ctrl-C (SIGINT) or SIGTERM during ``mirrord sync``: nothing new starts, open upload sessions are
cancelled at the registry, the report says what happened, one line on stderr, exit 130. Through the
real CLI against real registries; the signal is sent once a transfer is seen under way."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import cli_env, entry_plan, images, seed, tags_at
from tests.testbed.proxy import FaultProxy
from tests.testbed.registry import RegistryServer

pytestmark = [pytest.mark.integration]

#: Generous: the machine may be loaded; the test polls, it never sleeps a fixed time.
DEADLINE = 60.0


def open_uploads(server: RegistryServer) -> list[Path]:
    """Upload sessions the registry holds: ``_uploads/<id>`` directories under its storage with the
    session's ``startedat`` or ``data``. (A DELETE removes both; a PUT that the cancel broke off may
    write its ``hashstates`` there a moment later, which distribution never reads as a session.)"""
    return [
        p
        for p in server.root.rglob("_uploads/*")
        if p.is_dir() and ((p / "startedat").exists() or (p / "data").exists())
    ]


async def _poll(condition: object, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_mid_transfer_cancels_uploads_writes_the_report_and_exits_130(
    sig: signal.Signals,
    plain_registry: RegistryServer,
    registry_factory: object,
    unique_repo: str,
    tmp_path: Path,
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("1.0", "2.0"))
    report = tmp_path / "report.json"
    async with FaultProxy(plain_registry.url) as src, FaultProxy(target.url) as dst:
        # Every source blob sends 100 bytes, then stalls: transfers stay under way until the signal.
        stall = src.add_fault(
            "slow", method="GET", path_re=r"/blobs/", after_bytes=100, delay=600, times=None
        )
        plan = entry_plan(
            tmp_path / "plan.yaml", src.host, dst.host, unique_repo, "['1.0', '2.0']", name="app"
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mirrord", "--log-format", "json", "sync", "-c", str(plan),
            "--report", str(report),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(),
        )  # fmt: skip
        try:
            # Evidence of a transfer: a source blob is streaming and the target holds an upload session.
            await _poll(lambda: stall.triggered > 0 and open_uploads(target), "a transfer under way")
            proc.send_signal(sig)
            out, err = await asyncio.wait_for(proc.communicate(), DEADLINE)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        uploads = [(m, status) for m, path, status in dst.requests if "/blobs/uploads/" in path]
    stdout, stderr = out.decode(), err.decode()
    assert proc.returncode == 130, stdout + stderr
    said = [line for line in stderr.splitlines() if line.startswith("mirrord: interrupted")]
    assert len(said) == 1, stderr
    assert f"interrupted by {sig.name}" in said[0]
    assert "Traceback" not in stderr
    body = json.loads(report.read_text())
    assert body["interrupted"] is True
    assert {i["result"] for i in body["images"]} == {"failed"}
    assert {i["error"] for i in body["images"]} == {"interrupted"}
    # Every session opened was completed or cancelled with a DELETE, and none is left at the registry.
    opened = uploads.count(("POST", 202))
    assert opened >= 1, uploads
    assert uploads.count(("PUT", 201)) + uploads.count(("DELETE", 204)) == opened, uploads
    assert open_uploads(target) == []
    assert await tags_at(target.host, unique_repo) == []


async def test_a_sync_that_was_not_interrupted_says_so_in_the_report(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("1.0"))
    plan = entry_plan(
        tmp_path / "plan.yaml", plain_registry.host, target.host, unique_repo, "['1.0']", name="app"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mirrord", "sync", "-c", str(plan), "--report", str(tmp_path / "r.json"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(),
    )  # fmt: skip
    await asyncio.wait_for(proc.communicate(), DEADLINE)
    assert proc.returncode == 0
    assert json.loads((tmp_path / "r.json").read_text())["interrupted"] is False
