"""Sync on push, end to end: the real registry's notifications call ``mirrord run``'s ``POST /notify``.

The source registry is configured with ``notifications.endpoints`` pointing at the daemon (with the
trigger token as a bearer header); entries run on a 1 h interval, so a tag that reaches the target
within the test got there through the notification, not the schedule. Push-to-mirror latency is
printed (``-s``; ``MIRRORD_NOTIFY_PUSHES`` sets the number of pushes, default 6); the test checks
arrival, not speed.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mirrord.oci import Reference
from mirrord.registry.base import Repository
from mirrord.registry.hub import Registries
from mirrord.registry.settings import RegistrySettings
from mirrord.testing.sample import push_sample, sample_image
from tests.e2e.helpers import PLAIN, registries_yaml, tags_at, write_plan
from tests.e2e.test_daemon import Daemon, _free_port
from tests.testbed.registry import RegistryServer, notification_endpoint

pytestmark = pytest.mark.integration

ARRIVAL_DEADLINE = 60.0


def _plan(path: Path, source: str, target: str, token_file: Path) -> Path:
    return write_plan(
        path,
        f"""
version: 1
{registries_yaml([source, target])}
sync:
  - name: app
    source: {source}/t/app
    target: {target}/t/app
    tags: {{exclude: ['^skip']}}
    interval: 1h
  - name: ns
    source: {source}/ns/**
    target: {target}/nsm/**
    interval: 1h
server:
  trigger_token_file: {token_file}
""",
    )


class Side:
    """One registry reached in-process: push samples, poll for tags."""

    def __init__(self, registries: Registries, host: str) -> None:
        self.registries = registries
        self.host = host

    def repo(self, name: str) -> Repository:
        return self.registries.repository(Reference.parse(f"{self.host}/{name}", default_tag=None))

    async def push(self, name: str, tag: str, seed: int) -> str:
        image = sample_image(f"push-{seed}", kind="oci-manifest", seed=seed, layers=1, layer_size=1024)
        await push_sample(self.repo(name), image, tag)
        return str(image.root.digest)

    async def arrival(self, name: str, tag: str, digest: str) -> float:
        """Poll (10 ms) until ``name:tag`` is ``digest``; the monotonic time it was first seen."""
        deadline = time.monotonic() + ARRIVAL_DEADLINE
        while time.monotonic() < deadline:
            desc = await self.repo(name).manifest_head(tag)
            if desc is not None and str(desc.digest) == digest:
                return time.monotonic()
            await asyncio.sleep(0.01)
        raise AssertionError(f"{self.host}/{name}:{tag} did not arrive within {ARRIVAL_DEADLINE}s")


async def _post(url: str, body: bytes, token: str | None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


def _metric(text: str, result: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'mirrord_notifications_total{{result="{result}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no mirrord_notifications_total{{result={result!r}}} in the metrics")


async def _entries_succeeded(d: Daemon) -> bool:
    entries = (await d.status())["entries"]
    return all(entries[name]["result"] == "success" for name in ("app", "ns"))


@pytest.mark.tools("docker-registry")
async def test_registry_notifications_sync_pushes_at_once(registry_factory: Any, tmp_path: Path) -> None:
    token = secrets.token_urlsafe(18)
    port = _free_port()
    endpoint = notification_endpoint(f"http://127.0.0.1:{port}/notify", token)
    source: RegistryServer = registry_factory("plain", notifications=[endpoint])
    target: RegistryServer = registry_factory("plain")
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    plan = _plan(tmp_path / "plan.yaml", source.host, target.host, token_file)
    settings = {h: RegistrySettings(host=h, tls=PLAIN) for h in (source.host, target.host)}
    # The source repository exists before the first pass: a missing one is an entry error (issue 14:
    # a typo must never read as "no tags"), which would fail the pass this test waits for.
    async with Registries(settings) as registries:
        await Side(registries, source.host).push("t/app", "base", seed=99)
    d = Daemon(plan, tmp_path)
    d.port = port
    try:
        await d.start()
        await d.wait_for(d.ready, what="/readyz 200")
        await d.wait_for(lambda: _entries_succeeded(d), what="the first passes")
        async with Registries(settings) as registries:
            src, dst = Side(registries, source.host), Side(registries, target.host)

            latencies = []
            for i in range(int(os.environ.get("MIRRORD_NOTIFY_PUSHES", "6"))):
                digest = await src.push("t/app", f"v{i}", seed=100 + i)
                pushed = time.monotonic()
                latencies.append(await dst.arrival("t/app", f"v{i}", digest) - pushed)
            print(
                f"\npush-to-mirror over {len(latencies)} pushes: median {statistics.median(latencies):.3f}s "
                f"max {max(latencies):.3f}s min {min(latencies):.3f}s"
            )

            # A pattern entry: the pushed repository lands below the target's /**.
            digest = await src.push("ns/a/b", "1", seed=300)
            await dst.arrival("nsm/a/b", "1", digest)

            # Pushes nobody covers (another repository, an excluded tag) create nothing. Events reach
            # the daemon in order, so once a later covered push has arrived they have been handled.
            await src.push("other/x", "1", seed=301)
            await src.push("t/app", "skip-1", seed=302)
            digest = await src.push("t/app", "after", seed=303)
            await dst.arrival("t/app", "after", digest)
        assert "skip-1" not in await tags_at(target.host, "t/app")
        assert await tags_at(target.host, "other/x") == []

        # Bodies: no envelope is a 400, no token a 401; Harbor's and Docker Hub's bodies are read.
        notify = f"{d.url}/notify"
        assert (await _post(notify, b"not json", token))[0] == 400
        assert (await _post(notify, b'{"hello": "world"}', token))[0] == 400
        assert (await _post(notify, b'{"events": []}', None))[0] == 401
        harbor = _harbor_body(f"{source.host}/t/app:v0")
        assert await _post(notify, harbor, token) == (202, {"accepted": 1, "ignored": 0, "invalid": 0})
        hub = _docker_hub_body("t/app", "v0")
        assert await _post(f"{notify}?registry={source.host}", hub, token) == (
            202,
            {"accepted": 1, "ignored": 0, "invalid": 0},
        )

        code, metrics = await d.get("/metrics")
        assert code == 200
        assert _metric(metrics, "accepted") >= len(latencies) + 4
        assert _metric(metrics, "ignored") >= 2  # the two uncovered pushes (and every pull and blob event)
        assert _metric(metrics, "invalid") == 2
        # The schedule is untouched: one pass per entry so far, the next one still an interval away.
        status = await d.status()
        assert [status["entries"][n]["runs"] for n in ("app", "ns")] == [1, 1]
        assert status["entries"]["app"]["next_run_unix"] > time.time() + 600
        # The pattern entry's first pass saw an empty namespace; /status and the gauge say so.
        assert status["entries"]["ns"]["repositories"] == 0
        assert status["entries"]["app"]["repositories"] is None
        assert 'mirrord_repositories{entry="ns"} 0.0' in metrics
        assert await d.stop() == 0
    finally:
        d.close()
        if d.proc is not None:
            await d.proc.wait()


def _harbor_body(resource_url: str) -> bytes:
    """Harbor's documented PUSH_ARTIFACT example (default format), pointed at the test registry."""
    repository = resource_url.split("/", 1)[1].rsplit(":", 1)[0]
    body = {
        "type": "PUSH_ARTIFACT",
        "occur_at": 1586922308,
        "operator": "admin",
        "event_data": {
            "resources": [
                {
                    "digest": "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8",
                    "tag": resource_url.rsplit(":", 1)[1],
                    "resource_url": resource_url,
                }
            ],
            "repository": {
                "date_created": 1586922308,
                "name": repository.rsplit("/", 1)[1],
                "namespace": repository.split("/", 1)[0],
                "repo_full_name": repository,
                "repo_type": "private",
            },
        },
    }
    return json.dumps(body).encode()


def _docker_hub_body(repo_name: str, tag: str) -> bytes:
    """Docker Hub's documented webhook example, for ``repo_name:tag``."""
    body = {
        "callback_url": "https://registry.hub.docker.com/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/",
        "push_data": {"pushed_at": 1417566161, "pusher": "trustedbuilder", "tag": tag},
        "repository": {
            "comment_count": 0,
            "date_created": 1417494799,
            "description": "",
            "is_official": False,
            "is_private": True,
            "is_trusted": True,
            "name": repo_name.rsplit("/", 1)[1],
            "namespace": repo_name.split("/", 1)[0],
            "owner": "svendowideit",
            "repo_name": repo_name,
            "repo_url": f"https://registry.hub.docker.com/u/{repo_name}/",
            "star_count": 0,
            "status": "Active",
        },
    }
    return json.dumps(body).encode()
