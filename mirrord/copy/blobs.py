"""Blob transfer coordination for one pass: existence checks, mounts, deduplication and the tee.

For each (blob, target) the cheapest way wins: the target already has it (``exists``); another
transfer of this pass brought it to the same registry (``deduplicated`` when it is the same
repository, else ``mounted`` from there); a repository known to hold it in that registry lends it
(``mounted``); else it is uploaded (``copied``). Uploads of one blob to several targets share ONE
read: the producer verifies digest and size while streaming and tees the chunks into every
target's ``blob_put`` through small bounded queues, so memory stays bounded and the slowest target
sets the pace. The last chunk is held back until the digest checked out, so a bad blob never
completes an upload: every chunk iterator raises instead. The read is of the source, unless a
repository received a verified copy earlier in the pass (a target in another registry): then that
copy is read, and a source read under way is waited for, so each blob leaves the source once per
pass however many target registries need it. A small blob (up to :data:`SMALL_BLOB`) is read whole
instead, verified, and handed to every target as one bytes object (:class:`WholeBlob`): the same
guarantees without the tee's per-blob tasks and queues.

A target repository that had no tag when the pass first needed a blob there (one ``has_tags``
per repository and pass, asked only when a blob must be delivered, so a no-op pass never asks) is
new: a blob HEAD there could only miss, so it is skipped and the blob mounted or uploaded straight
away. (Blobs left there by an interrupted run are then uploaded again: bytes, not correctness.)

One delivery per (target repository, digest) per pass: later images needing the blob in the same
repository share it (``deduplicated``) instead of mounting it again. One transfer per (target
registry_key, digest) at a time: the first caller claims it, later callers
await its result. A successful claim is remembered for the pass; a failed one is forgotten so a
later caller retries. Callers hold a stream slot (:meth:`BlobTransfers.spawn`, taken before the
task is created) for the whole of :meth:`BlobTransfers.ensure`; a claim's owner never waits for
another claim before settling its own, so waiting cannot deadlock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

from mirrord.copy.errors import BlobCopyFailed
from mirrord.copy.limits import Limits
from mirrord.copy.locations import LocationCache
from mirrord.copy.reach import Reachability
from mirrord.core.events import (
    BlobDone,
    BlobOutcome,
    EventBus,
    RetryScheduled,
    TransferFinished,
    TransferStarted,
)
from mirrord.core.together import gather_in_order
from mirrord.oci import Descriptor, Digest
from mirrord.registry.base import Repository, UploadSession, verifies_digest
from mirrord.registry.errors import DigestMismatch, RegistryError
from mirrord.registry.whole import WholeBlob

log = logging.getLogger(__name__)

#: Repositories remembered per blob as pass-local copies to read from (the newest are kept).
_MAX_HOLDERS = 4
#: Blobs up to this size (per their descriptor) are read whole and handed to every target as one
#: bytes object (:class:`~mirrord.registry.whole.WholeBlob`) instead of being teed chunk by chunk:
#: for configs and small layers the tee's tasks, queues and streamed request bodies cost more than
#: the bytes. Memory stays bounded: at most this (plus one read chunk) per blob stream.
SMALL_BLOB = 1024 * 1024
_END = object()
_WAKE = object()


@dataclass(slots=True)
class BlobReport:
    """What :meth:`BlobTransfers.ensure` did: per target index an outcome or the error, and the
    bytes read from the source (every attempt counted)."""

    outcomes: dict[int, BlobOutcome] = field(default_factory=dict)
    failures: dict[int, BaseException] = field(default_factory=dict)
    pulled: int = 0


@dataclass(slots=True)
class _Sink:
    index: int
    repository: Repository
    upload: UploadSession | None = None


class BlobTransfers:
    """The blob side of one engine (one pass): stream slots, claims and the location cache."""

    def __init__(
        self, *, limits: Limits, events: EventBus, locations: LocationCache, reach: Reachability | None = None
    ) -> None:
        self.limits = limits
        self.reach = reach if reach is not None else Reachability()
        self.events = events
        self.locations = locations
        self._slots = asyncio.Semaphore(limits.blob_streams)
        self._claims: dict[tuple[str, Digest], asyncio.Future[str | None]] = {}
        # Source reads under way, and repositories that received a verified copy in this pass.
        self._reads: dict[Digest, asyncio.Future[None]] = {}
        self._holders: dict[Digest, list[Repository]] = {}
        # Deliveries per (registry_key, repository, digest): later images of the pass share them.
        self._deliveries: dict[tuple[str, str, Digest], asyncio.Future[bool]] = {}
        # Per (registry_key, repository): did it have no tag when first asked in this pass?
        self._new_repositories: dict[tuple[str, str], asyncio.Future[bool]] = {}

    async def spawn(self, group: asyncio.TaskGroup, work: Coroutine[object, object, object]) -> None:
        """Wait for a stream slot, then run ``work`` as a task of ``group`` holding it.

        The slot comes back when that task is done, however it ends: also when the group cancels it
        before it first ran (an abort by a sibling's error), which a ``finally`` inside ``work``
        would miss, leaking the slot until the pass waits for ever. ``work`` is closed, never run,
        when the slot's wait is cancelled or the task cannot be created."""
        try:
            await self._slots.acquire()
        except BaseException:  # cancelled while waiting: ``work`` never runs
            work.close()
            raise
        try:
            task = group.create_task(work)
        except BaseException:
            self._slots.release()
            work.close()
            raise
        task.add_done_callback(self._give_back)

    def _give_back(self, _task: asyncio.Task[object]) -> None:
        self._slots.release()

    async def ensure(
        self, source: Repository, blob: Descriptor, targets: Sequence[Repository], *, entry: str = ""
    ) -> BlobReport:
        """Bring ``blob`` from ``source`` to every target; never raises for a failed transfer (the
        error is in the report), only CancelledError."""
        report = BlobReport()
        mine, others = self._claim_repositories(blob.digest, targets)
        try:
            await self._ensure_owned(source, blob, targets, mine, report, entry)
        finally:
            for i in mine:
                self._settle_repository(targets[i], blob.digest, i in report.outcomes)
        for i, delivery in others:
            if await asyncio.shield(delivery):
                self._done(_Sink(i, targets[i]), blob, "deduplicated", report, entry)
            else:  # the other image's delivery failed: try ourselves
                await self._ensure_owned(source, blob, targets, [i], report, entry)
        return report

    def _claim_repositories(
        self, digest: Digest, targets: Sequence[Repository]
    ) -> tuple[list[int], list[tuple[int, asyncio.Future[bool]]]]:
        """Split targets into those this caller delivers to and those another image of the pass is
        already delivering to (same repository): one HEAD/mount/upload per repository and blob.

        Mounting the same blob into a repository again while a manifest that needs it is being
        pushed there races in distribution's filesystem storage (MANIFEST_BLOB_UNKNOWN), besides
        costing requests."""
        mine: list[int] = []
        others: list[tuple[int, asyncio.Future[bool]]] = []
        for i, target in enumerate(targets):
            key = (target.registry_key, target.name, digest)
            delivery = self._deliveries.get(key)
            if delivery is None:
                self._deliveries[key] = asyncio.get_running_loop().create_future()
                mine.append(i)
            else:
                others.append((i, delivery))
        return mine, others

    def _settle_repository(self, target: Repository, digest: Digest, ok: bool) -> None:
        key = (target.registry_key, target.name, digest)
        delivery = self._deliveries.get(key)
        if delivery is None or delivery.done():
            return
        if not ok:
            del self._deliveries[key]  # forgotten, so a later caller retries
        delivery.set_result(ok)

    async def _ensure_owned(
        self,
        source: Repository,
        blob: Descriptor,
        targets: Sequence[Repository],
        remaining: list[int],
        report: BlobReport,
        entry: str,
    ) -> None:
        while remaining:
            owned, waiting = self._claim(blob.digest, targets, remaining)
            try:
                await self._deliver(source, blob, [_Sink(i, targets[i]) for i in owned], report, entry)
            finally:
                for i in owned:
                    self._settle(targets[i], blob.digest, i in report.outcomes)
            remaining = []
            for i, claim in waiting:
                holder = await asyncio.shield(claim)
                if holder is None:
                    remaining.append(i)  # the owner failed: try ourselves
                else:
                    await self._follow(source, blob, _Sink(i, targets[i]), holder, report, entry)

    # -- claims ------------------------------------------------------------------------------------

    def _claim(
        self, digest: Digest, targets: Sequence[Repository], indexes: Sequence[int]
    ) -> tuple[list[int], list[tuple[int, asyncio.Future[str | None]]]]:
        owned: list[int] = []
        waiting: list[tuple[int, asyncio.Future[str | None]]] = []
        for i in indexes:
            key = (targets[i].registry_key, digest)
            claim = self._claims.get(key)
            if claim is None:
                self._claims[key] = asyncio.get_running_loop().create_future()
                owned.append(i)
            else:
                waiting.append((i, claim))
        return owned, waiting

    def _settle(self, target: Repository, digest: Digest, ok: bool) -> None:
        key = (target.registry_key, digest)
        claim = self._claims.get(key)
        if claim is None or claim.done():
            return
        if not ok:
            del self._claims[key]
        claim.set_result(target.name if ok else None)

    # -- the ways a blob gets to a target -------------------------------------------------------------

    async def _deliver(
        self, source: Repository, blob: Descriptor, sinks: list[_Sink], report: BlobReport, entry: str
    ) -> None:
        sinks = self._live(sinks, report)
        if not sinks:
            return
        present = await gather_in_order([self._exists(s.repository, blob.digest) for s in sinks])
        for sink, exists in zip(sinks, present, strict=True):
            if exists:
                self._done(sink, blob, "exists", report, entry)
        sinks = self._live([s for s, exists in zip(sinks, present, strict=True) if not exists], report)
        mounted = await gather_in_order([self._mount(source, s, blob.digest) for s in sinks])
        for sink, ok in zip(sinks, mounted, strict=True):
            if ok:
                self._done(sink, blob, "mounted", report, entry)
        await self._upload(
            source, blob, [s for s, ok in zip(sinks, mounted, strict=True) if not ok], report, entry
        )

    def _live(self, sinks: list[_Sink], report: BlobReport) -> list[_Sink]:
        """The sinks whose registry this pass has not found unreachable; the others fail at once."""
        live = []
        for sink in sinks:
            down = self.reach.error_for(sink.repository)
            if down is None:
                live.append(sink)
            else:
                report.failures[sink.index] = down
        return live

    async def _follow(
        self, source: Repository, blob: Descriptor, sink: _Sink, holder: str, report: BlobReport, entry: str
    ) -> None:
        """Another transfer of this pass brought the blob to ``holder`` in the sink's registry."""
        if holder == sink.repository.name:
            self._done(sink, blob, "deduplicated", report, entry)
        elif await self._mount_from(sink, blob.digest, holder):
            self._done(sink, blob, "mounted", report, entry)
        else:
            await self._upload(source, blob, [sink], report, entry)

    async def _exists(self, target: Repository, digest: Digest) -> bool:
        if await self._is_new(target):
            return False
        try:
            return await target.blob_head(digest) is not None
        except RegistryError as exc:
            # A failed HEAD only costs us the shortcut: the upload decides (unless it was unreachable).
            self.reach.note(exc)
            log.debug("blob HEAD failed", extra={"fields": {"target": str(target), "error": str(exc)}})
            return False

    def known_new(self, target: Repository) -> bool:
        """True when this pass already learnt that ``target`` had no tag when first asked: no tag
        there can be up to date, so a manifest HEAD there could only miss (never asks itself)."""
        answer = self._new_repositories.get((target.registry_key, target.name))
        return answer is not None and answer.done() and answer.result()

    async def _is_new(self, target: Repository) -> bool:
        """True when ``target`` had no tag when this pass first asked (asked once; a failed
        question counts as not new, so the HEADs decide)."""
        key = (target.registry_key, target.name)
        answer = self._new_repositories.get(key)
        if answer is not None:
            return await asyncio.shield(answer)
        answer = self._new_repositories[key] = asyncio.get_running_loop().create_future()
        new = False
        try:
            new = not await target.has_tags()
        except RegistryError as exc:
            self.reach.note(exc)
            log.debug("tag probe failed", extra={"fields": {"target": str(target), "error": str(exc)}})
        finally:
            answer.set_result(new)  # also when cancelled: waiters then fall back to HEADs
        return new

    async def _mount(self, source: Repository, sink: _Sink, digest: Digest) -> bool:
        """Mount from the source (same registry) or the most recent known location; on a 202 the
        sink keeps the upload session for the upload."""
        target = sink.repository
        candidates = [n for n in self.locations.recent(target.registry_key, digest) if n != target.name]
        if source.registry_key == target.registry_key and source.name != target.name:
            candidates.insert(0, source.name)
        if not candidates:
            return False
        if await self._mount_from(sink, digest, candidates[0]):
            return True
        self.locations.forget(target.registry_key, digest, candidates[0])
        return False

    async def _mount_from(self, sink: _Sink, digest: Digest, holder: str) -> bool:
        try:
            result = await sink.repository.blob_mount(digest, holder)
        except RegistryError as exc:
            # Some registries refuse mounts (Harbor answers 401): an upload still works.
            self.reach.note(exc)
            log.debug(
                "blob mount failed", extra={"fields": {"target": str(sink.repository), "error": str(exc)}}
            )
            return False
        sink.upload = None if result.mounted else result.upload
        return result.mounted

    def _done(
        self, sink: _Sink, blob: Descriptor, outcome: BlobOutcome, report: BlobReport, entry: str
    ) -> None:
        target = sink.repository
        report.outcomes[sink.index] = outcome
        report.failures.pop(sink.index, None)
        self.locations.add(target.registry_key, blob.digest, target.name)
        holders = self._holders.setdefault(blob.digest, [])
        if target not in holders:
            holders[:] = [*holders, target][-_MAX_HOLDERS:]
        self.events.emit(
            BlobDone(entry, target.registry_key, target.name, str(blob.digest), blob.size, outcome)
        )

    # -- uploads -------------------------------------------------------------------------------------

    async def _upload(
        self, source: Repository, blob: Descriptor, sinks: list[_Sink], report: BlobReport, entry: str
    ) -> None:
        """Tee one read into every sink; retry retryable failures up to blob_attempts.

        The read comes from a repository that received the blob earlier in this pass when there is
        one (so the source is read once per pass even for targets in different registries), else
        from the source. A failed read from such a copy is retried from the source at no cost.
        """
        tries, first = self.limits.blob_retry.tries(), True
        sinks = self._live(sinks, report)
        while sinks:
            reader, claim = await self._reader(source, blob.digest, first=first)
            try:
                errors = await self._tee(reader, blob, sinks, report, count=reader is source)
            finally:
                self._end_read(blob.digest, claim)
            retry: list[_Sink] = []
            for sink in sinks:
                error = errors.get(sink.index)
                self.reach.note(error)
                if error is None:
                    self._done(sink, blob, "copied", report, entry)
                elif reader is not source or (_retryable(error) and not tries.spent):
                    sink.upload = None  # a session is spent once data went into it
                    retry.append(sink)
                else:
                    report.failures[sink.index] = error
            if retry and reader is source:
                hint = _retry_after(errors[s.index] for s in retry)
                await tries.pause(functools.partial(self._retrying, retry), hint)
            sinks, first = self._live(retry, report), False

    def _retrying(self, sinks: list[_Sink], delay: float) -> None:
        for sink in sinks:
            self.events.emit(RetryScheduled(sink.repository.registry_key, "blob", delay))

    async def _reader(
        self, source: Repository, digest: Digest, *, first: bool
    ) -> tuple[Repository, asyncio.Future[None] | None]:
        """Where to read ``digest`` from, and the read claim to end when the read is over (None
        when not reading the source or another read of it is already under way)."""
        if first:
            while (pending := self._reads.get(digest)) is not None:
                await asyncio.shield(pending)  # a source read is under way: wait, then copy from it
            holders = self._holders.get(digest)
            if holders:
                return holders[-1], None
        if digest in self._reads:
            return source, None
        claim: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reads[digest] = claim
        return source, claim

    def _end_read(self, digest: Digest, claim: asyncio.Future[None] | None) -> None:
        if claim is None:
            return
        if self._reads.get(digest) is claim:
            del self._reads[digest]
        if not claim.done():
            claim.set_result(None)

    async def _tee(
        self, reader: Repository, blob: Descriptor, sinks: list[_Sink], report: BlobReport, *, count: bool
    ) -> dict[int, BaseException]:
        """One read of ``reader`` feeding every sink; returns the sinks that failed and why.
        ``count``: add the bytes read to ``report.pulled`` (reads of the source)."""
        if blob.size <= SMALL_BLOB:
            return await self._copy_whole(reader, blob, sinks, report, count)
        demand = _Demand(len(sinks))
        channels = {s.index: _Channel(self.limits.tee_queue, demand) for s in sinks}
        self.events.emit(TransferStarted(str(blob.digest), blob.size))
        ok = False
        try:
            async with asyncio.TaskGroup() as group:
                tasks = {s.index: group.create_task(_consume(s, blob, channels[s.index])) for s in sinks}
                read_error = await self._produce(reader, blob, list(channels.values()), demand, report, count)
            errors = {i: read_error or t.result() for i, t in tasks.items()}
            failed = {i: e for i, e in errors.items() if e is not None}
            ok = not failed
            return failed
        finally:
            self.events.emit(TransferFinished(str(blob.digest), ok))

    async def _copy_whole(
        self, reader: Repository, blob: Descriptor, sinks: list[_Sink], report: BlobReport, count: bool
    ) -> dict[int, BaseException]:
        """:meth:`_tee` for a small blob: read whole (once, when the first target's upload asks for
        it), verified, then given to every sink as one bytes object. Same outcomes as the tee: a read
        that fails fails every sink with the read's error, and nothing reaches a target unverified."""
        read = _WholeRead(reader, blob, report, count)
        self.events.emit(TransferStarted(str(blob.digest), blob.size))
        ok = False
        try:
            errors = await gather_in_order([_put_whole(s, blob, read) for s in sinks])
            failed = {s.index: read.error or e for s, e in zip(sinks, errors, strict=True) if e is not None}
            ok = not failed
            return failed
        finally:
            self.events.emit(TransferFinished(str(blob.digest), ok))

    async def _produce(
        self,
        source: Repository,
        blob: Descriptor,
        channels: list[_Channel],
        demand: _Demand,
        report: BlobReport,
        count: bool,
    ) -> BaseException | None:
        """Read ``source`` once, verifying as it streams; the error that failed it, or None. The read
        starts only once a target asked for the first chunk (its upload session is open): a target
        that cannot take the blob costs the source nothing."""
        verifier = _Verifier(source, blob)
        if not await demand.wanted():
            return None  # every target stopped before asking: their errors tell why
        try:
            held: bytes | None = None
            async with source.blob_open(blob.digest) as stream:
                if verifies_digest(stream):
                    verifier.hasher = None  # the stream hashes and raises at its end: once is enough
                async for chunk in stream:
                    verifier.update(chunk)
                    report.pulled += len(chunk) if count else 0
                    if held is not None and not await _broadcast(channels, held):
                        return None  # every target has stopped listening: their errors tell why
                    held = chunk
            verifier.check()
            if held is not None:
                await _broadcast(channels, held)
            for channel in channels:
                await channel.finish()
            return None
        except Exception as exc:
            for channel in channels:
                channel.fail(exc)
            return exc
        except BaseException as exc:
            for channel in channels:
                channel.fail(exc)
            raise


class _Verifier:
    """Digest and size check of a blob while it streams (size even for unverifiable algorithms)."""

    def __init__(self, source: Repository, blob: Descriptor) -> None:
        self.source = source
        self.blob = blob
        self.hasher = blob.digest.hasher() if blob.digest.verifiable else None
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.hasher is not None:
            self.hasher.update(chunk)
        if self.size > self.blob.size:
            raise self._mismatch(f"more than the {self.blob.size} bytes its descriptor says")

    def check(self) -> None:
        if self.size != self.blob.size:
            raise self._mismatch(f"{self.size} bytes, its descriptor says {self.blob.size}")
        if self.hasher is not None and not self.hasher.matches(self.blob.digest):
            raise self._mismatch(f"content hashes to {self.hasher.digest()}")

    def _mismatch(self, detail: str) -> DigestMismatch:
        return DigestMismatch(
            f"blob {self.blob.digest} from {self.source}: {detail}",
            registry=self.source.registry_key,
            repository=self.source.name,
            reference=str(self.blob.digest),
        )


class _WholeRead:
    """One read of a small blob shared by the sinks of a :meth:`BlobTransfers._copy_whole`: the first
    sink that asks reads it (verifying digest and size before anyone gets a byte), the others wait
    for that read. ``error`` is what failed the read; every asker then gets a BlobCopyFailed of its
    own (one exception object must not be raised in several tasks)."""

    def __init__(self, source: Repository, blob: Descriptor, report: BlobReport, count: bool) -> None:
        self.source = source
        self.blob = blob
        self.report = report
        self.count = count
        self.error: BaseException | None = None
        self._data = b""
        self._done: asyncio.Future[None] | None = None

    async def get(self) -> bytes:
        """The verified bytes; BlobCopyFailed when the read failed."""
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
            try:
                self._data = await self._read()
            except Exception as exc:
                self.error = exc
            except BaseException as exc:
                self.error = exc
                raise
            finally:
                self._done.set_result(None)
        else:
            await asyncio.shield(self._done)
        if self.error is not None:
            raise BlobCopyFailed(f"source stream failed: {self.error}", cause=self.error)
        return self._data

    async def _read(self) -> bytes:
        verifier = _Verifier(self.source, self.blob)
        parts: list[bytes] = []
        async with self.source.blob_open(self.blob.digest) as stream:
            if verifies_digest(stream):
                verifier.hasher = None  # the stream hashes and raises at its end: once is enough
            async for chunk in stream:
                verifier.update(chunk)
                if self.count:
                    self.report.pulled += len(chunk)
                parts.append(chunk)
        verifier.check()
        return parts[0] if len(parts) == 1 and type(parts[0]) is bytes else b"".join(parts)


async def _put_whole(sink: _Sink, blob: Descriptor, read: _WholeRead) -> BaseException | None:
    try:
        await sink.repository.blob_put(blob.digest, blob.size, WholeBlob(read.get), upload=sink.upload)
        return None
    except Exception as exc:
        return exc


class _Demand:
    """Whether any consumer of one read asked for a chunk yet (then its upload is under way), shared
    by the read's channels: the producer waits for it before opening the read."""

    def __init__(self, consumers: int) -> None:
        self._event = asyncio.Event()
        self._asked = False
        self._open = consumers

    def ask(self) -> None:
        """A consumer wants its first chunk."""
        self._asked = True
        self._event.set()

    def stop(self) -> None:
        """A consumer stopped (done or failed) without needing more."""
        self._open -= 1
        if self._open <= 0:
            self._event.set()

    async def wanted(self) -> bool:
        """Wait until a consumer asks (True) or every consumer stopped without asking (False)."""
        await self._event.wait()
        return self._asked


class _Channel:
    """A bounded queue of chunks from the producer to one target's ``blob_put``."""

    def __init__(self, maxsize: int, demand: _Demand | None = None) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize)
        self._error: BaseException | None = None
        self._demand = demand if demand is not None else _Demand(1)
        self.closed = False

    async def put(self, chunk: bytes) -> bool:
        """Queue ``chunk``; False once the consumer has stopped (the chunk is dropped)."""
        if self.closed:
            return False
        await self._queue.put(chunk)
        return not self.closed

    async def finish(self) -> None:
        """Everything was sent and verified: let the consumer's iterator end normally."""
        if not self.closed:
            await self._queue.put(_END)

    def fail(self, error: BaseException) -> None:
        """Make the consumer's iterator raise, so its upload is abandoned."""
        self._error = error
        # A full queue means the consumer is not waiting: it sees the error at its next step.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_WAKE)

    def close(self) -> None:
        """The consumer stopped: unblock the producer and drop what is queued."""
        if not self.closed:
            self._demand.stop()
        self.closed = True
        while not self._queue.empty():
            self._queue.get_nowait()

    def chunks(self) -> _VerifiedChunks:
        """The chunks for ``blob_put``; raises BlobCopyFailed when the source failed."""
        return _VerifiedChunks(self)

    async def next_chunk(self) -> bytes:
        """The next chunk; StopAsyncIteration once the producer finished (after verifying)."""
        self._demand.ask()
        while True:
            self._raise_if_failed()
            item = await self._queue.get()
            self._raise_if_failed()
            if item is _END:
                raise StopAsyncIteration
            if item is not _WAKE:
                return cast(bytes, item)  # whatever the stream gave (bytes-like), passed on as is

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            # A fresh error per consumer: one exception object must not be raised in several tasks.
            raise BlobCopyFailed(f"source stream failed: {self._error}", cause=self._error)


class _VerifiedChunks:
    """A channel's chunks as ``blob_put`` reads them. The producer ends a channel only after the
    digest and size checked out and fails it otherwise (the last chunk is held back until then), so
    these chunks keep the ``verifies_digest`` promise and targets need not hash them again."""

    verifies_digest = True

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel

    def __aiter__(self) -> _VerifiedChunks:
        return self

    async def __anext__(self) -> bytes:
        return await self._channel.next_chunk()


async def _broadcast(channels: list[_Channel], chunk: bytes) -> bool:
    """Send ``chunk`` to every open channel in turn (the slowest sets the pace); False if none is
    open any more."""
    delivered = False
    for channel in channels:
        delivered = await channel.put(chunk) or delivered
    return delivered


async def _consume(sink: _Sink, blob: Descriptor, channel: _Channel) -> BaseException | None:
    try:
        await sink.repository.blob_put(blob.digest, blob.size, channel.chunks(), upload=sink.upload)
        return None
    except Exception as exc:
        return exc
    finally:
        channel.close()


def _retryable(error: BaseException) -> bool:
    return isinstance(error, RegistryError) and error.retryable


def _retry_after(errors: Iterable[BaseException]) -> float | None:
    """The longest wait a registry asked for among ``errors``, None when none asked."""
    hints = [e.retry_after for e in errors if isinstance(e, RegistryError) and e.retry_after is not None]
    return max(hints, default=None)
