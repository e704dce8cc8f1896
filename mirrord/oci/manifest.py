"""Manifests and indexes parsed from raw bytes, which are kept: they are the truth.

A manifest's digest is computed over the bytes received, and those bytes are what a mirror pushes.
Only a deliberate rewrite (platform filter, conversion) produces new bytes, via :func:`build_index`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mirrord.oci.descriptor import Descriptor
from mirrord.oci.digest import Digest

#: Manifests larger than this are rejected (distribution's own limit).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


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
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Config then layers, each digest once (a layer listed twice appears once), in order."""
        raise NotImplementedError

    @property
    def size(self) -> int:
        """Length of ``raw``."""
        return len(self.raw)

    def descriptor(self) -> Descriptor:
        """A descriptor of this manifest (media type, digest, size; artifactType when set)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class ImageIndex:
    """A Docker manifest list or an OCI image index (children may be indexes themselves)."""

    raw: bytes
    media_type: str
    digest: Digest
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Length of ``raw``."""
        return len(self.raw)

    def descriptor(self) -> Descriptor:
        """A descriptor of this index (media type, digest, size)."""
        raise NotImplementedError


AnyManifest = ImageManifest | ImageIndex


def parse_manifest(raw: bytes, media_type: str | None = None) -> AnyManifest:
    """Parse manifest bytes as served with ``media_type`` (the Content-Type; may be None/generic).

    Detection when the type is absent or generic (``application/json``, ``application/octet-stream``):
    the ``mediaType`` field if present, else ``manifests`` -> OCI index, ``config``+``layers`` -> OCI
    manifest. Docker schema1 (``schemaVersion: 1`` or its media types) raises
    :class:`UnsupportedManifest`; anything else unreadable, more than :data:`MAX_MANIFEST_BYTES`, or a
    ``mediaType`` field contradicting ``media_type`` raises :class:`InvalidManifest`.
    """
    raise NotImplementedError


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
    raise NotImplementedError


def manifest_to_json(manifest: AnyManifest) -> dict[str, Any]:
    """Decode ``manifest.raw`` as a JSON object (for conversions and inspection)."""
    raise NotImplementedError
