"""``POST /notify``: a registry's push notifications turned into immediate syncs of what they name.

Three body shapes are read (:func:`parse_notification`):

- distribution's event envelope (``application/vnd.docker.distribution.events.v1+json``):
  ``{"events": [{"action": "push", "target": {"mediaType", "repository", "tag", "digest"},
  "request": {"host"}}]}``; only ``push`` events of manifests count, pulls (mirrord's own reads make
  them) and blob events are ignored;
- Harbor's webhook, the default format (``{"type": "PUSH_ARTIFACT", "event_data": {"resources",
  "repository"}}``) and CloudEvents (``{"type": "harbor.artifact.pushed", "data": {...}}``);
- Docker Hub's webhook (``{"push_data": {"tag"}, "repository": {"repo_name"}}``, always docker.io).

The registry host comes from the body (distribution's ``request.host``, Harbor's ``resource_url``)
unless the endpoint URL says ``?registry=HOST`` (the name the plan uses for that registry), which wins.

:func:`match_event` decides which entries cover a push (source or pattern, ``repositories`` filter,
shard, tag filter); :class:`NotificationDispatcher` runs one sync per (entry, repository) at a time and
coalesces a burst of events for one repository into one sync (events arriving during it into one
follow-up). Nothing here touches the schedule: interval passes run as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from mirrord.daemon.passes import log_pass_finished, log_pass_started
from mirrord.oci import Digest, InvalidDigest, InvalidReference, Reference
from mirrord.oci.reference import validate_tag
from mirrord.plan import Entry
from mirrord.plan.tags import TagFilter
from mirrord.sync import EntryReport, SyncRunner
from mirrord.sync.expand import covers, repository_entry

log = logging.getLogger(__name__)

#: distribution's envelope media type (a JSON body; any JSON content type is accepted as well).
EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
#: How long a sync waits after the first event of its repository, so a burst joins it.
DEFAULT_SETTLE = 0.05
_HARBOR_PUSH = frozenset({"PUSH_ARTIFACT", "harbor.artifact.pushed"})


class InvalidNotification(ValueError):
    """The body is not a notification mirrord can read (not JSON, or no known shape)."""


@dataclass(frozen=True, slots=True)
class PushEvent:
    """One manifest push: ``source`` is the normalised ``host/repository``; a tag, a digest or both."""

    source: str
    tag: str | None
    digest: Digest | None


@dataclass(slots=True)
class Parsed:
    """What a body held: the manifest pushes, and how many events were ignored or unreadable."""

    pushes: list[PushEvent]
    ignored: int = 0
    invalid: int = 0


def parse_notification(body: bytes, registry: str | None = None) -> Parsed:
    """The push events of a notification body; InvalidNotification when it is no notification.

    ``registry`` (from ``?registry=``) names the sending registry's host and overrides the body's.
    An event of a known shape that is not a manifest push counts as ignored; one that lacks what a
    push needs (a repository, a valid tag or digest) as invalid.
    """
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidNotification("the body is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidNotification("the body is not a JSON object")
    if isinstance(data.get("events"), list):
        return _distribution(data["events"], registry)
    if isinstance(data.get("type"), str) and isinstance(data.get("event_data", data.get("data")), dict):
        return _harbor(data, registry)
    if isinstance(data.get("push_data"), dict) and isinstance(data.get("repository"), dict):
        return _docker_hub(data, registry)
    raise InvalidNotification("not a distribution envelope, Harbor or Docker Hub webhook body")


def _distribution(events: list[Any], registry: str | None) -> Parsed:
    parsed = Parsed([])
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("target"), dict):
            parsed.invalid += 1
            continue
        target = event["target"]
        if event.get("action") != "push" or not _is_manifest(target):
            parsed.ignored += 1
            continue
        request = event.get("request")
        host = registry or (_text(request.get("host")) if isinstance(request, dict) else None)
        _add(parsed, host, target.get("repository"), target.get("tag"), target.get("digest"))
    return parsed


def _is_manifest(target: dict[str, Any]) -> bool:
    media_type = _text(target.get("mediaType")) or ""
    if "manifest" in media_type or media_type.endswith("image.index.v1+json"):
        return True
    # A manifest pushed with a type the registry does not know still has a manifests URL.
    return "/manifests/" in (_text(target.get("url")) or "")


def _harbor(data: dict[str, Any], registry: str | None) -> Parsed:
    if data["type"] not in _HARBOR_PUSH:
        return Parsed([], ignored=1)
    body = data.get("event_data", data.get("data"))
    repository = body.get("repository") if isinstance(body, dict) else None
    resources = body.get("resources") if isinstance(body, dict) else None
    if not isinstance(repository, dict) or not isinstance(resources, list) or not resources:
        return Parsed([], invalid=1)
    parsed = Parsed([])
    for resource in resources:
        if not isinstance(resource, dict):
            parsed.invalid += 1
            continue
        url = _text(resource.get("resource_url")) or ""
        host = registry or (url.split("/", 1)[0] if "/" in url else None)
        tag, digest = resource.get("tag"), resource.get("digest")
        if isinstance(tag, str) and tag.startswith("sha256:"):
            tag = None  # Harbor names a push by digest with the digest in "tag"
        _add(parsed, host, repository.get("repo_full_name"), tag, digest)
    return parsed


def _docker_hub(data: dict[str, Any], registry: str | None) -> Parsed:
    parsed = Parsed([])
    _add(
        parsed,
        registry or "docker.io",
        data["repository"].get("repo_name"),
        data["push_data"].get("tag"),
        None,
    )
    return parsed


def _add(parsed: Parsed, host: str | None, repository: Any, tag: Any, digest: Any) -> None:
    event = _event(host, _text(repository), _text(tag), _text(digest))
    if event is None:
        parsed.invalid += 1
    else:
        parsed.pushes.append(event)


def _event(host: str | None, repository: str | None, tag: str | None, digest: str | None) -> PushEvent | None:
    if not host or not repository or (tag is None and digest is None):
        return None
    try:
        source = Reference.parse(f"{host}/{repository}", default_tag=None).name
        return PushEvent(source, validate_tag(tag) if tag else None, Digest.parse(digest) if digest else None)
    except (InvalidReference, InvalidDigest):
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# -- matching -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Work:
    """What one entry must sync for one push: ``entry`` narrowed to one repository (a plain entry),
    and the tag to sync (None: the entry's whole selection of that repository)."""

    entry: Entry
    version: str | None


def match_event(entry: Entry, event: PushEvent, shard: tuple[int, int] | None = None) -> Work | None:
    """The work ``entry`` has for ``event``, or None when the entry does not cover it.

    Covered means: the source (or a search registry's candidate for a short name) is the pushed
    repository, or the pattern matches it, the ``repositories`` filter keeps it and ``shard`` owns
    it; and the tag passes the tag filter (a pinned entry: its tag or digest was pushed). A filter
    with ``latest`` cannot judge one tag alone, so its whole selection of the repository is synced.
    """
    base = _covering(entry, event.source, shard)
    if base is None:
        return None
    if entry.digest is not None:
        return Work(base, None) if event.digest == entry.digest else None
    if event.tag is None:
        return None  # an untagged manifest (an index's child): its tag's event follows
    if entry.tag is not None:
        return Work(base, None) if event.tag == entry.tag else None
    tags = entry.tags
    if tags is None:
        return Work(base, event.tag)
    if not tags.select_unbounded([event.tag]):
        return None
    return Work(base, None if tags.exact is None and tags.latest is not None else event.tag)


def _covering(entry: Entry, source: str, shard: tuple[int, int] | None) -> Entry | None:
    pattern = entry.pattern
    if pattern is not None:
        host, _, path = source.partition("/")
        if host == pattern.registry and covers(entry, pattern, path, shard):
            return repository_entry(entry, path)
        return None
    if entry.source == source:
        return entry
    if entry.source_is_short and entry.search_registries:
        for host in entry.search_registries:
            if Reference.parse(f"{host}/{entry.short_name}", default_tag=None).name == source:
                return entry
    return None


def narrowed(work_entry: Entry, versions: set[str | None]) -> Entry:
    """The entry a coalesced sync runs: only the pushed tags (no pruning), or the whole selection of
    the repository when some event asked for it (None among ``versions``) or the entry is pinned."""
    whole = None in versions or work_entry.tag is not None or work_entry.digest is not None
    tags = work_entry.tags if whole else TagFilter(exact=tuple(sorted(v for v in versions if v)))
    return replace(work_entry, tags=tags, prune=False)


async def run_notified(runner: SyncRunner, entry: Entry) -> EntryReport:
    """Run one narrowed entry through its own engine, logged as a pass with reason ``notification``
    (the same start and end lines as scheduled passes, plus which repository and tags)."""
    tags = list(entry.tags.exact or ()) if entry.tags is not None else []
    log.info(
        "notification sync", extra={"fields": {"entry": entry.name, "source": entry.source, "tags": tags}}
    )
    log_pass_started(entry.name, "notification")
    report = await runner.run_entry(entry, runner.new_engine())
    log_pass_finished(entry.name, "notification", report)
    return report


# -- dispatching ----------------------------------------------------------------------------------

_Key = tuple[str, str]  # (entry name, source repository)


class NotificationDispatcher:
    """Runs the syncs notifications ask for: one per (entry, repository) at a time, bursts coalesced.

    ``entries`` returns the entries this daemon runs now (after reloads too); ``sync`` runs one
    narrowed entry and must not raise for an image (a raise is logged). :meth:`submit` is
    synchronous, so the HTTP handler answers at once; :meth:`run` starts the syncs until
    :meth:`drain`. A sync starts ``settle`` seconds after its repository's first event, and events
    arriving while it runs are gathered into exactly one follow-up.
    """

    def __init__(
        self,
        entries: Callable[[], Iterable[Entry]],
        sync: Callable[[Entry], Awaitable[object]],
        *,
        shard: tuple[int, int] | None = None,
        settle: float = DEFAULT_SETTLE,
    ) -> None:
        self._entries = entries
        self._sync = sync
        self.shard = shard
        self.settle = settle
        self._pending: dict[_Key, tuple[Entry, set[str | None]]] = {}
        self._running: set[_Key] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopped = False

    def submit(self, pushes: Iterable[PushEvent]) -> tuple[int, int]:
        """Queue the syncs ``pushes`` ask for; returns (accepted, ignored) event counts."""
        accepted = ignored = 0
        entries = list(self._entries())
        for event in pushes:
            works = [w for w in (match_event(e, event, self.shard) for e in entries) if w is not None]
            for work in works:
                key = (work.entry.name, work.entry.source)
                _, versions = self._pending.setdefault(key, (work.entry, set()))
                self._pending[key] = (work.entry, versions | {work.version})
            if works:
                accepted += 1
            else:
                ignored += 1
        if accepted and not self._stopped:
            self._wake.set()
        return accepted, ignored

    async def run(self) -> None:
        """Start queued syncs until :meth:`drain`; returns once the syncs in flight have ended."""
        async with asyncio.TaskGroup() as group:
            while not self._stopped:
                self._wake.clear()
                for key in [k for k in self._pending if k not in self._running]:
                    self._running.add(key)
                    task = group.create_task(self._run_key(key), name=f"notify:{key[0]}:{key[1]}")
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                await self._wake.wait()

    async def drain(self, grace: float) -> None:
        """Start no more syncs; give those in flight ``grace`` seconds, then cancel them."""
        self._stopped = True
        self._wake.set()
        tasks = set(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, grace))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _run_key(self, key: _Key) -> None:
        try:
            await asyncio.sleep(self.settle)  # the rest of a burst (several tags pushed) joins this sync
            entry, versions = self._pending.pop(key)
            await self._sync(narrowed(entry, versions))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("notification sync of %s for entry %r raised", key[1], key[0])
        finally:
            self._running.discard(key)
            self._wake.set()
