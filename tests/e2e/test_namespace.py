"""A whole namespace against real registries: ``source: HOST/ns/**`` mirrors more than one catalog
page of repositories (nested paths too, nothing outside the pattern), and a repository added at the
source arrives on the next pass without a manifest GET for the unchanged ones; a registry without a
catalog fails the entry clearly."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from mirrord.oci import Reference
from mirrord.registry.hub import Registries
from mirrord.registry.settings import RegistrySettings
from mirrord.testing.sample import SampleImage, push_sample, sample_image
from tests.e2e.helpers import PLAIN, registries_yaml, run_cli, write_plan
from tests.testbed.proxy import FaultProxy
from tests.testbed.registry import RegistryServer

pytestmark = pytest.mark.integration

#: More than one page of distribution's catalog (100 per page).
FLAT = 100
NESTED = ("ns/deep/a", "ns/deep/b/c", "ns/x/y/z/w")
OUTSIDE = ("other/app", "nsx/app", "team/ns/app")


async def _push_all(host: str, repositories: list[str], image: SampleImage, tag: str) -> None:
    settings = {host: RegistrySettings(host=host, tls=PLAIN)}
    async with Registries(settings) as registries:
        semaphore = asyncio.Semaphore(8)

        async def one(name: str) -> None:
            async with semaphore:
                repo = registries.repository(Reference.parse(f"{host}/{name}", default_tag=None))
                await push_sample(repo, image, tag)

        async with asyncio.TaskGroup() as group:
            for name in repositories:
                group.create_task(one(name))


async def _catalog(host: str) -> list[str]:
    async with Registries({host: RegistrySettings(host=host, tls=PLAIN)}) as registries:
        return await registries.catalog(host)


def _plan(path: Path, source: str, target: str) -> Path:
    return write_plan(
        path,
        f"""
version: 1
{registries_yaml([source, target])}
sync:
  - name: ns
    source: {source}/ns/**
    target: {target}/mirror/**
""",
    )


def _tag_lists(proxy: FaultProxy) -> dict[str, int]:
    counts: dict[str, int] = {}
    for method, path, _ in proxy.requests:
        match = re.fullmatch(r"/v2/(.+)/tags/list(\?.*)?", path)
        if method == "GET" and match:
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return counts


def _manifest_gets(proxy: FaultProxy) -> list[str]:
    return [path for method, path, _ in proxy.requests if method == "GET" and "/manifests/" in path]


@pytest.mark.tools("docker-registry")
async def test_a_namespace_pattern_mirrors_every_catalog_page_and_picks_up_new_repositories(
    registry_factory: object, tmp_path: Path
) -> None:
    source: RegistryServer = registry_factory("plain")  # type: ignore[operator]
    target: RegistryServer = registry_factory("plain")  # type: ignore[operator]
    inside = [f"ns/r{i:03d}" for i in range(FLAT)] + list(NESTED)
    image = sample_image("ns", kind="oci-manifest", seed=5, layers=1, layer_size=256)
    await _push_all(source.host, inside + list(OUTSIDE), image, "v1")

    async with FaultProxy(source.url) as proxy:
        plan = _plan(tmp_path / "plan.yaml", proxy.host, target.host)
        report = tmp_path / "report.json"
        first = await run_cli("sync", "-c", str(plan), "--report", str(report), timeout=600)
        assert first.code == 0, first.output

        catalog_pages = [p for m, p, _ in proxy.requests if m == "GET" and p.startswith("/v2/_catalog")]
        assert len(catalog_pages) >= 2, catalog_pages  # 108 repositories: distribution pages at 100
        mirrored = sorted(r for r in await _catalog(target.host) if r.startswith("mirror/"))
        assert mirrored == sorted("mirror/" + r.removeprefix("ns/") for r in inside)
        assert not any(r.startswith(("other", "nsx", "team")) for r in await _catalog(target.host))
        # Nothing read from the repositories outside the pattern.
        assert not [p for _, p, _ in proxy.requests if p.startswith(("/v2/other/", "/v2/nsx/", "/v2/team/"))]
        body = json.loads(report.read_text())
        assert body["entries"][0]["repositories"] == sorted(inside)
        assert f"ns: {len(inside)} repositories:" in first.stdout

        # A repository appears at the source: the next pass mirrors it and GETs no other manifest.
        await _push_all(source.host, ["ns/new/one"], image, "v1")
        proxy.clear_requests()
        second = await run_cli("sync", "-c", str(plan), timeout=600)
        assert second.code == 0, second.output
        assert "mirror/new/one" in await _catalog(target.host)
        # One tag list per unchanged repository (a copied image's artifact lookup reads one more).
        tag_lists = _tag_lists(proxy)
        assert all(tag_lists[name] == 1 for name in inside), tag_lists
        assert all("/v2/ns/new/one/" in path for path in _manifest_gets(proxy)), _manifest_gets(proxy)
        assert "1 copied" in second.stdout
        assert f"{len(inside)} unchanged" in second.stdout

        # --dry-run names the repositories per entry and copies nothing.
        dry = await run_cli("sync", "-c", str(plan), "--dry-run")
        assert dry.code == 0, dry.output
        assert re.search(rf"ns: {len(inside) + 1} repositories: ns/deep/a ", dry.stdout)


@pytest.mark.tools("docker-registry")
async def test_a_registry_without_a_catalog_fails_the_entry_clearly(
    plain_registry: RegistryServer, tmp_path: Path
) -> None:
    async with FaultProxy(plain_registry.url) as proxy:
        proxy.add_fault("status", path_re=r"^/v2/_catalog", status=404, times=None)
        plan = _plan(tmp_path / "plan.yaml", proxy.host, plain_registry.host)
        result = await run_cli("sync", "-c", str(plan))
    assert result.code == 1
    assert "does not list its repositories" in result.stdout
    assert "HTTP 404" in result.stdout


@pytest.mark.tools("docker-registry")
async def test_two_shards_split_a_namespace_and_cover_every_repository_once(
    registry_factory: object, tmp_path: Path
) -> None:
    source: RegistryServer = registry_factory("plain")  # type: ignore[operator]
    target: RegistryServer = registry_factory("plain")  # type: ignore[operator]
    inside = [f"ns/s{i:02d}" for i in range(16)] + ["ns/deep/one"]
    image = sample_image("shard", kind="oci-manifest", seed=9, layers=1, layer_size=256)
    await _push_all(source.host, inside, image, "v1")
    plan = _plan(tmp_path / "plan.yaml", source.host, target.host)
    covered = []
    for k in (1, 2):
        report = tmp_path / f"report-{k}.json"
        result = await run_cli("sync", "-c", str(plan), "--shard", f"{k}/2", "--report", str(report))
        assert result.code == 0, result.output
        covered.append(json.loads(report.read_text())["entries"][0]["repositories"])
    assert all(covered)  # the namespace is spread, not landed on one shard
    assert sorted(covered[0] + covered[1]) == sorted(inside)  # every repository exactly once
    assert sorted(await _catalog(target.host)) == sorted("mirror/" + r.removeprefix("ns/") for r in inside)


@pytest.mark.tools("docker-registry")
async def test_the_catalog_is_read_with_a_bearer_token(
    token_registry: RegistryServer, unique_repo: str
) -> None:
    # distribution asks for registry:catalog:* on /v2/_catalog; the token must carry it.
    settings = {token_registry.host: token_registry.settings()}
    image = sample_image("tok", kind="oci-manifest", seed=11, layers=1, layer_size=256)
    async with Registries(settings) as registries:
        repo = registries.repository(Reference.parse(token_registry.ref(unique_repo), default_tag=None))
        await push_sample(repo, image, "v1")
        assert unique_repo in await registries.catalog(token_registry.host)
