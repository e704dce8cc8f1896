"""Sample manifests, indexes and descriptors (as JSON objects) shared by the tests of the OCI model."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from mirrord.oci import mediatypes as mt


def digest_of(content: bytes) -> str:
    """``sha256:<hex>`` of ``content``, as a string (what manifests hold)."""
    return "sha256:" + hashlib.sha256(content).hexdigest()


CONFIG: dict[str, Any] = {"mediaType": mt.OCI_CONFIG, "digest": digest_of(b"config"), "size": 6}
LAYER_A: dict[str, Any] = {"mediaType": mt.OCI_LAYER_GZIP, "digest": digest_of(b"layer a"), "size": 7}
LAYER_B: dict[str, Any] = {"mediaType": mt.OCI_LAYER_ZSTD, "digest": digest_of(b"layer b"), "size": 7}
EMPTY: dict[str, Any] = {"mediaType": mt.OCI_EMPTY, "digest": digest_of(b"{}"), "size": 2, "data": "e30="}


def oci_manifest(**extra: Any) -> dict[str, Any]:
    """A fresh OCI image manifest (config + one layer); ``extra`` keys are added or replace fields."""
    obj = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": CONFIG, "layers": [LAYER_A], **extra}
    return copy.deepcopy(obj)


def docker_manifest() -> dict[str, Any]:
    """A fresh Docker schema2 manifest with two distinct layers."""
    return {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": {"mediaType": mt.DOCKER_CONFIG, "digest": digest_of(b"config"), "size": 6},
        "layers": [
            {"mediaType": mt.DOCKER_LAYER_GZIP, "digest": digest_of(b"layer a"), "size": 7},
            {"mediaType": mt.DOCKER_LAYER_GZIP, "digest": digest_of(b"layer b"), "size": 7},
        ],
    }


def entry(
    media_type: str, content: bytes, platform: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """A descriptor object for ``content`` (an index entry when ``platform`` is given)."""
    obj: dict[str, Any] = {"mediaType": media_type, "digest": digest_of(content), "size": len(content)}
    if platform is not None:
        obj["platform"] = platform
    return {**obj, **extra}


AMD64: dict[str, Any] = {"architecture": "amd64", "os": "linux"}
ARM64: dict[str, Any] = {"architecture": "arm64", "os": "linux", "variant": "v8"}
ARM: dict[str, Any] = {"architecture": "arm", "os": "linux", "variant": "v7"}


def oci_index(with_media_type: bool = True, **extra: Any) -> dict[str, Any]:
    """A fresh three-platform OCI index; the entries carry an annotation and an unknown field."""
    obj: dict[str, Any] = {"schemaVersion": 2}
    if with_media_type:
        obj["mediaType"] = mt.OCI_INDEX
    obj["manifests"] = [
        entry(mt.OCI_MANIFEST, b"amd64", AMD64),
        entry(mt.OCI_MANIFEST, b"arm64", ARM64, annotations={"x": "y"}),
        entry(mt.OCI_MANIFEST, b"arm", ARM, future={"kept": True}),
    ]
    return {**obj, **extra}


def dumps(obj: Any) -> bytes:
    """``obj`` as JSON bytes (json's default spacing)."""
    return json.dumps(obj).encode()
