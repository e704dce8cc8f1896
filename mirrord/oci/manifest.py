"""Manifests and indexes parsed from raw bytes, which are kept: they are the truth.

A manifest's digest is computed over the bytes received, and those bytes are what a mirror pushes.
Only a deliberate rewrite (platform filter, conversion) produces new bytes, via :func:`build_index`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import mirrord.oci.mediatypes as mt
from mirrord.oci.descriptor import Descriptor, optional_str, parse_annotations
from mirrord.oci.digest import Digest
from mirrord.oci.errors import InvalidManifest, UnsupportedManifest

#: Manifests larger than this are rejected (distribution's own limit).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

#: Content types that say nothing about the manifest kind (detect from content instead).
GENERIC_TYPES = frozenset({"", "application/json", "application/octet-stream", "text/plain"})
_SCHEMA1_MESSAGE = "Docker schema1 manifests are not supported"


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """A Docker schema2 or OCI image manifest, or an OCI artifact manifest.

    ``media_type`` is the effective type (from the Content-Type, the ``mediaType`` field, or detected
    from content when both are absent). ``digest`` is sha256 over ``raw``.
    """

    raw: bytes
    media_type: str
    digest: Digest
    config: Descriptor
    layers: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Config then layers, each digest once (a layer listed twice appears once), in order."""
        seen: set[Digest] = set()
        unique: list[Descriptor] = []
        for blob in (self.config, *self.layers):
            if blob.digest not in seen:
                seen.add(blob.digest)
                unique.append(blob)
        return tuple(unique)

    @property
    def size(self) -> int:
        """Length of ``raw``."""
        return len(self.raw)

    def descriptor(self) -> Descriptor:
        """A descriptor of this manifest (media type, digest, size; artifactType when set)."""
        return Descriptor(self.media_type, self.digest, self.size, artifact_type=self.artifact_type)


@dataclass(frozen=True, slots=True)
class ImageIndex:
    """A Docker manifest list or an OCI image index (children may be indexes themselves)."""

    raw: bytes
    media_type: str
    digest: Digest
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def size(self) -> int:
        """Length of ``raw``."""
        return len(self.raw)

    def descriptor(self) -> Descriptor:
        """A descriptor of this index (media type, digest, size; artifactType when set)."""
        return Descriptor(self.media_type, self.digest, self.size, artifact_type=self.artifact_type)


AnyManifest = ImageManifest | ImageIndex


def parse_manifest(raw: bytes, media_type: str | None = None) -> AnyManifest:
    """Parse manifest bytes as served with ``media_type`` (the Content-Type; may be None/generic).

    Detection when the type is absent or generic (``application/json``, ``application/octet-stream``):
    the ``mediaType`` field if present, else ``manifests`` -> OCI index, ``config``+``layers`` -> OCI
    manifest. Docker schema1 (``schemaVersion: 1`` or its media types) raises
    :class:`UnsupportedManifest`; anything else unreadable, more than :data:`MAX_MANIFEST_BYTES`, or a
    ``mediaType`` field contradicting ``media_type`` raises :class:`InvalidManifest`.

    Content-Type parameters (``; charset=utf-8``) are ignored. ``schemaVersion`` must be the integer 2.
    Never raises anything but :class:`InvalidManifest` (or its subclass), whatever the bytes.
    """
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InvalidManifest(f"manifest of {len(raw)} bytes exceeds the {MAX_MANIFEST_BYTES} byte limit")
    content_type = _bare_type(media_type)
    if content_type in mt.SCHEMA1_TYPES:  # before decoding: a schema1 body need not be JSON we can read
        raise UnsupportedManifest(_SCHEMA1_MESSAGE)
    obj = _decode(raw)
    effective = _effective_type(obj, content_type)
    digest = Digest.of(bytes(raw))
    if mt.is_index(effective):
        return _parse_index(bytes(raw), effective, digest, obj)
    return _parse_image_manifest(bytes(raw), effective, digest, obj)


def _bare_type(content_type: str | None) -> str:
    """The media type without parameters, lower-cased ("" for None)."""
    return (content_type or "").partition(";")[0].strip().lower()


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(bytes(raw).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidManifest(f"manifest is not valid UTF-8: {exc}") from exc
    except (ValueError, RecursionError) as exc:
        # RecursionError: absurdly deep nesting is hostile input, not a bug of ours.
        raise InvalidManifest(f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise InvalidManifest(f"manifest must be a JSON object, not {type(obj).__name__}")
    return obj


def _effective_type(obj: Mapping[str, Any], content_type: str) -> str:
    """The manifest kind from the Content-Type, the ``mediaType`` field, or the content's shape."""
    declared = optional_str(obj, "mediaType", "manifest")
    version = obj.get("schemaVersion")
    if declared in mt.SCHEMA1_TYPES or _is_int(version, 1):
        raise UnsupportedManifest(_SCHEMA1_MESSAGE)
    if not _is_int(version, 2):
        raise InvalidManifest(f"manifest 'schemaVersion' must be 2, not {_short(version)}")
    if content_type not in GENERIC_TYPES:
        if declared is not None and declared != content_type:
            raise InvalidManifest(
                f"manifest 'mediaType' {_short(declared)} contradicts Content-Type {_short(content_type)}"
            )
        effective = content_type
    else:
        effective = declared if declared is not None else _detect(obj)
    if effective not in mt.MANIFEST_TYPES:
        raise InvalidManifest(f"unsupported manifest media type {_short(effective)}")
    return effective


def _short(value: Any) -> str:
    """``repr(value)`` cut to a readable length: values come from untrusted, possibly huge, input."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_int(value: Any, expected: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value == expected


def _detect(obj: Mapping[str, Any]) -> str:
    """OCI kind from content alone (the OCI spec lets ``mediaType`` be omitted)."""
    if "manifests" in obj:
        return mt.OCI_INDEX
    if "config" in obj and "layers" in obj:
        return mt.OCI_MANIFEST
    raise InvalidManifest("manifest has no mediaType and neither 'manifests' nor 'config' and 'layers'")


def _parse_index(raw: bytes, media_type: str, digest: Digest, obj: Mapping[str, Any]) -> ImageIndex:
    return ImageIndex(
        raw=raw,
        media_type=media_type,
        digest=digest,
        manifests=_descriptor_list(obj, "manifests"),
        subject=_optional_descriptor(obj, "subject"),
        artifact_type=optional_str(obj, "artifactType", "index"),
        annotations=parse_annotations(obj, "index"),
    )


def _parse_image_manifest(
    raw: bytes, media_type: str, digest: Digest, obj: Mapping[str, Any]
) -> ImageManifest:
    config = _optional_descriptor(obj, "config")
    if config is None:
        raise InvalidManifest("manifest has no 'config'")
    return ImageManifest(
        raw=raw,
        media_type=media_type,
        digest=digest,
        config=config,
        layers=_descriptor_list(obj, "layers"),
        subject=_optional_descriptor(obj, "subject"),
        artifact_type=optional_str(obj, "artifactType", "manifest"),
        annotations=parse_annotations(obj, "manifest"),
    )


def _descriptor_list(obj: Mapping[str, Any], key: str) -> tuple[Descriptor, ...]:
    entries = obj.get(key)
    if not isinstance(entries, list):
        raise InvalidManifest(f"manifest {key!r} must be a list")
    return tuple(Descriptor.from_json(entry, where=f"{key}[{i}]") for i, entry in enumerate(entries))


def _optional_descriptor(obj: Mapping[str, Any], key: str) -> Descriptor | None:
    entry = obj.get(key)
    return None if entry is None else Descriptor.from_json(entry, where=key)


def build_index(
    original: ImageIndex,
    manifests: Sequence[Descriptor],
    *,
    annotations: Mapping[str, str] | None = None,
) -> ImageIndex:
    """A new index of the same media type keeping ``original``'s other fields, listing ``manifests``.

    The entries are written from their ``raw`` JSON, so unknown fields survive; ``annotations`` are
    merged into the top-level annotations (used to record the source digest of a rewritten index).
    The bytes are compact JSON with a trailing newline-free encoding; the digest is computed over them.
    """
    obj = manifest_to_json(original)
    obj["manifests"] = [descriptor.to_json() for descriptor in manifests]
    if annotations:
        obj["annotations"] = {**(obj.get("annotations") or {}), **annotations}
    raw = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    rebuilt = parse_manifest(raw, original.media_type)
    if not isinstance(rebuilt, ImageIndex):  # unreachable: same index media type as the original
        raise InvalidManifest(f"rebuilt index {rebuilt.digest} did not parse as an index")
    return rebuilt


def manifest_to_json(manifest: AnyManifest) -> dict[str, Any]:
    """Decode ``manifest.raw`` as a JSON object (for conversions and inspection)."""
    obj = json.loads(manifest.raw)
    if not isinstance(obj, dict):
        raise InvalidManifest("manifest is not a JSON object")
    return obj
