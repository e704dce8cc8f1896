"""An in-memory registry that behaves like distribution, for fast tests of everything above it.

:class:`MemoryRegistry` holds the storage (blobs by digest, shared by its repositories like
distribution's content-addressed store; manifests, tags and blob links per repository).
:meth:`MemoryRegistry.repository` hands out :class:`MemoryRepository` objects implementing
:class:`mirrord.registry.base.Repository`. Like distribution it refuses an index whose children are
missing and a manifest whose blobs are not linked in the repository (``MANIFEST_BLOB_UNKNOWN``),
verifies uploads and stores nothing on failure, and mounts only blobs linked in the ``from``
repository (201) while starting an upload session otherwise (202).

For tests: every call is counted per method (``calls``, per repository and registry-wide), open
blob streams are tracked (``open_streams``, ``max_open_streams``), and :class:`Faults` can corrupt
blobs on read, fail the Nth call of a method, slow streams down or run a hook before each call.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

from mirrord.core.events import BytesTransferred, Direction, EventBus
from mirrord.oci import AnyManifest, Descriptor, Digest, ImageIndex, ImageManifest, is_digest, parse_manifest
from mirrord.oci.mediatypes import OCI_INDEX, is_non_distributable
from mirrord.registry.base import MountResult, UploadSession
from mirrord.registry.errors import DigestMismatch, NotFound, RegistryError, RequestRejected

Hook = Callable[[str, str, str], Awaitable[None]]


@dataclass
class Faults:
    """Faults to inject; mutable so a test can arm them between steps.

    - ``corrupt_blobs``: blobs whose content is served with one byte flipped (the stream then fails
      its digest check at the end, as a real client's would).
    - ``fail_calls``: ``(method, n)`` -> error raised by the nth call of ``method`` registry-wide
      (1-based). A failing ``blob_put`` raises after consuming its first chunk, mid-upload.
    - ``chunk_delay``: seconds slept before each streamed chunk (makes concurrency observable).
    - ``hook``: awaited before each call with ``(method, repository, reference)``; may sleep or raise.
    """

    corrupt_blobs: set[Digest] = field(default_factory=set)
    fail_calls: dict[tuple[str, int], RegistryError] = field(default_factory=dict)
    chunk_delay: float = 0.0
    hook: Hook | None = None


@dataclass(frozen=True, slots=True)
class MemoryUpload:
    """An upload session started by a mount that could not mount (202)."""

    repository: str
    number: int


@dataclass(slots=True)
class _StoredManifest:
    raw: bytes
    media_type: str


class MemoryRegistry:
    """Storage shared by the repositories of one in-memory registry named ``key``.

    ``key`` is every repository's ``registry_key`` and the ``registry`` label of the events it
    emits (``BytesTransferred`` per chunk when ``events`` is given). ``referrers_api`` False makes
    ``referrers`` answer None, like distribution 2.8.
    """

    def __init__(
        self,
        key: str = "memory",
        *,
        chunk_size: int = 64 * 1024,
        events: EventBus | None = None,
        faults: Faults | None = None,
        referrers_api: bool = False,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.key = key
        self.chunk_size = chunk_size
        self.events = events
        self.faults = faults or Faults()
        self.referrers_api = referrers_api
        self.blobs: dict[Digest, bytes] = {}
        self.links: dict[str, set[Digest]] = {}
        self.manifests: dict[str, dict[Digest, _StoredManifest]] = {}
        self.tags: dict[str, dict[str, Digest]] = {}
        self.calls: Counter[str] = Counter()
        self.open_streams = 0
        self.max_open_streams = 0
        self._repositories: dict[str, MemoryRepository] = {}
        self._uploads = itertools.count(1)
        self._live_uploads: set[MemoryUpload] = set()

    def repository(self, name: str) -> MemoryRepository:
        """The repository ``name`` (the same object for the same name)."""
        if name not in self._repositories:
            self._repositories[name] = MemoryRepository(self, name)
        return self._repositories[name]

    def reset_calls(self) -> None:
        """Zero the call counters of the registry and of every repository (after test set-up)."""
        self.calls.clear()
        for repository in self._repositories.values():
            repository.calls.clear()
        self.max_open_streams = self.open_streams

    def add_blob(self, repository: str, data: bytes) -> Digest:
        """Store ``data`` and link it into ``repository`` directly (test set-up); returns its digest."""
        digest = Digest.of(data)
        self.blobs[digest] = data
        self.links.setdefault(repository, set()).add(digest)
        return digest

    def emit(self, direction: Direction, count: int) -> None:
        """Report ``count`` bytes moved (``pulled`` or ``pushed``) when an event bus is attached."""
        if self.events is not None and count:
            self.events.emit(BytesTransferred(self.key, direction, count))

    def new_upload(self, repository: str) -> MemoryUpload:
        """Start an upload session in ``repository``."""
        upload = MemoryUpload(repository, next(self._uploads))
        self._live_uploads.add(upload)
        return upload

    @property
    def open_uploads(self) -> frozenset[MemoryUpload]:
        """Upload sessions started (by a mount answered 202) and not yet used by a ``blob_put``:
        a client that leaves one here leaks it, as it would on a real registry."""
        return frozenset(self._live_uploads)

    def take_upload(self, upload: UploadSession, repository: str) -> None:
        """Consume an upload session; RequestRejected(BLOB_UPLOAD_UNKNOWN) when not a live one here."""
        if not isinstance(upload, MemoryUpload) or upload.repository != repository:
            raise RequestRejected("unknown upload session", registry=self.key, code="BLOB_UPLOAD_UNKNOWN")
        if upload not in self._live_uploads:
            raise RequestRejected(
                "upload session already used", registry=self.key, code="BLOB_UPLOAD_UNKNOWN"
            )
        self._live_uploads.discard(upload)

    async def before(self, method: str, repository: MemoryRepository, reference: str) -> int:
        """Count the call, run the hook, and raise an armed ``fail_calls`` fault (except for
        ``blob_put``, which raises mid-upload); returns the call's number for ``method``."""
        self.calls[method] += 1
        number = self.calls[method]
        repository.calls[method] += 1
        if self.faults.hook is not None:
            await self.faults.hook(method, repository.name, reference)
        if method != "blob_put":
            self.raise_fault(method, number)
        return number

    def raise_fault(self, method: str, number: int) -> None:
        """Raise the error armed for call ``number`` of ``method``, if any."""
        error = self.faults.fail_calls.get((method, number))
        if error is not None:
            raise error


class MemoryRepository:
    """One repository of a :class:`MemoryRegistry`; implements the Repository protocol."""

    def __init__(self, registry: MemoryRegistry, name: str) -> None:
        self.registry = registry
        self._name = name
        self.calls: Counter[str] = Counter()

    @property
    def registry_key(self) -> str:
        """The registry's key: repositories of one MemoryRegistry can mount from each other."""
        return self.registry.key

    @property
    def name(self) -> str:
        """The repository name."""
        return self._name

    def __str__(self) -> str:
        return f"{self.registry.key}/{self._name}"

    def __repr__(self) -> str:
        return f"MemoryRepository({str(self)!r})"

    # -- manifests ---------------------------------------------------------------------------------

    def _resolve(self, reference: str) -> Digest | None:
        if is_digest(reference):
            digest = _parse_digest(reference)
            return digest if digest in self.registry.manifests.get(self._name, {}) else None
        return self.registry.tags.get(self._name, {}).get(reference)

    def _stored(self, reference: str) -> tuple[Digest, _StoredManifest] | None:
        digest = self._resolve(reference)
        if digest is None:
            return None
        return digest, self.registry.manifests[self._name][digest]

    async def manifest_head(self, reference: str) -> Descriptor | None:
        """Descriptor of the manifest at a tag or digest; None if absent."""
        await self.registry.before("manifest_head", self, reference)
        found = self._stored(reference)
        if found is None:
            return None
        digest, stored = found
        return Descriptor(media_type=stored.media_type, digest=digest, size=len(stored.raw))

    async def manifest_get(self, reference: str) -> AnyManifest:
        """The manifest at a tag or digest, parsed from the stored bytes. NotFound if absent."""
        await self.registry.before("manifest_get", self, reference)
        found = self._stored(reference)
        if found is None:
            raise self._not_found("manifest", reference, "MANIFEST_UNKNOWN")
        return parse_manifest(found[1].raw, found[1].media_type)

    async def manifest_put(self, reference: str, raw: bytes, media_type: str) -> Digest:
        """Store ``raw`` under a tag or its digest once everything it references is present here."""
        await self.registry.before("manifest_put", self, reference)
        digest = Digest.of(raw)
        if is_digest(reference) and _parse_digest(reference) != digest:
            raise self._rejected(f"manifest bytes do not match {reference}", reference, "DIGEST_INVALID")
        try:
            manifest = parse_manifest(raw, media_type)
        except ValueError as exc:
            raise self._rejected(f"invalid manifest: {exc}", reference, "MANIFEST_INVALID") from exc
        self._check_references(manifest, reference)
        self.registry.manifests.setdefault(self._name, {})[digest] = _StoredManifest(bytes(raw), media_type)
        if ":" not in reference:
            self.registry.tags.setdefault(self._name, {})[reference] = digest
        return digest

    def _check_references(self, manifest: AnyManifest, reference: str) -> None:
        if isinstance(manifest, ImageIndex):
            present = self.registry.manifests.get(self._name, {})
            missing = [d.digest for d in manifest.manifests if d.digest not in present]
        else:
            linked = self.registry.links.get(self._name, set())
            missing = [d.digest for d in _required_blobs(manifest) if d.digest not in linked]
        if missing:
            raise self._rejected(
                f"manifest references unknown {missing[0]}", reference, "MANIFEST_BLOB_UNKNOWN"
            )

    async def manifest_delete(self, reference: str) -> None:
        """Delete a manifest by digest (with every tag on it) or a single tag. NotFound if absent."""
        await self.registry.before("manifest_delete", self, reference)
        tags = self.registry.tags.get(self._name, {})
        if ":" not in reference:
            if tags.pop(reference, None) is None:
                raise self._not_found("manifest", reference, "MANIFEST_UNKNOWN")
            return
        digest = self._resolve(reference)
        if digest is None:
            raise self._not_found("manifest", reference, "MANIFEST_UNKNOWN")
        del self.registry.manifests[self._name][digest]
        for tag in [t for t, d in tags.items() if d == digest]:
            del tags[tag]

    # -- blobs -------------------------------------------------------------------------------------

    async def blob_head(self, digest: Digest) -> int | None:
        """Size of the blob if linked in this repository, else None."""
        await self.registry.before("blob_head", self, str(digest))
        if digest not in self.registry.links.get(self._name, set()):
            return None
        return len(self.registry.blobs[digest])

    def blob_open(self, digest: Digest, *, offset: int = 0) -> AbstractAsyncContextManager[BlobReader]:
        """Open the blob for streaming from ``offset``; NotFound (on entering) if not linked here."""
        return self._open(digest, offset)

    @asynccontextmanager
    async def _open(self, digest: Digest, offset: int) -> AsyncIterator[BlobReader]:
        await self.registry.before("blob_open", self, str(digest))
        if digest not in self.registry.links.get(self._name, set()):
            raise self._not_found("blob", str(digest), "BLOB_UNKNOWN")
        data = self.registry.blobs[digest]
        if digest in self.registry.faults.corrupt_blobs and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        self.registry.open_streams += 1
        self.registry.max_open_streams = max(self.registry.max_open_streams, self.registry.open_streams)
        try:
            yield BlobReader(self, digest, data, offset)
        finally:
            self.registry.open_streams -= 1

    async def blob_mount(self, digest: Digest, from_repository: str) -> MountResult:
        """Link the blob from ``from_repository`` (201), or start an upload session (202)."""
        await self.registry.before("blob_mount", self, str(digest))
        if digest in self.registry.links.get(from_repository, set()):
            self.registry.links.setdefault(self._name, set()).add(digest)
            return MountResult(mounted=True)
        return MountResult(mounted=False, upload=self.registry.new_upload(self._name))

    async def blob_put(
        self,
        digest: Digest,
        size: int,
        chunks: AsyncIterable[bytes],
        *,
        upload: UploadSession | None = None,
    ) -> None:
        """Receive the blob; verify digest and size; link it only when everything matched."""
        number = await self.registry.before("blob_put", self, str(digest))
        if upload is not None:
            self.registry.take_upload(upload, self._name)
        hasher = digest.hasher()
        received = bytearray()
        async for chunk in chunks:
            hasher.update(chunk)
            received += chunk
            self.registry.emit("pushed", len(chunk))
            self.registry.raise_fault("blob_put", number)
        self.registry.raise_fault("blob_put", number)
        if hasher.size != size:
            raise self._rejected(
                f"blob {digest}: got {hasher.size} bytes, expected {size}", str(digest), "SIZE_INVALID"
            )
        if hasher.digest() != digest:
            raise self._rejected(f"blob content does not match {digest}", str(digest), "DIGEST_INVALID")
        self.registry.blobs[digest] = bytes(received)
        self.registry.links.setdefault(self._name, set()).add(digest)

    # -- listing -----------------------------------------------------------------------------------

    async def tags_list(self, *, must_exist: bool = False) -> list[str]:
        """Every tag, sorted; empty when the repository does not exist (nothing was ever pushed to
        it), NotFound then with ``must_exist``."""
        await self.registry.before("tags_list", self, "")
        known = self._name in self.registry.tags or self._name in self.registry.links
        if must_exist and not known and not self.registry.manifests.get(self._name):
            raise NotFound(
                f"repository {self} not found (NAME_UNKNOWN)",
                registry=self.registry_key,
                repository=self._name,
                code="NAME_UNKNOWN",
            )
        return sorted(self.registry.tags.get(self._name, {}))

    async def has_tags(self) -> bool:
        """True when the repository has a tag."""
        await self.registry.before("has_tags", self, "")
        return bool(self.registry.tags.get(self._name))

    async def referrers(self, digest: Digest, artifact_type: str | None = None) -> ImageIndex | None:
        """An OCI index of the manifests whose ``subject`` is ``digest`` (None without the API)."""
        await self.registry.before("referrers", self, str(digest))
        if not self.registry.referrers_api:
            return None
        entries = []
        for stored in self.registry.manifests.get(self._name, {}).values():
            manifest = parse_manifest(stored.raw, stored.media_type)
            if manifest.subject is None or manifest.subject.digest != digest:
                continue
            entry = manifest.descriptor()
            if artifact_type is None or entry.artifact_type == artifact_type:
                entries.append(entry.to_json())
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        index = parse_manifest(raw, OCI_INDEX)
        assert isinstance(index, ImageIndex)
        return index

    # -- errors ------------------------------------------------------------------------------------

    def _not_found(self, what: str, reference: str, code: str) -> NotFound:
        return NotFound(
            f"{what} {reference} not found in {self}",
            registry=self.registry.key,
            repository=self._name,
            reference=reference,
            status=404,
            code=code,
        )

    def _rejected(self, message: str, reference: str, code: str) -> RequestRejected:
        return RequestRejected(
            f"{self}: {message}",
            registry=self.registry.key,
            repository=self._name,
            reference=reference,
            status=400,
            code=code,
        )


class BlobReader:
    """A blob stream over stored bytes: yields chunks, verifies the digest at the end (from 0)."""

    verifies_digest = True

    def __init__(self, repository: MemoryRepository, digest: Digest, data: bytes, offset: int) -> None:
        self._repository = repository
        self._digest = digest
        self._data = data
        self._offset = offset
        self.size: int | None = len(data)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        registry = self._repository.registry
        hasher = self._digest.hasher() if self._offset == 0 and self._digest.verifiable else None
        view = memoryview(self._data)
        for start in range(self._offset, len(self._data), registry.chunk_size):
            if registry.faults.chunk_delay:
                await asyncio.sleep(registry.faults.chunk_delay)
            else:
                await asyncio.sleep(0)  # a real stream yields to the loop between chunks
            chunk = bytes(view[start : start + registry.chunk_size])
            if hasher is not None:
                hasher.update(chunk)
            registry.emit("pulled", len(chunk))
            if hasher is not None and hasher.size == len(self._data) and not hasher.matches(self._digest):
                raise DigestMismatch(
                    f"blob {self._digest} from {self._repository} does not match its digest",
                    registry=registry.key,
                    repository=self._repository.name,
                    reference=str(self._digest),
                )
            yield chunk


def _required_blobs(manifest: ImageManifest) -> list[Descriptor]:
    # distribution does not require foreign layers that point elsewhere (urls) to be present.
    return [d for d in manifest.blobs if not (is_non_distributable(d.media_type) and d.urls)]


def _parse_digest(reference: str) -> Digest:
    try:
        return Digest.parse(reference)
    except ValueError as exc:
        raise RequestRejected(f"invalid digest {reference!r}", code="DIGEST_INVALID") from exc
