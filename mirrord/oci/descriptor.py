"""Content descriptors: what a manifest says about a blob or another manifest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mirrord.oci.digest import Digest
from mirrord.oci.errors import InvalidDigest, InvalidManifest, InvalidPlatform
from mirrord.oci.platform import Platform


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A descriptor as found in a manifest or index.

    ``raw`` keeps the JSON object it came from (unknown fields included), so an index rewritten by
    filtering keeps every field of the entries it keeps. Hashable: ``annotations`` and ``raw`` take
    part in equality but not in the hash.
    """

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    platform: Platform | None = None
    artifact_type: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, obj: Any, *, where: str = "descriptor") -> Descriptor:
        """Parse a descriptor object; raise InvalidManifest mentioning ``where`` when malformed.

        ``mediaType`` (a non-empty string; registries require it, so we do too), ``digest`` (valid) and
        ``size`` (a non-negative integer, not a boolean) are required; ``urls`` (list of strings),
        ``annotations`` (string to string), ``platform`` and ``artifactType`` (string) are optional.
        """
        if not isinstance(obj, dict):
            raise InvalidManifest(f"{where}: must be a JSON object")
        return cls(
            media_type=_media_type(obj, where),
            digest=_digest(obj, where),
            size=_size(obj, where),
            urls=_urls(obj, where),
            annotations=parse_annotations(obj, where),
            platform=_platform(obj, where),
            artifact_type=optional_str(obj, "artifactType", where),
            raw=dict(obj),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object (``raw`` when present, else built from the fields).

        Fields changed since parsing (``dataclasses.replace``) win over ``raw``; fields that still
        equal what ``raw`` says keep ``raw``'s exact spelling (a platform variant such as ``v8``
        survives normalisation), and unknown fields of ``raw`` are kept.
        """
        obj = dict(self.raw)
        original = _fields_of(obj)
        for key, value in _fields_of_descriptor(self).items():
            if key in obj and original.get(key) == value:
                continue
            if value is None:
                obj.pop(key, None)
            else:
                obj[key] = _json_value(value)
        return obj


def parse_annotations(obj: Mapping[str, Any], where: str) -> dict[str, str]:
    """``obj["annotations"]`` as a string-to-string dict ({} when absent); InvalidManifest otherwise."""
    value = obj.get("annotations")
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidManifest(f"{where}: 'annotations' must map strings to strings")
    return dict(value)


def optional_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    """``obj[key]`` when it is a string, None when absent; InvalidManifest for any other type."""
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidManifest(f"{where}: {key!r} must be a string")
    return value


def _media_type(obj: Mapping[str, Any], where: str) -> str:
    value = obj.get("mediaType")
    if not isinstance(value, str) or not value:
        raise InvalidManifest(f"{where}: 'mediaType' must be a non-empty string")
    return value


def _digest(obj: Mapping[str, Any], where: str) -> Digest:
    value = obj.get("digest")
    if not isinstance(value, str):
        raise InvalidManifest(f"{where}: 'digest' must be a string")
    try:
        return Digest.parse(value)
    except InvalidDigest as exc:
        raise InvalidManifest(f"{where}: {exc}") from exc


def _size(obj: Mapping[str, Any], where: str) -> int:
    value = obj.get("size")
    # bool is an int subclass; `"size": true` is not a size.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidManifest(f"{where}: 'size' must be a non-negative integer")
    return value


def _urls(obj: Mapping[str, Any], where: str) -> tuple[str, ...]:
    value = obj.get("urls")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(url, str) for url in value):
        raise InvalidManifest(f"{where}: 'urls' must be a list of strings")
    return tuple(value)


def _platform(obj: Mapping[str, Any], where: str) -> Platform | None:
    value = obj.get("platform")
    if value is None:
        return None
    try:
        return Platform.from_json(value)
    except InvalidPlatform as exc:
        raise InvalidManifest(f"{where}: {exc}") from exc


def _fields_of(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The comparable field values ``raw`` encodes (best effort: unparsable values compare unequal)."""
    try:
        return _fields_of_descriptor(Descriptor.from_json(dict(raw))) if raw else {}
    except InvalidManifest:
        return {}


def _fields_of_descriptor(descriptor: Descriptor) -> dict[str, Any]:
    """JSON key -> field value (None = leave the key out)."""
    return {
        "mediaType": descriptor.media_type,
        "digest": descriptor.digest,
        "size": descriptor.size,
        "urls": descriptor.urls or None,
        "annotations": dict(descriptor.annotations) or None,
        "platform": descriptor.platform,
        "artifactType": descriptor.artifact_type,
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, Digest):
        return str(value)
    if isinstance(value, Platform):
        return value.to_json()
    if isinstance(value, tuple):
        return list(value)
    return value
