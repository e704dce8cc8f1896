"""Content descriptors: what a manifest says about a blob or another manifest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mirrord.oci.digest import Digest
from mirrord.oci.platform import Platform


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A descriptor as found in a manifest or index.

    ``raw`` keeps the JSON object it came from (unknown fields included), so an index rewritten by
    filtering keeps every field of the entries it keeps.
    """

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    artifact_type: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, obj: Any, *, where: str = "descriptor") -> Descriptor:
        """Parse a descriptor object; raise InvalidManifest mentioning ``where`` when malformed.

        ``size`` must be a non-negative integer and ``digest`` valid.
        """
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """The JSON object (``raw`` when present, else built from the fields)."""
        raise NotImplementedError
