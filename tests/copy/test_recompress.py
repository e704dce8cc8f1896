"""Layer recompression (gzip <-> zstd) through the copy engine, in memory, and the conversion map."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zstandard

from mirrord.copy import CopyEngine, CopyRequest, Target
from mirrord.copy.conversions import Conversion, ConversionMap
from mirrord.oci import Digest, ImageIndex, ImageManifest
from mirrord.oci import mediatypes as mt
from mirrord.testing.memory import MemoryRegistry, MemoryRepository
from mirrord.testing.sample import push_sample, sample_image

PLATFORMS = ("linux/amd64", "linux/arm64")


async def _seed(kind: str = "docker-list", tag: str = "1", seed: int = 0) -> MemoryRepository:
    source = MemoryRegistry("src.example").repository("app")
    image = sample_image("app", kind=kind, platforms=PLATFORMS, layer_size=200_000, seed=seed, base_seed=7)
    await push_sample(source, image, tag)
    return source


def _copy(source: MemoryRepository, *targets: Target, reference: str = "1") -> CopyRequest:
    return CopyRequest(source=source, reference=reference, targets=targets)


async def _images(repo: MemoryRepository, tag: str) -> list[ImageManifest]:
    root = await repo.manifest_get(tag)
    if isinstance(root, ImageManifest):
        return [root]
    assert isinstance(root, ImageIndex)
    found = []
    for entry in root.manifests:
        child = await repo.manifest_get(str(entry.digest))
        assert isinstance(child, ImageManifest)
        found.append(child)
    return found


def _blob(repo: MemoryRepository, digest: Digest) -> bytes:
    assert digest in repo.registry.links[repo.name]
    return repo.registry.blobs[digest]


def _decompress(media_type: str, data: bytes) -> bytes:
    if media_type == mt.OCI_LAYER_ZSTD:
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True).read()
    return gzip.decompress(data)


async def _check_layers(repo: MemoryRepository, tag: str, media_type: str) -> None:
    """Every layer has ``media_type`` and decompresses to its config's diff_id."""
    for image in await _images(repo, tag):
        config = json.loads(_blob(repo, image.config.digest))
        assert image.config.media_type in (mt.OCI_CONFIG, mt.DOCKER_CONFIG)
        for layer, diff_id in zip(image.layers, config["rootfs"]["diff_ids"], strict=True):
            assert layer.media_type == media_type
            plain = _decompress(layer.media_type, _blob(repo, layer.digest))
            assert f"sha256:{hashlib.sha256(plain).hexdigest()}" == diff_id


async def test_zstd_target_layers_decompress_to_their_diff_ids() -> None:
    source = await _seed()
    target = MemoryRegistry("dst.example").repository("z")
    engine = CopyEngine()
    result = await engine.copy(_copy(source, Target(target, "1", compression="zstd")))
    assert result.outcome == "copied", result.error
    assert (await target.manifest_get("1")).media_type == mt.OCI_INDEX  # zstd implies OCI
    await _check_layers(target, "1", mt.OCI_LAYER_ZSTD)
    originals = {i.config.digest for i in await _images(source, "1")}
    assert {i.config.digest for i in await _images(target, "1")} == originals  # configs unchanged
    assert engine.recoder.stats.layers == 4
    assert result.bytes > 0


async def test_second_pass_does_no_recompression() -> None:
    source = await _seed()
    target = Target(MemoryRegistry("dst.example").repository("z"), "1", compression="zstd")
    conversions = ConversionMap()
    await CopyEngine(conversions=conversions).copy(_copy(source, target))
    source.registry.reset_calls()
    engine = CopyEngine(conversions=conversions)
    again = await engine.copy(_copy(source, target))
    assert again.outcome == "unchanged"
    assert engine.recoder.stats.layers == 0
    assert dict(source.registry.calls) == {"manifest_head": 1}


async def test_known_conversions_are_not_redone_for_a_new_tag() -> None:
    source = await _seed()
    await push_sample(
        source,
        sample_image("app", kind="docker-list", platforms=PLATFORMS, layer_size=200_000, seed=1, base_seed=7),
        "2",
    )
    target = MemoryRegistry("dst.example").repository("z")
    conversions = ConversionMap()
    first = CopyEngine(conversions=conversions)
    await first.copy(_copy(source, Target(target, "1", compression="zstd")))
    second = CopyEngine(conversions=conversions)
    result = await second.copy(_copy(source, Target(target, "2", compression="zstd"), reference="2"))
    assert result.outcome == "copied", result.error
    assert second.recoder.stats.layers == 2  # only the layers tag 2 does not share with tag 1
    await _check_layers(target, "2", mt.OCI_LAYER_ZSTD)


async def test_zstd_back_to_gzip() -> None:
    source = await _seed()
    registry = MemoryRegistry("dst.example")
    zstd_repo, gzip_repo = registry.repository("z"), registry.repository("g")
    assert (
        await CopyEngine().copy(_copy(source, Target(zstd_repo, "1", compression="zstd")))
    ).outcome == "copied"
    result = await CopyEngine().copy(
        _copy(zstd_repo, Target(gzip_repo, "1", compression="gzip", format="docker"))
    )
    assert result.outcome == "copied", result.error
    assert (await gzip_repo.manifest_get("1")).media_type == mt.DOCKER_MANIFEST_LIST
    await _check_layers(gzip_repo, "1", mt.DOCKER_LAYER_GZIP)


async def test_keep_and_zstd_targets_in_one_request() -> None:
    source = await _seed("oci-manifest")
    registry = MemoryRegistry("dst.example")
    keep, zstd = registry.repository("k"), registry.repository("z")
    result = await CopyEngine().copy(_copy(source, Target(keep, "1"), Target(zstd, "1", compression="zstd")))
    assert result.outcome == "copied", result.error
    assert (await keep.manifest_get("1")).raw == (await source.manifest_get("1")).raw
    await _check_layers(zstd, "1", mt.OCI_LAYER_ZSTD)
    assert result.source_digest is not None
    assert result.digest_map[result.source_digest] == result.target_digests["dst.example/z"]


async def test_a_layer_not_matching_its_diff_id_fails_and_pushes_nothing() -> None:
    source = MemoryRegistry("src.example").repository("app")
    image = sample_image("app", kind="oci-manifest", platforms=PLATFORMS)
    assert isinstance(image.root, ImageManifest)
    config = json.loads(image.blobs[image.root.config.digest])
    config["rootfs"]["diff_ids"][0] = "sha256:" + "0" * 64
    bad_config = json.dumps(config).encode()
    raw = image.root.raw.replace(str(image.root.config.digest).encode(), str(Digest.of(bad_config)).encode())
    raw = raw.replace(b'"size":%d' % image.root.config.size, b'"size":%d' % len(bad_config), 1)
    for digest, data in image.blobs.items():
        await source.blob_put(digest, len(data), _chunks(data))
    await source.blob_put(Digest.of(bad_config), len(bad_config), _chunks(bad_config))
    await source.manifest_put("1", raw, mt.OCI_MANIFEST)
    target = MemoryRegistry("dst.example").repository("z")
    result = await CopyEngine().copy(_copy(source, Target(target, "1", compression="zstd")))
    assert result.outcome == "failed"
    assert result.error is not None
    assert "diff_id" in result.error
    assert await target.manifest_head("1") is None


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def test_conversion_map_persists(tmp_path: Path) -> None:
    path = tmp_path / "conversions.json"
    first = ConversionMap(path)
    first.put(Digest.of(b"a"), "zstd", Conversion(Digest.of(b"b"), 3))
    first.save()
    second = ConversionMap(path)
    second.load()
    assert second.get(Digest.of(b"a"), "zstd") == Conversion(Digest.of(b"b"), 3)
    assert second.get(Digest.of(b"a"), "gzip") is None


def test_unreadable_conversion_map_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "conversions.json"
    path.write_text("{not json")
    conversions = ConversionMap(path)
    conversions.load()
    assert len(conversions) == 0


def test_docker_with_zstd_is_refused() -> None:
    from mirrord.oci.convert import UnconvertibleManifest

    with pytest.raises(UnconvertibleManifest):
        _ = Target(MemoryRegistry().repository("x"), "1", format="docker", compression="zstd").transform


async def test_a_known_conversion_missing_at_a_new_target_is_redone_for_it_only() -> None:
    source = await _seed("oci-manifest")
    conversions = ConversionMap()
    first = MemoryRegistry("one.example").repository("z")
    await CopyEngine(conversions=conversions).copy(_copy(source, Target(first, "1", compression="zstd")))
    second = MemoryRegistry("two.example").repository("z")
    first.registry.reset_calls()
    engine = CopyEngine(conversions=conversions)
    targets = (Target(first, "1", compression="zstd"), Target(second, "1", compression="zstd"))
    result = await engine.copy(dataclasses.replace(_copy(source, *targets), force=True))
    assert result.outcome == "copied", result.error
    assert engine.recoder.stats.layers == 2  # the image's two layers, once each, for the new target
    assert first.registry.calls["blob_put"] == 0  # the first target already had them
    await _check_layers(second, "1", mt.OCI_LAYER_ZSTD)
    assert (await second.manifest_get("1")).raw == (await first.manifest_get("1")).raw


async def test_a_mount_answered_with_a_session_uploads_through_that_session() -> None:
    # A known holder that lost the layers: the mount starts an upload session (202) instead; the
    # re-encoded layer goes up through it, so no session is left behind on the registry.
    source = await _seed("oci-manifest")
    registry = MemoryRegistry("dst.example")
    first, second = registry.repository("a"), registry.repository("b")
    engine = CopyEngine()
    await engine.copy(_copy(source, Target(first, "1", compression="zstd")))
    layers = {layer.digest for image in await _images(first, "1") for layer in image.layers}
    registry.links["a"] -= layers  # the location cache still names "a" as their holder
    registry.reset_calls()
    result = await engine.copy(_copy(source, Target(second, "1", compression="zstd")))
    assert result.outcome == "copied", result.error
    assert second.calls["blob_mount"] >= len(layers)  # each layer's mount was tried ...
    assert registry.open_uploads == frozenset()  # ... and each session it started was used
    await _check_layers(second, "1", mt.OCI_LAYER_ZSTD)
