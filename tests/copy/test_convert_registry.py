"""Format conversion and recompression against Debian's docker-registry, checked with skopeo."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import zstandard

from mirrord.copy import CopyEngine, CopyRequest, Target
from mirrord.copy.conversions import ConversionMap
from mirrord.core.events import EventBus
from mirrord.oci import Digest, ImageIndex, ImageManifest, parse_manifest
from mirrord.oci import mediatypes as mt
from mirrord.registry.base import Repository
from mirrord.registry.hub import Registries
from mirrord.testing.sample import push_sample, sample_image
from tests.testbed.registry import RegistryServer
from tests.testbed.tools import skopeo, skopeo_copy, skopeo_inspect_raw

pytestmark = [pytest.mark.integration, pytest.mark.tools("skopeo")]
PLATFORMS = ("linux/amd64", "linux/arm64")


@asynccontextmanager
async def open_hub(server: RegistryServer) -> AsyncIterator[Registries]:
    async with Registries({server.host: server.settings()}, events=EventBus()) as hub:
        yield hub


def repo(hub: Registries, server: RegistryServer, name: str) -> Repository:
    return hub.open(server.ref(name))[0]


def configs_of(server: RegistryServer, name: str) -> dict[str, Digest]:
    """platform -> digest of the config bytes skopeo reads for each instance of ``name:1`` (checked
    against the config descriptor: the bytes are the ones the manifest names)."""
    index = parse_manifest(skopeo_inspect_raw(server, f"{name}:1"))
    assert isinstance(index, ImageIndex)
    found = {}
    for entry in index.manifests:
        ref = server.ref(f"{name}@{entry.digest}")
        child = parse_manifest(skopeo_inspect_raw(server, ref))
        assert isinstance(child, ImageManifest)
        config = skopeo("inspect", "--config", "--raw", *server.skopeo_flags(""), f"docker://{ref}").stdout
        assert Digest.of(config) == child.config.digest
        found[str(entry.platform)] = child.config.digest
    return found


async def test_docker_list_to_oci_and_back_is_pullable_with_configs_unchanged(
    plain_registry: RegistryServer, unique_repo: str, tmp_path: Path
) -> None:
    name = unique_repo
    image = sample_image(name, kind="docker-list", platforms=PLATFORMS)
    async with open_hub(plain_registry) as hub:
        await push_sample(repo(hub, plain_registry, name), image, "1")
        to_oci = CopyRequest(
            source=repo(hub, plain_registry, name),
            reference="1",
            targets=(Target(repo(hub, plain_registry, f"{name}-oci"), "1", format="oci"),),
        )
        first = await CopyEngine().copy(to_oci)
        assert first.outcome == "copied", first.error
        back = CopyRequest(
            source=repo(hub, plain_registry, f"{name}-oci"),
            reference="1",
            targets=(Target(repo(hub, plain_registry, f"{name}-docker"), "1", format="docker"),),
        )
        second = await CopyEngine().copy(back)
        assert second.outcome == "copied", second.error

    oci = json.loads(skopeo_inspect_raw(plain_registry, f"{name}-oci:1"))
    assert oci["mediaType"] == mt.OCI_INDEX
    docker = json.loads(skopeo_inspect_raw(plain_registry, f"{name}-docker:1"))
    assert docker["mediaType"] == mt.DOCKER_MANIFEST_LIST
    original = configs_of(plain_registry, name)
    assert configs_of(plain_registry, f"{name}-oci") == original
    assert configs_of(plain_registry, f"{name}-docker") == original
    for suffix in ("oci", "docker"):
        layout = tmp_path / suffix
        source = f"docker://{plain_registry.ref(f'{name}-{suffix}:1')}"
        skopeo_copy(source, f"oci:{layout}:x", "--all", *plain_registry.skopeo_flags("src"))
        assert (layout / "index.json").exists()


def _layout_blob(layout: Path, digest: Digest) -> bytes:
    return (layout / "blobs" / digest.algorithm / digest.encoded).read_bytes()


async def test_zstd_target_is_pullable_and_second_pass_does_no_recompression(
    plain_registry: RegistryServer, unique_repo: str, tmp_path: Path
) -> None:
    name = unique_repo
    image = sample_image(name, kind="docker-list", platforms=PLATFORMS, layer_size=100_000)
    conversions = ConversionMap(tmp_path / "conversions.json")
    async with open_hub(plain_registry) as hub:
        await push_sample(repo(hub, plain_registry, name), image, "1")
        request = CopyRequest(
            source=repo(hub, plain_registry, name),
            reference="1",
            targets=(Target(repo(hub, plain_registry, f"{name}-zstd"), "1", compression="zstd"),),
        )
        first_engine = CopyEngine(conversions=conversions)
        (first,) = await first_engine.copy_many([request])  # saves the conversion map
        assert first.outcome == "copied", first.error
        assert len(ConversionMap.loaded(tmp_path / "conversions.json")) == 4
        assert first_engine.recoder.stats.layers == 4
        again_engine = CopyEngine(conversions=conversions)
        again = await again_engine.copy(dataclasses.replace(request, force=True))
        assert again.outcome == "copied", again.error
        assert again_engine.recoder.stats.layers == 0  # forced: every manifest pushed, no layer re-encoded
        assert again.target_digests == first.target_digests
        unchanged = await CopyEngine(conversions=conversions).copy(request)
        assert unchanged.outcome == "unchanged"

    layout = tmp_path / "layout"
    source = f"docker://{plain_registry.ref(f'{name}-zstd:1')}"
    skopeo_copy(source, f"oci:{layout}:x", "--all", *plain_registry.skopeo_flags("src"))
    index = parse_manifest(skopeo_inspect_raw(plain_registry, f"{name}-zstd:1"))
    assert isinstance(index, ImageIndex)
    assert index.media_type == mt.OCI_INDEX
    for entry in index.manifests:
        manifest = parse_manifest(_layout_blob(layout, entry.digest))
        assert isinstance(manifest, ImageManifest)
        diff_ids = json.loads(_layout_blob(layout, manifest.config.digest))["rootfs"]["diff_ids"]
        for layer, diff_id in zip(manifest.layers, diff_ids, strict=True):
            assert layer.media_type == mt.OCI_LAYER_ZSTD
            data = _layout_blob(layout, layer.digest)
            plain = (
                zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True).read()
            )
            assert str(Digest.of(plain)) == diff_id
