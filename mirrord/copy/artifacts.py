"""Signatures, attestations, SBOMs and referrers: what refers to a copied manifest comes along.

For each subject digest (every manifest of an image that was copied, or the root of an unchanged
one) the source is searched for:

- cosign's tags ``sha256-<hex>.sig``, ``.att``, ``.sbom``, copied under the same tag;
- OCI referrers: the referrers API when the source has one, else the fallback tag ``sha256-<hex>``
  (an index listing them); each referrer is copied by digest.

Tags are looked up in ONE tags list per source repository per pass, never by probing each tag, and
whether a repository has the referrers API is asked once per pass. Artifacts are copied byte for
byte (never converted), and recursively: an artifact can itself be a subject (a signature of an
SBOM). At a target without the referrers API (probed once per repository per pass) the fallback
tag index is maintained: the source's bytes when the target has none and every entry came along,
else the target's entries merged with the new ones.

An artifact is copied to a target only where its subject keeps its digest. Where the subject was
rewritten (platform filter, format conversion, recompression) the signature would no longer match:
it is not copied and :class:`DroppedSignature` records the old -> new digests.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mirrord.copy.errors import log_unexpected
from mirrord.copy.planner import ImagePlan
from mirrord.copy.request import CopyRequest, CopyResult, DroppedSignature, Target
from mirrord.oci import AnyManifest, Descriptor, Digest, ImageIndex, parse_manifest
from mirrord.oci import mediatypes as mt
from mirrord.oci.convert import IMAGE_CONFIG_TYPES
from mirrord.registry.base import Repository

log = logging.getLogger(__name__)

COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
#: Artifacts referring to artifacts are followed this deep (content addressing rules out cycles).
MAX_ARTIFACT_DEPTH = 4

CopyFunction = Callable[[CopyRequest], Awaitable[CopyResult]]


def subject_tag(subject: Digest, suffix: str = "") -> str:
    """``sha256-<hex>`` (the referrers fallback tag) plus a cosign suffix."""
    return f"{subject.algorithm}-{subject.encoded}{suffix}"


@dataclass(frozen=True, slots=True)
class ArtifactTarget:
    """A target's view of the subjects: those kept byte for byte, those rewritten (old -> new), the
    artifact types it wants (None: every type), and the subjects whose ``.sig`` its signer keeps
    (merging the source's signatures itself: a byte-for-byte copy would drop its own)."""

    repository: Repository
    kept: frozenset[Digest]
    rewritten: Mapping[Digest, Digest]
    artifact_types: tuple[str, ...] | None = None
    own_signatures: frozenset[Digest] = frozenset()


@dataclass(slots=True)
class ArtifactReport:
    """What :meth:`Artifacts.sync` did: artifacts copied (or already there), dropped, failed."""

    copied: list[str] = field(default_factory=list)
    dropped: list[DroppedSignature] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Found:
    """An artifact of ``subject``: a cosign tag, or an entry of a referrers index."""

    subject: Digest
    tag: str | None = None
    entry: Descriptor | None = None

    @property
    def reference(self) -> str:
        return self.tag if self.tag is not None else str(self.entry.digest if self.entry else "")


class Artifacts:
    """Artifact discovery and copying for one pass; ``copy`` copies one artifact (without events
    of its own, without looking for artifacts itself)."""

    def __init__(self, copy: CopyFunction) -> None:
        self._copy = copy
        self._tags: dict[str, asyncio.Future[frozenset[str]]] = {}
        self._source_api: dict[str, bool] = {}
        self._target_api: dict[str, bool] = {}
        self._fallback_locks: dict[tuple[str, Digest], asyncio.Lock] = {}

    async def sync(
        self,
        source: Repository,
        subjects: Iterable[Digest],
        targets: Sequence[ArtifactTarget],
        *,
        entry: str = "",
        depth: int = 0,
    ) -> ArtifactReport:
        """Bring every artifact of ``subjects`` to ``targets`` (recursively); never raises for an
        artifact (failures are in the report), only CancelledError."""
        report = ArtifactReport()
        if not targets or depth > MAX_ARTIFACT_DEPTH:
            return report
        for subject in subjects:
            try:
                cosign, index = await self._find(source, subject)
            except Exception as exc:
                log_unexpected(log, exc, f"artifacts of {subject}", entry=entry, source=str(source))
                report.failures.append(f"artifacts of {subject}: {type(exc).__name__}: {exc}")
                continue
            for found in cosign:
                await self._copy_found(source, found, targets, report, entry, depth)
            if index is not None:
                await self._copy_referrers(source, subject, index, targets, report, entry, depth)
        return report

    # -- discovery -----------------------------------------------------------------------------------

    async def _find(self, source: Repository, subject: Digest) -> tuple[list[_Found], ImageIndex | None]:
        tags = await self._tags_of(source)
        cosign = [_Found(subject, tag=t) for s in COSIGN_SUFFIXES if (t := subject_tag(subject, s)) in tags]
        return cosign, await self._referrers(source, subject, tags)

    async def _tags_of(self, source: Repository) -> frozenset[str]:
        key = str(source)
        pending = self._tags.get(key)
        if pending is None:
            pending = self._tags[key] = asyncio.get_running_loop().create_future()
            try:
                pending.set_result(frozenset(await source.tags_list()))
            except BaseException as exc:
                del self._tags[key]
                pending.set_exception(exc)
                pending.exception()  # retrieved: the caller below raises it
                raise
        return await asyncio.shield(pending)

    async def _referrers(
        self, source: Repository, subject: Digest, tags: frozenset[str]
    ) -> ImageIndex | None:
        key = str(source)
        if self._source_api.get(key) is not False:
            index = await source.referrers(subject)
            self._source_api[key] = index is not None
            if index is not None:
                return index if index.manifests else None
        if subject_tag(subject) not in tags:
            return None
        fallback = await source.manifest_get(subject_tag(subject))
        return fallback if isinstance(fallback, ImageIndex) else None

    # -- copying -------------------------------------------------------------------------------------

    async def _copy_found(
        self,
        source: Repository,
        found: _Found,
        targets: Sequence[ArtifactTarget],
        report: ArtifactReport,
        entry: str,
        depth: int,
    ) -> CopyResult | None:
        wanted = self._wanted(found, targets, report)
        if wanted and any(t.artifact_types is not None for t in wanted):
            kind = await self._type_of(source, found)
            wanted = [t for t in wanted if t.artifact_types is None or kind in t.artifact_types]
        if not wanted:
            return None
        request = CopyRequest(
            source=source,
            reference=found.reference,
            targets=tuple(Target(t.repository, found.tag) for t in wanted),
            entry=entry,
        )
        result = await self._copy(request)
        if result.outcome == "failed":
            report.failures.append(f"artifact {found.reference} of {found.subject}: {result.error}")
            return None
        report.copied.append(found.reference)
        if result.source_digest is not None:
            deeper = [ArtifactTarget(t.repository, frozenset({result.source_digest}), {}, t.artifact_types)
                      for t in wanted]  # fmt: skip
            _merge(
                report, await self.sync(source, [result.source_digest], deeper, entry=entry, depth=depth + 1)
            )
        return result

    def _wanted(
        self, found: _Found, targets: Sequence[ArtifactTarget], report: ArtifactReport
    ) -> list[ArtifactTarget]:
        wanted = []
        for target in targets:
            if found.subject in target.own_signatures and found.tag == subject_tag(found.subject, ".sig"):
                continue
            if found.subject in target.kept:
                wanted.append(target)
            elif (new := target.rewritten.get(found.subject)) is not None:
                dropped = DroppedSignature(found.subject, new, str(target.repository), found.reference)
                report.dropped.append(dropped)
                log.warning(
                    "signature not copied: its subject's digest changed at the target",
                    extra={"fields": dropped.to_json()},
                )
        return wanted

    async def _type_of(self, source: Repository, found: _Found) -> str:
        """The artifact's type: ``artifactType``, else a non-image config's media type, else the
        first layer's media type (cosign: simplesigning / DSSE / SPDX)."""
        if found.entry is not None and found.entry.artifact_type:
            return found.entry.artifact_type
        return artifact_type_of(await source.manifest_get(found.reference))

    async def _copy_referrers(
        self,
        source: Repository,
        subject: Digest,
        index: ImageIndex,
        targets: Sequence[ArtifactTarget],
        report: ArtifactReport,
        entry: str,
        depth: int,
    ) -> None:
        arrived: dict[str, list[Descriptor]] = {}
        for descriptor in index.manifests:
            result = await self._copy_found(
                source, _Found(subject, entry=descriptor), targets, report, entry, depth
            )
            if result is not None:
                for name in result.target_digests:
                    arrived.setdefault(name, []).append(descriptor)
        for target in targets:
            copied = arrived.get(str(target.repository))
            if copied:
                try:
                    await self._fallback(target.repository, subject, index, copied)
                except Exception as exc:
                    where = f"referrers index of {subject} at {target.repository}"
                    log_unexpected(log, exc, where, entry=entry)
                    report.failures.append(f"{where}: {exc}")

    async def _fallback(
        self, repository: Repository, subject: Digest, source_index: ImageIndex, copied: list[Descriptor]
    ) -> None:
        """Keep ``sha256-<hex>`` at a target without the referrers API listing ``copied``."""
        if await self._has_api(repository, subject):
            return
        tag = subject_tag(subject)
        async with self._fallback_locks.setdefault((str(repository), subject), asyncio.Lock()):
            head = await repository.manifest_head(tag)
            if head is not None and head.digest == source_index.digest:
                return
            if head is None and [d.digest for d in copied] == [d.digest for d in source_index.manifests]:
                await repository.manifest_put(tag, source_index.raw, source_index.media_type)
                return
            current = await repository.manifest_get(tag) if head is not None else None
            present = list(current.manifests) if isinstance(current, ImageIndex) else []
            known = {d.digest for d in present}
            missing = [d for d in copied if d.digest not in known]
            if missing or current is None:
                raw = _index_bytes([*present, *missing])
                await repository.manifest_put(tag, raw, mt.OCI_INDEX)

    async def _has_api(self, repository: Repository, subject: Digest) -> bool:
        key = str(repository)
        if key not in self._target_api:
            self._target_api[key] = await repository.referrers(subject) is not None
        return self._target_api[key]


def artifact_views(
    targets: Sequence[Target],
    plans: Mapping[int, ImagePlan],
    source_tree: Iterable[Digest],
    source_digest: Digest,
    target_digests: Mapping[str, Digest],
    skip: Iterable[int],
) -> tuple[list[Digest], list[ArtifactTarget]]:
    """The subjects to look for artifacts of, and each artifacts-enabled target's view of them.

    A target copied in this pass (``plans``) keeps the source manifests its plan pushes unchanged
    and rewrote those in its plan's digest map; an up-to-date target keeps every subject when its
    root digest equals the source's, else rewrote the root. With no target copied, only the root is
    a subject (an unchanged image's instances are not fetched). Targets in ``skip`` (failed) are
    left out."""
    tree = [source_digest, *(d for d in source_tree if d != source_digest)] if plans else [source_digest]
    failed = set(skip)
    views = []
    for i, target in enumerate(targets):
        if not target.artifacts or i in failed:
            continue
        plan = plans.get(i)
        if plan is not None:
            pushed = {m.digest for m in plan.manifests}
            kept = frozenset(d for d in tree if d in pushed)
            rewritten: Mapping[Digest, Digest] = dict(plan.digest_map)
        elif (final := target_digests.get(str(target.repository))) is not None:
            # Up to date: the same root digest means the same bytes all the way down.
            kept = frozenset(tree) if final == source_digest else frozenset()
            rewritten = {} if final == source_digest else {source_digest: final}
        else:
            continue
        own = frozenset({source_digest} & kept) if target.signer is not None else frozenset()
        views.append(ArtifactTarget(target.repository, kept, rewritten, target.artifact_types, own))
    return tree, views


def artifact_type_of(manifest: AnyManifest) -> str:
    """``artifactType``, else a config media type that is not an image config, else the first
    layer's media type, else the manifest's media type."""
    if manifest.artifact_type:
        return manifest.artifact_type
    if isinstance(manifest, ImageIndex):
        return manifest.media_type
    if manifest.config.media_type not in IMAGE_CONFIG_TYPES | {mt.OCI_EMPTY}:
        return manifest.config.media_type
    return manifest.layers[0].media_type if manifest.layers else manifest.media_type


def _index_bytes(entries: Sequence[Descriptor]) -> bytes:
    obj: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [d.to_json() for d in entries],
    }
    raw = json.dumps(obj, separators=(",", ":")).encode()
    parse_manifest(raw, mt.OCI_INDEX)  # what we push must read back
    return raw


def _merge(report: ArtifactReport, other: ArtifactReport) -> None:
    report.copied += other.copied
    report.dropped += other.dropped
    report.failures += other.failures
