"""Pure Docker <-> OCI conversion of manifests and indexes (mirrord.oci.convert)."""

from __future__ import annotations

import json

import pytest

from mirrord.oci import Descriptor, Digest, ImageIndex, ImageManifest, parse_manifest
from mirrord.oci import mediatypes as mt
from mirrord.oci.convert import UnconvertibleManifest, convert_index, convert_manifest, converted_type
from mirrord.testing.sample import sample_image


def _docker_list() -> tuple[ImageIndex, list[ImageManifest]]:
    image = sample_image("conv", kind="docker-list", platforms=("linux/amd64", "linux/arm64"))
    assert isinstance(image.root, ImageIndex)
    children = [m for m in image.manifests if isinstance(m, ImageManifest)]
    return image.root, children


def test_docker_manifest_to_oci_changes_only_media_types() -> None:
    _, (child, _) = _docker_list()
    oci = convert_manifest(child, "oci")
    assert oci.media_type == mt.OCI_MANIFEST
    assert oci.config.media_type == mt.OCI_CONFIG
    assert oci.config.digest == child.config.digest  # config bytes unchanged
    assert {layer.media_type for layer in oci.layers} == {mt.OCI_LAYER_GZIP}
    assert [layer.digest for layer in oci.layers] == [layer.digest for layer in child.layers]
    assert oci.digest == Digest.of(oci.raw) != child.digest


def test_round_trip_restores_the_docker_json() -> None:
    _, (child, _) = _docker_list()
    back = convert_manifest(convert_manifest(child, "oci"), "docker")
    assert json.loads(back.raw) == json.loads(child.raw)


def test_keep_and_same_format_return_the_original_bytes() -> None:
    _, (child, _) = _docker_list()
    assert convert_manifest(child, "keep") is child
    assert convert_manifest(child, "docker") is child


def test_index_entries_point_at_converted_children() -> None:
    root, children = _docker_list()
    converted = {c.digest: convert_manifest(c, "oci") for c in children}
    index = convert_index(root, "oci", children=converted)
    assert index.media_type == mt.OCI_INDEX
    for entry, original in zip(index.manifests, root.manifests, strict=True):
        new = converted[original.digest]
        assert (entry.digest, entry.size, entry.media_type) == (new.digest, new.size, mt.OCI_MANIFEST)
        assert entry.platform == original.platform


def test_recompressed_layer_replaces_digest_size_and_type() -> None:
    _, (child, _) = _docker_list()
    old = child.layers[0]
    new = Descriptor(mt.OCI_LAYER_ZSTD, Digest.of(b"zstd"), 4)
    oci = convert_manifest(child, "oci", layers={old.digest: new})
    assert (oci.layers[0].digest, oci.layers[0].size, oci.layers[0].media_type) == (
        new.digest,
        4,
        new.media_type,
    )


def test_zstd_in_docker_is_refused() -> None:
    _, (child, _) = _docker_list()
    new = Descriptor(mt.OCI_LAYER_ZSTD, Digest.of(b"zstd"), 4)
    with pytest.raises(UnconvertibleManifest, match="zstd"):
        convert_manifest(child, "docker", layers={child.layers[0].digest: new})
    with pytest.raises(UnconvertibleManifest, match="zstd"):
        converted_type(mt.OCI_LAYER_ZSTD, "docker")


def test_artifact_to_docker_is_refused() -> None:
    artifact = sample_image("art", kind="artifact").root
    assert isinstance(artifact, ImageManifest)
    with pytest.raises(UnconvertibleManifest, match=r"artifact|Docker"):
        convert_manifest(artifact, "docker")


def test_subject_to_docker_is_refused() -> None:
    _, (child, other) = _docker_list()
    obj = json.loads(convert_manifest(child, "oci").raw)
    obj["subject"] = {"mediaType": mt.OCI_MANIFEST, "digest": str(other.digest), "size": other.size}
    signed = parse_manifest(json.dumps(obj).encode(), mt.OCI_MANIFEST)
    assert isinstance(signed, ImageManifest)
    with pytest.raises(UnconvertibleManifest):
        convert_manifest(signed, "docker")


def test_annotations_are_merged_and_unknown_fields_kept() -> None:
    _, (child, _) = _docker_list()
    obj = json.loads(child.raw)
    obj["x-extra"] = {"kept": True}
    odd = parse_manifest(json.dumps(obj).encode(), mt.DOCKER_MANIFEST)
    assert isinstance(odd, ImageManifest)
    oci = convert_manifest(odd, "oci", annotations={"a": "b"})
    out = json.loads(oci.raw)
    assert out["x-extra"] == {"kept": True}
    assert out["annotations"] == {"a": "b"}
