"""One sync pass: resolve each entry's source and tags, copy through one engine, prune, report.

The runner owns no I/O of its own: repositories come from a
:class:`mirrord.registry.base.RepositoryOpener` (the HTTP hub in production, memory in tests), copies
go through one :class:`mirrord.copy.engine.CopyEngine` per pass (so a blob shared by several entries is
read once), and results come back as :class:`ImageReport` rows for ``--report`` and ``/status``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence

from mirrord.copy.conversions import ConversionMap
from mirrord.copy.engine import INTERRUPTED, CopyEngine, CopyRequest, Target
from mirrord.copy.limits import Limits
from mirrord.copy.locations import LocationCache
from mirrord.core.events import EventBus
from mirrord.oci import Reference, is_digest
from mirrord.oci.convert import unsupported_transform
from mirrord.plan import Entry, Plan, TargetConfig
from mirrord.registry.base import Repository, RepositoryOpener
from mirrord.registry.errors import NotFound, RegistryError
from mirrord.sync.expand import run_pattern
from mirrord.sync.hints import add_missing_tag_hints, warn_if_nothing_selected
from mirrord.sync.prune import prune_allowed
from mirrord.sync.report import EntryReport, ImageReport, image_report
from mirrord.sync.state import conversions_beside
from mirrord.sync.trust import Trust, open_trust

log = logging.getLogger(__name__)


class UnsupportedTarget(Exception):
    """A target option that this version cannot honour yet."""


class Interrupted(Exception):
    """The pass was interrupted before this entry started copying."""


class SyncRunner:
    """Runs sync passes over a plan's entries with shared registries and limits.

    An unchanged image costs one HEAD per side, so its artifacts are not looked for, except with
    the entry's ``recheck_artifacts`` and on the pass after the image was copied or failed (the
    runner remembers those, so in the daemon a signature pushed shortly after its image, or an
    artifact copy that failed, still arrives on the next pass).

    ``trust`` (default: opened from the plan, TrustError when it cannot be) supplies the signature
    policy's gate for every image and the signer of each signing target.
    """

    def __init__(
        self,
        plan: Plan,
        registries: RepositoryOpener,
        *,
        events: EventBus | None = None,
        limits: Limits | None = None,
        locations: LocationCache | None = None,
        conversions: ConversionMap | None = None,
        trust: Trust | None = None,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.plan = plan
        self.trust = trust if trust is not None else open_trust(plan)
        self.registries = registries
        #: ``--shard K/N``: which repositories of a pattern entry this runner mirrors.
        self.shard = shard
        # (entry name, source, version) whose artifacts the next pass looks for even when unchanged.
        self._recheck: set[tuple[str, str, str]] = set()
        self.events = events or EventBus()
        self.limits = limits or Limits()
        self.locations = locations
        self.conversions = conversions if conversions is not None else conversions_beside(locations)
        self.interrupted = False
        self._engines: set[CopyEngine] = set()

    def interrupt(self) -> None:
        """Stop the pass under way (SIGINT/SIGTERM): nothing new starts, no prune runs, copies in
        flight are cancelled with their uploads; :meth:`run_pass` still returns every entry's
        report, the cut-short images failed as ``interrupted``."""
        self.interrupted = True
        for engine in list(self._engines):
            engine.stop()

    def carry_over(self, previous: SyncRunner) -> None:
        """Keep what ``previous`` (the runner of the plan before a reload) meant to look at again."""
        self._recheck |= previous._recheck

    def new_engine(self) -> CopyEngine:
        """A fresh engine: one per pass, so dedup spans every entry of the pass."""
        return CopyEngine(
            limits=self.limits, events=self.events, locations=self.locations, conversions=self.conversions
        )

    async def run_pass(
        self, entries: Sequence[Entry] | None = None, *, dry_run: bool = False
    ) -> list[EntryReport]:
        """Sync ``entries`` (default: all) concurrently through one engine; never raises for an image
        or an entry: an entry's failure, expected or not, is its report's ``error``."""
        chosen = list(entries) if entries is not None else list(self.plan.entries)
        engine = self.new_engine()
        self._engines.add(engine)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self.run_entry(e, engine, dry_run=dry_run)) for e in chosen]
        finally:
            self._engines.discard(engine)
        return [t.result() for t in tasks]

    async def run_entry(self, entry: Entry, engine: CopyEngine, *, dry_run: bool = False) -> EntryReport:
        """One entry: resolve the source, select tags, copy every tag to every target, then prune.
        A pattern entry is listed from the catalog and run per repository (:mod:`mirrord.sync.expand`).

        Never raises but for cancellation: an unexpected exception is logged with its traceback and
        becomes ``report.error`` (images done before it keep their rows)."""
        if entry.pattern is not None:
            run_one = lambda e: self.run_entry(e, engine, dry_run=dry_run)  # noqa: E731
            return await run_pattern(entry, self.registries.catalog, run_one, self.shard)
        report = EntryReport(entry=entry.name, started=time.time())
        try:
            source, source_text = await self._resolve_source(entry)
            versions, all_tags = await self._select_versions(entry, source)
            targets = [(t, self._open_target(t)) for t in entry.targets]
            if engine.stopping:
                raise Interrupted(INTERRUPTED)
            if dry_run:
                report.images = await self._dry_run(entry, engine, source, source_text, versions, targets)
            else:
                report.images = await self._copy(entry, engine, source, source_text, versions, targets)
            if prune_allowed(all_tags, entry) and not engine.stopping:
                report.images += await self._prune(entry, targets, all_tags, dry_run=dry_run)
        except RegistryError as exc:
            report.error = str(exc)
            log.error("entry failed", extra={"fields": {"entry": entry.name, "error": str(exc)}})
        except (UnsupportedTarget, Interrupted) as exc:
            report.error = str(exc)
        except Exception as exc:  # a bug must not cancel the pass's other entries (they share a group)
            report.error = f"unexpected error: {type(exc).__name__}: {exc}"
            log.exception("entry failed unexpectedly", extra={"fields": {"entry": entry.name}})
        report.finished = time.time()
        return report

    # -- resolution ---------------------------------------------------------------------------------

    async def _resolve_source(self, entry: Entry) -> tuple[Repository, str]:
        if entry.source.startswith("oci:"):
            repo, _ = self.registries.open(entry.source)
            return repo, entry.source
        if entry.source_is_short and entry.search_registries:
            return await self._resolve_short_name(entry)
        ref = Reference.parse(entry.source, default_tag=None)
        return self.registries.repository(ref), ref.name

    async def _resolve_short_name(self, entry: Entry) -> tuple[Repository, str]:
        """Seed 004's ResolveNames: try each search registry in order; warn when several have it."""
        short = entry.short_name
        found: list[tuple[Repository, str]] = []
        for host in entry.search_registries:
            ref = Reference.parse(f"{host}/{short}", default_tag=None)
            repo = self.registries.repository(ref)
            probe = entry.tag or (str(entry.digest) if entry.digest else None)
            try:
                present = (
                    await repo.manifest_head(probe) is not None if probe else bool(await repo.tags_list())
                )
            except RegistryError:
                present = False
            if present:
                found.append((repo, ref.name))
        if not found:
            raise NotFound(f"short name {short!r} was not found in {', '.join(entry.search_registries)}")
        if len(found) > 1:
            log.warning(
                "ambiguous short name",
                extra={
                    "fields": {
                        "entry": entry.name,
                        "name": short,
                        "using": found[0][1],
                        "also": [name for _, name in found[1:]],
                    }
                },
            )
        return found[0]

    async def _select_versions(self, entry: Entry, source: Repository) -> tuple[list[str], list[str] | None]:
        """The source versions (tags or a digest) to copy, and the full tag list when it was read."""
        if entry.digest is not None:
            return [str(entry.digest)], None
        if entry.tag is not None:
            return [entry.tag], None
        if entry.tags is not None and entry.tags.exact is not None and not entry.prune:
            return list(entry.tags.exact), None
        # Read strictly: a missing repository (a typo, or a registry answering 404 for an expired
        # token) is an entry error, never an empty list that prune would read as "delete everything".
        all_tags = await source.tags_list(must_exist=True)
        selected = entry.tags.select(all_tags) if entry.tags is not None else sorted(all_tags)
        warn_if_nothing_selected(entry, all_tags, selected)
        return selected, all_tags

    def _open_target(self, target: TargetConfig) -> Repository:
        refused = unsupported_transform(target.format, target.compression)
        if refused is not None:  # a plan built in code: a loaded plan refused it when checked
            raise UnsupportedTarget(f"target {target.ref}: {refused}")
        repo, _ = self.registries.open(target.ref)
        return repo

    # -- copying ------------------------------------------------------------------------------------

    def _requests(
        self,
        entry: Entry,
        source: Repository,
        versions: Iterable[str],
        targets: Sequence[tuple[TargetConfig, Repository]],
        *,
        force: bool = False,
    ) -> list[CopyRequest]:
        # Per target, what every version's Target shares (the signer looked up once, not per tag).
        shared = [(repo, cfg, self.trust.signer(cfg)) for cfg, repo in targets]
        recheck = self._recheck
        recheck_all = entry.recheck_artifacts
        gate = self.trust.gate
        requests = []
        for version in versions:
            by_digest = is_digest(version)
            copy_targets = tuple(
                [
                    Target(
                        repo,
                        cfg.tag or (None if by_digest else version),
                        cfg.format,
                        cfg.compression,
                        cfg.artifacts,
                        cfg.artifact_types,
                        signer,
                    )
                    for repo, cfg, signer in shared
                ]
            )
            requests.append(
                CopyRequest(
                    source=source,
                    reference=version,
                    targets=copy_targets,
                    platforms=entry.platforms,
                    entry=entry.name,
                    force=force,
                    require_signatures=entry.require_signatures,
                    recheck_artifacts=recheck_all
                    or (bool(recheck) and (entry.name, entry.source, version) in recheck),
                    gate=gate,
                )
            )
        return requests

    async def _copy(
        self,
        entry: Entry,
        engine: CopyEngine,
        source: Repository,
        source_text: str,
        versions: list[str],
        targets: Sequence[tuple[TargetConfig, Repository]],
    ) -> list[ImageReport]:
        results = await engine.copy_many(self._requests(entry, source, versions, targets))
        unchanged = sum(1 for r in results if r.outcome == "unchanged")
        if unchanged:  # one line for them all: see observe.logs.event_logger
            fields = {"entry": entry.name, "source": source_text, "count": unchanged}
            log.info("images unchanged", extra={"fields": fields})
        self._recheck = {k for k in self._recheck if k[:2] != (entry.name, entry.source)} | {
            (entry.name, entry.source, v)
            for v, r in zip(versions, results, strict=True)
            if r.outcome != "unchanged"
        }
        reports = [
            image_report(entry.name, source_text, v, r) for v, r in zip(versions, results, strict=True)
        ]
        formats = {str(repo): f"{cfg.format}+{cfg.compression}" for cfg, repo in targets}
        for row in reports:
            row.formats = formats
        await add_missing_tag_hints(source, versions, reports)
        return reports

    async def _dry_run(
        self,
        entry: Entry,
        engine: CopyEngine,
        source: Repository,
        source_text: str,
        versions: list[str],
        targets: Sequence[tuple[TargetConfig, Repository]],
    ) -> list[ImageReport]:
        """The checks of a real pass, per tag and target (:mod:`mirrord.sync.dryrun`). Writes nothing."""
        from mirrord.sync.dryrun import dry_run  # only a --dry-run pass loads it

        return await dry_run(
            entry.name, source_text, self._requests(entry, source, versions, targets), versions
        )

    async def _prune(
        self,
        entry: Entry,
        targets: Sequence[tuple[TargetConfig, Repository]],
        source_tags: list[str],
        *,
        dry_run: bool,
    ) -> list[ImageReport]:
        """Delete target tags inside the entry's filter that the source no longer has (capped)."""
        reports: list[ImageReport] = []
        present = set(source_tags)
        for cfg, repo in targets:
            target_tags = await repo.tags_list()
            inside = entry.tags.select_unbounded(target_tags) if entry.tags else target_tags
            doomed = sorted(t for t in inside if t not in present)[: entry.prune_max - len(reports)]
            if not doomed:
                continue
            digests = await _tag_digests(repo, target_tags)
            for tag in doomed:
                if self.interrupted:
                    break
                reports.append(await self._prune_tag(entry, cfg, repo, tag, digests, dry_run))
        return reports

    async def _prune_tag(
        self,
        entry: Entry,
        cfg: TargetConfig,
        repo: Repository,
        tag: str,
        digests: dict[str, str],
        dry_run: bool,
    ) -> ImageReport:
        report = ImageReport(entry=entry.name, source=f"{cfg.ref}:{tag}", result="would-prune")
        digest = digests.get(tag)
        if digest is None:
            report.result = "pruned"
            return report
        report.source_digest = digest
        # Registries delete manifests by digest, which removes every tag on it: keep shared digests.
        for other, other_digest in digests.items():
            if other != tag and other_digest == digest:
                report.result, report.error = "failed", f"not pruned: digest shared with tag {other!r}"
                return report
        if not dry_run:
            await repo.manifest_delete(digest)
            report.result = "pruned"
        log.info(
            "tag pruned" if not dry_run else "tag would be pruned",
            extra={"fields": {"entry": entry.name, "image": report.source, "digest": digest}},
        )
        return report


async def _tag_digests(repo: Repository, tags: Iterable[str]) -> dict[str, str]:
    """The digest each tag points at (one HEAD per tag; tags gone meanwhile are left out)."""
    digests = {}
    for tag in tags:
        desc = await repo.manifest_head(tag)
        if desc is not None:
            digests[tag] = str(desc.digest)
    return digests
