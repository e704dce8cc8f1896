"""The copy engine against real registries (Debian's docker-registry), checked with skopeo.

Images are built in a MemoryRegistry, pushed into a real "source" registry by the engine itself,
then copied registry to registry; skopeo must read byte-identical manifests at the target and be
able to ``copy --all`` the result. Every registry runs on 127.0.0.1 and is started by the fixtures.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from copykit import Recorder, layer, push_image

from mirrord.copy import CopyEngine, CopyRequest, Target
from mirrord.core.events import EventBus, HttpRequestDone
from mirrord.oci import Digest, ImageManifest, Platform
from mirrord.registry.base import Repository
from mirrord.registry.hub import Registries
from mirrord.registry.settings import RegistrySettings, TLSSettings
from mirrord.testing.memory import MemoryRegistry
from mirrord.testing.sample import KINDS, SampleImage, push_sample, sample_image
from tests.testbed.proxy import FaultProxy
from tests.testbed.registry import RegistryServer
from tests.testbed.tools import skopeo_copy, skopeo_inspect_raw

pytestmark = [pytest.mark.integration, pytest.mark.tools("skopeo")]


@asynccontextmanager
async def open_hub(*servers: RegistryServer) -> AsyncIterator[tuple[Registries, EventBus]]:
    """A Registries hub that knows how to reach ``servers``, and its event bus."""
    bus = EventBus()
    async with Registries({s.host: s.settings() for s in servers}, events=bus) as hub:
        yield hub, bus


def repository(hub: Registries, server: RegistryServer, name: str) -> Repository:
    return hub.open(server.ref(name))[0]


async def seed(kind: str, hub: Registries, server: RegistryServer, name: str, **kw: Any) -> SampleImage:
    """Push a sample image of ``kind`` to ``server`` as ``name:1``."""
    image = sample_image(name, kind=kind, **kw)
    await push_sample(repository(hub, server, name), image, "1")
    return image


def oci_layout_copy(server: RegistryServer, ref: str, tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    layout = tmp_path / "layout"
    skopeo_copy(f"docker://{server.ref(ref)}", f"oci:{layout}:copied", "--all", *server.skopeo_flags("src"))
    return layout


async def check_copy(
    shape: str,
    source_server: RegistryServer,
    target_server: RegistryServer,
    name: str,
    tmp_path: Path,
    *,
    layout: bool = True,
) -> None:
    """Seed ``shape`` at the source, copy it to the target, and check it with skopeo: the root
    byte-identical at both ends; with ``layout`` also every child by digest and ``copy --all``."""
    async with open_hub(source_server, target_server) as (hub, _):
        image = await seed(shape, hub, source_server, name)
        source = repository(hub, source_server, name)
        target = repository(hub, target_server, f"{name}-mirror")
        request = CopyRequest(source=source, reference="1", targets=(Target(target, "1"),))
        result = await CopyEngine().copy(request)

    assert result.outcome == "copied", result.error
    assert result.source_digest == image.digest
    assert result.target_digests == {str(target): image.digest}
    assert skopeo_inspect_raw(source_server, f"{name}:1") == image.root.raw
    assert skopeo_inspect_raw(target_server, f"{name}-mirror:1") == image.root.raw
    if layout:
        for manifest in image.manifests:  # every child by digest, nested indexes included
            assert skopeo_inspect_raw(target_server, f"{name}-mirror@{manifest.digest}") == manifest.raw
    if layout and shape != "nested-index":  # skopeo 1.9 cannot copy an index nested in an index
        directory = oci_layout_copy(target_server, f"{name}-mirror:1", tmp_path)
        assert (directory / "index.json").exists()


@pytest.mark.parametrize("shape", KINDS)
async def test_every_shape_is_byte_identical_at_the_target(
    plain_registry: RegistryServer, unique_repo: str, shape: str, tmp_path: Path
) -> None:
    await check_copy(shape, plain_registry, plain_registry, unique_repo, tmp_path)


async def test_copy_between_registries_in_every_mode(
    plain_registry: RegistryServer, any_registry: RegistryServer, unique_repo: str, tmp_path: Path
) -> None:
    shape = "attested-index"
    await check_copy(shape, any_registry, plain_registry, unique_repo, tmp_path / "in", layout=False)
    await check_copy(
        shape, plain_registry, any_registry, f"{unique_repo}-out", tmp_path / "out"
    )  # + skopeo copy


async def test_unchanged_pass_sends_one_head_to_the_source(
    plain_registry: RegistryServer, registry_factory: Callable[..., RegistryServer], unique_repo: str
) -> None:
    mirror = registry_factory("plain")
    async with open_hub(plain_registry, mirror) as (hub, bus):
        await seed("attested-index", hub, plain_registry, unique_repo)
        copy = CopyRequest(
            source=repository(hub, plain_registry, unique_repo),
            reference="1",
            targets=(Target(repository(hub, mirror, unique_repo), "1"),),
            platforms=(Platform.parse("linux/arm64"),),
        )
        first = await CopyEngine().copy(copy)
        assert first.outcome == "copied", first.error
        requests: list[HttpRequestDone] = []
        bus.subscribe(lambda e: requests.append(e) if isinstance(e, HttpRequestDone) else None)

        again = await CopyEngine().copy(copy)

    assert again.outcome == "unchanged"
    assert again.target_digests == first.target_digests
    by_host = {
        h: Counter(r.method for r in requests if r.registry == h) for h in (plain_registry.host, mirror.host)
    }
    assert by_host == {plain_registry.host: {"HEAD": 1}, mirror.host: {"HEAD": 1, "GET": 1}}
    raw = skopeo_inspect_raw(mirror, f"{unique_repo}:1")
    assert [m["platform"]["architecture"] for m in json.loads(raw)["manifests"]] == ["arm64", "unknown"]
    assert first.source_digest is not None
    assert Digest.of(raw) == first.digest_map[first.source_digest]


@pytest.mark.parametrize("mode", ["plain", "token"])
async def test_blobs_shared_by_repositories_are_uploaded_once_and_mounted(
    request: pytest.FixtureRequest, mode: str, unique_repo: str
) -> None:
    server: RegistryServer = request.getfixturevalue(f"{mode}_registry")
    memory = MemoryRegistry("seed")
    shared = layer("debian-base", 100_000)
    names = [f"{unique_repo}-{i}" for i in range(3)]
    for name in names:
        await push_image(memory.repository(name), [shared, layer(name)], tag="1", config=b'{"same": true}')
    bus = EventBus()
    seen = Recorder(bus)
    async with open_hub(server) as (hub, _):
        requests = [
            CopyRequest(memory.repository(n), "1", (Target(repository(hub, server, n), "1"),)) for n in names
        ]
        results = await CopyEngine(events=bus).copy_many(requests)

    assert [r.outcome for r in results] == ["copied"] * 3, [r.error for r in results]
    # The shared layer and config are uploaded once and mounted into the two other repositories.
    assert seen.blob_outcomes() == {"copied": 2 + 3, "mounted": 4}
    for name in names:
        skopeo_inspect_raw(server, f"{name}:1")


async def test_platform_filter_result_is_a_valid_image_for_skopeo(
    plain_registry: RegistryServer, tls_registry: RegistryServer, unique_repo: str, tmp_path: Path
) -> None:
    async with open_hub(plain_registry, tls_registry) as (hub, _):
        image = await seed("nested-index", hub, plain_registry, unique_repo)
        source = repository(hub, plain_registry, unique_repo)
        target = repository(hub, tls_registry, unique_repo)
        request = CopyRequest(
            source, "1", (Target(target, "amd64"),), platforms=(Platform.parse("linux/amd64"),)
        )
        result = await CopyEngine().copy(request)

    assert result.outcome == "copied", result.error
    assert image.digest in result.digest_map
    raw = skopeo_inspect_raw(tls_registry, f"{unique_repo}:amd64")
    assert Digest.of(raw) == result.digest_map[image.digest]
    rewritten = json.loads(raw)
    assert len(rewritten["manifests"]) == 1
    inner_raw = skopeo_inspect_raw(tls_registry, f"{unique_repo}@{rewritten['manifests'][0]['digest']}")
    entries = json.loads(inner_raw)["manifests"]
    assert [m["platform"]["architecture"] for m in entries] == ["amd64"]
    for entry in entries:
        skopeo_copy(
            f"docker://{tls_registry.ref(unique_repo)}@{entry['digest']}",
            f"oci:{tmp_path / 'layout'}:{entry['platform']['architecture']}",
            *tls_registry.skopeo_flags("src"),
        )


async def test_corrupt_source_blob_fails_only_its_image(
    plain_registry: RegistryServer, unique_repo: str
) -> None:
    good_name, bad_name = f"{unique_repo}-good", f"{unique_repo}-bad"
    async with FaultProxy(plain_registry.url) as proxy:
        through_proxy = RegistrySettings(host=proxy.host, tls=TLSSettings(enabled=False))
        settings = {plain_registry.host: plain_registry.settings(), proxy.host: through_proxy}
        async with Registries(settings) as hub:
            await seed("oci-manifest", hub, plain_registry, good_name, seed=1)
            bad = await seed("oci-manifest", hub, plain_registry, bad_name, seed=2)
            assert isinstance(bad.root, ImageManifest)
            rotten = max(bad.root.layers, key=lambda d: d.size).digest
            flip = proxy.add_fault(
                "flip", method="GET", path_re=re.escape(f"/blobs/{rotten}"), after_bytes=100, times=None
            )
            requests = [
                CopyRequest(
                    source=hub.open(f"{proxy.host}/{name}")[0],
                    reference="1",
                    targets=(Target(repository(hub, plain_registry, f"{name}-mirror"), "1"),),
                )
                for name in (bad_name, good_name)
            ]
            results = await CopyEngine().copy_many(requests)
            bad_target = repository(hub, plain_registry, f"{bad_name}-mirror")
            assert await bad_target.manifest_head("1") is None
            assert await bad_target.manifest_head(str(bad.digest)) is None
            assert await bad_target.blob_head(rotten) is None

    assert flip.triggered >= 1
    assert [r.outcome for r in results] == ["failed", "copied"], [r.error for r in results]
    assert "DigestMismatch" in (results[0].error or "")
    assert skopeo_inspect_raw(plain_registry, f"{good_name}-mirror:1") == skopeo_inspect_raw(
        plain_registry, f"{good_name}:1"
    )
