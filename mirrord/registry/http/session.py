"""The seam between a registry's HTTP client and the code that uses it per repository.

:class:`HTTPSession` is what the repository (:mod:`~mirrord.registry.http.repository`) and the blob
streams (:mod:`~mirrord.registry.http.download`, :mod:`~mirrord.registry.http.upload`) need of a
registry's client: send a request (streamed or read whole), make a Location absolute, report
events and retries, the retry policy and the registry's settings.
:class:`~mirrord.registry.http.client.RegistryClient` satisfies it; tests pass a small fake. The
repository they work on travels as plain values (:class:`RepositoryAddress`), so none of these
modules imports the client or the repository: the dependencies point one way.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from mirrord.core.events import Event
from mirrord.registry.http.auth import repository_scope
from mirrord.registry.http.retry import RetryPolicy
from mirrord.registry.settings import RegistrySettings

#: How much of a response body ``fetch`` reads by default (error JSON is small; a misbehaving
#: proxy's page is not).
MAX_ERROR_BODY = 64 * 1024

#: Characters ``quote(..., safe=":")`` leaves as they are.
_QUOTE_FREE = re.compile(r"[A-Za-z0-9_.~:-]*")


@dataclass(frozen=True, slots=True)
class Fetched:
    """A whole (small) response: status, headers and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    links: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RepositoryAddress:
    """A repository of a registry as requests name it: the registry key (``127.0.0.1:5000``,
    ``docker.io``: events and errors name it), the repository path, its URL paths and scopes."""

    registry: str
    name: str

    def __str__(self) -> str:
        return f"{self.registry}/{self.name}"

    def path(self, kind: str, reference: str = "") -> str:
        """``/v2/<name>/<kind>/<reference>`` (reference URL-quoted)."""
        if not _QUOTE_FREE.fullmatch(reference):  # tags and digests are, and need no quote()
            reference = quote(reference, safe=":")
        return f"/v2/{self.name}/{kind}/{reference}"

    @property
    def uploads_path(self) -> str:
        """``/v2/<name>/blobs/uploads/``, where uploads start."""
        return f"/v2/{self.name}/blobs/uploads/"

    @property
    def pull_scopes(self) -> tuple[str]:
        """Token scopes for reading."""
        return (repository_scope(self.name, "pull"),)

    @property
    def push_scopes(self) -> tuple[str]:
        """Token scopes for writing (uploads, manifest pushes)."""
        return (repository_scope(self.name, "pull", "push"),)

    @property
    def delete_scopes(self) -> tuple[str]:
        """Token scopes for deleting (distribution asks for the ``delete`` action)."""
        return (repository_scope(self.name, "delete"),)


class HTTPSession(Protocol):
    """What per-repository code needs of a registry's HTTP client.

    ``request`` and ``fetch`` MUST apply auth, redirects and (unless ``retry`` is False) the
    retry policy, and raise :class:`~mirrord.registry.errors.RegistryError` for a status outside
    ``ok``. ``referrers_api`` is shared per registry: False once it answered a referrers request
    with 404; ``chunked_uploads`` likewise, False once it refused a chunk ``PATCH``.
    """

    referrers_api: bool | None
    chunked_uploads: bool | None

    @property
    def host(self) -> str:
        """The registry's settings key."""
        ...

    @property
    def settings(self) -> RegistrySettings:
        """The registry's settings (``chunk_size``, ``stall_timeout``, ...)."""
        ...

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy of this registry's requests, resumes and upload parts."""
        ...

    @property
    def read_timeout(self) -> float | None:
        """The transport's read timeout (seconds without a byte), None when unbounded."""
        ...

    def url(self, target: str) -> str:
        """``target`` (a ``/v2/...`` path or a Location, possibly relative) as an absolute URL."""
        ...

    def emit(self, event: Event) -> None:
        """Send ``event`` to the process' event bus, if there is one."""
        ...

    def emit_retry(self, reason: str, delay: float) -> None:
        """Report a retry with ``reason`` after ``delay`` seconds (``mirrord_retries_total``)."""
        ...

    def cleanup(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` (cancelling an abandoned upload session) as a task that cancelling the caller
        does not stop and that closing the transport waits for."""
        ...

    async def fetch(
        self,
        method: str,
        target: str,
        *,
        scopes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        ok: Collection[int] = (200,),
        limit: int = MAX_ERROR_BODY,
        retry: bool = True,
        repository: str | None = None,
        reference: str | None = None,
    ) -> Fetched:
        """A request whose whole response is read (at most ``limit`` bytes)."""
        ...

    def request(
        self,
        method: str,
        target: str,
        *,
        scopes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        ok: Collection[int] = (200,),
        retry: bool = True,
        stream: bool = False,
        repository: str | None = None,
        reference: str | None = None,
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """A request whose response is yielded open (streamed bodies, uploads)."""
        ...
