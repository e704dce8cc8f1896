"""mirrord.testing.sample: every kind parses, configs match their layers, output is deterministic, and
push_sample pushes in the order a registry needs (checked on a fake, then on a real registry)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from collections.abc import AsyncIterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mirrord.oci import AnyManifest, Digest, ImageIndex, ImageManifest, parse_manifest
from mirrord.oci import mediatypes as mt
from mirrord.registry.base import BlobStream, MountResult, UploadSession
from mirrord.testing.sample import ARTIFACT_TYPE, KINDS, SampleImage, push_sample, sample_image
from tests.testbed.registry import RegistryServer
from tests.testbed.tools import skopeo, skopeo_inspect_raw, write_sample_layout

SKOPEO_KINDS = ("oci-index", "oci-index-no-mediatype", "oci-manifest", "artifact", "attested-index",
                "duplicate-layer", "odd-json")  # fmt: skip


def image_manifests(image: SampleImage) -> list[ImageManifest]:
    return [m for m in image.manifests if isinstance(m, ImageManifest)]


def config_of(image: SampleImage, manifest: ImageManifest) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(image.blobs[manifest.config.digest])
    return config


# -- shape -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_manifest_parses_from_its_raw_bytes(kind: str) -> None:
    image = sample_image("app", kind=kind)
    assert image.root is image.manifests[-1]
    assert image.digest == image.root.digest
    for manifest in image.manifests:
        again = parse_manifest(manifest.raw, manifest.media_type)
        assert again.digest == Digest.of(manifest.raw) == manifest.digest
        assert type(again) is type(manifest)


@pytest.mark.parametrize("kind", KINDS)
def test_children_come_before_parents_and_every_blob_is_there(kind: str) -> None:
    image = sample_image("app", kind=kind)
    seen: set[Digest] = set()
    for manifest in image.manifests:
        if isinstance(manifest, ImageIndex):
            assert {d.digest for d in manifest.manifests} <= seen
        else:
            assert {d.digest for d in manifest.blobs} <= set(image.blobs)
            for blob in manifest.blobs:
                assert blob.size == len(image.blobs[blob.digest])
        seen.add(manifest.digest)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "artifact"])
def test_configs_are_valid_and_diff_ids_match_the_uncompressed_layers(kind: str) -> None:
    image = sample_image("app", kind=kind)
    for manifest in image_manifests(image):
        config = config_of(image, manifest)
        assert config["rootfs"]["type"] == "layers"
        assert {"architecture", "os"} <= set(config)
        expected = []
        for layer in manifest.layers:
            data = image.blobs[layer.digest]
            if layer.media_type in (mt.OCI_LAYER_GZIP, mt.DOCKER_LAYER_GZIP):
                data = gzip.decompress(data)
            expected.append("sha256:" + hashlib.sha256(data).hexdigest())
        assert config["rootfs"]["diff_ids"] == expected


def test_platform_images_match_their_index_entries() -> None:
    image = sample_image("app", platforms=("linux/amd64", "linux/arm/v7", "windows/amd64"))
    assert isinstance(image.root, ImageIndex)
    by_digest = {m.digest: m for m in image.manifests}
    seen = []
    for entry in image.root.manifests:
        child = by_digest[entry.digest]
        assert isinstance(child, ImageManifest)
        config = config_of(image, child)
        assert entry.platform is not None
        assert (config["os"], config["architecture"], config.get("variant")) == (
            entry.platform.os, entry.platform.architecture, entry.platform.variant,
        )  # fmt: skip
        seen.append(str(entry.platform))
    assert len(seen) == 3


@pytest.mark.parametrize(
    ("kind", "root_type", "child_type"),
    [
        ("docker-list", mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST),
        ("oci-index", mt.OCI_INDEX, mt.OCI_MANIFEST),
        ("docker-manifest", mt.DOCKER_MANIFEST, None),
        ("oci-manifest", mt.OCI_MANIFEST, None),
    ],
)
def test_media_types(kind: str, root_type: str, child_type: str | None) -> None:
    image = sample_image("app", kind=kind)
    assert image.root.media_type == root_type
    if child_type is not None:
        assert {m.media_type for m in image.manifests[:-1]} == {child_type}
    docker = kind.startswith("docker")
    for manifest in image_manifests(image):
        assert manifest.config.media_type == (mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG)
        assert {d.media_type for d in manifest.layers} == {
            mt.DOCKER_LAYER_GZIP if docker else mt.OCI_LAYER_GZIP
        }


def test_index_without_media_type_field() -> None:
    image = sample_image("app", kind="oci-index-no-mediatype")
    assert "mediaType" not in json.loads(image.root.raw)
    assert parse_manifest(image.root.raw, None).media_type == mt.OCI_INDEX


def test_nested_index_entry_is_an_index() -> None:
    image = sample_image("app", kind="nested-index")
    assert isinstance(image.root, ImageIndex)
    [entry] = image.root.manifests
    inner = next(m for m in image.manifests if m.digest == entry.digest)
    assert isinstance(inner, ImageIndex)
    assert len(inner.manifests) == 3


def test_artifact_has_empty_config_and_one_layer() -> None:
    image = sample_image("sig", kind="artifact")
    assert isinstance(image.root, ImageManifest)
    assert image.root.artifact_type == ARTIFACT_TYPE
    assert image.root.config.media_type == mt.OCI_EMPTY
    assert image.blobs[image.root.config.digest] == b"{}"
    assert image.root.config.size == 2
    assert len(image.root.layers) == 1


def test_attested_index_has_buildkit_attestations() -> None:
    image = sample_image("app", kind="attested-index", platforms=("linux/amd64", "linux/arm64"))
    assert isinstance(image.root, ImageIndex)
    entries = image.root.manifests
    images = [e for e in entries if e.platform is not None and e.platform.os == "linux"]
    attestations = [e for e in entries if e.annotations.get("vnd.docker.reference.type")]
    assert len(images) == 2
    assert len(attestations) == 2
    for entry in attestations:
        assert entry.platform is not None
        assert (entry.platform.os, entry.platform.architecture) == ("unknown", "unknown")
        assert entry.annotations["vnd.docker.reference.type"] == "attestation-manifest"
    assert {e.annotations["vnd.docker.reference.digest"] for e in attestations} == {
        str(e.digest) for e in images
    }


def test_duplicate_layer_lists_the_same_layer_twice() -> None:
    image = sample_image("app", kind="duplicate-layer", layers=2)
    assert isinstance(image.root, ImageManifest)
    layers = image.root.layers
    assert len(layers) == 3
    assert layers[0].digest == layers[-1].digest
    assert len(image.root.blobs) == 3  # config + 2 distinct layers


def test_odd_json_digest_is_over_the_odd_bytes() -> None:
    image = sample_image("app", kind="odd-json")
    plain = sample_image("app", kind="oci-index")
    for manifest in image.manifests:
        assert b"\t" in manifest.raw
        compact = json.dumps(json.loads(manifest.raw), separators=(",", ":")).encode()
        assert manifest.raw != compact
        assert manifest.digest == Digest.of(manifest.raw)
    assert image.digest != plain.digest


# -- determinism, seeds, sizes -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_same_arguments_give_the_same_digests(kind: str) -> None:
    first, second = sample_image("app", kind=kind, seed=3), sample_image("app", kind=kind, seed=3)
    assert [m.digest for m in first.manifests] == [m.digest for m in second.manifests]
    assert first.blobs == second.blobs


def test_seed_and_name_change_the_content() -> None:
    base = sample_image("app", seed=1)
    assert sample_image("app", seed=2).digest != base.digest
    assert sample_image("other", seed=1).digest != base.digest
    assert not set(sample_image("app", seed=2).blobs) & set(base.blobs)


def layer_digests(image: SampleImage) -> set[Digest]:
    return {layer.digest for m in image_manifests(image) for layer in m.layers}


def test_base_seed_shares_base_layers_between_images() -> None:
    one = sample_image("app", seed=1, base_seed=7)
    two = sample_image("tools", seed=2, base_seed=7)
    shared = layer_digests(one) & layer_digests(two)
    assert len(shared) == 3  # the first layer of each of the three platforms
    assert len(layer_digests(one)) == 6
    assert not layer_digests(sample_image("app", seed=1)) & layer_digests(sample_image("tools", seed=2))
    assert not layer_digests(one) & layer_digests(sample_image("tools", seed=2, base_seed=8))


def test_layer_size_roughly_controls_blob_sizes() -> None:
    image = sample_image("app", kind="oci-manifest", layers=3, layer_size=50_000)
    assert isinstance(image.root, ImageManifest)
    assert len(image.root.layers) == 3
    for layer in image.root.layers:
        assert 50_000 <= layer.size <= 50_000 + 2_000


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="kind"):
        sample_image("app", kind="nope")
    with pytest.raises(ValueError, match="platform"):
        sample_image("app", platforms=("linux",))
    with pytest.raises(ValueError, match="platform"):
        sample_image("app", platforms=())


# -- push_sample -----------------------------------------------------------------------------------


@dataclass
class RecordingRepository:
    """The part of Repository push_sample uses, recording calls and enforcing children-first."""

    blobs: dict[Digest, bytes] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    registry_key = "fake"
    name = "t/fake"

    async def blob_head(self, digest: Digest) -> int | None:
        data = self.blobs.get(digest)
        return None if data is None else len(data)

    async def blob_put(
        self, digest: Digest, size: int, chunks: AsyncIterable[bytes], *, upload: UploadSession | None = None
    ) -> None:
        data = b"".join([chunk async for chunk in chunks])
        assert len(data) == size
        assert Digest.of(data) == digest
        self.blobs[digest] = data
        self.calls.append(("blob", str(digest)))

    async def manifest_put(self, reference: str, raw: bytes, media_type: str) -> Digest:
        manifest = parse_manifest(raw, media_type)
        self._check_present(manifest)
        self.manifests[reference] = raw
        self.manifests[str(manifest.digest)] = raw
        self.calls.append(("manifest", reference))
        return manifest.digest

    def _check_present(self, manifest: AnyManifest) -> None:
        if isinstance(manifest, ImageIndex):
            missing = [d.digest for d in manifest.manifests if str(d.digest) not in self.manifests]
        else:
            missing = [d.digest for d in manifest.blobs if d.digest not in self.blobs]
        assert not missing, f"{missing} pushed after their parent {manifest.digest}"

    # Unused by push_sample; present so the fake has the Repository shape.
    def blob_open(self, digest: Digest, *, offset: int = 0) -> AbstractAsyncContextManager[BlobStream]:
        raise NotImplementedError

    async def blob_mount(self, digest: Digest, from_repository: str) -> MountResult:
        raise NotImplementedError


@pytest.mark.parametrize("kind", KINDS)
async def test_push_sample_pushes_blobs_then_children_then_the_tag(kind: str) -> None:
    image = sample_image("app", kind=kind)
    repo = RecordingRepository()
    await push_sample(repo, image, "v1")  # type: ignore[arg-type]
    kinds = [k for k, _ in repo.calls]
    assert kinds == ["blob"] * len(image.blobs) + ["manifest"] * len(image.manifests)
    assert repo.calls[-1] == ("manifest", "v1")
    assert repo.manifests["v1"] == image.root.raw
    assert [ref for k, ref in repo.calls if k == "manifest"][:-1] == [
        str(m.digest) for m in image.manifests[:-1]
    ]


async def test_push_sample_skips_blobs_already_present_and_pushes_by_digest_without_tag() -> None:
    repo = RecordingRepository()
    await push_sample(repo, sample_image("app", seed=1, base_seed=0))  # type: ignore[arg-type]
    repo.calls.clear()
    second = sample_image("tools", seed=2, base_seed=0)
    await push_sample(repo, second)  # type: ignore[arg-type]
    pushed = [ref for k, ref in repo.calls if k == "blob"]
    assert len(pushed) == len(second.blobs) - 3  # the three shared base layers were there
    assert repo.calls[-1] == ("manifest", str(second.digest))


# -- integration: a real registry and skopeo --------------------------------------------------------


@pytest.mark.integration
@pytest.mark.tools("skopeo")
@pytest.mark.parametrize("kind", KINDS)
async def test_push_sample_with_the_http_client_and_read_back_with_skopeo(
    plain_registry: RegistryServer, unique_repo: str, kind: str
) -> None:
    from mirrord.registry.hub import Registries

    image = sample_image("app", kind=kind)
    async with Registries({plain_registry.host: plain_registry.settings()}) as hub:
        repo, _ = hub.open(plain_registry.ref(unique_repo))
        await push_sample(repo, image, "v1")
    assert await asyncio.to_thread(skopeo_inspect_raw, plain_registry, f"{unique_repo}:v1") == image.root.raw


@pytest.mark.integration
@pytest.mark.tools("skopeo")
@pytest.mark.parametrize("kind", SKOPEO_KINDS)
async def test_skopeo_accepts_sample_layouts(
    plain_registry: RegistryServer, unique_repo: str, kind: str, tmp_path: Path
) -> None:
    """skopeo reads the configs and layers (it cannot read Docker types from an OCI layout, nor
    copy nested indexes, hence the subset); the registry stores the exact bytes."""
    image = sample_image("app", kind=kind)
    layout = write_sample_layout(image, tmp_path / "layout", "v1")
    dest = f"docker://{plain_registry.ref(unique_repo)}:v1"
    flags = plain_registry.skopeo_flags("dest")
    await asyncio.to_thread(skopeo, "copy", "--all", "--preserve-digests", *flags, f"oci:{layout}:v1", dest)
    assert await asyncio.to_thread(skopeo_inspect_raw, plain_registry, f"{unique_repo}:v1") == image.root.raw
