"""`mirrord run` tells the truth: ISO times, pass log lines with reasons, POST /sync's answer, and a
rejected SIGHUP reload in /status, /readyz and the metrics until a good plan is loaded."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.helpers import images, seed
from tests.e2e.test_daemon import Daemon, _plan, _runs, _succeeded, daemon
from tests.testbed.registry import RegistryServer

pytestmark = pytest.mark.integration

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _log(d: Daemon) -> list[dict[str, Any]]:
    return [json.loads(line) for line in d.log.read_text().splitlines() if line.startswith("{")]


def _passes(d: Daemon, msg: str) -> list[dict[str, Any]]:
    return [r for r in _log(d) if r["msg"] == msg and r.get("entry") == "main"]


async def _metric(d: Daemon, name: str) -> float:
    _, text = await d.get("/metrics")
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, text
    return float(match.group(1))


async def _reload_ok(d: Daemon, ok: bool) -> bool:
    return bool((await d.status())["config"]["reload_ok"] is ok)


async def test_daemon_reports_passes_triggers_and_rejected_reloads(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("1.0"))
    plan = _plan(tmp_path / "plan.yaml", plain_registry.host, target.host, unique_repo, "[1.0]")
    async with daemon(plan, tmp_path) as d:
        await d.wait_for(d.ready, what="/readyz 200")
        await d.wait_for(lambda: _succeeded(d), what="the first pass")
        status = await d.status()
        entry = status["entries"]["main"]
        for key in ("last_start", "last_end", "last_success", "next_run"):
            assert ISO.fullmatch(entry[key]), (key, entry[key])
            assert isinstance(entry[f"{key}_unix"], float)
        assert ISO.fullmatch(status["started"])
        assert status["config"]["reload_ok"] is True
        assert await _metric(d, "mirrord_config_reload_success") == 1.0
        await d.wait_for(lambda: _async(bool(_passes(d, "pass finished"))), what="the pass log line")
        (started,) = _passes(d, "pass started")
        (finished,) = _passes(d, "pass finished")
        assert started["reason"] == "start"
        assert {k: finished[k] for k in ("reason", "result", "copied", "failed")} == {
            "reason": "start",
            "result": "success",
            "copied": 1,
            "failed": 0,
        }

        # POST /sync names what it started.
        async with aiohttp.ClientSession() as session, session.post(d.url + "/sync?entry=main") as resp:
            assert resp.status == 202
            assert await resp.json() == {"triggered": "main", "started": ["main"], "queued": []}
        await d.wait_for(lambda: _runs(d, 2), what="the triggered pass")
        await d.wait_for(lambda: _async(len(_passes(d, "pass finished")) == 2), what="its log line")
        assert [r["reason"] for r in _passes(d, "pass finished")] == ["start", "trigger"]

        # A rejected reload is visible everywhere, not only in the log.
        good = plan.read_text()
        plan.write_text(good + "  - source: [broken\n")
        assert d.proc is not None
        d.proc.send_signal(signal.SIGHUP)
        await d.wait_for(lambda: _reload_ok(d, False), 30, "the rejected reload in /status")
        config = (await d.status())["config"]
        assert str(plan) in config["last_reload_error"]
        assert ISO.fullmatch(config["last_reload"])
        code, body = await d.get("/readyz")
        assert code == 503
        assert body.startswith(f"not ready: plan reload rejected: {plan}")
        assert await _metric(d, "mirrord_config_reload_success") == 0.0
        assert list((await d.status())["entries"]) == ["main"]  # the old plan keeps running

        plan.write_text(good)
        d.proc.send_signal(signal.SIGHUP)
        await d.wait_for(lambda: _reload_ok(d, True), 30, "the accepted reload")
        await d.wait_for(d.ready, what="/readyz 200 again")
        assert await _metric(d, "mirrord_config_reload_success") == 1.0
        assert await d.stop() == 0


async def _async(value: bool) -> bool:
    return value
