"""Format conversion between Docker schema2 and OCI manifests and indexes: pure, stdlib only.

What changes in a conversion: the media types of the manifest or index, of its config descriptor
and of its layer descriptors (and, for an index, the entries that point at converted children).
What never changes: config bytes (Docker's config JSON is OCI's; skopeo keeps the bytes too, only
the descriptor's media type differs), layer bytes unless a recompression replaced a layer, and every
other field of the JSON (unknown fields and annotations survive). The new bytes are compact JSON;
the digest is computed over them.

What cannot be represented in Docker schema2 is refused with :class:`UnconvertibleManifest`:
zstd layers, artifacts (``artifactType``, a ``subject``, or a config that is not an image config)
and layer media types Docker has no name for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, get_args

import mirrord.oci.mediatypes as mt
from mirrord.oci.descriptor import Descriptor
from mirrord.oci.digest import Digest
from mirrord.oci.errors import OCIError
from mirrord.oci.manifest import AnyManifest, ImageIndex, ImageManifest, manifest_to_json, parse_manifest

#: A target's manifest format (``keep`` the source's): declared here once, for plan and engine.
Format = Literal["keep", "oci", "docker"]
#: A target's layer compression (``keep`` the source's).
Compression = Literal["keep", "zstd", "gzip"]
#: A concrete manifest format.
ManifestFormat = Literal["oci", "docker"]
#: A concrete layer compression (what layers are re-encoded to).
Codec = Literal["gzip", "zstd"]
#: The values a plan may give, in the order error messages list them.
FORMATS: tuple[Format, ...] = get_args(Format)
COMPRESSIONS: tuple[Compression, ...] = get_args(Compression)

#: Docker's name for an uncompressed layer (containers/image knows it; distribution accepts it).
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"

_TO_OCI: Mapping[str, str] = {
    mt.DOCKER_MANIFEST_LIST: mt.OCI_INDEX,
    mt.DOCKER_MANIFEST: mt.OCI_MANIFEST,
    mt.DOCKER_CONFIG: mt.OCI_CONFIG,
    mt.DOCKER_LAYER_GZIP: mt.OCI_LAYER_GZIP,
    mt.DOCKER_LAYER_FOREIGN_GZIP: mt.OCI_LAYER_ND_GZIP,
    DOCKER_LAYER_TAR: mt.OCI_LAYER_TAR,
}
_TO_DOCKER: Mapping[str, str] = {oci: docker for docker, oci in _TO_OCI.items()}
_DOCKER_NATIVE = frozenset(_TO_OCI)
_OCI_NATIVE = frozenset(_TO_DOCKER)
ZSTD_LAYER_TYPES = frozenset({mt.OCI_LAYER_ZSTD, mt.OCI_LAYER_ND_ZSTD})
GZIP_LAYER_TYPES = frozenset({mt.DOCKER_LAYER_GZIP, mt.OCI_LAYER_GZIP})
IMAGE_CONFIG_TYPES = frozenset({mt.DOCKER_CONFIG, mt.OCI_CONFIG})


_M = TypeVar("_M", ImageManifest, ImageIndex)


class UnconvertibleManifest(OCIError):
    """A manifest or index cannot be represented in the requested format; the message says why."""


def is_docker(media_type: str) -> bool:
    """True for a Docker schema2 manifest or manifest list."""
    return media_type in (mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST)


def converted_type(media_type: str, fmt: Format) -> str:
    """``media_type`` named in ``fmt`` (manifests, lists, configs, layers); other types unchanged
    when converting to OCI. To Docker, a type Docker has no name for raises UnconvertibleManifest."""
    if fmt == "keep":
        return media_type
    if fmt == "oci":
        return _TO_OCI.get(media_type, media_type)
    if media_type in _DOCKER_NATIVE:
        return media_type
    if media_type in _OCI_NATIVE:
        return _TO_DOCKER[media_type]
    if media_type in ZSTD_LAYER_TYPES:
        raise UnconvertibleManifest(f"zstd layers ({media_type}) cannot be represented in Docker format")
    raise UnconvertibleManifest(f"media type {media_type} has no Docker schema2 equivalent")


def convert_manifest(
    manifest: ImageManifest,
    fmt: Format,
    *,
    layers: Mapping[Digest, Descriptor] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> ImageManifest:
    """``manifest`` in ``fmt`` (``keep``: its own format), each layer named in ``layers`` replaced by
    that descriptor (a recompressed layer: digest, size, media type; the descriptor's media type is
    then named in the target format), ``annotations`` merged into the top level.

    Returns ``manifest`` itself when nothing changes. Raises UnconvertibleManifest when the result
    cannot be represented (Docker format with zstd layers or an artifact).
    """
    layers = layers or {}
    target = _effective_format(manifest.media_type, fmt)
    if target == "docker":
        _check_docker_manifest(manifest)
    obj = manifest_to_json(manifest)
    obj["mediaType"] = converted_type(manifest.media_type, target)
    obj["config"] = {**obj["config"], "mediaType": converted_type(manifest.config.media_type, target)}
    obj["layers"] = [_layer_json(layer, layers, target) for layer in manifest.layers]
    _merge_annotations(obj, annotations)
    return _rebuilt(manifest, obj)


def convert_index(
    index: ImageIndex,
    fmt: Format,
    *,
    children: Mapping[Digest, AnyManifest] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> ImageIndex:
    """``index`` in ``fmt`` with every entry whose digest is a key of ``children`` pointing at that
    (converted) child: its digest, size and media type; other fields of the entry are kept.

    Returns ``index`` itself when nothing changes. Raises UnconvertibleManifest for an index that
    Docker cannot represent (``artifactType``, ``subject``, or an entry of a non-Docker type).
    """
    children = children or {}
    target = _effective_format(index.media_type, fmt)
    if target == "docker" and (index.artifact_type is not None or index.subject is not None):
        raise UnconvertibleManifest(f"index {index.digest} is an artifact: Docker lists cannot carry it")
    obj = manifest_to_json(index)
    obj["mediaType"] = converted_type(index.media_type, target)
    obj["manifests"] = [_entry_json(entry, children, target) for entry in index.manifests]
    _merge_annotations(obj, annotations)
    return _rebuilt(index, obj)


def _effective_format(media_type: str, fmt: Format) -> ManifestFormat:
    if fmt != "keep":
        return fmt
    return "docker" if is_docker(media_type) else "oci"


def _check_docker_manifest(manifest: ImageManifest) -> None:
    where = f"manifest {manifest.digest}"
    if manifest.artifact_type is not None or manifest.subject is not None:
        raise UnconvertibleManifest(f"{where} is an artifact (artifactType/subject): Docker cannot carry it")
    if manifest.config.media_type not in IMAGE_CONFIG_TYPES:
        raise UnconvertibleManifest(
            f"{where} has config type {manifest.config.media_type}: not an image, Docker cannot carry it"
        )


def _layer_json(layer: Descriptor, replacements: Mapping[Digest, Descriptor], fmt: Format) -> dict[str, Any]:
    new = replacements.get(layer.digest)
    obj = dict(layer.to_json())
    if new is not None:
        obj.update(digest=str(new.digest), size=new.size, mediaType=new.media_type)
    obj["mediaType"] = converted_type(obj["mediaType"], fmt)
    return obj


def _entry_json(entry: Descriptor, children: Mapping[Digest, AnyManifest], fmt: Format) -> dict[str, Any]:
    obj = dict(entry.to_json())
    child = children.get(entry.digest)
    if child is not None:
        obj.update(digest=str(child.digest), size=child.size, mediaType=child.media_type)
    else:
        obj["mediaType"] = converted_type(obj["mediaType"], fmt)
    if fmt == "docker" and obj["mediaType"] not in (mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST):
        raise UnconvertibleManifest(f"index entry {entry.digest} of type {obj['mediaType']} is not Docker")
    return obj


def _merge_annotations(obj: dict[str, Any], annotations: Mapping[str, str] | None) -> None:
    if annotations:
        obj["annotations"] = {**(obj.get("annotations") or {}), **annotations}


def _rebuilt(original: _M, obj: dict[str, Any]) -> _M:
    """The manifest for ``obj``, or ``original`` when the JSON did not change (bytes kept)."""
    if obj == manifest_to_json(original):
        return original
    raw = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    rebuilt = parse_manifest(raw, obj["mediaType"])
    if not isinstance(rebuilt, type(original)):  # unreachable: the kind never changes
        raise UnconvertibleManifest(f"converted {original.digest} changed kind")
    return rebuilt


def layer_types(fmt: ManifestFormat, compression: Codec) -> str:
    """The layer media type of ``compression`` in ``fmt`` (zstd in Docker raises)."""
    if compression == "gzip":
        return mt.OCI_LAYER_GZIP if fmt == "oci" else mt.DOCKER_LAYER_GZIP
    if fmt == "docker":
        raise UnconvertibleManifest("zstd layers cannot be represented in Docker format")
    return mt.OCI_LAYER_ZSTD


def manifest_format(media_type: str) -> ManifestFormat:
    """The format a manifest or index media type belongs to."""
    return "docker" if is_docker(media_type) else "oci"


def unsupported_transform(fmt: Format, compression: Compression) -> str | None:
    """Why no image can be converted to ``fmt`` with ``compression`` layers, or None when some
    can. The one statement of the rule: the plan refuses such a target when it is checked, the
    engine when it is asked for one."""
    if fmt == "docker" and compression == "zstd":
        return "format docker with compression zstd: Docker has no zstd layer type"
    return None


__all__: Sequence[str] = (
    "COMPRESSIONS",
    "DOCKER_LAYER_TAR",
    "FORMATS",
    "GZIP_LAYER_TYPES",
    "ZSTD_LAYER_TYPES",
    "Codec",
    "Compression",
    "Format",
    "ManifestFormat",
    "UnconvertibleManifest",
    "convert_index",
    "convert_manifest",
    "converted_type",
    "is_docker",
    "layer_types",
    "manifest_format",
    "unsupported_transform",
)
