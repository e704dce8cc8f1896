"""Signatures, attestations, SBOMs and referrers through the copy engine, in memory."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from copy_signed import put_manifest, signed_source

from mirrord.copy import CopyEngine, CopyRequest, Target
from mirrord.oci import ImageIndex, Platform
from mirrord.oci import mediatypes as mt
from mirrord.registry.layout import LayoutRepository
from mirrord.testing.memory import MemoryRegistry, MemoryRepository
from mirrord.testing.sample import (
    COSIGN_SIGNATURE,
    REFERRER_TYPE,
    cosign_tag,
    push_sample,
    referrers_index,
    sample_cosign,
    sample_referrer,
)

PLATFORMS = ("linux/amd64", "linux/arm64")


def _request(source: MemoryRepository, *targets: Target, **kw: object) -> CopyRequest:
    return CopyRequest(source=source, reference="1", targets=targets, **kw)  # type: ignore[arg-type]


async def _raw(repo: MemoryRepository, reference: str) -> bytes:
    return (await repo.manifest_get(reference)).raw


async def test_cosign_tags_and_fallback_referrers_arrive_byte_identical() -> None:
    source, made = await signed_source()
    target = MemoryRegistry("dst.example").repository("app")
    result = await CopyEngine().copy(_request(source, Target(target, "1", artifacts=True)))
    assert result.outcome == "copied", result.error
    digest = made["image"].digest
    for suffix in (".sig", ".att", ".sbom"):
        tag = cosign_tag(digest, suffix)
        assert await _raw(target, tag) == await _raw(source, tag)
    for key in ("ref1", "ref2", "ref1.ref"):  # referrers, and a referrer of a referrer
        assert await _raw(target, str(made[key].digest)) == made[key].root.raw
    assert await _raw(target, cosign_tag(digest)) == await _raw(source, cosign_tag(digest))
    assert await _raw(target, cosign_tag(made["ref1"].digest)) == await _raw(
        source, cosign_tag(made["ref1"].digest)
    )
    sbom_sig = cosign_tag(made[".sbom"].digest, ".sig")  # a signature of an SBOM: two deep by tags
    assert await _raw(target, sbom_sig) == made["sbom.sig"].root.raw
    assert not result.dropped_signatures
    assert len(result.artifacts) == 7


async def test_source_referrers_api_and_target_fallback_index() -> None:
    source, made = await signed_source(api=True)
    target = MemoryRegistry("dst.example").repository("app")
    result = await CopyEngine().copy(_request(source, Target(target, "1", artifacts=True)))
    assert result.outcome == "copied", result.error
    index = await target.manifest_get(cosign_tag(made["image"].digest))
    assert isinstance(index, ImageIndex)
    assert {d.digest for d in index.manifests} == {made["ref1"].digest, made["ref2"].digest}
    assert {d.artifact_type for d in index.manifests} == {REFERRER_TYPE, "application/vnd.example.sbom"}
    assert await _raw(target, str(made["ref1.ref"].digest)) == made["ref1.ref"].root.raw


async def test_target_with_referrers_api_gets_no_fallback_tag() -> None:
    source, made = await signed_source()
    target = MemoryRegistry("dst.example", referrers_api=True).repository("app")
    result = await CopyEngine().copy(_request(source, Target(target, "1", artifacts=True)))
    assert result.outcome == "copied", result.error
    assert await target.manifest_head(cosign_tag(made["image"].digest)) is None
    found = await target.referrers(made["image"].digest)
    assert found is not None
    assert {d.digest for d in found.manifests} == {made["ref1"].digest, made["ref2"].digest}


async def test_fallback_index_at_the_target_is_merged_not_replaced() -> None:
    source, made = await signed_source()
    target = MemoryRegistry("dst.example").repository("app")
    other = sample_referrer(made["image"].root, seed=9)
    await push_sample(target, made["image"], "1")
    await push_sample(target, other)
    await put_manifest(target, cosign_tag(made["image"].digest), referrers_index([other.root]))
    request = _request(source, Target(target, "1", artifacts=True), recheck_artifacts=True)
    result = await CopyEngine().copy(request)
    assert result.outcome == "unchanged", result.error
    index = await target.manifest_get(cosign_tag(made["image"].digest))
    assert isinstance(index, ImageIndex)
    assert [d.digest for d in index.manifests] == [other.digest, made["ref1"].digest, made["ref2"].digest]


async def test_artifact_types_filter() -> None:
    source, made = await signed_source()
    target = MemoryRegistry("dst.example").repository("app")
    wanted = Target(target, "1", artifacts=True, artifact_types=(COSIGN_SIGNATURE, REFERRER_TYPE))
    result = await CopyEngine().copy(_request(source, wanted))
    assert result.outcome == "copied", result.error
    digest = made["image"].digest
    assert await target.manifest_head(cosign_tag(digest, ".sig")) is not None
    assert await target.manifest_head(cosign_tag(digest, ".att")) is None
    assert await target.manifest_head(cosign_tag(digest, ".sbom")) is None
    assert await target.manifest_head(str(made["ref1"].digest)) is not None
    assert await target.manifest_head(str(made["ref2"].digest)) is None


async def test_artifacts_off_copies_none() -> None:
    source, _ = await signed_source()
    target = MemoryRegistry("dst.example").repository("app")
    result = await CopyEngine().copy(_request(source, Target(target, "1")))
    assert result.outcome == "copied"
    assert await target.tags_list() == ["1"]
    assert source.registry.calls["tags_list"] == 0


async def test_unchanged_image_costs_one_head_at_the_source_even_with_artifacts() -> None:
    source, _ = await signed_source()
    target = Target(MemoryRegistry("dst.example").repository("app"), "1", artifacts=True)
    assert (await CopyEngine().copy(_request(source, target))).outcome == "copied"
    source.registry.reset_calls()
    again = await CopyEngine().copy(_request(source, target))
    assert again.outcome == "unchanged", again.error
    assert Counter(source.registry.calls) == Counter({"manifest_head": 1})


async def test_recheck_of_an_unchanged_image_finds_a_late_signature_and_says_its_cost() -> None:
    source, made = await signed_source()
    late = sample_cosign(made["image"].root, ".sig", seed=7)
    await source.manifest_delete(cosign_tag(made["image"].digest, ".sig"))
    target = Target(MemoryRegistry("dst.example").repository("app"), "1", artifacts=True)
    assert (await CopyEngine().copy(_request(source, target))).outcome == "copied"
    assert await target.repository.manifest_head(cosign_tag(made["image"].digest, ".sig")) is None
    await push_sample(source, late, cosign_tag(made["image"].digest, ".sig"))  # signed after the copy
    source.registry.reset_calls()
    again = await CopyEngine().copy(_request(source, target, recheck_artifacts=True))
    assert again.outcome == "unchanged", again.error
    assert await target.repository.manifest_head(cosign_tag(made["image"].digest, ".sig")) is not None
    # The image: one HEAD. Artifacts: one tags list and one referrers probe per repository, then
    # per artifact tag one HEAD (.sig .att .sbom and the .sbom's .sig); referrers are by digest
    # (no source request), their fallback indexes one GET each (found through the tags list); the
    # new .sig is copied (its manifest GET and its two blobs).
    assert Counter(source.registry.calls) == Counter(
        {"manifest_head": 1 + 4, "tags_list": 1, "referrers": 1, "manifest_get": 2 + 1, "blob_open": 2}
    )


async def test_signatures_of_rewritten_digests_are_dropped_and_reported() -> None:
    source, made = await signed_source()
    child = made["image"].manifests[0]  # the amd64 instance keeps its digest under the filter
    child_sig = sample_cosign(child, ".sig", seed=5)
    await push_sample(source, child_sig, cosign_tag(child.digest, ".sig"))
    target = MemoryRegistry("dst.example").repository("app")
    request = _request(
        source, Target(target, "1", artifacts=True), platforms=(Platform.parse("linux/amd64"),)
    )
    result = await CopyEngine().copy(request)
    assert result.outcome == "copied", result.error
    root = made["image"].digest
    new_root = result.digest_map[root]
    dropped = {(d.artifact, d.subject, d.replacement) for d in result.dropped_signatures}
    assert (cosign_tag(root, ".sig"), root, new_root) in dropped
    assert (str(made["ref1"].digest), root, new_root) in dropped
    assert len(dropped) == 5  # .sig .att .sbom and two referrers of the root
    assert await target.manifest_head(cosign_tag(root, ".sig")) is None
    assert await _raw(target, cosign_tag(child.digest, ".sig")) == child_sig.root.raw


async def test_conversion_drops_signatures() -> None:
    source, _ = await signed_source()
    target = MemoryRegistry("dst.example").repository("app")
    result = await CopyEngine().copy(_request(source, Target(target, "1", format="docker", artifacts=True)))
    assert result.outcome == "copied", result.error
    assert (await target.manifest_get("1")).media_type == mt.DOCKER_MANIFEST_LIST
    assert result.dropped_signatures
    assert all(d.replacement == result.digest_map[d.subject] for d in result.dropped_signatures)
    assert await target.tags_list() == ["1"]


async def test_an_up_to_date_target_also_gets_new_signatures_of_instances() -> None:
    source, made = await signed_source()
    registry = MemoryRegistry("dst.example")
    current, stale = registry.repository("current"), registry.repository("stale")
    await push_sample(current, made["image"], "1")
    child = made["image"].manifests[0]
    child_sig = sample_cosign(child, ".sig", seed=5)
    await push_sample(source, child_sig, cosign_tag(child.digest, ".sig"))
    targets = (Target(current, "1", artifacts=True), Target(stale, "1", artifacts=True))
    result = await CopyEngine().copy(_request(source, *targets))
    assert result.outcome == "copied", result.error
    for repo in (current, stale):
        assert await _raw(repo, cosign_tag(child.digest, ".sig")) == child_sig.root.raw


async def test_signatures_reach_an_oci_layout_target(tmp_path: Path) -> None:
    source, made = await signed_source()
    layout = LayoutRepository(tmp_path / "layout")
    result = await CopyEngine().copy(_request(source, Target(layout, "1", artifacts=True)))
    assert result.outcome == "copied", result.error
    digest = made["image"].digest
    tags = set(await layout.tags_list())
    assert {cosign_tag(digest, s) for s in (".sig", ".att", ".sbom")} | {"1", cosign_tag(digest)} <= tags
    assert (await layout.manifest_get(cosign_tag(digest))).raw == await _raw(source, cosign_tag(digest))
    assert (await layout.manifest_get(str(made["ref1.ref"].digest))).raw == made["ref1.ref"].root.raw
