"""What to copy, and in which order: pure functions over already fetched manifests.

The engine fetches the source manifest and, for an index, the children :func:`select_children`
names (recursively); :func:`build_plan` then decides the blobs to transfer (each digest once, largest
first, foreign layers skipped unless asked for) and the manifests to push, children before parents.
Without a platform filter the fetched bytes are pushed as they are, so every digest is preserved.
With one, indexes that lose entries are rewritten with :func:`mirrord.oci.build_index` and the
root records the source digest and the filter in its annotations (for the unchanged check).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mirrord.copy.errors import ManifestTooDeep, NoMatchingPlatform
from mirrord.oci import AnyManifest, Descriptor, Digest, ImageIndex, ImageManifest, Platform, build_index
from mirrord.oci.mediatypes import is_index, is_non_distributable

#: Annotation on a rewritten root index: the digest of the source index it was made from.
SOURCE_DIGEST_ANNOTATION = "io.mirrord.source.digest"
#: Annotation on a rewritten root index: the platform filter it was made with (``platforms_text``).
SOURCE_PLATFORMS_ANNOTATION = "io.mirrord.source.platforms"
#: BuildKit's annotations on attestation manifests inside an index.
REFERENCE_TYPE_ANNOTATION = "vnd.docker.reference.type"
REFERENCE_DIGEST_ANNOTATION = "vnd.docker.reference.digest"
ATTESTATION_MANIFEST = "attestation-manifest"
#: Indexes nested deeper than this are refused (content addressing rules out cycles, not abuse).
MAX_DEPTH = 8


@dataclass(frozen=True, slots=True)
class PlannedManifest:
    """A manifest to push: the exact bytes, their media type and digest."""

    raw: bytes
    media_type: str
    digest: Digest

    @classmethod
    def of(cls, manifest: AnyManifest) -> PlannedManifest:
        """The manifest as fetched (or as rewritten)."""
        return cls(manifest.raw, manifest.media_type, manifest.digest)


@dataclass(frozen=True, slots=True)
class ImagePlan:
    """Everything one image needs at a target.

    ``levels`` lists the manifests below the root in push order: every manifest in ``levels[i]``
    references only blobs and manifests of ``levels[:i]``; the root comes after all of them.
    ``digest_map`` maps old -> new digests of rewritten indexes (empty when nothing was rewritten).
    """

    source_digest: Digest
    root: PlannedManifest
    levels: tuple[tuple[PlannedManifest, ...], ...]
    blobs: tuple[Descriptor, ...]
    skipped: tuple[Descriptor, ...] = ()
    digest_map: Mapping[Digest, Digest] = field(default_factory=dict)

    @property
    def manifests(self) -> tuple[PlannedManifest, ...]:
        """Every manifest in push order, the root last."""
        return (*(m for level in self.levels for m in level), self.root)

    @property
    def blob_bytes(self) -> int:
        """Total size of the blobs to transfer."""
        return sum(b.size for b in self.blobs)


def platforms_text(platforms: Sequence[Platform]) -> str:
    """Canonical text of a platform filter (sorted, comma separated), as stored in annotations."""
    return ",".join(sorted({str(p) for p in platforms}))


def is_attestation(descriptor: Descriptor) -> bool:
    """True for a BuildKit attestation manifest entry of an index."""
    return descriptor.annotations.get(REFERENCE_TYPE_ANNOTATION) == ATTESTATION_MANIFEST


def select_children(index: ImageIndex, platforms: Sequence[Platform] | None) -> tuple[Descriptor, ...]:
    """The entries of ``index`` to keep (and fetch), in their original order.

    Without a filter: every entry. With one: instances whose platform matches a wanted platform,
    nested indexes whose platform (if any) matches, and attestation manifests whose
    ``vnd.docker.reference.digest`` names a kept instance. Entries without a platform are dropped.
    """
    if platforms is None:
        return index.manifests
    kept = [d for d in index.manifests if not is_attestation(d) and _platform_kept(d, platforms)]
    kept_digests = {str(d.digest) for d in kept}
    kept_ids = {id(d) for d in kept}
    return tuple(
        d
        for d in index.manifests
        if id(d) in kept_ids
        or (is_attestation(d) and d.annotations.get(REFERENCE_DIGEST_ANNOTATION) in kept_digests)
    )


def _platform_kept(descriptor: Descriptor, platforms: Sequence[Platform]) -> bool:
    if descriptor.platform is None:
        return is_index(descriptor.media_type)
    return any(descriptor.platform.matches(wanted) for wanted in platforms)


def build_plan(
    root: AnyManifest,
    children: Mapping[Digest, AnyManifest],
    *,
    platforms: Sequence[Platform] | None = None,
    include_foreign: bool = False,
    source: str = "",
) -> ImagePlan:
    """The plan for ``root`` given every child manifest :func:`select_children` named (recursively).

    Raises NoMatchingPlatform when a filter keeps nothing of an index root, ManifestTooDeep when
    indexes nest deeper than MAX_DEPTH, KeyError when a selected child is missing from ``children``.
    """
    builder = _PlanBuilder(children, platforms, include_foreign)
    annotations = None
    if platforms is not None:
        annotations = {
            SOURCE_DIGEST_ANNOTATION: str(root.digest),
            SOURCE_PLATFORMS_ANNOTATION: platforms_text(platforms),
        }
    visited = builder.visit(root, depth=0, annotations=annotations)
    if visited is None:
        wanted = platforms_text(platforms or ())
        available = ", ".join(sorted(builder.seen_platforms)) or "none"
        raise NoMatchingPlatform(
            f"{source or root.digest}: no instance matches platforms {wanted} (available: {available})",
            source=source or None,
        )
    planned, _ = visited
    return ImagePlan(
        source_digest=root.digest,
        root=planned,
        levels=builder.levels(exclude=planned.digest),
        blobs=tuple(sorted(builder.blobs.values(), key=lambda b: (-b.size, str(b.digest)))),
        skipped=tuple(builder.skipped.values()),
        digest_map=dict(builder.digest_map),
    )


class _PlanBuilder:
    """One walk over the manifest tree, collecting blobs, levels and rewrites."""

    def __init__(
        self,
        children: Mapping[Digest, AnyManifest],
        platforms: Sequence[Platform] | None,
        include_foreign: bool,
    ) -> None:
        self.children = children
        self.platforms = platforms
        self.include_foreign = include_foreign
        self.blobs: dict[Digest, Descriptor] = {}
        self.skipped: dict[Digest, Descriptor] = {}
        self.digest_map: dict[Digest, Digest] = {}
        self.seen_platforms: set[str] = set()
        self._levels: dict[Digest, tuple[int, PlannedManifest]] = {}

    def levels(self, *, exclude: Digest) -> tuple[tuple[PlannedManifest, ...], ...]:
        """Planned manifests grouped by level (leaves first), without the root."""
        by_level: dict[int, list[PlannedManifest]] = {}
        for level, planned in self._levels.values():
            if planned.digest != exclude:
                by_level.setdefault(level, []).append(planned)
        return tuple(tuple(by_level[level]) for level in sorted(by_level))

    def visit(
        self, manifest: AnyManifest, *, depth: int, annotations: Mapping[str, str] | None = None
    ) -> tuple[PlannedManifest, int] | None:
        """Plan ``manifest``; returns what to push and its level, or None when nothing is kept."""
        if depth > MAX_DEPTH:
            raise ManifestTooDeep(f"indexes nest deeper than {MAX_DEPTH} levels at {manifest.digest}")
        if isinstance(manifest, ImageManifest):
            self._add_blobs(manifest.blobs)
            result = (PlannedManifest.of(manifest), 0)
        else:
            visited = self._visit_index(manifest, depth, annotations)
            if visited is None:
                return None
            result = visited
        self._levels.setdefault(result[0].digest, (result[1], result[0]))
        return result

    def _visit_index(
        self, index: ImageIndex, depth: int, annotations: Mapping[str, str] | None
    ) -> tuple[PlannedManifest, int] | None:
        self.seen_platforms.update(
            str(d.platform) for d in index.manifests if d.platform is not None and not d.platform.is_unknown
        )
        entries: list[Descriptor] = []
        level = 0
        for descriptor in select_children(index, self.platforms):
            visited = self.visit(self.children[descriptor.digest], depth=depth + 1)
            if visited is None:
                continue
            planned, child_level = visited
            level = max(level, child_level)
            entries.append(
                descriptor if planned.digest == descriptor.digest else _retarget(descriptor, planned)
            )
        if not entries:
            return None
        if _same_entries(entries, index.manifests):
            return PlannedManifest.of(index), level + 1
        rewritten = build_index(index, entries, annotations=annotations)
        self.digest_map[index.digest] = rewritten.digest
        return PlannedManifest.of(rewritten), level + 1

    def _add_blobs(self, blobs: Iterable[Descriptor]) -> None:
        for blob in blobs:
            if is_non_distributable(blob.media_type) and not self.include_foreign:
                self.skipped.setdefault(blob.digest, blob)
            else:
                self.blobs.setdefault(blob.digest, blob)


def _same_entries(entries: Sequence[Descriptor], original: Sequence[Descriptor]) -> bool:
    return len(entries) == len(original) and all(a is b for a, b in zip(entries, original, strict=True))


def _retarget(descriptor: Descriptor, planned: PlannedManifest) -> Descriptor:
    """``descriptor`` pointing at a rewritten child (every other field kept)."""
    size = len(planned.raw)
    raw = {**descriptor.raw, "digest": str(planned.digest), "size": size} if descriptor.raw else {}
    return dataclasses.replace(descriptor, digest=planned.digest, size=size, raw=raw)
