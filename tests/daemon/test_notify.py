"""POST /notify: reading distribution, Harbor and Docker Hub bodies (samples from their docs), matching
events to entries, coalescing bursts, and the HTTP endpoint (token, 400, counts, metrics)."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from mirrord.daemon.notify import (
    InvalidNotification,
    NotificationDispatcher,
    PushEvent,
    match_event,
    narrowed,
    parse_notification,
)
from mirrord.daemon.web import make_app, start_server
from mirrord.observe.metrics import Metrics
from mirrord.oci import Digest
from mirrord.plan import Entry, parse_plan

DIGEST = "sha256:af06af3514c44a964d3b905b498cf6493db8f1cde7c10e078213a89c87308ba0"

# distribution's envelope as the GitLab registry documents it (a fork of distribution's format).
DISTRIBUTION = {
    "events": [
        {
            "id": "a582a0f3-e620-43e6-8e98-ff850fc9d984",
            "timestamp": "2023-01-25T14:45:54.17327+11:00",
            "action": "push",
            "target": {
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "size": 528,
                "digest": DIGEST,
                "length": 528,
                "repository": "root/test",
                "url": f"http://registry.test:5000/v2/root/test/manifests/{DIGEST}",
                "tag": "more-auth",
            },
            "request": {
                "id": "8ef8",
                "addr": "172.16.123.1:56969",
                "host": "registry.test:5000",
                "method": "PUT",
            },
            "actor": {"name": "root"},
            "source": {"addr": "host:5000", "instanceID": "45681f21"},
        },
        {  # a layer push: ignored
            "action": "push",
            "target": {
                "mediaType": "application/octet-stream",
                "digest": DIGEST,
                "repository": "root/test",
                "url": f"http://registry.test:5000/v2/root/test/blobs/{DIGEST}",
            },
            "request": {"host": "registry.test:5000"},
        },
        {  # a pull (mirrord's own reads make these): ignored
            "action": "pull",
            "target": {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": DIGEST,
                "repository": "root/test",
                "tag": "more-auth",
            },
            "request": {"host": "registry.test:5000"},
        },
    ]
}

# Harbor's documented PUSH_ARTIFACT example (default format) and its CloudEvents example.
HARBOR = {
    "type": "PUSH_ARTIFACT",
    "occur_at": 1586922308,
    "operator": "admin",
    "event_data": {
        "resources": [
            {
                "digest": "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8",
                "tag": "latest",
                "resource_url": "hub.harbor.com/test-webhook/debian:latest",
            }
        ],
        "repository": {
            "date_created": 1586922308,
            "name": "debian",
            "namespace": "test-webhook",
            "repo_full_name": "test-webhook/debian",
            "repo_type": "private",
        },
    },
}
HARBOR_CLOUDEVENTS = {
    "specversion": "1.0",
    "id": "66e18103-09c1-41f6-982f-37df223f3eeb",
    "requestid": "51c0b694-0168-4f3c-b0db-282565455d7b",
    "source": "/projects/2/webhook/policies/15",
    "type": "harbor.artifact.pushed",
    "datacontenttype": "application/json",
    "time": "2023-04-03T06:04:46Z",
    "data": {
        "resources": [
            {
                "digest": "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4",
                "tag": "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4",
                "resource_url": "localhost/harbor/alpine@"
                "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4",
            }
        ],
        "repository": {
            "date_created": 1680501893,
            "name": "alpine",
            "namespace": "harbor",
            "repo_full_name": "harbor/alpine",
            "repo_type": "private",
        },
    },
    "operator": "harbor-jobservice",
}
# Docker Hub's documented webhook example (trimmed of the long description fields).
DOCKER_HUB = {
    "callback_url": "https://registry.hub.docker.com/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/",
    "push_data": {"pushed_at": 1417566161, "pusher": "trustedbuilder", "tag": "latest"},
    "repository": {
        "comment_count": 0,
        "date_created": 1417494799,
        "is_official": False,
        "is_private": True,
        "name": "testhook",
        "namespace": "svendowideit",
        "owner": "svendowideit",
        "repo_name": "svendowideit/testhook",
        "repo_url": "https://registry.hub.docker.com/u/svendowideit/testhook/",
        "status": "Active",
    },
}


def _body(data: Any) -> bytes:
    return json.dumps(data).encode()


def test_distribution_envelope_keeps_manifest_pushes_only() -> None:
    parsed = parse_notification(_body(DISTRIBUTION))
    assert parsed.pushes == [PushEvent("registry.test:5000/root/test", "more-auth", Digest.parse(DIGEST))]
    assert (parsed.ignored, parsed.invalid) == (2, 0)


def test_the_registry_query_overrides_the_host() -> None:
    parsed = parse_notification(_body(DISTRIBUTION), "mirror-source.example.com")
    assert parsed.pushes[0].source == "mirror-source.example.com/root/test"


def test_harbor_bodies() -> None:
    parsed = parse_notification(_body(HARBOR))
    digest = Digest.parse("sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8")
    assert parsed.pushes == [PushEvent("hub.harbor.com/test-webhook/debian", "latest", digest)]
    cloud = parse_notification(_body(HARBOR_CLOUDEVENTS))
    assert len(cloud.pushes) == 1
    assert cloud.pushes[0].source == "localhost/harbor/alpine"
    assert cloud.pushes[0].tag is None  # Harbor writes the digest into "tag" for a push by digest
    pulled = parse_notification(_body({**HARBOR, "type": "PULL_ARTIFACT"}))
    assert (pulled.pushes, pulled.ignored) == ([], 1)


def test_docker_hub_body() -> None:
    parsed = parse_notification(_body(DOCKER_HUB))
    assert parsed.pushes == [PushEvent("docker.io/svendowideit/testhook", "latest", None)]


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'{"hello": "world"}', b'"events"'])
def test_unreadable_bodies_are_invalid(body: bytes) -> None:
    with pytest.raises(InvalidNotification):
        parse_notification(body)


def test_malformed_events_in_a_readable_envelope_count_as_invalid() -> None:
    events = [
        "x",
        {"action": "push"},
        {"action": "push", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json"}},
        {"action": "push", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                      "repository": "a/b", "tag": "bad tag!"}, "request": {"host": "h.io"}},
    ]  # fmt: skip
    parsed = parse_notification(_body({"events": events}))
    assert (len(parsed.pushes), parsed.ignored, parsed.invalid) == (0, 0, 4)


def _entries(text: str) -> list[Entry]:
    return list(
        parse_plan("version: 1\nsync:\n" + textwrap.indent(textwrap.dedent(text), "  "), "p.yaml").entries
    )


ENTRIES = """
- name: app
  source: src.io/t/app
  target: dst.io/t/app
  tags: {exclude: ['^skip']}
- name: latest
  source: src.io/t/app
  target: dst.io/latest/app
  tags: {include: ['^v'], latest: 2}
- name: pinned
  source: src.io/t/app@sha256:af06af3514c44a964d3b905b498cf6493db8f1cde7c10e078213a89c87308ba0
  target: dst.io/pinned/app
- name: ns
  source: src.io/ns/**
  target: dst.io/nsm/**
  repositories: {exclude: ['-old$']}
"""


def _match(event: PushEvent, shard: tuple[int, int] | None = None) -> dict[str, tuple[str, str | None]]:
    out = {}
    for entry in _entries(ENTRIES):
        work = match_event(entry, event, shard)
        if work is not None:
            out[entry.name] = (work.entry.source, work.version)
    return out


def test_matching_entries() -> None:
    assert _match(PushEvent("src.io/t/app", "v1", None)) == {
        "app": ("src.io/t/app", "v1"),
        "latest": ("src.io/t/app", None),  # latest-N: the repository's whole selection
    }
    assert _match(PushEvent("src.io/t/app", "skip-1", None)) == {}
    # An untagged manifest (an index's child) concerns only an entry pinned to its digest.
    assert _match(PushEvent("src.io/t/app", None, Digest.parse(DIGEST))) == {"pinned": ("src.io/t/app", None)}
    assert "pinned" in _match(PushEvent("src.io/t/app", "x", Digest.parse(DIGEST)))
    assert _match(PushEvent("src.io/t/app", None, Digest.parse("sha256:" + "0" * 64))) == {}
    assert _match(PushEvent("src.io/ns/a/b", "1", None)) == {"ns": ("src.io/ns/a/b", "1")}
    assert _match(PushEvent("src.io/ns/a-old", "1", None)) == {}
    assert _match(PushEvent("other.io/t/app", "v1", None)) == {}
    owners = [k for k in (1, 2) if _match(PushEvent("src.io/ns/a/b", "1", None), (k, 2))]
    assert len(owners) == 1  # exactly one shard syncs a pattern's repository


def test_narrowed_syncs_only_the_pushed_tags() -> None:
    app = _entries(ENTRIES)[0]
    one = narrowed(app, {"v2", "v1"})
    assert one.tags is not None
    assert one.tags.exact == ("v1", "v2")
    assert one.prune is False
    assert narrowed(app, {"v1", None}).tags == app.tags


async def test_a_burst_for_one_repository_is_one_sync() -> None:
    synced: list[Entry] = []
    gate, changed = asyncio.Event(), asyncio.Event()

    async def sync(entry: Entry) -> None:
        synced.append(entry)
        changed.set()
        await gate.wait()

    async def until(count: int) -> None:
        async with asyncio.timeout(10):
            while len(synced) < count:
                changed.clear()
                await changed.wait()

    dispatcher = NotificationDispatcher(lambda: _entries(ENTRIES)[:1], sync, settle=0.0)
    runner = asyncio.create_task(dispatcher.run())
    try:
        accepted, ignored = dispatcher.submit(
            [PushEvent("src.io/t/app", f"v{i}", None) for i in range(5)] + [PushEvent("src.io/x", "1", None)]
        )
        assert (accepted, ignored) == (5, 1)
        await until(1)
        assert synced[0].tags is not None
        assert synced[0].tags.exact == ("v0", "v1", "v2", "v3", "v4")
        # Events during the sync: exactly one follow-up, after it.
        dispatcher.submit([PushEvent("src.io/t/app", "v5", None), PushEvent("src.io/t/app", "v6", None)])
        for _ in range(50):  # many loop turns: a second sync of the same repository would have started
            await asyncio.sleep(0)
        assert len(synced) == 1
        gate.set()
        await until(2)
        assert synced[1].tags is not None
        assert synced[1].tags.exact == ("v5", "v6")
    finally:
        await dispatcher.drain(1.0)
        await asyncio.wait_for(runner, 10)
    assert len(synced) == 2


class NotifyState:
    """A ServiceState whose notify records the pushes it is given."""

    def __init__(self) -> None:
        self.pushes: list[PushEvent] = []

    def is_ready(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {}

    def trigger(self, entry: str | None) -> bool:
        return True

    def notify(self, pushes: list[PushEvent]) -> tuple[int, int]:
        self.pushes += pushes
        return len(pushes), 0


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[str, NotifyState, Metrics]]:
    state, metrics = NotifyState(), Metrics()
    app = make_app(state, metrics, trigger_token=lambda: "s3cret-token")
    runner, port = await start_server(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}/notify", state, metrics
    finally:
        await runner.cleanup()


async def _post(url: str, body: bytes, token: str | None = "s3cret-token") -> tuple[int, Any]:
    headers = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


def _count(metrics: Metrics, result: str) -> float:
    value = metrics.registry.get_sample_value("mirrord_notifications_total", {"result": result})
    return value or 0.0


async def test_the_endpoint_counts_and_hands_over_pushes(endpoint: tuple[str, NotifyState, Metrics]) -> None:
    url, state, metrics = endpoint
    assert await _post(url, _body(DISTRIBUTION)) == (202, {"accepted": 1, "ignored": 2, "invalid": 0})
    assert [p.tag for p in state.pushes] == ["more-auth"]
    assert (_count(metrics, "accepted"), _count(metrics, "ignored")) == (1, 2)
    status, body = await _post(url, b"<xml/>")
    assert status == 400
    assert "not JSON" in body["error"]
    assert _count(metrics, "invalid") == 1


async def test_the_endpoint_needs_the_token(endpoint: tuple[str, NotifyState, Metrics]) -> None:
    url, state, _ = endpoint
    assert (await _post(url, _body(DISTRIBUTION), token=None))[0] == 401
    status, body = await _post(url, _body(DISTRIBUTION), token="wrong")
    assert status == 401
    assert "s3cret" not in json.dumps(body)
    assert state.pushes == []


def test_metrics_count_notifications_and_repositories() -> None:
    metrics = Metrics()
    assert _count(metrics, "accepted") == 0  # declared at start, so rate() sees the series
    metrics.notifications_counted(accepted=2, invalid=1)
    assert (_count(metrics, "accepted"), _count(metrics, "ignored"), _count(metrics, "invalid")) == (2, 0, 1)
    metrics.declare_entries(["ns"])
    metrics.entry_repositories("ns", 104)
    assert metrics.registry.get_sample_value("mirrord_repositories", {"entry": "ns"}) == 104
    metrics.declare_entries([])
    assert metrics.registry.get_sample_value("mirrord_repositories", {"entry": "ns"}) is None
