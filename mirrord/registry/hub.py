"""The composition entry point: every registry the process talks to, over one transport.

``async with Registries(plan.registries, events=bus) as registries:`` opens the single HTTP
session; ``registries.repository(ref)`` and ``registries.open("oci:/dir:tag")`` hand out
:class:`mirrord.registry.base.Repository` objects. One :class:`RegistryClient` per host is kept, so
token caches and per-registry limits are shared by every repository of that host.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from mirrord.core.events import EventBus
from mirrord.oci import Reference
from mirrord.registry.base import Repository
from mirrord.registry.http.client import RegistryClient
from mirrord.registry.http.retry import RetryPolicy
from mirrord.registry.http.transport import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, Transport
from mirrord.registry.settings import RegistrySettings, default_settings

_NO_SETTINGS: Mapping[str, RegistrySettings] = MappingProxyType({})


class Registries:
    """Registry settings by host, the shared transport, and one client per host.

    Hosts not in ``settings`` get :func:`mirrord.registry.settings.default_settings`. Use only
    inside ``async with`` (that is where the HTTP session lives).
    """

    def __init__(
        self,
        settings: Mapping[str, RegistrySettings] = _NO_SETTINGS,
        *,
        events: EventBus | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._settings = dict(settings)
        self.events = events
        self.retry = retry
        self.transport = Transport(events=events, connect_timeout=connect_timeout, read_timeout=read_timeout)
        self._clients: dict[str, RegistryClient] = {}

    async def __aenter__(self) -> Registries:
        await self.transport.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._clients.clear()
        await self.transport.__aexit__(*exc_info)

    def settings_for(self, host: str) -> RegistrySettings:
        """The settings of ``host`` (as written in references: ``docker.io``, ``127.0.0.1:5000``)."""
        return self._settings.get(host) or default_settings(host)

    def update_settings(self, settings: Mapping[str, RegistrySettings]) -> None:
        """Replace the settings (plan reload); clients of changed hosts start afresh."""
        old, self._settings = self._settings, dict(settings)
        for host in list(self._clients):
            if old.get(host) != self._settings.get(host):
                del self._clients[host]
                self.transport.forget_limits(host)

    def client(self, host: str) -> RegistryClient:
        """The (shared) client of ``host`` (a settings key such as ``docker.io``)."""
        client = self._clients.get(host)
        if client is None:
            api_host = Reference(host, "library/x").api_host  # docker.io -> registry-1.docker.io
            client = RegistryClient(
                self.settings_for(host), self.transport, api_host=api_host, retry=self.retry
            )
            self._clients[host] = client
        return client

    def repository(self, ref: Reference) -> Repository:
        """The HTTP repository of ``ref`` (settings keyed by ``ref.registry``, HTTP to
        ``ref.api_host``, e.g. ``registry-1.docker.io`` for ``docker.io``)."""
        return self.client(ref.registry).repository(ref.repository)

    async def catalog(self, host: str) -> list[str]:
        """The repository paths ``host``'s catalog lists (CatalogUnavailable when it has none)."""
        return await self.client(host).catalog()

    def open(self, text: str) -> tuple[Repository, str | None]:
        """A repository and the tag-or-digest named by ``text``.

        ``oci:PATH[:TAG]`` opens an OCI layout directory; anything else is parsed as a registry
        reference (``Reference.parse``; InvalidReference when malformed).
        """
        if text.startswith("oci:"):
            # Imported here: the layout module is optional for HTTP-only use and written apart.
            from mirrord.registry.layout import LayoutRepository, parse_layout_reference

            path, tag = parse_layout_reference(text)
            return LayoutRepository(path, events=self.events), tag
        ref = Reference.parse(text)
        return self.repository(ref), ref.version
