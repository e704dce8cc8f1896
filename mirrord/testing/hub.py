"""An in-memory :class:`mirrord.registry.base.RepositoryOpener`: one :class:`MemoryRegistry` per host.

:class:`MemoryRegistries` stands where :class:`mirrord.registry.hub.Registries` stands in production
(``SyncRunner(plan, MemoryRegistries())``), so the runner's resolution, selection and prune logic run
without a network. References are parsed exactly as the hub parses them (``nginx`` is
``docker.io/library/nginx``); ``oci:PATH[:TAG]`` opens the repository named PATH of the registry
``oci`` (in memory too: no directory is touched).
"""

from __future__ import annotations

from mirrord.core.events import EventBus
from mirrord.oci import Reference
from mirrord.registry.layout.reference import parse_layout_reference
from mirrord.testing.memory import Faults, MemoryRegistry, MemoryRepository

#: The registry key that ``oci:`` references open in.
LAYOUT_KEY = "oci"


class MemoryRegistries:
    """Memory registries by host, created on first use; all share ``events`` and ``faults``."""

    def __init__(self, *, events: EventBus | None = None, faults: Faults | None = None) -> None:
        self.events = events
        self.faults = faults or Faults()
        self.registries: dict[str, MemoryRegistry] = {}

    def registry(self, host: str) -> MemoryRegistry:
        """The registry of ``host`` as written in references (``docker.io``, ``mirror.example:5000``)."""
        if host not in self.registries:
            self.registries[host] = MemoryRegistry(host, events=self.events, faults=self.faults)
        return self.registries[host]

    def repository(self, ref: Reference) -> MemoryRepository:
        """The repository ``ref`` names, in the registry of ``ref.registry``."""
        return self.registry(ref.registry).repository(ref.repository)

    def open(self, text: str) -> tuple[MemoryRepository, str | None]:
        """``oci:PATH[:TAG]`` -> (repository PATH of registry ``oci``, TAG); else a reference."""
        if text.startswith("oci:"):
            path, tag = parse_layout_reference(text)
            return self.registry(LAYOUT_KEY).repository(str(path)), tag
        ref = Reference.parse(text)
        return self.repository(ref), ref.version

    async def catalog(self, host: str) -> list[str]:
        """The repositories of ``host`` that hold a tag, sorted (what a registry's catalog lists)."""
        return sorted(name for name, tags in self.registry(host).tags.items() if tags)

    def reset_calls(self) -> None:
        """Zero every registry's call counters (after test set-up)."""
        for registry in self.registries.values():
            registry.reset_calls()
