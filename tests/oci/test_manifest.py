"""Manifests and indexes parsed from raw bytes: every kind, rejections, and properties."""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrord.oci import (
    Descriptor,
    Digest,
    ImageIndex,
    ImageManifest,
    InvalidManifest,
    Platform,
    UnsupportedManifest,
    parse_manifest,
)
from mirrord.oci import mediatypes as mt
from mirrord.oci.manifest import MAX_MANIFEST_BYTES, manifest_to_json

from .samples import (
    AMD64,
    ARM64,
    CONFIG,
    EMPTY,
    LAYER_A,
    LAYER_B,
    digest_of,
    docker_manifest,
    dumps,
    entry,
    oci_index,
    oci_manifest,
)

# --- kinds -------------------------------------------------------------------------------------


def test_docker_manifest_list() -> None:
    raw = dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST_LIST,
            "manifests": [entry(mt.DOCKER_MANIFEST, b"a", AMD64), entry(mt.DOCKER_MANIFEST, b"b", ARM64)],
        }
    )
    index = parse_manifest(raw, mt.DOCKER_MANIFEST_LIST)
    assert isinstance(index, ImageIndex)
    assert index.media_type == mt.DOCKER_MANIFEST_LIST
    assert [m.platform for m in index.manifests] == [
        Platform.parse("linux/amd64"),
        Platform.parse("linux/arm64"),
    ]
    assert index.digest == Digest.of(raw)
    assert index.size == len(raw)
    assert index.raw == raw


@pytest.mark.parametrize(
    "content_type", [mt.OCI_INDEX, None, "", "application/json", "application/octet-stream"]
)
def test_oci_index_with_media_type(content_type: str | None) -> None:
    index = parse_manifest(dumps(oci_index()), content_type)
    assert isinstance(index, ImageIndex)
    assert index.media_type == mt.OCI_INDEX
    assert len(index.manifests) == 3


@pytest.mark.parametrize(
    "content_type", [mt.OCI_INDEX, None, "application/json", "application/octet-stream", "text/plain"]
)
def test_oci_index_without_media_type_is_detected(content_type: str | None) -> None:
    index = parse_manifest(dumps(oci_index(with_media_type=False)), content_type)
    assert isinstance(index, ImageIndex)
    assert index.media_type == mt.OCI_INDEX


def test_nested_index_entries_are_descriptors_of_indexes() -> None:
    raw = dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [entry(mt.OCI_INDEX, b"child index"), entry(mt.DOCKER_MANIFEST_LIST, b"list")],
        }
    )
    index = parse_manifest(raw)
    assert isinstance(index, ImageIndex)
    assert [m.media_type for m in index.manifests] == [mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST]
    assert all(m.platform is None for m in index.manifests)


def test_attestation_entries_keep_unknown_platform_and_annotations() -> None:
    attestation = entry(
        mt.OCI_MANIFEST,
        b"att",
        {"architecture": "unknown", "os": "unknown"},
        annotations={"vnd.docker.reference.type": "attestation-manifest"},
    )
    index = parse_manifest(dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [attestation]}))
    assert isinstance(index, ImageIndex)
    (only,) = index.manifests
    assert only.platform is not None
    assert only.platform.is_unknown
    assert only.annotations == {"vnd.docker.reference.type": "attestation-manifest"}


def test_docker_manifest() -> None:
    raw = dumps(docker_manifest())
    manifest = parse_manifest(raw, mt.DOCKER_MANIFEST)
    assert isinstance(manifest, ImageManifest)
    assert manifest.media_type == mt.DOCKER_MANIFEST
    assert manifest.config.media_type == mt.DOCKER_CONFIG
    assert [layer.size for layer in manifest.layers] == [7, 7]
    assert [b.digest for b in manifest.blobs] == [
        Digest.parse(digest_of(b"config")),
        Digest.parse(digest_of(b"layer a")),
        Digest.parse(digest_of(b"layer b")),
    ]
    assert manifest.subject is None
    assert manifest.artifact_type is None


@pytest.mark.parametrize("with_media_type", [True, False])
@pytest.mark.parametrize("content_type", [mt.OCI_MANIFEST, None, "application/json"])
def test_oci_manifest(with_media_type: bool, content_type: str | None) -> None:
    obj = oci_manifest(annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"})
    if not with_media_type:
        del obj["mediaType"]
    manifest = parse_manifest(dumps(obj), content_type)
    assert isinstance(manifest, ImageManifest)
    assert manifest.media_type == mt.OCI_MANIFEST
    assert manifest.annotations == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    assert manifest.layers[0].media_type == mt.OCI_LAYER_GZIP


def test_artifact_with_empty_config_and_subject() -> None:
    subject = entry(mt.OCI_MANIFEST, b"the image")
    obj = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": EMPTY,
        "layers": [entry("application/vnd.dev.cosign.simplesigning.v1+json", b"sig")],
        "subject": subject,
        "annotations": {"org.opencontainers.image.created": "now"},
    }
    manifest = parse_manifest(dumps(obj), mt.OCI_MANIFEST)
    assert isinstance(manifest, ImageManifest)
    assert manifest.artifact_type == "application/vnd.dev.cosign.artifact.sig.v1+json"
    assert manifest.config.media_type == mt.OCI_EMPTY
    assert manifest.config.raw["data"] == "e30="
    assert manifest.subject == Descriptor.from_json(subject)
    descriptor = manifest.descriptor()
    assert descriptor.artifact_type == manifest.artifact_type
    assert descriptor.to_json()["artifactType"] == manifest.artifact_type


def test_index_with_subject_and_artifact_type() -> None:
    subject = entry(mt.OCI_MANIFEST, b"the image")
    obj = oci_index(subject=subject, artifactType="application/example")
    index = parse_manifest(dumps(obj))
    assert isinstance(index, ImageIndex)
    assert index.subject == Descriptor.from_json(subject)
    assert index.artifact_type == "application/example"


def test_foreign_layers_keep_urls() -> None:
    foreign = entry(mt.DOCKER_LAYER_FOREIGN_GZIP, b"windows base", urls=["https://mcr.microsoft.com/l/x"])
    obj = docker_manifest()
    obj["layers"].insert(0, foreign)
    manifest = parse_manifest(dumps(obj))
    assert isinstance(manifest, ImageManifest)
    assert manifest.layers[0].urls == ("https://mcr.microsoft.com/l/x",)
    assert mt.is_non_distributable(manifest.layers[0].media_type)
    assert len(manifest.blobs) == 4


def test_duplicate_layer_appears_once_in_blobs() -> None:
    manifest = parse_manifest(dumps(oci_manifest(layers=[LAYER_A, LAYER_B, LAYER_A])))
    assert isinstance(manifest, ImageManifest)
    assert len(manifest.layers) == 3
    assert [b.digest for b in manifest.blobs] == [
        Digest.parse(CONFIG["digest"]),
        Digest.parse(LAYER_A["digest"]),
        Digest.parse(LAYER_B["digest"]),
    ]


def test_layer_equal_to_config_is_listed_once() -> None:
    manifest = parse_manifest(dumps(oci_manifest(layers=[CONFIG])))
    assert isinstance(manifest, ImageManifest)
    assert manifest.blobs == (manifest.config,)


def test_odd_whitespace_is_preserved_byte_for_byte() -> None:
    raw = (
        b'\n  {\r\n\t"schemaVersion" :   2 ,\n   "mediaType":"' + mt.OCI_MANIFEST.encode() + b'",'
        b'"config":' + dumps(CONFIG) + b',\n\n"layers" : [ ' + dumps(LAYER_A) + b" ]  }  \n\n"
    )
    manifest = parse_manifest(raw)
    assert manifest.raw == raw
    assert manifest.digest == Digest("sha256", hashlib.sha256(raw).hexdigest())
    assert manifest.size == len(raw)


def test_unicode_annotations_are_preserved() -> None:
    raw = json.dumps(oci_manifest(annotations={"description": "größe ✓"}), ensure_ascii=False).encode()
    manifest = parse_manifest(raw)
    assert manifest.annotations == {"description": "größe ✓"}
    assert manifest.digest == Digest.of(raw)


def test_content_type_parameters_are_ignored() -> None:
    manifest = parse_manifest(dumps(oci_manifest()), mt.OCI_MANIFEST + "; charset=utf-8")
    assert manifest.media_type == mt.OCI_MANIFEST


def test_descriptors_of_manifests() -> None:
    index = parse_manifest(dumps(oci_index()))
    descriptor = index.descriptor()
    assert (descriptor.media_type, descriptor.digest, descriptor.size) == (
        mt.OCI_INDEX,
        index.digest,
        index.size,
    )
    assert descriptor.to_json() == {
        "mediaType": mt.OCI_INDEX,
        "digest": str(index.digest),
        "size": index.size,
    }


def test_manifest_to_json() -> None:
    obj = oci_manifest()
    assert manifest_to_json(parse_manifest(dumps(obj))) == obj


# --- rejections --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (dumps({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}), None),
        (dumps({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}), mt.DOCKER_MANIFEST_V1_SIGNED),
        (dumps({"schemaVersion": 1}), "application/json"),
        (dumps({"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_V1}), None),
        (dumps({"name": "x"}), mt.DOCKER_MANIFEST_V1),
        (b"not json at all", mt.DOCKER_MANIFEST_V1_SIGNED + "; charset=utf-8"),
    ],
)
def test_schema1_is_rejected_clearly(raw: bytes, content_type: str | None) -> None:
    with pytest.raises(UnsupportedManifest, match="Docker schema1 manifests are not supported"):
        parse_manifest(raw, content_type)


def test_huge_values_are_cut_short_in_messages() -> None:
    with pytest.raises(InvalidManifest) as info:
        parse_manifest(dumps({**oci_manifest(), "schemaVersion": "2" * 100_000}))
    assert len(str(info.value)) < 200


def padded_manifest(total: int) -> bytes:
    """A valid manifest of exactly ``total`` bytes (padding in an annotation)."""
    base = dumps(oci_manifest(annotations={"pad": ""}))
    return dumps(oci_manifest(annotations={"pad": "x" * (total - len(base))}))


def test_manifest_of_exactly_the_limit_is_accepted() -> None:
    raw = padded_manifest(MAX_MANIFEST_BYTES)
    assert len(raw) == MAX_MANIFEST_BYTES
    assert parse_manifest(raw).size == MAX_MANIFEST_BYTES


def test_manifest_over_4_mib_is_rejected() -> None:
    raw = padded_manifest(MAX_MANIFEST_BYTES + 1)
    with pytest.raises(InvalidManifest, match="exceeds"):
        parse_manifest(raw)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"{'schemaVersion': 2}", "not valid JSON"),
        (b'{"schemaVersion": 2,}', "not valid JSON"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"\xef\xbb\xbf" + dumps(oci_manifest()), "not valid JSON"),
        (b"[]", "JSON object"),
        (b"null", "JSON object"),
        (b'"manifest"', "JSON object"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_unreadable_bytes_are_rejected(raw: bytes, fragment: str) -> None:
    with pytest.raises(InvalidManifest, match=fragment):
        parse_manifest(raw)


def with_layer(**fields: Any) -> dict[str, Any]:
    return oci_manifest(layers=[{**LAYER_A, **fields}])


WRONG: list[tuple[dict[str, Any], str | None, str]] = [
    ({**oci_manifest(), "schemaVersion": "2"}, None, "'schemaVersion' must be 2"),
    ({**oci_manifest(), "schemaVersion": True}, None, "'schemaVersion' must be 2"),
    ({**oci_manifest(), "schemaVersion": 3}, None, "'schemaVersion' must be 2"),
    ({k: v for k, v in oci_manifest().items() if k != "schemaVersion"}, None, "'schemaVersion' must be 2"),
    ({**oci_manifest(), "mediaType": 5}, None, "'mediaType' must be a string"),
    (oci_manifest(), mt.DOCKER_MANIFEST, "contradicts Content-Type"),
    (oci_index(), mt.OCI_MANIFEST, "contradicts Content-Type"),
    (
        {k: v for k, v in oci_manifest().items() if k != "mediaType"},
        "application/vnd.oci.artifact.manifest.v1+json",
        "unsupported manifest media type",
    ),
    ({**oci_manifest(), "mediaType": "application/x-unknown"}, None, "unsupported manifest media type"),
    ({"schemaVersion": 2}, None, "neither 'manifests' nor"),
    ({"schemaVersion": 2, "config": CONFIG}, None, "neither 'manifests' nor"),
    ({"schemaVersion": 2, "layers": []}, None, "neither 'manifests' nor"),
    ({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "layers": []}, None, "no 'config'"),
    ({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": CONFIG}, None, "'layers' must be a list"),
    ({**oci_manifest(), "layers": {}}, None, "'layers' must be a list"),
    ({**oci_index(), "manifests": None}, None, "'manifests' must be a list"),
    ({"schemaVersion": 2, "mediaType": mt.OCI_INDEX}, None, "'manifests' must be a list"),
    ({**oci_index(), "manifests": ["x"]}, None, r"manifests\[0\]: must be a JSON object"),
    ({**oci_manifest(), "config": "sha256:x"}, None, "config: must be a JSON object"),
    ({**oci_manifest(), "config": {**CONFIG, "mediaType": None}}, None, "config: 'mediaType'"),
    (with_layer(mediaType=""), None, r"layers\[0\]: 'mediaType'"),
    (oci_manifest(layers=[{k: v for k, v in LAYER_A.items() if k != "mediaType"}]), None, "'mediaType'"),
    (with_layer(size=-1), None, r"layers\[0\]: 'size' must be a non-negative integer"),
    (with_layer(size=True), None, "'size' must be a non-negative integer"),
    (with_layer(size="7"), None, "'size' must be a non-negative integer"),
    (with_layer(size=7.0), None, "'size' must be a non-negative integer"),
    (oci_manifest(layers=[{k: v for k, v in LAYER_A.items() if k != "size"}]), None, "'size'"),
    (with_layer(digest="sha256:abc"), None, r"layers\[0\]: digest 'sha256:abc'"),
    (with_layer(digest=123), None, "'digest' must be a string"),
    (with_layer(urls="https://x"), None, "'urls' must be a list of strings"),
    (with_layer(urls=[1]), None, "'urls' must be a list of strings"),
    (with_layer(annotations={"a": 1}), None, "'annotations' must map strings to strings"),
    (with_layer(annotations=["a"]), None, "'annotations' must map strings to strings"),
    (with_layer(artifactType=1), None, "'artifactType' must be a string"),
    ({**oci_manifest(), "annotations": {"a": None}}, None, "manifest: 'annotations'"),
    ({**oci_manifest(), "artifactType": []}, None, "'artifactType' must be a string"),
    ({**oci_manifest(), "subject": "sha256:x"}, None, "subject: must be a JSON object"),
    ({**oci_index(), "annotations": "x"}, None, "index: 'annotations'"),
    (
        {**oci_index(), "manifests": [entry(mt.OCI_MANIFEST, b"x", {"os": "linux"})]},
        None,
        r"manifests\[0\]: platform 'architecture'",
    ),
    (
        {**oci_index(), "manifests": [{**entry(mt.OCI_MANIFEST, b"x"), "platform": "linux/amd64"}]},
        None,
        "platform must be a JSON object",
    ),
]


@pytest.mark.parametrize(("obj", "content_type", "fragment"), WRONG)
def test_wrong_shapes_and_types_are_rejected(
    obj: dict[str, Any], content_type: str | None, fragment: str
) -> None:
    with pytest.raises(InvalidManifest, match=fragment) as info:
        parse_manifest(dumps(obj), content_type)
    assert not isinstance(info.value, UnsupportedManifest)


# --- properties --------------------------------------------------------------------------------

_digests = st.binary(max_size=8).map(digest_of)
_media_types = st.sampled_from(
    [mt.OCI_LAYER_GZIP, mt.OCI_LAYER_ZSTD, mt.DOCKER_LAYER_GZIP, "application/x-y"]
)
_strings = st.text(max_size=12)
_annotations = st.dictionaries(_strings, _strings, max_size=3)
_descriptors = st.fixed_dictionaries(
    {"mediaType": _media_types, "digest": _digests, "size": st.integers(0, 2**53)},
    optional={"annotations": _annotations, "urls": st.lists(_strings, max_size=2)},
)
_platforms = st.fixed_dictionaries(
    {"os": st.sampled_from(["linux", "windows"]), "architecture": st.sampled_from(["amd64", "arm64", "arm"])},
    optional={"variant": st.sampled_from(["v6", "v7", "v8"])},
)
_image_manifests = st.fixed_dictionaries(
    {"schemaVersion": st.just(2), "config": _descriptors, "layers": st.lists(_descriptors, max_size=5)},
    optional={
        "mediaType": st.just(mt.OCI_MANIFEST),
        "annotations": _annotations,
        "artifactType": _strings,
        "subject": _descriptors,
    },
)
_indexes = st.fixed_dictionaries(
    {
        "schemaVersion": st.just(2),
        "manifests": st.lists(
            st.builds(lambda d, p: {**d, "platform": p}, _descriptors, _platforms) | _descriptors, max_size=5
        ),
    },
    optional={"mediaType": st.just(mt.OCI_INDEX), "annotations": _annotations},
)
_encodings = st.fixed_dictionaries(
    {
        "indent": st.sampled_from([None, 0, 2, "\t"]),
        "sort_keys": st.booleans(),
        "ensure_ascii": st.booleans(),
        "separators": st.sampled_from([None, (",", ":"), (" , ", " : ")]),
    }
)


@settings(deadline=None)  # generation time varies on a busy machine; not a perf test
@given(st.one_of(_image_manifests, _indexes), _encodings)
def test_generated_manifests_keep_raw_and_digest(obj: dict[str, Any], encoding: dict[str, Any]) -> None:
    raw = json.dumps(obj, **encoding).encode()
    parsed = parse_manifest(raw)
    assert parsed.raw == raw
    assert parsed.digest == Digest("sha256", hashlib.sha256(raw).hexdigest())
    assert manifest_to_json(parsed) == obj
    if isinstance(parsed, ImageManifest):
        assert len(parsed.layers) == len(obj["layers"])
        assert {b.digest for b in parsed.blobs} == {
            Digest.parse(d["digest"]) for d in [obj["config"], *obj["layers"]]
        }
    else:
        assert [d.to_json() for d in parsed.manifests] == obj["manifests"]


@settings(deadline=None)  # generation time varies on a busy machine; not a perf test
@given(st.binary(max_size=512), st.sampled_from([None, mt.OCI_INDEX, mt.DOCKER_MANIFEST, "application/json"]))
def test_arbitrary_bytes_raise_only_manifest_errors(raw: bytes, content_type: str | None) -> None:
    # Anything but InvalidManifest (KeyError, TypeError, RecursionError...) fails the test.
    with contextlib.suppress(InvalidManifest):
        parse_manifest(raw, content_type)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def _mutate(obj: Any, path: list[int], value: Any) -> Any:
    """Replace the node reached by following ``path`` (indices modulo the children) with ``value``."""
    if not path or not isinstance(obj, dict | list) or not obj:
        return value
    keys = list(obj) if isinstance(obj, dict) else list(range(len(obj)))
    key = keys[path[0] % len(keys)]
    copy = dict(obj) if isinstance(obj, dict) else list(obj)
    copy[key] = _mutate(obj[key], path[1:], value)
    return copy


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(_image_manifests, _indexes),
    st.lists(st.integers(0, 10), max_size=4),
    _json,
    st.sampled_from([None, mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, "application/json"]),
)
def test_mutated_manifests_raise_only_manifest_errors(
    obj: dict[str, Any], path: list[int], value: Any, content_type: str | None
) -> None:
    raw = json.dumps(_mutate(obj, path, value)).encode()
    try:
        parsed = parse_manifest(raw, content_type)
    except InvalidManifest:
        return
    assert parsed.digest == Digest.of(raw)
