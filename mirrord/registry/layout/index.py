"""index.json entries: one per tag, named by the ``org.opencontainers.image.ref.name`` annotation."""

from __future__ import annotations

from typing import Any

from mirrord.oci import AnyManifest

#: The index.json annotation that names a tagged manifest.
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


def ref_name(entry: dict[str, Any]) -> str | None:
    annotations = entry.get("annotations")
    name = annotations.get(REF_NAME_ANNOTATION) if isinstance(annotations, dict) else None
    return name if isinstance(name, str) else None


def index_entry(manifest: AnyManifest, tag: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"mediaType": manifest.media_type, "digest": str(manifest.digest)}
    entry["size"] = manifest.size
    if manifest.artifact_type is not None:
        entry["artifactType"] = manifest.artifact_type
    return {**entry, "annotations": {REF_NAME_ANNOTATION: tag}}


def with_tag_entry(entries: list[dict[str, Any]], new: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    """Entries with ``new`` in place of the tag's entry (or of an untagged entry of the same digest).

    It takes the position of the first entry it replaces, else goes last; one entry per tag.
    """

    def replaced(entry: dict[str, Any]) -> bool:
        name = ref_name(entry)
        return name == tag or (name is None and entry.get("digest") == new["digest"])

    result: list[dict[str, Any]] = []
    placed = False
    for entry in entries:
        if not replaced(entry):
            result.append(entry)
        elif not placed:
            result.append(new)
            placed = True
    if not placed:
        result.append(new)
    return result
