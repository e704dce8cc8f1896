"""OCI image layout directories (``oci:PATH[:TAG]``) as a :class:`~mirrord.registry.base.Repository`.

The format is the OCI image-layout spec, as containers/image's ``oci:`` transport writes it:

- ``oci-layout``: ``{"imageLayoutVersion": "1.0.0"}``;
- ``index.json``: an OCI index; the entry of a tagged manifest carries the annotation
  ``org.opencontainers.image.ref.name`` = tag, one entry per tag;
- ``blobs/<algorithm>/<encoded>``: every blob, manifests and indexes included.

A missing directory reads as an empty repository; it is created on the first write. Every write is
atomic (temporary file in the same directory, fsync, ``os.replace``), blobs are verified while they
are written and while they are read, and ``index.json`` updates are serialised per layout (one
:class:`asyncio.Lock` per directory and event loop, plus a read-modify-write that is atomic by
rename, under an exclusive ``flock`` of the directory against other processes). Disk I/O runs in
worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from mirrord.core.events import BytesTransferred, Direction, EventBus
from mirrord.core.files import AtomicWriter, write_file_atomic
from mirrord.oci import AnyManifest, Descriptor, Digest, DigestHasher, ImageIndex, is_digest, parse_manifest
from mirrord.oci.errors import InvalidDigest, InvalidManifest, InvalidReference, UnsupportedManifest
from mirrord.oci.manifest import MAX_MANIFEST_BYTES
from mirrord.oci.mediatypes import OCI_INDEX, OCI_LAYOUT_VERSION, OCI_MANIFEST, is_non_distributable
from mirrord.oci.reference import validate_tag
from mirrord.registry.base import BlobStream, MountResult, UploadSession
from mirrord.registry.errors import DigestMismatch, NotFound, ProtocolError, RegistryError, RequestRejected
from mirrord.registry.layout.files import directory_lock, file_size, index_lock, open_at
from mirrord.registry.layout.index import index_entry, ref_name, with_tag_entry
from mirrord.registry.layout.reference import LAYOUT_SCHEME, is_tag

__all__ = ["LayoutRepository"]

#: Label of layout directories in events and metrics.
EVENT_REGISTRY = "oci"

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_READ_CHUNK = 1024 * 1024
#: Small chunks are gathered up to this size before one write in a worker thread: a thread hop per
#: 16 KiB network chunk would cost more than the write itself.
_WRITE_BATCH = 1024 * 1024
_LAYOUT_FILE = "oci-layout"
_INDEX_FILE = "index.json"
_BLOBS_DIR = "blobs"


class LayoutRepository:
    """One OCI image layout directory, offering the same API as a registry repository.

    Layout specifics: ``manifest_put`` by tag writes the manifest blob then replaces (or adds) the
    ``index.json`` entry named by that tag; by digest it writes the blob only. ``tags_list`` returns
    the ref names of ``index.json`` that are valid tags. ``manifest_delete`` removes ``index.json``
    entries (by tag, or every entry of a digest) and keeps the blob. There is nothing to mount from
    and no referrers API. Every error raised is a :class:`RegistryError`. Blob bytes read and written
    are reported as ``BytesTransferred(registry="oci")`` (manifests are not counted, as over HTTP).

    Docker media types are stored as given: digests are preserved and mirrord reads them back, but
    skopeo and oci-image-tool only find OCI-typed entries, so tagging one logs a warning (once per
    instance); converting is the engine's job (``format: oci``).
    """

    def __init__(self, path: Path, *, events: EventBus | None = None) -> None:
        self._path = Path(path)
        self._root = self._path.resolve()
        self._events = events
        self._ensured = False
        self._warned = False

    @property
    def path(self) -> Path:
        """The layout directory as given."""
        return self._path

    @property
    def registry_key(self) -> str:
        """``oci:`` + the resolved directory: equal only for the same layout."""
        return LAYOUT_SCHEME + str(self._root)

    @property
    def name(self) -> str:
        """The directory as given."""
        return str(self._path)

    def __str__(self) -> str:
        return LAYOUT_SCHEME + str(self._path)

    def __repr__(self) -> str:
        return f"LayoutRepository({str(self._path)!r})"

    # -- manifests ----------------------------------------------------------------------------------

    async def manifest_head(self, reference: str) -> Descriptor | None:
        """Descriptor of the manifest at a tag or digest; None when absent (or not a manifest)."""
        try:
            found = await self._find_manifest(reference)
        except NotFound:
            return None
        if found is None:
            return None
        digest, media_type, size = found
        if media_type is None:
            try:
                manifest = await self._read_manifest(reference, digest, None, size)
            except NotFound:
                return None
            media_type = manifest.media_type
        return Descriptor(media_type=media_type, digest=digest, size=size)

    async def manifest_get(self, reference: str) -> AnyManifest:
        """The manifest at a tag or digest, verified against its digest; NotFound when absent."""
        found = await self._find_manifest(reference)
        if found is None:
            raise self._error(NotFound, f"manifest {reference} not found", reference)
        digest, media_type, size = found
        return await self._read_manifest(reference, digest, media_type, size)

    async def manifest_put(self, reference: str, raw: bytes, media_type: str) -> Digest:
        """Store ``raw`` as a blob and, for a tag, point the tag's index.json entry at it.

        The referenced blobs (an index's children; a manifest's config and distributable layers)
        must already be present, else RequestRejected (MANIFEST_BLOB_UNKNOWN). A digest reference
        must match ``raw`` (DigestMismatch otherwise).
        """
        tag, wanted = self._split_reference(reference)
        digest = Digest.of(raw, wanted.algorithm if wanted is not None else "sha256")
        if wanted is not None and digest != wanted:
            raise self._error(DigestMismatch, f"manifest bytes have digest {digest}", reference)
        manifest = self._parse(raw, media_type, reference, RequestRejected)
        await self._require_children(manifest, reference)
        await self._ensure_layout()
        path = await self._io(self._blob_path, digest)
        await self._io(write_file_atomic, path, raw)
        if tag is not None:
            self._warn_if_not_oci(manifest, tag)
            entry = index_entry(manifest, tag)
            await self._update_index(lambda entries: with_tag_entry(entries, entry, tag))
        return digest

    async def manifest_delete(self, reference: str) -> None:
        """Remove the index.json entry of a tag, or every entry of a digest (the blob stays).

        NotFound when the tag has no entry, or the digest has neither an entry nor a blob.
        """
        tag, digest = self._split_reference(reference)

        def keep(entry: dict[str, Any]) -> bool:
            if tag is not None:
                return ref_name(entry) != tag
            return entry.get("digest") != str(digest)

        removed = await self._update_index(lambda entries: [e for e in entries if keep(e)])
        if removed:
            return
        if digest is None or await self.blob_head(digest) is None:
            raise self._error(NotFound, f"manifest {reference} not found", reference)

    # -- blobs --------------------------------------------------------------------------------------

    async def blob_head(self, digest: Digest) -> int | None:
        """Size of the blob file, or None when absent."""
        path = await self._io(self._blob_path, digest)
        return await self._io(file_size, path)

    def blob_open(
        self, digest: Digest, *, offset: int = 0
    ) -> contextlib.AbstractAsyncContextManager[BlobStream]:
        """Stream the blob from ``offset`` in 1 MiB chunks; read from 0 it is verified at the end."""
        return self._blob_open(digest, offset)

    @contextlib.asynccontextmanager
    async def _blob_open(self, digest: Digest, offset: int) -> AsyncIterator[BlobStream]:
        path = await self._io(self._blob_path, digest)
        if offset == 0 and not digest.verifiable:
            raise self._error(RequestRejected, f"cannot verify a {digest.algorithm} blob", str(digest))
        try:
            file, size = await self._io(open_at, path, offset)
        except ValueError as exc:
            raise self._error(RequestRejected, f"cannot read blob {digest}: {exc}", str(digest)) from exc
        try:
            yield _FileBlobStream(self, file, size, digest, offset)
        finally:
            # Closing a file opened for reading does not block; doing it inline keeps it safe under
            # cancellation (no await in the cleanup).
            file.close()

    async def blob_mount(self, digest: Digest, from_repository: str) -> MountResult:
        """Never mounts: a layout has nothing to mount from, so the engine uploads instead."""
        return MountResult(False)

    async def blob_put(
        self,
        digest: Digest,
        size: int,
        chunks: AsyncIterable[bytes],
        *,
        upload: UploadSession | None = None,
    ) -> None:
        """Write the blob from ``chunks``, verifying digest and size; visible only when complete.

        On a mismatch (DigestMismatch) or when ``chunks`` raises, the temporary file is removed and
        nothing becomes visible. ``upload`` is ignored (layouts have no upload sessions).
        """
        if not digest.verifiable:
            raise self._error(RequestRejected, f"cannot verify a {digest.algorithm} blob", str(digest))
        await self._ensure_layout()
        path = await self._io(self._blob_path, digest)
        writer = await self._io(AtomicWriter.create, path)
        try:
            await self._stream_into(writer, digest, size, chunks)
            await self._io(writer.commit)
        except BaseException:
            writer.abort()
            raise

    async def _stream_into(
        self, writer: AtomicWriter, digest: Digest, size: int, chunks: AsyncIterable[bytes]
    ) -> None:
        # Hashing happens with the write in the worker thread (hashlib releases the GIL), keeping
        # the CPU work off the event loop; batches are written in order, so the hash is too.
        hasher = digest.hasher()
        batch: list[bytes] = []
        batched = received = 0
        async for chunk in chunks:
            received += len(chunk)
            if received > size:
                raise self._error(DigestMismatch, f"blob {digest} is longer than {size} bytes", str(digest))
            batch.append(chunk)
            batched += len(chunk)
            if batched >= _WRITE_BATCH:
                await self._io(writer.write, batch, hasher)
                self._emit("pushed", batched)
                batch, batched = [], 0
        if batch:
            await self._io(writer.write, batch, hasher)
            self._emit("pushed", batched)
        if not hasher.matches(digest, size):
            raise self._error(
                DigestMismatch,
                f"blob content has digest {hasher.digest()} and {hasher.size} bytes, expected {size}",
                str(digest),
            )

    # -- tags and referrers -------------------------------------------------------------------------

    async def tags_list(self, *, must_exist: bool = False) -> list[str]:
        """The ref names in index.json that are valid tags, once each, in index order; NotFound with
        ``must_exist`` when the layout has no index.json."""
        if must_exist and not await self._io((self._root / _INDEX_FILE).is_file):
            raise self._error(NotFound, f"no OCI layout here ({_INDEX_FILE} not found)")
        entries = await self._io(self._read_entries)
        names = (ref_name(e) for e in entries)
        return list(dict.fromkeys(n for n in names if n is not None and is_tag(n)))

    async def has_tags(self) -> bool:
        """True when index.json names a tag."""
        return bool(await self.tags_list())

    async def referrers(self, digest: Digest, artifact_type: str | None = None) -> ImageIndex | None:
        """Always None (no referrers API): the fallback tag scheme works through tags."""
        return None

    # -- internals: lookup --------------------------------------------------------------------------

    def _split_reference(self, reference: str) -> tuple[str | None, Digest | None]:
        """(tag, None) or (None, digest); RequestRejected for something that is neither."""
        try:
            if is_digest(reference):
                return None, Digest.parse(reference)
            return validate_tag(reference), None
        except (InvalidDigest, InvalidReference) as exc:
            raise self._error(RequestRejected, str(exc), reference) from exc

    async def _find_manifest(self, reference: str) -> tuple[Digest, str | None, int] | None:
        """(digest, media type if the index names it, blob size) of a present manifest blob."""
        tag, digest = self._split_reference(reference)
        media_type: str | None = None
        if tag is not None:
            entry = await self._tag_entry(tag)
            if entry is None:
                return None
            digest, media_type = self._entry_digest(entry), entry.get("mediaType")
        assert digest is not None
        size = await self.blob_head(digest)
        if size is None:
            return None
        if media_type is None:
            entries = await self._io(self._read_entries)
            media_type = next((e.get("mediaType") for e in entries if e.get("digest") == str(digest)), None)
        return digest, media_type if isinstance(media_type, str) else None, size

    async def _tag_entry(self, tag: str) -> dict[str, Any] | None:
        entries = await self._io(self._read_entries)
        return next((e for e in entries if ref_name(e) == tag), None)

    def _entry_digest(self, entry: dict[str, Any]) -> Digest:
        try:
            return Digest.parse(str(entry.get("digest")))
        except InvalidDigest as exc:
            raise self._error(ProtocolError, f"{_INDEX_FILE}: {exc}", ref_name(entry)) from exc

    async def _read_manifest(
        self, reference: str, digest: Digest, media_type: str | None, size: int
    ) -> AnyManifest:
        if size > MAX_MANIFEST_BYTES:
            raise self._error(NotFound, f"{digest} is too large to be a manifest", reference)
        if not digest.verifiable:
            raise self._error(RequestRejected, f"cannot verify a {digest.algorithm} manifest", reference)
        path = await self._io(self._blob_path, digest)
        raw = await self._io(path.read_bytes)
        if Digest.of(raw, digest.algorithm) != digest:
            raise self._error(DigestMismatch, f"manifest blob {digest} is corrupt", reference)
        # A blob no index entry calls a manifest (a layer asked for by digest) is simply not a
        # manifest, as a registry would answer; one the index names is a broken layout.
        return self._parse(raw, media_type, reference, NotFound if media_type is None else ProtocolError)

    def _parse(
        self, raw: bytes, media_type: str | None, reference: str, kind: type[RegistryError]
    ) -> AnyManifest:
        """parse_manifest; schema1 (UnsupportedManifest) passes through to be reported as such."""
        try:
            return parse_manifest(raw, media_type)
        except UnsupportedManifest:
            raise
        except InvalidManifest as exc:
            raise self._error(kind, f"not a valid manifest: {exc}", reference) from exc

    async def _require_children(self, manifest: AnyManifest, reference: str) -> None:
        if isinstance(manifest, ImageIndex):
            wanted = list(manifest.manifests)
        else:
            wanted = [
                manifest.config,
                *(d for d in manifest.layers if not is_non_distributable(d.media_type)),
            ]
        for descriptor in wanted:
            if await self.blob_head(descriptor.digest) is None:
                raise self._error(
                    RequestRejected,
                    f"manifest references {descriptor.digest}, which is not in the layout",
                    reference,
                    code="MANIFEST_BLOB_UNKNOWN",
                )

    # -- internals: files (these run in worker threads) ---------------------------------------------

    def _blob_path(self, digest: Digest) -> Path:
        """``blobs/<alg>/<encoded>``, refusing anything that is not a valid digest or escapes."""
        try:
            # Re-parse: a Digest built directly bypasses validation, and this becomes a file name.
            checked = Digest.parse(str(digest))
        except InvalidDigest as exc:
            raise self._error(RequestRejected, str(exc), str(digest), code="DIGEST_INVALID") from exc
        path = self._root / _BLOBS_DIR / checked.algorithm / checked.encoded
        # Resolve symlinks (a linked blobs/ or algorithm directory, or a linked blob file) before
        # checking: the file actually opened must lie inside the layout.
        if not path.resolve().is_relative_to(self._root):
            raise self._error(
                RequestRejected, f"blob path of {digest} resolves outside the layout", str(digest)
            )
        return path

    def _read_index(self) -> dict[str, Any]:
        try:
            text = (self._root / _INDEX_FILE).read_bytes()
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        try:
            index = json.loads(text)
        except ValueError as exc:
            raise self._error(ProtocolError, f"{_INDEX_FILE} is not JSON: {exc}") from exc
        if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
            raise self._error(ProtocolError, f"{_INDEX_FILE} is not an OCI index")
        index.setdefault("manifests", [])
        if not all(isinstance(e, dict) for e in index["manifests"]):
            raise self._error(ProtocolError, f"{_INDEX_FILE} has a manifests entry that is not an object")
        return index

    def _read_entries(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self._read_index()["manifests"]
        return entries

    async def _update_index(self, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> int:
        """Apply ``change`` to the index entries under the layout's lock; returns how many fewer."""
        async with index_lock(self._root):
            return await self._io(self._rewrite_index, change)

    def _rewrite_index(self, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> int:
        with directory_lock(self._root):
            index = self._read_index()
            before = index["manifests"]
            index["manifests"] = after = change(before)
            if after != before:
                data = json.dumps(index, separators=(",", ":")).encode()
                write_file_atomic(self._root / _INDEX_FILE, data)
        return len(before) - len(after)

    async def _ensure_layout(self) -> None:
        if not self._ensured:
            async with index_lock(self._root):
                await self._io(self._create_layout)
            self._ensured = True

    def _create_layout(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        with directory_lock(self._root):
            self._create_layout_files()

    def _create_layout_files(self) -> None:
        marker = self._root / _LAYOUT_FILE
        if marker.exists():
            try:
                version = json.loads(marker.read_bytes()).get("imageLayoutVersion")
            except (ValueError, AttributeError) as exc:
                raise self._error(ProtocolError, f"{_LAYOUT_FILE} is not valid JSON") from exc
            if version != OCI_LAYOUT_VERSION:
                raise self._error(ProtocolError, f"unsupported image layout version {version!r}")
        else:
            layout = json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}).encode()
            write_file_atomic(marker, layout)
        if not (self._root / _INDEX_FILE).exists():
            empty = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
            write_file_atomic(self._root / _INDEX_FILE, json.dumps(empty).encode())

    # -- internals: errors and events ---------------------------------------------------------------

    def _error(
        self, kind: type[RegistryError], message: str, ref: str | None = None, *, code: str | None = None
    ) -> RegistryError:
        return kind(
            f"{self}: {message}", registry=EVENT_REGISTRY, repository=self.name, reference=ref, code=code
        )

    async def _io(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run blocking file I/O in a worker thread; OS errors become NotFound (a missing file) or a
        RegistryError naming the layout, so callers above see one error tree."""
        try:
            return await asyncio.to_thread(function, *args)
        except FileNotFoundError as exc:
            raise self._error(NotFound, f"{exc.filename or 'file'} not found") from exc
        except OSError as exc:
            raise self._error(RegistryError, f"{exc.strerror or exc}: {exc.filename or ''}") from exc

    def _warn_if_not_oci(self, manifest: AnyManifest, tag: str) -> None:
        # Kept byte for byte (digests preserved, mirrord reads it back), but skopeo and other
        # containers/image tools only look up OCI-typed index.json entries by name.
        if manifest.media_type not in (OCI_INDEX, OCI_MANIFEST) and not self._warned:
            self._warned = True
            log.warning(
                "docker media type kept in an OCI layout; other tools will not find the tag "
                "(use format: oci on this target for them)",
                extra={"fields": {"layout": str(self), "tag": tag, "media_type": manifest.media_type}},
            )

    def _emit(self, direction: Direction, count: int) -> None:
        if self._events is not None and count:
            self._events.emit(BytesTransferred(registry=EVENT_REGISTRY, direction=direction, count=count))


class _FileBlobStream:
    """A blob read from a layout file; verifies digest and size at the end when read from 0."""

    verifies_digest = True

    def __init__(
        self, layout: LayoutRepository, file: BinaryIO, size: int, digest: Digest, offset: int
    ) -> None:
        self.size: int | None = size
        self._layout = layout
        self._file = file
        self._digest = digest
        self._hasher: DigestHasher | None = digest.hasher() if offset == 0 else None

    def _read(self) -> bytes:
        """The next chunk, hashed in the worker thread that read it."""
        chunk = self._file.read(_READ_CHUNK)
        if self._hasher is not None:
            self._hasher.update(chunk)
        return chunk

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self._layout._io(self._read):
            self._layout._emit("pulled", len(chunk))
            yield chunk
        if self._hasher is not None and not self._hasher.matches(self._digest, self.size):
            raise self._layout._error(
                DigestMismatch, f"blob {self._digest} is corrupt (content does not match)", str(self._digest)
            )
