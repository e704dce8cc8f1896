"""One repository of a registry over HTTP: :class:`mirrord.registry.base.Repository` for real.

Manifests, tags and referrers live here; blob streaming (download with resume, uploads) lives in
:mod:`mirrord.registry.http.download` and :mod:`mirrord.registry.http.upload`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable
from contextlib import AbstractAsyncContextManager
from urllib.parse import quote, unquote

from mirrord.oci import AnyManifest, Descriptor, Digest, ImageIndex, OCIError, is_digest, parse_manifest
from mirrord.oci import mediatypes as mt
from mirrord.oci.manifest import MAX_MANIFEST_BYTES
from mirrord.registry.base import BlobStream, MountResult, UploadSession
from mirrord.registry.errors import AuthError, DigestMismatch, NotFound, ProtocolError
from mirrord.registry.http.auth import repository_scope
from mirrord.registry.http.download import open_blob
from mirrord.registry.http.paging import MAX_PAGE_BYTES, list_names, page_names
from mirrord.registry.http.session import HTTPSession, RepositoryAddress
from mirrord.registry.http.upload import put_blob, session_from

log = logging.getLogger(__name__)

#: The one ``Accept`` of manifest HEADs and GETs: a HEAD asking differently from the GET may be
#: answered another representation's digest (Docker Hub).
_ACCEPT = ", ".join(mt.MANIFEST_ACCEPT)
#: The headers of every manifest HEAD and GET (read only: the client and transport never change it).
_ACCEPT_HEADERS = {"Accept": _ACCEPT}


def media_type_of(content_type: str | None) -> str | None:
    """The media type of a Content-Type header, parameters stripped."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def _digest_header(text: str | None) -> Digest | None:
    if not text:
        return None
    try:
        return Digest.parse(text.strip())
    except OCIError:
        raise ProtocolError(f"registry sent an invalid Docker-Content-Digest {text[:100]!r}") from None


def _location_digest(location: str | None) -> Digest | None:
    """The digest a manifest PUT's ``Location`` (``.../manifests/<digest>``) names, if it names one."""
    if not location:
        return None
    last = location.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    try:
        return Digest.parse(unquote(last)) if ":" in last or "%3A" in last.upper() else None
    except OCIError:
        return None


class HTTPRepository:
    """``registry/name`` over the distribution API. Build it with ``RegistryClient.repository``;
    it needs only the :class:`~mirrord.registry.http.session.HTTPSession` of its registry."""

    def __init__(self, client: HTTPSession, name: str) -> None:
        self.client = client
        self._name = name
        self.address = RepositoryAddress(client.host, name)
        self._registry_key = client.host
        self._text = f"{client.host}/{name}"
        self._pull_scopes = self.address.pull_scopes  # every manifest HEAD and GET names them

    @property
    def registry_key(self) -> str:
        """The registry host (``127.0.0.1:5000``): repositories of one registry can mount."""
        return self._registry_key

    @property
    def name(self) -> str:
        """The repository path within the registry (``library/nginx``)."""
        return self._name

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"HTTPRepository({str(self)!r})"

    # -- paths and scopes -------------------------------------------------------------------------

    def path(self, kind: str, reference: str = "") -> str:
        """``/v2/<name>/<kind>/<reference>`` (reference URL-quoted)."""
        return self.address.path(kind, reference)

    @property
    def uploads_path(self) -> str:
        """``/v2/<name>/blobs/uploads/``, where uploads start."""
        return self.address.uploads_path

    @property
    def pull_scopes(self) -> tuple[str]:
        """Token scopes for reading."""
        return self._pull_scopes

    @property
    def push_scopes(self) -> tuple[str]:
        """Token scopes for writing (uploads, manifest pushes)."""
        return self.address.push_scopes

    @property
    def delete_scopes(self) -> tuple[str]:
        """Token scopes for deleting (distribution asks for the ``delete`` action)."""
        return self.address.delete_scopes

    # -- manifests --------------------------------------------------------------------------------

    async def manifest_head(self, reference: str) -> Descriptor | None:
        """HEAD the manifest; None when absent. Falls back to a GET when the registry omits the
        digest, type or size (then the descriptor is computed from the bytes)."""
        try:
            fetched = await self.client.fetch(
                "HEAD", self.address.path("manifests", reference), scopes=self._pull_scopes,
                headers=_ACCEPT_HEADERS, repository=self._name, reference=reference,
            )  # fmt: skip
        except NotFound:
            return None
        digest = _digest_header(fetched.headers.get("Docker-Content-Digest"))
        if digest is None and is_digest(reference):
            digest = Digest.parse(reference)
        media_type = media_type_of(fetched.headers.get("Content-Type"))
        size = fetched.headers.get("Content-Length")
        if digest is None or media_type is None or size is None or not size.isdigit():
            try:
                manifest = await self.manifest_get(reference)
            except NotFound:
                return None
            return Descriptor(manifest.media_type, manifest.digest, manifest.size)
        return Descriptor(media_type, digest, int(size))

    async def manifest_get(self, reference: str) -> AnyManifest:
        """GET, size-limit (4 MiB), verify (against the requested digest, else the registry's
        Docker-Content-Digest) and parse the manifest. Parse failures raise the model's
        InvalidManifest / UnsupportedManifest (schema1)."""
        fetched = await self.client.fetch(
            "GET", self.address.path("manifests", reference), scopes=self._pull_scopes,
            headers=_ACCEPT_HEADERS, limit=MAX_MANIFEST_BYTES, repository=self._name, reference=reference,
        )  # fmt: skip
        raw = fetched.body
        header = _digest_header(fetched.headers.get("Docker-Content-Digest"))
        expected = Digest.parse(reference) if is_digest(reference) else header
        if expected is not None and expected.verifiable and Digest.of(raw, expected.algorithm) != expected:
            raise DigestMismatch(
                f"{self}: manifest {reference} does not match digest {expected}",
                registry=self.registry_key, repository=self._name, reference=reference,
            )  # fmt: skip
        return parse_manifest(raw, media_type_of(fetched.headers.get("Content-Type")))

    async def manifest_put(self, reference: str, raw: bytes, media_type: str) -> Digest:
        """PUT ``raw`` as ``media_type`` under a tag or its digest; returns ``Digest.of(raw)`` after
        checking the registry's Docker-Content-Digest agrees (else the digest its ``Location`` names;
        an answer with neither, as ECR sometimes gives, stands for what was sent)."""
        digest = Digest.of(raw)
        fetched = await self.client.fetch(
            "PUT", self.path("manifests", reference), scopes=self.push_scopes,
            headers={"Content-Type": media_type}, data=raw, ok=(200, 201, 202),
            repository=self._name, reference=reference,
        )  # fmt: skip
        returned = _digest_header(fetched.headers.get("Docker-Content-Digest"))
        if returned is None:
            returned = _location_digest(fetched.headers.get("Location"))
        if returned is not None and returned.algorithm == digest.algorithm and returned != digest:
            raise DigestMismatch(
                f"{self}: registry stored manifest {reference} as {returned}, expected {digest}",
                registry=self.registry_key, repository=self._name, reference=reference,
            )  # fmt: skip
        return digest

    async def manifest_delete(self, reference: str) -> None:
        """DELETE the manifest (by digest; tags where the registry allows). NotFound if absent."""
        await self.client.fetch(
            "DELETE", self.path("manifests", reference), scopes=self.delete_scopes, ok=(200, 202, 204),
            repository=self._name, reference=reference,
        )  # fmt: skip

    # -- blobs ------------------------------------------------------------------------------------

    async def blob_head(self, digest: Digest) -> int | None:
        """Size of the blob per HEAD (redirects followed), None when absent."""
        try:
            fetched = await self.client.fetch(
                "HEAD", self.path("blobs", str(digest)), scopes=self.pull_scopes,
                repository=self._name, reference=str(digest),
            )  # fmt: skip
        except NotFound:
            return None
        size = fetched.headers.get("Content-Length")
        if size is None or not size.isdigit():
            raise ProtocolError(f"{self}: HEAD blob {digest} answered without a Content-Length")
        return int(size)

    def blob_open(self, digest: Digest, *, offset: int = 0) -> AbstractAsyncContextManager[BlobStream]:
        """Open the blob for streaming (see :func:`mirrord.registry.http.download.open_blob`)."""
        return open_blob(self.client, self.address, digest, offset)

    async def blob_mount(self, digest: Digest, from_repository: str) -> MountResult:
        """POST ``?mount=&from=``: 201 -> mounted; 202 -> the upload session it started.

        A refusal (401/403: some registries answer so when ``from`` is not readable) is treated
        as "not mounted, no session": the caller uploads instead.
        """
        scopes = (*self.push_scopes, repository_scope(from_repository, "pull"))
        query = f"?mount={quote(str(digest), safe=':')}&from={quote(from_repository, safe='/')}"
        try:
            fetched = await self.client.fetch(
                "POST", self.uploads_path + query, scopes=scopes, ok=(201, 202),
                repository=self._name, reference=str(digest),
            )  # fmt: skip
        except AuthError as exc:
            log.debug("mount of %s into %s refused: %s", digest, self, exc)
            return MountResult(False)
        if fetched.status == 201:
            return MountResult(True)
        return MountResult(False, session_from(self.client, self.address, fetched))

    async def blob_put(
        self,
        digest: Digest,
        size: int,
        chunks: AsyncIterable[bytes],
        *,
        upload: UploadSession | None = None,
    ) -> None:
        """Upload a blob (see :func:`mirrord.registry.http.upload.put_blob`)."""
        await put_blob(self.client, self.address, digest, size, chunks, upload)

    # -- tags and referrers -----------------------------------------------------------------------

    async def tags_list(self, *, must_exist: bool = False) -> list[str]:
        """Every tag, page by page (see :func:`mirrord.registry.http.paging.list_names`: ``Link``,
        ``last``, capped ``n``, ``"tags": null``); [] when the repository is unknown (a 404, which
        some registries also answer for an expired token). With ``must_exist`` (how a source is
        read) that is NotFound naming the repository, and a list cut short by the page cap or a
        ``Link`` loop is a ProtocolError: prune must never work from a partial list."""
        try:
            return await list_names(
                self.client, f"/v2/{self._name}/tags/list", "tags", scopes=self.pull_scopes,
                repository=self._name, complete=must_exist,
            )  # fmt: skip
        except NotFound as exc:
            if not must_exist:
                return []
            how = " ".join(x for x in (f"HTTP {exc.status}", exc.code) if x)
            raise NotFound(
                f"repository {self} not found ({how})", registry=exc.registry,
                repository=self._name, status=exc.status, code=exc.code,
            ) from exc  # fmt: skip

    async def has_tags(self) -> bool:
        """One ``GET tags/list?n=1``: True when it names a tag; False for an unknown repository."""
        try:
            fetched = await self.client.fetch(
                "GET", f"/v2/{self._name}/tags/list?n=1", scopes=self.pull_scopes,
                limit=MAX_PAGE_BYTES, repository=self._name,
            )  # fmt: skip
        except NotFound:
            return False
        return bool(page_names(fetched.body, "tags", str(self)))

    async def referrers(self, digest: Digest, artifact_type: str | None = None) -> ImageIndex | None:
        """The referrers index of ``digest``; None when the API is missing (404) or the answer is
        not an index. A registry's 404 is remembered for the client's lifetime (one probe per
        registry per process, not per repository and pass)."""
        if self.client.referrers_api is False:
            return None
        target = self.path("referrers", str(digest))
        if artifact_type:
            target += f"?artifactType={quote(artifact_type, safe='')}"
        try:
            fetched = await self.client.fetch(
                "GET", target, scopes=self.pull_scopes, headers={"Accept": mt.OCI_INDEX},
                limit=MAX_MANIFEST_BYTES, repository=self._name, reference=str(digest),
            )  # fmt: skip
        except NotFound:
            self.client.referrers_api = False
            return None
        self.client.referrers_api = True
        content_type = media_type_of(fetched.headers.get("Content-Type"))
        if content_type not in (None, "application/json", mt.OCI_INDEX):
            return None
        try:
            index = parse_manifest(fetched.body, mt.OCI_INDEX)
        except OCIError:
            return None
        return index if isinstance(index, ImageIndex) else None
