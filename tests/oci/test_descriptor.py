"""Descriptors: parsing every field, keeping raw JSON, writing it back."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mirrord.oci import Descriptor, Digest, InvalidManifest, Platform
from mirrord.oci import mediatypes as mt

from .samples import AMD64, ARM64, digest_of, entry


def test_descriptor_keeps_raw_and_parses_every_field() -> None:
    obj = entry(
        mt.OCI_MANIFEST,
        b"x",
        ARM64,
        urls=["https://a"],
        annotations={"k": "v"},
        artifactType="application/a",
        future=[1, 2],
    )
    descriptor = Descriptor.from_json(obj)
    assert descriptor.media_type == mt.OCI_MANIFEST
    assert descriptor.digest == Digest.of(b"x")
    assert descriptor.size == 1
    assert descriptor.urls == ("https://a",)
    assert descriptor.annotations == {"k": "v"}
    assert descriptor.platform == Platform.parse("linux/arm64")
    assert descriptor.artifact_type == "application/a"
    assert descriptor.raw == obj
    assert descriptor.to_json() == obj  # unknown field and the "v8" spelling survive


def test_descriptor_from_fields_to_json() -> None:
    descriptor = Descriptor(mt.OCI_LAYER_GZIP, Digest.of(b"x"), 1, platform=Platform.parse("linux/arm"))
    assert descriptor.to_json() == {
        "mediaType": mt.OCI_LAYER_GZIP,
        "digest": str(Digest.of(b"x")),
        "size": 1,
        "platform": {"architecture": "arm", "os": "linux", "variant": "v7"},
    }
    assert Descriptor.from_json(descriptor.to_json()) == descriptor


def test_descriptor_to_json_prefers_changed_fields_over_raw() -> None:
    descriptor = Descriptor.from_json(
        entry(mt.DOCKER_MANIFEST, b"x", AMD64, future=1, annotations={"a": "b"})
    )
    changed = replace(descriptor, media_type=mt.OCI_MANIFEST, platform=None, annotations={})
    assert changed.to_json() == {
        "mediaType": mt.OCI_MANIFEST,
        "digest": digest_of(b"x"),
        "size": 1,
        "future": 1,
    }


def test_descriptor_where_is_named_in_errors() -> None:
    with pytest.raises(InvalidManifest, match=r"^entry 3: 'size'"):
        Descriptor.from_json({"mediaType": "a", "digest": digest_of(b""), "size": -5}, where="entry 3")


def test_descriptors_are_hashable_and_compare_by_fields() -> None:
    obj = entry(mt.OCI_MANIFEST, b"x", AMD64, annotations={"k": "v"})
    a, b = Descriptor.from_json(obj), Descriptor.from_json({**obj, "unknown": 1})
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
