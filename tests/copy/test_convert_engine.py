"""Format conversion per target through the copy engine, in memory (no network, no tools)."""

from __future__ import annotations

import json

from mirrord.copy import CopyEngine, CopyRequest, Target
from mirrord.copy.convert import SOURCE_TRANSFORM_ANNOTATION
from mirrord.copy.planner import SOURCE_DIGEST_ANNOTATION
from mirrord.oci import Digest, ImageIndex, ImageManifest, Platform
from mirrord.oci import mediatypes as mt
from mirrord.testing.memory import MemoryRegistry, MemoryRepository
from mirrord.testing.sample import push_sample, sample_image


async def _seed(kind: str, name: str = "app") -> tuple[MemoryRepository, MemoryRegistry]:
    source = MemoryRegistry("src.example").repository(name)
    await push_sample(source, sample_image(name, kind=kind, platforms=("linux/amd64", "linux/arm64")), "1")
    return source, MemoryRegistry("dst.example")


def _copy(source: MemoryRepository, *targets: Target, **kw: object) -> CopyRequest:
    return CopyRequest(source=source, reference="1", targets=targets, **kw)  # type: ignore[arg-type]


async def _configs(repo: MemoryRepository, index: ImageIndex) -> dict[str, Digest]:
    found = {}
    for entry in index.manifests:
        child = await repo.manifest_get(str(entry.digest))
        assert isinstance(child, ImageManifest)
        found[str(entry.platform)] = child.config.digest
    return found


async def test_docker_list_to_oci_and_back() -> None:
    source, registry = await _seed("docker-list")
    oci_repo, docker_repo = registry.repository("oci"), registry.repository("docker")
    to_oci = await CopyEngine().copy(_copy(source, Target(oci_repo, "1", format="oci")))
    assert to_oci.outcome == "copied", to_oci.error
    converted = await oci_repo.manifest_get("1")
    assert isinstance(converted, ImageIndex)
    assert converted.media_type == mt.OCI_INDEX
    assert {e.media_type for e in converted.manifests} == {mt.OCI_MANIFEST}
    original = await source.manifest_get("1")
    assert isinstance(original, ImageIndex)
    assert await _configs(oci_repo, converted) == await _configs(source, original)
    assert converted.annotations[SOURCE_DIGEST_ANNOTATION] == str(original.digest)
    assert converted.annotations[SOURCE_TRANSFORM_ANNOTATION] == "format=oci,compression=keep"
    assert to_oci.digest_map[original.digest] == converted.digest
    for old, new in zip(original.manifests, converted.manifests, strict=True):
        assert to_oci.digest_map[old.digest] == new.digest

    back = await CopyEngine().copy(
        CopyRequest(source=oci_repo, reference="1", targets=(Target(docker_repo, "1", format="docker"),))
    )
    assert back.outcome == "copied", back.error
    docker = await docker_repo.manifest_get("1")
    assert isinstance(docker, ImageIndex)
    assert docker.media_type == mt.DOCKER_MANIFEST_LIST
    for entry, old in zip(docker.manifests, original.manifests, strict=True):
        child = await docker_repo.manifest_get(str(entry.digest))
        assert json.loads(child.raw) == json.loads((await source.manifest_get(str(old.digest))).raw)


async def test_converted_target_is_unchanged_next_pass_with_one_small_get() -> None:
    source, registry = await _seed("docker-list")
    target = Target(registry.repository("oci"), "1", format="oci")
    assert (await CopyEngine().copy(_copy(source, target))).outcome == "copied"
    source.registry.reset_calls()
    registry.reset_calls()
    again = await CopyEngine().copy(_copy(source, target))
    assert again.outcome == "unchanged"
    assert dict(source.registry.calls) == {"manifest_head": 1}
    assert dict(registry.calls) == {"manifest_head": 1, "manifest_get": 1}


async def test_another_transform_is_not_mistaken_for_up_to_date() -> None:
    source, registry = await _seed("docker-list")
    repo = registry.repository("x")
    assert (await CopyEngine().copy(_copy(source, Target(repo, "1", format="oci")))).outcome == "copied"
    request = _copy(source, Target(repo, "1", format="oci"), platforms=(Platform.parse("linux/arm64"),))
    assert (await CopyEngine().copy(request)).outcome == "copied"


async def test_same_format_keeps_digests() -> None:
    source, registry = await _seed("oci-index")
    result = await CopyEngine().copy(_copy(source, Target(registry.repository("o"), "1", format="oci")))
    assert result.outcome == "copied"
    assert not result.digest_map
    assert result.target_digests == {"dst.example/o": (await source.manifest_get("1")).digest}


async def test_artifact_to_docker_fails_only_that_target() -> None:
    source, registry = await _seed("artifact")
    keep, docker = registry.repository("keep"), registry.repository("docker")
    result = await CopyEngine().copy(_copy(source, Target(keep, "1"), Target(docker, "1", format="docker")))
    assert result.outcome == "failed"
    assert result.error is not None
    assert "Docker" in result.error
    assert "UnconvertibleManifest" in result.error
    assert "dst.example/keep" in result.target_digests
    assert await docker.manifest_head("1") is None
    assert not registry.links.get("docker")  # refused before any blob moved


async def test_filtered_index_already_in_the_target_format_is_unchanged_next_pass() -> None:
    # An OCI index filtered to one platform, to a `format: oci` target (an oci: layout's default)
    # beside a `keep` one: the conversion changes nothing, and the next pass must still find both
    # targets up to date (it used to copy the oci one again on every pass).
    source, registry = await _seed("oci-index")
    keep, oci = registry.repository("keep"), registry.repository("oci")
    arm = (Platform.parse("linux/arm64"),)
    targets = (Target(keep, "1"), Target(oci, "1", format="oci"))
    first = await CopyEngine().copy(_copy(source, *targets, platforms=arm))
    assert first.outcome == "copied", first.error
    rewritten = await oci.manifest_get("1")
    assert rewritten.annotations[SOURCE_TRANSFORM_ANNOTATION] == "format=oci,compression=keep"
    again = await CopyEngine().copy(_copy(source, *targets, platforms=arm))
    assert again.outcome == "unchanged", again.error
