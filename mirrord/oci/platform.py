"""Platforms (os/architecture/variant) with the usual normalisations and matching."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Platform:
    """A normalised platform.

    Normalisations follow containerd's: ``aarch64`` = ``arm64``, ``arm64/v8`` = ``arm64`` (variant
    dropped), ``x86_64``/``x86-64`` = ``amd64``, ``armhf`` = ``arm/v7``, ``armel`` = ``arm/v6``,
    ``arm`` without variant = ``arm/v7``, ``i386``/``386``. OS and architecture lower-cased.
    """

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = field(default=())

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]`` and normalise; raise InvalidPlatform when malformed."""
        raise NotImplementedError

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Platform:
        """From a descriptor's ``platform`` object (``architecture``, ``os``, ``variant``, ...)."""
        raise NotImplementedError

    def matches(self, wanted: Platform) -> bool:
        """True when this (an index entry's platform) satisfies ``wanted`` (a user's filter).

        OS and architecture must be equal; a variant in ``wanted`` must equal ours; no variant in
        ``wanted`` matches any variant. ``os_version`` is ignored unless ``wanted`` sets it.
        """
        raise NotImplementedError

    @property
    def is_unknown(self) -> bool:
        """True for ``unknown/unknown`` (BuildKit attestation manifests)."""
        return self.os == "unknown" and self.architecture == "unknown"

    def __str__(self) -> str:
        """``os/arch[/variant]``."""
        raise NotImplementedError
