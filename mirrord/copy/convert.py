"""Per-target transforms of a planned image: format conversion and layer recompression (pure).

The engine plans an image once from the source (:mod:`mirrord.copy.planner`); a target with
``format`` or ``compression`` other than ``keep`` gets its own plan from :func:`transform_plan`:
every manifest rewritten leaves first (so a parent index names its children's new digests), the
root annotated with the source digest and the transform (so the next pass sees the target is up to
date with one small GET at the target, never a GET at the source).

Rules: ``compression: zstd`` with ``format: keep`` turns Docker manifests into OCI ones (Docker has no
zstd layer type); ``format: docker`` with ``compression: zstd`` is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from mirrord.copy.planner import SOURCE_DIGEST_ANNOTATION, ImagePlan, PlannedManifest
from mirrord.oci import AnyManifest, Descriptor, Digest, ImageIndex, parse_manifest
from mirrord.oci import mediatypes as mt
from mirrord.oci.convert import (
    GZIP_LAYER_TYPES,
    Codec,
    Compression,
    Format,
    ManifestFormat,
    UnconvertibleManifest,
    convert_index,
    convert_manifest,
    layer_types,
    manifest_format,
    unsupported_transform,
)

#: Annotation on a transformed root: the transform it was made with (:meth:`Transform.text`).
SOURCE_TRANSFORM_ANNOTATION = "io.mirrord.source.transform"


@dataclass(frozen=True, slots=True)
class Transform:
    """What a target asks to change: manifest ``format`` and layer ``compression``."""

    format: Format = "keep"
    compression: Compression = "keep"

    def __post_init__(self) -> None:
        refused = unsupported_transform(self.format, self.compression)
        if refused is not None:
            raise UnconvertibleManifest(refused)

    @property
    def identity(self) -> bool:
        """True when nothing is changed (digests preserved)."""
        return self.format == "keep" and self.compression == "keep"

    @property
    def codec(self) -> Codec | None:
        """The compression layers are re-encoded to, None for ``keep``."""
        return None if self.compression == "keep" else self.compression

    def text(self) -> str:
        """Canonical text stored in :data:`SOURCE_TRANSFORM_ANNOTATION`."""
        return f"format={self.format},compression={self.compression}"

    def format_of(self, media_type: str) -> ManifestFormat:
        """The format a manifest of ``media_type`` gets at the target."""
        if self.format != "keep":
            return self.format
        return "oci" if self.compression == "zstd" else manifest_format(media_type)

    def recompresses(self, blob: Descriptor) -> bool:
        """True for a layer this transform re-encodes (gzip -> zstd, zstd -> gzip)."""
        if self.compression == "zstd":
            return blob.media_type in GZIP_LAYER_TYPES
        if self.compression == "gzip":
            return blob.media_type == mt.OCI_LAYER_ZSTD
        return False

    def layer_media_type(self, manifest_type: str) -> str:
        """Media type of a re-encoded layer in a manifest of ``manifest_type``."""
        if self.compression == "keep":
            raise ValueError("no recompression")
        return layer_types(self.format_of(manifest_type), self.compression)


def placeholder_layers(plan: ImagePlan, transform: Transform) -> dict[Digest, Descriptor]:
    """Stand-ins for the re-encoded layers (old digest, new media type), to validate a transform
    before any byte moves."""
    return {
        blob.digest: dataclasses.replace(blob, media_type=transform.layer_media_type(mt.OCI_MANIFEST))
        for blob in plan.blobs
        if transform.recompresses(blob)
    }


def transform_plan(
    plan: ImagePlan, transform: Transform, layers: Mapping[Digest, Descriptor] | None = None
) -> ImagePlan:
    """``plan`` as pushed to a target with ``transform``; ``layers`` maps each re-encoded layer's
    source digest to its new descriptor. ``digest_map`` says source digest -> final digest for every
    manifest that changed. Raises UnconvertibleManifest when the target format cannot carry it."""
    if transform.identity:
        return plan
    layers = layers or {}
    converted: dict[Digest, AnyManifest] = {}
    levels = tuple(
        tuple(_convert(m, transform, layers, converted, None) for m in level) for level in plan.levels
    )
    root = _convert(plan.root, transform, layers, converted, None)
    if root.digest != plan.source_digest:
        # A root that is not the source's (converted here, or already rewritten by the platform
        # filter) names the transform it was made with, even when the conversion changed nothing:
        # the unchanged check tells "made with this transform" from "made before it" by this note.
        notes = {
            SOURCE_DIGEST_ANNOTATION: str(plan.source_digest),
            SOURCE_TRANSFORM_ANNOTATION: transform.text(),
        }
        root = _convert(plan.root, transform, layers, converted, notes)
    return dataclasses.replace(
        plan,
        root=root,
        levels=levels,
        blobs=tuple(layers.get(b.digest, b) for b in plan.blobs),
        digest_map=_compose(plan.digest_map, converted),
    )


def _convert(
    planned: PlannedManifest,
    transform: Transform,
    layers: Mapping[Digest, Descriptor],
    converted: dict[Digest, AnyManifest],
    annotations: Mapping[str, str] | None,
) -> PlannedManifest:
    manifest = parse_manifest(planned.raw, planned.media_type)
    fmt = transform.format_of(manifest.media_type)
    new: AnyManifest
    if isinstance(manifest, ImageIndex):
        new = convert_index(manifest, fmt, children=converted, annotations=annotations)
    else:
        mine = {layer.digest: layers[layer.digest] for layer in manifest.layers if layer.digest in layers}
        new = convert_manifest(manifest, fmt, layers=mine, annotations=annotations)
    if new.digest != manifest.digest:
        converted[manifest.digest] = new
    return PlannedManifest.of(new)


def _compose(
    filtered: Mapping[Digest, Digest], converted: Mapping[Digest, AnyManifest]
) -> dict[Digest, Digest]:
    """source -> final: a filter's rewrite followed by a conversion collapses into one step."""
    result = {old: (converted[mid].digest if mid in converted else mid) for old, mid in filtered.items()}
    intermediate = set(filtered.values())
    for old, manifest in converted.items():
        if old not in intermediate:
            result[old] = manifest.digest
    return result
