"""The seam between the copy engine and storage: one repository of a registry or an OCI layout.

The engine sees only :class:`Repository`. Two implementations exist: the HTTP distribution client
(``mirrord.registry.http``) and OCI image layout directories (``mirrord.registry.layout``); tests add
an in-memory one (``mirrord.testing.memory``). Contracts every implementation MUST keep:

- manifests are returned and stored as the exact bytes (digest computed over them);
- content read through ``manifest_get`` and ``blob_open`` is verified against its digest (a blob at
  the end of the stream; a mismatch raises DigestMismatch before the stream ends normally);
- ``blob_put`` makes a blob visible only once all its bytes arrived and matched the digest; when the
  chunks iterator raises, nothing becomes visible and the upload is abandoned (cancelled if possible);
- ``manifest_put`` of an index requires its children to be present (push children first).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from mirrord.oci import AnyManifest, Descriptor, Digest, ImageIndex, Reference


class BlobStream(Protocol):
    """An open blob download. Iterating yields the bytes from the requested offset to the end.

    ``size`` is the total blob size when known. Iteration verifies the digest: the last step raises
    DigestMismatch instead of ending when the content does not match (only when reading from
    offset 0; resumed reads are verified by the caller that holds the hasher). An implementation
    that keeps this promise says so with a class attribute ``verifies_digest = True``; readers then
    check only the size instead of hashing every byte again.
    """

    size: int | None

    def __aiter__(self) -> AsyncIterator[bytes]: ...


def verifies_digest(stream: object) -> bool:
    """True when ``stream`` (a :class:`BlobStream`, or the ``chunks`` given to ``blob_put``) declares
    with ``verifies_digest = True`` that it raises instead of ending when its bytes do not match the
    blob's digest and size: whoever reads it need not hash the bytes again."""
    return getattr(stream, "verifies_digest", False) is True


class UploadSession(Protocol):
    """An opaque, started upload (e.g. the Location of a 202 from a mount attempt)."""


@dataclass(frozen=True, slots=True)
class MountResult:
    """Outcome of a cross-repository mount: mounted, or an upload session to use instead."""

    mounted: bool
    upload: UploadSession | None = None


class Repository(Protocol):
    """One repository: a ``registry/name`` over HTTP, or one OCI layout directory."""

    @property
    def registry_key(self) -> str:
        """Identity of the storage: repositories with equal keys can mount each other's blobs."""
        ...

    @property
    def name(self) -> str:
        """Repository name within the registry (``library/nginx``); the path for a layout."""
        ...

    def __str__(self) -> str:
        """Human display such as ``registry.example.com/library/nginx`` or ``oci:/srv/x``."""
        ...

    async def manifest_head(self, reference: str) -> Descriptor | None:
        """Descriptor (digest, size, media type) of the manifest at a tag or digest; None if absent."""
        ...

    async def manifest_get(self, reference: str) -> AnyManifest:
        """The manifest at a tag or digest, parsed, raw bytes kept, digest verified. NotFound if absent."""
        ...

    async def manifest_put(self, reference: str, raw: bytes, media_type: str) -> Digest:
        """Store ``raw`` under a tag or its digest; returns the digest of ``raw``."""
        ...

    async def manifest_delete(self, reference: str) -> None:
        """Delete a manifest by digest (or a tag, where supported). NotFound if absent."""
        ...

    async def blob_head(self, digest: Digest) -> int | None:
        """Size of the blob if present in this repository, else None."""
        ...

    def blob_open(self, digest: Digest, *, offset: int = 0) -> AbstractAsyncContextManager[BlobStream]:
        """Open the blob for streaming from ``offset``. NotFound if absent."""
        ...

    async def blob_mount(self, digest: Digest, from_repository: str) -> MountResult:
        """Mount the blob from another repository of the same registry (same ``registry_key``)."""
        ...

    async def blob_put(
        self,
        digest: Digest,
        size: int,
        chunks: AsyncIterable[bytes],
        *,
        upload: UploadSession | None = None,
    ) -> None:
        """Upload a blob streamed from ``chunks`` (never buffered whole).

        ``chunks`` that declare :func:`verifies_digest` are not hashed again (their size still is)."""
        ...

    async def tags_list(self, *, must_exist: bool = False) -> list[str]:
        """Every tag of the repository (all pages); empty when the repository does not exist, or
        NotFound then with ``must_exist`` (how a source is read: a missing source repository must
        never read as "no tags", or pruning would delete the mirror)."""
        ...

    async def has_tags(self) -> bool:
        """True when the repository has at least one tag (one small request, not every page)."""
        ...

    async def referrers(self, digest: Digest, artifact_type: str | None = None) -> ImageIndex | None:
        """The referrers index of ``digest``, or None when the registry has no referrers API."""
        ...


class RepositoryOpener(Protocol):
    """What hands out repositories by name: :class:`mirrord.registry.hub.Registries` over HTTP and
    layouts, :class:`mirrord.testing.hub.MemoryRegistries` in memory.

    The sync runner depends on this alone, so its resolution and prune logic run in tests without a
    network. Implementations MUST return the same repository behaviour for equal references within
    one process (the runner may open one reference several times per pass).
    """

    def repository(self, ref: Reference) -> Repository:
        """The repository ``ref`` names (its tag or digest, if any, is ignored)."""
        ...

    def open(self, text: str) -> tuple[Repository, str | None]:
        """A repository and the tag-or-digest named by ``text``: ``oci:PATH[:TAG]`` or a registry
        reference (InvalidReference when malformed)."""
        ...

    async def catalog(self, host: str) -> list[str]:
        """Every repository path ``host`` lists (a pattern entry's candidates). MUST raise a
        RegistryError, not return [], when the registry has no catalog to offer."""
        ...
