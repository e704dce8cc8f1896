"""Platforms (os/architecture/variant) with the usual normalisations and matching."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mirrord.oci.errors import InvalidPlatform

_PART_RE = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)
#: architecture aliases -> (architecture, variant implied when the alias is used, or None)
_ARCH_ALIASES: Mapping[str, tuple[str, str | None]] = {
    "aarch64": ("arm64", None),
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "i386": ("386", None),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
}
_OS_ALIASES: Mapping[str, str] = {"macos": "darwin"}


@dataclass(frozen=True, slots=True)
class Platform:
    """A normalised platform.

    Normalisations follow containerd's: ``aarch64`` = ``arm64``, ``arm64/v8`` = ``arm64`` (variant
    dropped), ``x86_64``/``x86-64`` = ``amd64``, ``armhf`` = ``arm/v7``, ``armel`` = ``arm/v6``,
    ``arm`` without variant = ``arm/v7``, ``i386``/``386``. OS and architecture lower-cased.
    Also ``arm/5``..``arm/8`` = ``arm/v5``..``arm/v8``, ``amd64/v1`` = ``amd64``, ``macos`` = ``darwin``.

    :meth:`parse`, :meth:`from_json` and :meth:`normalised` normalise; the plain constructor takes
    the fields as given (use it only with values that are already normalised).
    """

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = field(default=())

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]`` and normalise; raise InvalidPlatform when malformed."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(_PART_RE.fullmatch(part) for part in parts):
            raise InvalidPlatform(f"platform {text!r} is not of the form os/arch[/variant]")
        return cls.normalised(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Platform:
        """From a descriptor's ``platform`` object (``architecture``, ``os``, ``variant``, ...).

        ``os`` and ``architecture`` are required non-empty strings; ``variant`` and ``os.version``
        optional strings; ``os.features`` an optional list of strings. Normalised like :meth:`parse`;
        raise InvalidPlatform naming the bad field.
        """
        if not isinstance(obj, Mapping):
            raise InvalidPlatform("platform must be a JSON object")
        os_name = _required_str(obj, "os")
        architecture = _required_str(obj, "architecture")
        features = obj.get("os.features", [])
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise InvalidPlatform("platform 'os.features' must be a list of strings")
        return cls.normalised(
            os_name,
            architecture,
            _optional_str(obj, "variant"),
            os_version=_optional_str(obj, "os.version"),
            os_features=tuple(features),
        )

    @classmethod
    def normalised(
        cls,
        os: str,
        architecture: str,
        variant: str | None = None,
        *,
        os_version: str | None = None,
        os_features: tuple[str, ...] = (),
    ) -> Platform:
        """A platform with the class docstring's normalisations applied (empty variant = None)."""
        os = os.lower()
        os = _OS_ALIASES.get(os, os)
        architecture, variant = _normalise_arch(architecture.lower(), (variant or "").lower() or None)
        return cls(os, architecture, variant, os_version or None, os_features)

    def to_json(self) -> dict[str, Any]:
        """The descriptor ``platform`` object for this platform (optional fields only when set)."""
        obj: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version is not None:
            obj["os.version"] = self.os_version
        if self.os_features:
            obj["os.features"] = list(self.os_features)
        if self.variant is not None:
            obj["variant"] = self.variant
        return obj

    def matches(self, wanted: Platform) -> bool:
        """True when this (an index entry's platform) satisfies ``wanted`` (a user's filter).

        OS and architecture must be equal; a variant in ``wanted`` must equal ours; no variant in
        ``wanted`` matches any variant. ``os_version`` is ignored unless ``wanted`` sets it; likewise
        ``os_features`` (when set in ``wanted``, ours must include them all).
        """
        if (self.os, self.architecture) != (wanted.os, wanted.architecture):
            return False
        if wanted.variant is not None and wanted.variant != self.variant:
            return False
        if wanted.os_version is not None and wanted.os_version != self.os_version:
            return False
        return set(wanted.os_features) <= set(self.os_features)

    @property
    def is_unknown(self) -> bool:
        """True for ``unknown/unknown`` (BuildKit attestation manifests)."""
        return self.os == "unknown" and self.architecture == "unknown"

    def __str__(self) -> str:
        """``os/arch[/variant]``."""
        base = f"{self.os}/{self.architecture}"
        return base if self.variant is None else f"{base}/{self.variant}"


def _normalise_arch(architecture: str, variant: str | None) -> tuple[str, str | None]:
    """containerd's architecture/variant normalisation (``variant`` already lower-cased, "" = None)."""
    architecture, implied = _ARCH_ALIASES.get(architecture, (architecture, None))
    variant = variant or implied
    if architecture == "arm64" and variant in ("8", "v8", "v8.0"):
        return architecture, None
    if architecture == "amd64" and variant in ("1", "v1"):
        return architecture, None
    if architecture == "arm":
        if variant is None or variant in ("7", "v7"):
            return architecture, "v7"
        if variant in ("5", "6", "8"):
            return architecture, f"v{variant}"
    return architecture, variant


def _required_str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidPlatform(f"platform {key!r} must be a non-empty string")
    return value


def _optional_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidPlatform(f"platform {key!r} must be a string")
    return value
