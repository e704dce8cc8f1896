"""The copy engine: one image (a tag or digest and everything it references) to its targets.

Order of work for one image, and why:

1. Unchanged check (unless ``force``): one HEAD at the source (none for a digest reference) and one
   HEAD per target tag. A target holding a rewritten index made from this source digest with the
   same platform filter (read from its annotations with one small GET at the target) is up to date.
   The source never sees a GET for an unchanged image. Skipped (like ``force``) when every target
   repository is known, from an earlier image of the pass, to have had no tag: nothing there can be
   up to date, and the source manifest GET of step 2 gives the digest.
2. GET the source manifest; the request's ``gate`` (the signature policy) admits or refuses the
   image now, before any child or blob is requested (a refused image ends ``rejected``); then the
   children a platform filter keeps (bounded, in parallel, level by level through nested indexes),
   and plan (:mod:`mirrord.copy.planner`).
3. Blobs, largest first, through :class:`mirrord.copy.blobs.BlobTransfers` (exists / mounted /
   deduplicated / one verified source read teed into every target).
   A target with ``format``/``compression`` gets its own plan (:mod:`mirrord.copy.convert`),
   checked before any byte moves; layers it re-encodes come through :mod:`mirrord.copy.recode`
   instead. ``require_signatures`` refuses a target whose digests would change.
4. Per target whose blobs all arrived: child manifests by digest (children first), then the root
   by its tag (or by digest when there is none), so a tag never points at incomplete content. A
   separate by-digest PUT of the root would cost the target a request per image for nothing.
5. Artifacts (targets with ``artifacts``): signatures, attestations, SBOMs and referrers of every
   manifest copied through :mod:`mirrord.copy.artifacts` (of the root of an unchanged image only
   when the request says ``recheck_artifacts``: looking costs source GETs); those whose subject's
   digest changed at a target are reported as dropped instead.
6. Signatures (targets with a ``signer``): every root pushed is signed under its target digest,
   the source's signatures of a kept root merged beside (:mod:`mirrord.copy.hooks`).

One engine is one pass: its dedup state (claims) spans every image copied through it. An image that
fails is reported in its :class:`CopyResult`; nothing but CancelledError is raised.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from mirrord.copy.artifacts import ArtifactReport, Artifacts, artifact_views
from mirrord.copy.blobs import BlobTransfers
from mirrord.copy.children import fetch_children
from mirrord.copy.conversions import ConversionMap
from mirrord.copy.convert import (
    placeholder_layers,
    transform_plan,
)
from mirrord.copy.errors import ImageRefused, first_leaf, log_unexpected
from mirrord.copy.freshness import check_targets, display
from mirrord.copy.limits import Limits
from mirrord.copy.locations import LocationCache
from mirrord.copy.planner import (
    ImagePlan,
    PlannedManifest,
    build_plan,
)
from mirrord.copy.reach import Reachability
from mirrord.copy.request import CopyRequest, CopyResult, Outcome, Target
from mirrord.core.events import (
    EventBus,
    ImageDone,
    ImageFailed,
    ImageRejected,
    ImageStarted,
    ManifestPushed,
)
from mirrord.core.together import gather_in_order
from mirrord.oci import Descriptor, Digest, OCIError, Platform
from mirrord.registry.base import Repository
from mirrord.registry.errors import ProtocolError

if TYPE_CHECKING:
    from mirrord.copy.recode import LayerRecoder

__all__ = ["DEFAULT_LIMITS", "CopyEngine", "CopyRequest", "CopyResult", "LocationCache", "Target"]

log = logging.getLogger(__name__)

DEFAULT_LIMITS = Limits()


class _CheckSlot:
    """A ``limits.checks`` slot that ``copy_many`` took for one image: released once, either when the
    image, found out of date, got an image slot and starts copying (:meth:`hand_over`: the batch
    starts another worker for the next image meanwhile), or when it ends. So at most ``checks``
    images are being checked or waiting for an image slot, plus ``images`` copying."""

    __slots__ = ("_batch", "_semaphore", "handed_over")

    def __init__(self, semaphore: asyncio.Semaphore, batch: _Batch | None = None) -> None:
        self._semaphore: asyncio.Semaphore | None = semaphore
        self._batch = batch
        #: True once :meth:`hand_over` ran: the worker that copies this image stops after it.
        self.handed_over = False

    def release(self) -> None:
        """Give the slot back (again: nothing)."""
        semaphore, self._semaphore = self._semaphore, None
        if semaphore is not None:
            semaphore.release()

    def hand_over(self) -> None:
        """The image copies from now on: give the slot back and let the batch start a worker for
        the next request (this one's worker ends with the image)."""
        if self._semaphore is None:
            return
        self.release()
        self.handed_over = True
        if self._batch is not None:
            self._batch.checking -= 1
            self._batch.spawn()


class _Batch:
    """The requests of one :meth:`CopyEngine.copy_many`, worked through by a few worker tasks
    instead of one task per image: up to ``limits.checks`` workers check (and copy) one image after
    another, each taking the next request once it holds a check slot (engine-wide, shared by the
    batches of concurrent entries). A worker whose image starts copying hands its check slot over
    to a new worker and ends with that image. Results keep request order."""

    __slots__ = ("checking", "engine", "exhausted", "group", "requests", "results")

    def __init__(self, engine: CopyEngine, requests: Iterable[CopyRequest], group: asyncio.TaskGroup) -> None:
        self.engine = engine
        self.requests: Iterator[CopyRequest] = iter(requests)
        self.group = group
        self.results: list[CopyResult | None] = []
        #: Workers checking an image or waiting for a check slot (not those copying).
        self.checking = 0
        self.exhausted = False

    def spawn(self) -> None:
        """Start one more worker, unless ``checks`` of them already check or wait, or no request
        is left."""
        if not self.exhausted and self.checking < self.engine.limits.checks:
            self.checking += 1
            self.group.create_task(self.engine._work(self))

    def next_request(self) -> CopyRequest | None:
        """The next request (None once there is none)."""
        if not self.exhausted:
            request = next(self.requests, None)
            if request is not None:
                return request
            self.exhausted = True
        return None


#: The check slot of the image ``copy_many`` is copying in this task (None for a direct ``copy``).
_check_slot: contextvars.ContextVar[_CheckSlot | None] = contextvars.ContextVar("check_slot", default=None)


@dataclass(slots=True)
class _Image:
    """Mutable progress of one request, so a failed result still says what was learnt."""

    request: CopyRequest
    display: str
    source_digest: Digest | None = None
    target_digests: dict[str, Digest] = field(default_factory=dict)
    digest_map: dict[Digest, Digest] = field(default_factory=dict)
    bytes: int = 0
    failures: dict[int, str] = field(default_factory=dict)
    plans: dict[int, ImagePlan] = field(default_factory=dict)
    source_tree: set[Digest] = field(default_factory=set)
    artifacts: ArtifactReport = field(default_factory=ArtifactReport)

    @property
    def failed(self) -> bool:
        """True when a target or an artifact failed (:attr:`errors` is not empty)."""
        return bool(self.failures or self.artifacts.failures)

    @property
    def errors(self) -> list[str]:
        """Every failure: per target in target order, then the artifacts'."""
        return [self.failures[i] for i in sorted(self.failures)] + self.artifacts.failures

    def fail(self, index: int, message: str) -> None:
        """Record the first failure of target ``index``."""
        self.failures.setdefault(index, message)

    def result(self, outcome: Outcome, error: str | None = None) -> CopyResult:
        """The frozen result."""
        return CopyResult(
            source=str(self.request.source),
            reference=self.request.reference,
            outcome=outcome,
            source_digest=self.source_digest,
            target_digests=dict(self.target_digests),
            digest_map=dict(self.digest_map),
            bytes=self.bytes,
            error=error,
            artifacts=tuple(self.artifacts.copied),
            dropped_signatures=tuple(self.artifacts.dropped),
        )


class CopyEngine:
    """Copies images; one instance per pass (its deduplication state spans the pass).

    ``limits`` bound images, blob streams and manifest requests engine-wide; ``events`` receives
    ImageStarted/ImageDone/ImageFailed, BlobDone, TransferStarted/Finished and ManifestPushed;
    ``locations`` (which may outlive the pass) suggests repositories to mount blobs from, and is
    saved after each :meth:`copy_many` when it has a state file; so is ``conversions``, the map of
    layers already re-encoded (source digest, codec) -> digest. Re-encoded layers are spooled in
    ``spool_dir`` (default: the system temporary directory); ``recoder.stats`` counts the work.
    """

    def __init__(
        self,
        *,
        limits: Limits = DEFAULT_LIMITS,
        events: EventBus | None = None,
        locations: LocationCache | None = None,
        conversions: ConversionMap | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        self.limits = limits
        self.events = events or EventBus()
        self.locations = locations if locations is not None else LocationCache()
        self.conversions = conversions if conversions is not None else ConversionMap()
        self._spool_dir = spool_dir
        self._recoder: LayerRecoder | None = None
        self.reach = Reachability()
        self._blobs = BlobTransfers(
            limits=limits, events=self.events, locations=self.locations, reach=self.reach
        )
        self._checks = asyncio.Semaphore(limits.checks)
        self._images = asyncio.Semaphore(limits.images)
        self._manifest_slots = asyncio.Semaphore(limits.manifest_requests)
        self._artifacts = Artifacts(self._copy_quiet)
        self.stopping = False
        self._running: set[asyncio.Task[object]] = set()
        # (registry_key, repository, tag or reference) of every target an image of this pass had.
        self._handled: set[tuple[str, str, str]] = set()

    @property
    def recoder(self) -> LayerRecoder:
        """The layer re-encoder, made at first use: a pass that copies nothing never imports the
        codecs (zstandard) or the recompression code."""
        if self._recoder is None:
            from mirrord.copy.recode import LayerRecoder

            self._recoder = LayerRecoder(
                conversions=self.conversions,
                locations=self.locations,
                events=self.events,
                spool_dir=self._spool_dir,
                threads=min(2, os.cpu_count() or 1),
            )
        return self._recoder

    # -- public API ----------------------------------------------------------------------------------

    async def copy_many(self, requests: Iterable[CopyRequest]) -> list[CopyResult]:
        """Copy every request: at most ``limits.checks`` unchanged checks and ``limits.images`` copies
        at once; results in request order. One failing image never cancels the others."""
        try:
            async with asyncio.TaskGroup() as group:
                batch = _Batch(self, requests, group)
                batch.spawn()
        finally:
            self._save_locations()
            self._save_conversions()
        # Every worker ended normally, so every request has its result.
        return cast("list[CopyResult]", batch.results)

    async def copy(self, request: CopyRequest) -> CopyResult:
        """Copy one image to every target. Failures come back as outcome ``failed`` with ``error``
        (and are logged); only CancelledError propagates."""
        image = _Image(request, display(request))
        if self.events.wants(ImageStarted):
            targets = tuple(str(t.repository) for t in request.targets)
            self.events.emit(ImageStarted(request.entry, image.display, targets))
        try:
            outcome = await self._copy(image)
        except ImageRefused as exc:
            return self._rejected(image, str(exc))
        except Exception as exc:
            self.reach.note(exc)
            return self._failed(image, describe(exc), exc)
        if image.failed:
            return self._failed(image, "; ".join(image.errors))
        self.events.emit(
            ImageDone(
                entry=request.entry,
                source=image.display,
                source_digest=str(image.source_digest),
                target_digests={k: str(v) for k, v in image.target_digests.items()},
                outcome=outcome,
                bytes=image.bytes,
                digest_map={str(k): str(v) for k, v in image.digest_map.items()},
            )
        )
        return image.result(outcome)

    async def is_unchanged(self, request: CopyRequest) -> tuple[bool, Digest | None]:
        """HEAD-only check (plus one small GET at a target holding a rewritten index): True when
        every target is up to date, and the source digest. Raises RegistryError (NotFound when the
        source reference does not exist)."""
        source_digest, states = await check_targets(request)
        return all(state is not None for state in states), source_digest

    def stop(self) -> None:
        """Start no new image and cancel those in flight (a SIGINT/SIGTERM): :meth:`copy_many`
        still returns, with those images ``failed`` as ``interrupted``. Cancelled uploads are
        cancelled at their registry (``DELETE`` of the session); a tag is never left pointing at
        content that did not all arrive, as manifests go last."""
        if self.stopping:
            return
        self.stopping = True
        for task in self._running:
            task.cancel()

    # -- one image -----------------------------------------------------------------------------------

    async def _copy(self, image: _Image) -> Literal["copied", "unchanged"]:
        outcome = await self._copy_image(image)
        request = image.request
        look = outcome == "copied" or request.recheck_artifacts
        if look and any(t.artifacts for t in request.targets) and image.source_digest is not None:
            subjects, views = artifact_views(
                request.targets,
                image.plans,
                image.source_tree,
                image.source_digest,
                image.target_digests,
                image.failures,
            )
            image.artifacts = await self._artifacts.sync(request.source, subjects, views, entry=request.entry)
        if look and image.source_digest is not None:
            await self._signatures(image, outcome == "copied")
        return outcome

    async def _signatures(self, image: _Image, copied: bool) -> None:
        """Each signing target: sign the root pushed in this pass; merge the source's signatures
        of a root that kept its digest (also on a recheck of an unchanged image)."""
        request = image.request
        assert image.source_digest is not None
        for i, target in enumerate(request.targets):
            digest = image.target_digests.get(str(target.repository))
            if target.signer is None or digest is None or i in image.failures:
                continue
            sign = copied and i in image.plans
            merge = target.artifacts and digest == image.source_digest
            if not (sign or merge):
                continue
            try:
                await target.signer(
                    target.repository,
                    digest,
                    source=request.source,
                    source_digest=image.source_digest,
                    merge_source=merge,
                    sign=sign,
                )
            except Exception as exc:
                where = f"signatures at {target.repository}"
                log_unexpected(log, exc, where, entry=request.entry, image=image.display)
                image.fail(i, f"{where}: {describe(exc)}")

    async def _copy_quiet(self, request: CopyRequest) -> CopyResult:
        """One image without events of its own and without its artifacts (how artifacts are copied)."""
        image = _Image(request, display(request))
        try:
            outcome = await self._copy_image(image)
        except Exception as exc:
            log_unexpected(log, exc, "artifact copy", entry=request.entry, image=image.display)
            return image.result("failed", describe(exc))
        return image.result("failed", "; ".join(image.errors)) if image.errors else image.result(outcome)

    async def _copy_image(self, image: _Image) -> Literal["copied", "unchanged"]:
        request = image.request
        stale = self._reachable(image, range(len(request.targets)))
        if not self._all_new(request) and not request.force:
            down = set(image.failures)
            image.source_digest, states = await check_targets(request, skip=down, on_error=self.reach.note)
            for i, state in enumerate(states):
                if state is not None:
                    image.target_digests[str(request.targets[i].repository)] = state
            stale = self._reachable(image, [i for i in stale if states[i] is None])
            if not stale:
                return "unchanged"  # or failed: copy() reports the targets found unreachable
        elif not stale:
            return "unchanged"
        async with self._images:
            slot = _check_slot.get()
            if slot is not None:
                slot.hand_over()  # copying now: the next image's check may start meanwhile
            return await self._copy_stale(image, stale)

    def _all_new(self, request: CopyRequest) -> bool:
        """Every target repository had no tag when this pass first asked (an earlier image's blobs
        did), and no image of this pass wrote this tag there yet: nothing there can be up to date,
        so the unchanged check's HEADs (source and targets) are skipped and the source manifest GET
        alone gives the digest. Notes the request's target references as handled."""
        keys = [
            (t.repository.registry_key, t.repository.name, t.tag or request.reference)
            for t in request.targets
        ]
        first = self._handled.isdisjoint(keys)
        self._handled.update(keys)
        return first and all(self._blobs.known_new(t.repository) for t in request.targets)

    def _reachable(self, image: _Image, indexes: Iterable[int]) -> list[int]:
        """The targets among ``indexes`` whose registry this pass has not found unreachable; the
        others fail at once with the summarised error. Raises when the source's registry is down."""
        source_down = self.reach.error_for(image.request.source)
        if source_down is not None:
            raise source_down
        live = []
        for i in indexes:
            down = self.reach.error_for(image.request.targets[i].repository)
            if down is None:
                live.append(i)
            else:
                image.fail(i, describe(down))
        return live

    async def _copy_stale(self, image: _Image, stale: list[int]) -> Literal["copied"]:
        plan = await self._plan(image)
        plans = self._target_plans(image, plan, stale)
        await self._copy_blobs(image, plan, stale)
        plans = await self._recompress(image, plan, plans)
        image.plans = plans
        await self._push_manifests(image, plans)
        return "copied"

    def _target_plans(self, image: _Image, plan: ImagePlan, stale: list[int]) -> dict[int, ImagePlan]:
        """Per stale target its plan (transformed, re-encoded layers still placeholders); a target
        whose format cannot carry the image fails here, before any byte moves."""
        plans: dict[int, ImagePlan] = {}
        for i in stale:
            try:
                transform = image.request.targets[i].transform
                plans[i] = transform_plan(plan, transform, placeholder_layers(plan, transform))
            except OCIError as exc:
                image.fail(i, f"conversion for {image.request.targets[i].repository}: {describe(exc)}")
                continue
            if image.request.require_signatures and plans[i].digest_map:
                changes = ", ".join(f"{old} -> {new}" for old, new in plans[i].digest_map.items())
                image.fail(
                    i,
                    f"{image.request.targets[i].repository}: refused by require_signatures: "
                    f"digests would change ({changes})",
                )
        return plans

    async def _plan(self, image: _Image) -> ImagePlan:
        request = image.request
        reference = str(image.source_digest) if image.source_digest else request.reference
        root = await request.source.manifest_get(reference)
        image.source_digest = root.digest
        if request.gate is not None:
            refusal = await request.gate(request.source, request.reference, root)
            if refusal is not None:
                raise ImageRefused(refusal, source=image.display)
        children = await fetch_children(request.source, root, _filter(request), slots=self._manifest_slots)
        image.source_tree = {root.digest, *children}
        plan = build_plan(
            root,
            children,
            platforms=_filter(request),
            include_foreign=request.include_foreign,
            source=image.display,
        )
        image.digest_map.update(plan.digest_map)
        for old, new in plan.digest_map.items():
            log.info(
                "index rewritten by the platform filter",
                extra={
                    "fields": {
                        "entry": request.entry,
                        "image": image.display,
                        "from": str(old),
                        "to": str(new),
                    }
                },
            )
        for skipped in plan.skipped:
            log.info(
                "non-distributable layer not copied",
                extra={
                    "fields": {"entry": request.entry, "image": image.display, "digest": str(skipped.digest)}
                },
            )
        return plan

    def _rejected(self, image: _Image, reason: str) -> CopyResult:
        self.events.emit(ImageRejected(image.request.entry, image.display, reason))
        return image.result("rejected", reason)

    def _failed(self, image: _Image, error: str, exc: BaseException | None = None) -> CopyResult:
        request = image.request
        fields = {"entry": request.entry, "image": image.display, "error": error}
        if exc is None or not log_unexpected(log, exc, "image", **fields):
            # ImageFailed below carries the same context to the event logger; no second warning.
            log.debug("image failed", extra={"fields": fields})
        self.events.emit(ImageFailed(request.entry, image.display, error))
        return image.result("failed", error)

    # -- fetching ------------------------------------------------------------------------------------

    # -- blobs ---------------------------------------------------------------------------------------

    async def _copy_blobs(self, image: _Image, plan: ImagePlan, stale: list[int]) -> None:
        """Every blob to every stale target that takes it as it is (a target re-encoding a layer
        gets it from :meth:`_recompress`), largest first; each task holds a stream slot
        (:meth:`BlobTransfers.spawn`)."""
        targets = image.request.targets
        async with asyncio.TaskGroup() as group:
            for blob in plan.blobs:
                if all(i in image.failures for i in stale):
                    break  # nothing left to complete: stop reading the source
                wanted = [
                    i
                    for i in stale
                    if i not in image.failures and not targets[i].transform.recompresses(blob)
                ]
                if not wanted:
                    continue
                work = self._blob_task(image, blob, wanted, [targets[i].repository for i in wanted])
                await self._blobs.spawn(group, work)

    async def _blob_task(
        self, image: _Image, blob: Descriptor, stale: list[int], repositories: list[Repository]
    ) -> None:
        report = await self._blobs.ensure(image.request.source, blob, repositories, entry=image.request.entry)
        image.bytes += report.pulled
        for index, error in report.failures.items():
            self.reach.note(error)
            where = f"blob {blob.digest} to {repositories[index]}"
            log_unexpected(log, error, where, entry=image.request.entry, image=image.display)
            image.fail(stale[index], f"{where}: {describe(error)}")

    async def _recompress(
        self, image: _Image, plan: ImagePlan, plans: dict[int, ImagePlan]
    ) -> dict[int, ImagePlan]:
        """Per target its final plan: re-encoded layers brought to the target, manifests naming them."""
        request = image.request
        work = {
            i: (request.targets[i].transform, request.targets[i].repository)
            for i in plans
            if i not in image.failures
        }
        done = await self.recoder.apply(request.source, plan, work, slots=self._blobs, entry=request.entry)
        image.bytes += done.pulled
        for i, error in done.failures.items():
            where = f"recompression for {request.targets[i].repository}"
            log_unexpected(log, error, where, entry=request.entry, image=image.display)
            image.fail(i, f"{where}: {describe(error)}")
        return {**plans, **done.plans}

    # -- manifests -----------------------------------------------------------------------------------

    async def _push_manifests(self, image: _Image, plans: Mapping[int, ImagePlan]) -> None:
        """Every target's manifests, the targets at the same time (:meth:`_push_target` never
        raises but for cancellation: one target failing does not stop another)."""
        pushing = [(i, plan) for i, plan in plans.items() if i not in image.failures]
        for i, plan in pushing:
            self._log_rewrites(image, plan, image.request.targets[i])
        await gather_in_order([self._push_target(image, plan, i) for i, plan in pushing])

    def _log_rewrites(self, image: _Image, plan: ImagePlan, target: Target) -> None:
        """Log old -> new for manifests a conversion rewrote (the filter's were logged when planned)."""
        for old, new in plan.digest_map.items():
            if image.digest_map.get(old) == new:
                continue
            image.digest_map[old] = new
            fields = {"entry": image.request.entry, "image": image.display, "from": str(old), "to": str(new)}
            log.info(
                "manifest rewritten for the target",
                extra={
                    "fields": {
                        **fields,
                        "target": str(target.repository),
                        "transform": target.transform.text(),
                    }
                },
            )

    async def _push_target(self, image: _Image, plan: ImagePlan, index: int) -> None:
        """Children by digest level by level, then the root: by its tag when the target has one (one
        PUT stores it and points the tag at it, after everything it references), else by digest."""
        target = image.request.targets[index]
        try:
            for level in plan.levels:
                async with asyncio.TaskGroup() as group:
                    for manifest in level:
                        group.create_task(self._put(image, target.repository, str(manifest.digest), manifest))
            root_reference = target.tag if target.tag is not None else str(plan.root.digest)
            await self._put(image, target.repository, root_reference, plan.root)
        except Exception as exc:
            self.reach.note(exc)
            where = f"manifests to {target.repository}"
            log_unexpected(log, exc, where, entry=image.request.entry, image=image.display)
            image.fail(index, f"{where}: {describe(exc)}")
            return
        image.target_digests[str(target.repository)] = plan.root.digest

    async def _put(
        self, image: _Image, repository: Repository, reference: str, manifest: PlannedManifest
    ) -> None:
        async with self._manifest_slots:
            digest = await repository.manifest_put(reference, manifest.raw, manifest.media_type)
        if digest != manifest.digest:
            raise ProtocolError(
                f"{repository} stored {reference} as {digest}, expected {manifest.digest}",
                registry=repository.registry_key,
                repository=repository.name,
                reference=reference,
            )
        self.events.emit(
            ManifestPushed(
                entry=image.request.entry,
                registry=repository.registry_key,
                repository=repository.name,
                reference=reference,
                digest=str(manifest.digest),
                media_type=manifest.media_type,
            )
        )

    # -- housekeeping --------------------------------------------------------------------------------

    async def _work(self, batch: _Batch) -> None:
        """A worker of ``batch``: take a check slot, then the next request, and copy it; again,
        until no request is left or this worker's image handed its check slot over."""
        task = asyncio.current_task()
        assert task is not None
        while True:
            await self._checks.acquire()
            request = batch.next_request()
            if request is None:
                self._checks.release()
                batch.checking -= 1
                return
            index = len(batch.results)
            batch.results.append(None)
            batch.spawn()  # the next request gets checked meanwhile (up to ``checks`` workers)
            slot = _CheckSlot(self._checks, batch)
            batch.results[index] = await self._copy_with_slot(request, slot, task)
            if slot.handed_over:
                return  # a new worker took this one's place when the image started copying

    async def _copy_with_slot(
        self, request: CopyRequest, slot: _CheckSlot, task: asyncio.Task[None]
    ) -> CopyResult:
        """``copy`` holding ``slot`` until the image's unchanged check is over."""
        token = _check_slot.set(slot)
        try:
            if self.stopping:
                return _interrupted(request)
            self._running.add(task)
            try:
                return await self.copy(request)
            except asyncio.CancelledError:
                # Ours (stop()) becomes a result; anyone else's cancellation goes on.
                if not self.stopping or task.uncancel() > 0:
                    raise
                return _interrupted(request)
            finally:
                self._running.discard(task)
        finally:
            slot.release()
            _check_slot.reset(token)

    def _save_conversions(self) -> None:
        try:
            self.conversions.save()
        except OSError as exc:
            # Only saves work in later passes: they re-encode instead.
            log.warning("conversion map not saved", extra={"fields": {"error": str(exc)}})

    def _save_locations(self) -> None:
        try:
            self.locations.save()
        except OSError as exc:
            # Only a hint for later passes: losing it costs uploads, not correctness.
            log.warning("location cache not saved", extra={"fields": {"error": str(exc)}})


INTERRUPTED = "interrupted"


def _interrupted(request: CopyRequest) -> CopyResult:
    """The result of an image that :meth:`CopyEngine.stop` did not let start or finish."""
    return _Image(request, display(request)).result("failed", INTERRUPTED)


def describe(error: BaseException) -> str:
    """``Type: message`` of the error that matters (the first leaf of an exception group)."""
    leaf = first_leaf(error)
    return f"{type(leaf).__name__}: {leaf}"


def _filter(request: CopyRequest) -> tuple[Platform, ...] | None:
    return request.platforms or None
