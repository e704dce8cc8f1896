"""The pure planner: which children, which blobs, which order, which rewrites."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mirrord.copy.errors import ManifestTooDeep, NoMatchingPlatform
from mirrord.copy.planner import (
    SOURCE_DIGEST_ANNOTATION,
    SOURCE_PLATFORMS_ANNOTATION,
    build_plan,
    platforms_text,
    select_children,
)
from mirrord.oci import AnyManifest, Digest, ImageIndex, ImageManifest, Platform, parse_manifest
from mirrord.oci import mediatypes as mt


def blob(name: str, size: int, media_type: str = mt.OCI_LAYER_GZIP, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(Digest.of(name.encode())), "size": size, **extra}


def image(name: str, *layers: dict[str, Any]) -> ImageManifest:
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": blob(f"config-{name}", 10, mt.OCI_CONFIG),
            "layers": list(layers),
        }
    ).encode()
    parsed = parse_manifest(raw)
    assert isinstance(parsed, ImageManifest)
    return parsed


def entry(child: AnyManifest, platform: str | None = None, **annotations: str) -> dict[str, Any]:
    obj: dict[str, Any] = {"mediaType": child.media_type, "digest": str(child.digest), "size": child.size}
    if platform:
        os, arch, *variant = platform.split("/")
        obj["platform"] = {"os": os, "architecture": arch, **({"variant": variant[0]} if variant else {})}
    if annotations:
        obj["annotations"] = {k.replace("_", "."): v for k, v in annotations.items()}
    obj["x-unknown-field"] = "kept"
    return obj


def index(*entries: dict[str, Any]) -> ImageIndex:
    raw = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": list(entries)}).encode()
    parsed = parse_manifest(raw)
    assert isinstance(parsed, ImageIndex)
    return parsed


def attestation_of(target: ImageManifest) -> dict[str, Any]:
    att = image(f"att-{target.digest}", blob(f"statement-{target.digest}", 5))
    return entry(
        att,
        "unknown/unknown",
        vnd_docker_reference_type="attestation-manifest",
        vnd_docker_reference_digest=str(target.digest),
    ) | {"_manifest": att}


def children_of(*manifests: AnyManifest) -> dict[Digest, AnyManifest]:
    return {m.digest: m for m in manifests}


AMD, ARM = Platform.parse("linux/amd64"), Platform.parse("linux/arm64")
SHARED = blob("shared", 500)


@pytest.fixture
def shapes() -> dict[str, Any]:
    amd = image("amd", SHARED, blob("amd-top", 50))
    arm = image("arm", SHARED, blob("arm-top", 60))
    amd_att, arm_att = attestation_of(amd), attestation_of(arm)
    manifests = [amd, arm, amd_att.pop("_manifest"), arm_att.pop("_manifest")]
    root = index(entry(amd, "linux/amd64"), amd_att, entry(arm, "linux/arm64/v8"), arm_att)
    return {"root": root, "children": children_of(*manifests), "amd": amd, "arm": arm}


def test_single_manifest_plan_has_its_blobs_largest_first() -> None:
    manifest = image("one", blob("small", 5), blob("big", 900), blob("mid", 80))
    plan = build_plan(manifest, {})
    assert plan.root.raw == manifest.raw
    assert plan.levels == ()
    assert [b.size for b in plan.blobs] == [900, 80, 10, 5]
    assert plan.blob_bytes == 995
    assert plan.digest_map == {}


def test_index_plan_without_filter_keeps_every_byte(shapes: dict[str, Any]) -> None:
    plan = build_plan(shapes["root"], shapes["children"])
    assert plan.root.raw == shapes["root"].raw
    assert plan.source_digest == shapes["root"].digest
    assert [len(level) for level in plan.levels] == [4]
    assert plan.manifests[-1] == plan.root
    # The shared layer once, although two images list it.
    digests = [b.digest for b in plan.blobs]
    assert len(digests) == len(set(digests)) == 1 + 2 + 2 + 2 * 2


def test_select_children_keeps_platform_and_its_attestation(shapes: dict[str, Any]) -> None:
    kept = select_children(shapes["root"], [AMD])
    assert kept[0].digest == shapes["amd"].digest
    assert len(kept) == 2
    assert kept[1].annotations["vnd.docker.reference.digest"] == str(shapes["amd"].digest)
    assert select_children(shapes["root"], None) == shapes["root"].manifests
    assert len(select_children(shapes["root"], [AMD, ARM])) == 4


def test_filtered_index_is_rewritten_with_source_annotations(shapes: dict[str, Any]) -> None:
    plan = build_plan(shapes["root"], shapes["children"], platforms=[ARM])
    root = parse_manifest(plan.root.raw, plan.root.media_type)
    assert isinstance(root, ImageIndex)
    assert plan.digest_map == {shapes["root"].digest: root.digest}
    assert root.manifests[0].digest == shapes["arm"].digest
    assert root.manifests[0].raw["x-unknown-field"] == "kept"
    assert root.annotations[SOURCE_DIGEST_ANNOTATION] == str(shapes["root"].digest)
    assert root.annotations[SOURCE_PLATFORMS_ANNOTATION] == "linux/arm64"
    assert shapes["amd"].layers[1].digest not in {b.digest for b in plan.blobs}


def test_nested_index_rewrite_updates_the_parent_entry(shapes: dict[str, Any]) -> None:
    s390x = image("s390x", blob("s390x-top", 70))
    outer = index(entry(shapes["root"]), entry(s390x, "linux/s390x"))
    children = {**shapes["children"], shapes["root"].digest: shapes["root"], s390x.digest: s390x}
    plan = build_plan(outer, children, platforms=[AMD])
    new_inner = plan.digest_map[shapes["root"].digest]
    root = parse_manifest(plan.root.raw)
    assert isinstance(root, ImageIndex)
    assert [d.digest for d in root.manifests] == [new_inner]
    assert root.manifests[0].size == len(plan.levels[1][0].raw)
    assert [m.digest for m in plan.levels[1]] == [new_inner]
    assert {m.digest for m in plan.levels[0]} == {shapes["amd"].digest, root_child_att(shapes)}


def root_child_att(shapes: dict[str, Any]) -> Digest:
    return select_children(shapes["root"], [AMD])[1].digest


def test_filter_matching_nothing_names_what_is_available(shapes: dict[str, Any]) -> None:
    with pytest.raises(NoMatchingPlatform, match=r"linux/amd64, linux/arm64") as caught:
        build_plan(
            shapes["root"], shapes["children"], platforms=[Platform.parse("windows/amd64")], source="x:1"
        )
    assert "windows/amd64" in str(caught.value)


def test_filter_keeping_everything_pushes_the_original(shapes: dict[str, Any]) -> None:
    plan = build_plan(shapes["root"], shapes["children"], platforms=[AMD, ARM])
    assert plan.root.raw == shapes["root"].raw
    assert plan.digest_map == {}


def test_foreign_layers_are_skipped_unless_included() -> None:
    foreign = blob("foreign", 1000, mt.OCI_LAYER_ND_GZIP, urls=["https://example.invalid/f"])
    manifest = image("win", blob("top", 5), foreign)
    plan = build_plan(manifest, {})
    assert [b.digest for b in plan.skipped] == [Digest.parse(foreign["digest"])]
    assert Digest.parse(foreign["digest"]) not in {b.digest for b in plan.blobs}
    included = build_plan(manifest, {}, include_foreign=True)
    assert Digest.parse(foreign["digest"]) in {b.digest for b in included.blobs}


def test_too_deep_nesting_is_refused() -> None:
    current: AnyManifest = image("leaf", blob("leaf-layer", 1))
    children: dict[Digest, AnyManifest] = {current.digest: current}
    for _ in range(10):
        current = index(entry(current))
        children[current.digest] = current
    with pytest.raises(ManifestTooDeep):
        build_plan(current, children)


def test_platforms_text_is_canonical() -> None:
    assert platforms_text([ARM, AMD, AMD]) == "linux/amd64,linux/arm64"
