"""Where blobs are known to live: (registry_key, digest) -> repositories holding it.

The engine mounts a blob from a repository listed here instead of uploading it again. The cache may
outlive a pass (and the process, through a small JSON state file); an entry is only a hint: a failed
mount falls back to an upload and the entry is forgotten.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mirrord.core.files import write_file_atomic
from mirrord.oci import Digest

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1


class LocationCache:
    """(registry_key, digest) -> repository names known to hold the blob, most recent first.

    At most ``max_repositories`` names are kept per blob (the oldest dropped) and at most
    ``max_blobs`` blobs overall (the least recently added dropped), so the state file stays small.
    Construction does no I/O: call :meth:`load` to read ``state_file``, :meth:`save` to write it.
    """

    def __init__(
        self, state_file: Path | None = None, *, max_repositories: int = 8, max_blobs: int = 200_000
    ) -> None:
        self.state_file = state_file
        self.max_repositories = max_repositories
        self.max_blobs = max_blobs
        # Insertion order is recency order: re-adding moves a key (and a name) to the end.
        self._entries: dict[tuple[str, str], list[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, registry_key: str, digest: Digest, repository: str) -> None:
        """Record that ``repository`` of ``registry_key`` holds ``digest``."""
        key = (registry_key, str(digest))
        names = [n for n in self._entries.pop(key, []) if n != repository]
        names.append(repository)
        self._entries[key] = names[-self.max_repositories :]
        while len(self._entries) > self.max_blobs:
            del self._entries[next(iter(self._entries))]

    def forget(self, registry_key: str, digest: Digest, repository: str) -> None:
        """Drop ``repository`` for ``digest`` (a mount from it failed)."""
        key = (registry_key, str(digest))
        names = [n for n in self._entries.get(key, []) if n != repository]
        if names:
            self._entries[key] = names
        else:
            self._entries.pop(key, None)

    def known(self, registry_key: str, digest: Digest) -> frozenset[str]:
        """Every repository of ``registry_key`` known to hold ``digest``."""
        return frozenset(self._entries.get((registry_key, str(digest)), ()))

    def recent(self, registry_key: str, digest: Digest) -> tuple[str, ...]:
        """Like :meth:`known`, most recently recorded first (the best mount candidates)."""
        return tuple(reversed(self._entries.get((registry_key, str(digest)), ())))

    def load(self) -> None:
        """Replace the contents with ``state_file``'s. A missing file means empty; an unreadable or
        malformed one is logged and ignored (the cache is only a hint)."""
        if self.state_file is None:
            return
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            entries = _decode(data)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning(
                "location cache unreadable, starting empty",
                extra={"fields": {"path": str(self.state_file), "error": str(exc)}},
            )
            return
        self._entries = entries

    def save(self) -> None:
        """Write ``state_file`` atomically (temporary file + rename); no-op without a state file."""
        if self.state_file is None:
            return
        text = json.dumps(self._encode(), separators=(",", ":"), sort_keys=True)
        write_file_atomic(self.state_file, text.encode("utf-8"))

    def _encode(self) -> dict[str, Any]:
        registries: dict[str, dict[str, list[str]]] = {}
        for (registry_key, digest), names in self._entries.items():
            registries.setdefault(registry_key, {})[digest] = names
        return {"version": _FORMAT_VERSION, "locations": registries}


def _decode(data: Any) -> dict[tuple[str, str], list[str]]:
    if not isinstance(data, dict) or data.get("version") != _FORMAT_VERSION:
        raise ValueError("not a mirrord location cache (version 1)")
    registries = data.get("locations")
    if not isinstance(registries, dict):
        raise ValueError("'locations' is not an object")
    entries: dict[tuple[str, str], list[str]] = {}
    for registry_key, blobs in registries.items():
        if not isinstance(blobs, dict):
            raise ValueError(f"locations of {registry_key!r} is not an object")
        for digest, names in blobs.items():
            Digest.parse(digest)
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"repositories of {digest} are not a list of names")
            entries[(registry_key, digest)] = names
    return entries
