"""`mirrord sync` through the quirks proxy with every field behaviour on at once (issue 13's "done").

Source side: manifest HEADs without ``Docker-Content-Digest``, tag lists in capped pages ending in
``"tags": null``, blob GETs redirected to a CDN port. Target side: mounts answered 202 (ignored),
chunked uploads with ``PATCH`` answered 201, ``PUT`` answers without digest or ``Location``. Both
registries are real (distribution), with Basic and with token auth; the CLI runs for real. Every
image arrives byte-identical (skopeo), the CDN never sees a credential, and a second pass reports
everything unchanged and sends no PUT, no upload and no blob request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mirrord.oci import ImageIndex, Reference, parse_manifest
from mirrord.registry.hub import Registries
from mirrord.testing.sample import SampleImage, push_sample
from tests.e2e.helpers import read_report, run_cli, write_plan
from tests.reliability.kit import corpus
from tests.testbed.quirks import QuirksProxy
from tests.testbed.registry import RegistryServer
from tests.testbed.tools import skopeo_inspect_raw

pytestmark = [pytest.mark.integration, pytest.mark.tools("skopeo")]

REPO = "quirks/app"
CHUNK = 64 * 1024  # sample layers are 192 KiB: several PATCHes each


async def seed_with_auth(server: RegistryServer, images: dict[str, SampleImage]) -> None:
    """Push ``images`` straight into ``server`` (credentials and all), not through a proxy."""
    settings = server.settings()
    async with Registries({settings.host: settings}) as registries:
        repository = registries.repository(Reference.parse(f"{server.host}/{REPO}", default_tag=None))
        for tag, image in images.items():
            await push_sample(repository, image, tag)


def plan_for(
    path: Path, source: QuirksProxy, target: QuirksProxy, users: dict[str, str], *, chunked: bool = True
) -> Path:
    src_auth = f"auth: {{username: {users['SRC']}, password_env: PASSWORD_SRC}}"
    dst_auth = f"auth: {{username: {users['DST']}, password_env: PASSWORD_DST}}"
    return write_plan(
        path,
        f"""
        version: 1
        registries:
          {source.host}:
            tls: false
            {src_auth}
          {target.host}:
            tls: false
            {f"chunk_size: {CHUNK}" if chunked else "max_connections: 16"}
            {dst_auth}
        sync:
          - name: first
            source: {source.host}/{REPO}
            target: {target.host}/{REPO}
            tags: {{include: ['^r']}}
          - name: second
            source: {source.host}/{REPO}
            target: {target.host}/{REPO}-again
            tags: {{include: ['^r']}}
        """,
    )


def plan_and_env(
    tmp_path: Path,
    source: RegistryServer,
    target: RegistryServer,
    src: QuirksProxy,
    dst: QuirksProxy,
    *,
    chunked: bool = True,
) -> tuple[Path, dict[str, str]]:
    """The plan over the proxies, and the environment holding the two passwords."""
    assert source.username is not None
    assert source.password is not None
    assert target.username is not None
    assert target.password is not None
    users = {"SRC": source.username, "DST": target.username}
    plan = plan_for(tmp_path / "plan.yaml", src, dst, users, chunked=chunked)
    return plan, {"PASSWORD_SRC": source.password, "PASSWORD_DST": target.password}


def manifests_identical(source: RegistryServer, target: RegistryServer, repo: str, tags: list[str]) -> int:
    """skopeo reads each tag, and each index's children, byte-identical at both; returns the count."""
    seen = 0
    for tag in tags:
        raw = skopeo_inspect_raw(source, f"{REPO}:{tag}")
        assert skopeo_inspect_raw(target, f"{repo}:{tag}") == raw, tag
        seen += 1
        manifest = parse_manifest(raw)
        if isinstance(manifest, ImageIndex):
            for child in manifest.manifests:
                wanted = skopeo_inspect_raw(source, f"{REPO}@{child.digest}")
                assert skopeo_inspect_raw(target, f"{repo}@{child.digest}") == wanted
                seen += 1
    return seen


@pytest.mark.parametrize("mode", ["basic", "token"])
async def test_sync_through_every_quirk_at_once(registry_factory: Any, tmp_path: Path, mode: str) -> None:
    source: RegistryServer = registry_factory(mode)
    target: RegistryServer = registry_factory(mode)
    images = corpus(4)
    tags = sorted(images)
    await seed_with_auth(source, images)
    async with QuirksProxy(source.url) as src_proxy, QuirksProxy(target.url) as dst_proxy:
        src_proxy.quirks.everything_source()
        dst_proxy.quirks.everything_target()
        plan, env = plan_and_env(tmp_path, source, target, src_proxy, dst_proxy)

        first = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r1.json"), env=env)
        assert first.code == 0, first.output
        assert {i["result"] for i in read_report(tmp_path / "r1.json")} == {"copied"}
        for repo in (REPO, f"{REPO}-again"):
            assert manifests_identical(source, target, repo, tags) > len(tags)

        # Every quirk was met on the way.
        assert src_proxy.count("GET", "/tags/list") >= 3  # pages of 2 tags, then null
        assert src_proxy.count("GET", "/manifests/") >= len(tags)  # HEADs had no digest
        assert src_proxy.cdn.requests, "blob GETs were not redirected"
        assert src_proxy.cdn.saw_credentials == 0
        assert dst_proxy.count("POST", "mount=") > 0  # the second entry's mounts, answered 202
        assert all(s.status == 202 for s in dst_proxy.requests if "mount=" in s.path_qs)
        assert dst_proxy.count("PATCH") > 0
        assert all(s.status == 201 for s in dst_proxy.requests if s.method == "PATCH")

        src_proxy.clear()
        dst_proxy.clear()
        second = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r2.json"), env=env)
        assert second.code == 0, second.output
        assert {i["result"] for i in read_report(tmp_path / "r2.json")} == {"unchanged"}
        assert len(read_report(tmp_path / "r2.json")) == 2 * len(tags)
        assert dst_proxy.count("PUT") == 0
        assert dst_proxy.count("POST") == 0
        assert dst_proxy.count("PATCH") == 0
        for proxy in (src_proxy, dst_proxy):
            assert proxy.count("GET", "/blobs/") == 0  # the no-op check touches no blob
            assert proxy.count("HEAD", "/blobs/") == 0
        assert not src_proxy.cdn.requests


async def test_tokens_going_stale_in_the_middle_of_a_sync_are_renewed(
    registry_factory: Any, tmp_path: Path
) -> None:
    """Tokens refused early (revoked, expired before their ``expires_in``): each refused request
    authenticates again once, and a refused streamed upload is sent again by the engine."""
    source: RegistryServer = registry_factory("token")
    target: RegistryServer = registry_factory("token")
    images = corpus(4)
    tags = sorted(images)
    await seed_with_auth(source, images)
    async with QuirksProxy(source.url) as src_proxy, QuirksProxy(target.url) as dst_proxy:
        src_proxy.quirks.token_uses = 40
        dst_proxy.quirks.token_uses = 40
        dst_proxy.quirks.token_expires_during_upload = 3  # monolithic: the streamed PUT is refused
        plan, env = plan_and_env(tmp_path, source, target, src_proxy, dst_proxy, chunked=False)
        result = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r.json"), env=env)
        assert result.code == 0, result.output
        assert {i["result"] for i in read_report(tmp_path / "r.json")} == {"copied"}
        assert manifests_identical(source, target, REPO, tags) > len(tags)
        for proxy in (src_proxy, dst_proxy):
            assert any(s.status == 401 and s.authorization for s in proxy.requests)
        refused_puts = [s for s in dst_proxy.requests if s.method == "PUT" and s.status == 401]
        assert refused_puts  # streamed uploads refused mid-way, sent again
