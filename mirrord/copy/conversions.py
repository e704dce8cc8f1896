"""The map of layers already re-encoded: (source layer digest, codec) -> digest and size, kept across
passes in a state file. Its own module (not :mod:`mirrord.copy.recompress`) so that a pass holding
the map but re-encoding nothing imports neither the codecs nor zstandard."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from mirrord.core.files import write_file_atomic
from mirrord.oci import Digest
from mirrord.oci.convert import Codec

#: The logger it always had (it lived in recompress): its lines keep their name.
log = logging.getLogger("mirrord.copy.recompress")

_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Conversion:
    """A re-encoded layer known from an earlier pass (or earlier in this one)."""

    digest: Digest
    size: int


class ConversionMap:
    """(source layer digest, codec) -> :class:`Conversion`; in memory, saved to ``state_file`` when
    given (written atomically). A missing or unreadable file starts empty: the map only saves work."""

    def __init__(self, state_file: Path | None = None) -> None:
        self.state_file = state_file
        self._entries: dict[str, Conversion] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def loaded(cls, state_file: Path) -> ConversionMap:
        """A map read from ``state_file`` (empty when missing or unreadable)."""
        conversions = cls(state_file)
        conversions.load()
        return conversions

    def get(self, digest: Digest, codec: Codec) -> Conversion | None:
        """What ``digest`` became when re-encoded as ``codec``, if known."""
        return self._entries.get(f"{digest}|{codec}")

    def put(self, digest: Digest, codec: Codec, conversion: Conversion) -> None:
        """Remember a conversion."""
        self._entries[f"{digest}|{codec}"] = conversion

    def load(self) -> None:
        """Read the state file (no-op without one; an unreadable file is logged and ignored)."""
        if self.state_file is None or not self.state_file.exists():
            return
        try:
            data = json.loads(self.state_file.read_text())
            entries = data["entries"] if data.get("version") == _FORMAT_VERSION else {}
            self._entries = {
                key: Conversion(Digest.parse(value["digest"]), int(value["size"]))
                for key, value in entries.items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning(
                "conversion map not loaded",
                extra={"fields": {"path": str(self.state_file), "error": str(exc)}},
            )

    def save(self) -> None:
        """Write the state file atomically (no-op without one)."""
        if self.state_file is None:
            return
        entries = {k: {"digest": str(v.digest), "size": v.size} for k, v in self._entries.items()}
        text = json.dumps({"version": _FORMAT_VERSION, "entries": entries}, separators=(",", ":"))
        write_file_atomic(self.state_file, text.encode("utf-8"))
