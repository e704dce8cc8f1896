"""build_index: a filtered index keeps every other field and is compact JSON of the original object."""

from __future__ import annotations

import json

import pytest

from mirrord.oci import Digest, ImageIndex, build_index, parse_manifest
from mirrord.oci import mediatypes as mt
from mirrord.oci.manifest import manifest_to_json

from .samples import dumps, entry, oci_index


@pytest.mark.parametrize("with_media_type", [True, False])
def test_build_index_filters_and_keeps_everything_else(with_media_type: bool) -> None:
    obj = oci_index(with_media_type, annotations={"org.example": "1"}, future={"z": [1]})
    original = parse_manifest(json.dumps(obj, indent=2).encode())
    assert isinstance(original, ImageIndex)
    kept = [d for d in original.manifests if d.platform and d.platform.architecture.startswith("arm")]
    rebuilt = build_index(original, kept, annotations={"io.mirrord.source": str(original.digest)})

    expected = dict(obj, manifests=obj["manifests"][1:])
    expected["annotations"] = {"org.example": "1", "io.mirrord.source": str(original.digest)}
    assert rebuilt.raw == json.dumps(expected, separators=(",", ":")).encode()
    assert list(json.loads(rebuilt.raw)) == list(obj)  # key order kept
    assert rebuilt.media_type == original.media_type
    assert rebuilt.digest == Digest.of(rebuilt.raw)
    assert rebuilt.manifests == tuple(kept)
    assert manifest_to_json(rebuilt)["manifests"][1]["future"] == {"kept": True}
    assert manifest_to_json(rebuilt)["manifests"][0]["platform"]["variant"] == "v8"


def test_build_index_without_annotations_adds_none() -> None:
    original = parse_manifest(dumps(oci_index()))
    assert isinstance(original, ImageIndex)
    rebuilt = build_index(original, original.manifests[:1])
    assert "annotations" not in manifest_to_json(rebuilt)
    assert len(rebuilt.manifests) == 1


def test_build_index_of_a_docker_list_stays_a_docker_list() -> None:
    obj = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_LIST,
        "manifests": [entry(mt.DOCKER_MANIFEST, b"a")],
    }
    original = parse_manifest(dumps(obj), mt.DOCKER_MANIFEST_LIST)
    assert isinstance(original, ImageIndex)
    rebuilt = build_index(original, [], annotations={"a": "b"})
    assert rebuilt.media_type == mt.DOCKER_MANIFEST_LIST
    assert rebuilt.manifests == ()
    assert manifest_to_json(rebuilt)["annotations"] == {"a": "b"}


def test_build_index_with_unchanged_entries_of_compact_json_reproduces_the_digest() -> None:
    raw = json.dumps(oci_index(), separators=(",", ":")).encode()
    original = parse_manifest(raw)
    assert isinstance(original, ImageIndex)
    assert build_index(original, original.manifests).digest == original.digest
