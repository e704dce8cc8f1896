"""Sharding: which entries a replica owns (``--shard K/N``, ``auto/N`` from a StatefulSet ordinal).

The owner of an entry is a stable hash of its name, the same on every host, so N replicas split a
plan without talking to each other.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterable

from mirrord.plan import Entry


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` (1 <= K <= N) -> (K, N); ValueError otherwise."""
    k_text, sep, n_text = text.partition("/")
    if not sep or not k_text.isdigit() or not n_text.isdigit():
        raise ValueError(f"shard {text!r} is not K/N")
    k, n = int(k_text), int(n_text)
    if not 1 <= k <= n:
        raise ValueError(f"shard {text!r}: K must be between 1 and N")
    return k, n


def shard_of(name: str, count: int) -> int:
    """The 1-based shard owning entry ``name`` among ``count``: a stable hash, same on every host."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def shard_entries(entries: Iterable[Entry], shard: tuple[int, int] | None) -> list[Entry]:
    """The entries shard ``(K, N)`` owns (all when ``shard`` is None).

    A pattern entry belongs to every shard: each one mirrors the repositories it owns (by a hash of
    the repository, :func:`mirrord.sync.expand.owns_repository`), so a large namespace is spread.
    """
    if shard is None:
        return list(entries)
    k, n = shard
    return [e for e in entries if e.pattern is not None or shard_of(e.name, n) == k]


_ORDINAL = re.compile(r"-(\d+)$")


def resolve_shard(text: str | None, hostname: str | None = None) -> tuple[int, int] | None:
    """``K/N`` -> (K, N); ``auto/N`` -> (ordinal + 1, N) with the ordinal taken from ``hostname``'s
    ``-ORDINAL`` suffix (a StatefulSet pod ``mirrord-2`` is shard 3); None/empty -> None (no sharding).

    ``hostname`` defaults to ``$HOSTNAME``, else the system's host name (a pod's is its name). Raises
    ValueError when the text is malformed, the hostname has no ordinal, or the ordinal is >= N (more
    replicas than shards would leave a pod idle and is a configuration error, not something to hide).
    """
    if not text:
        return None
    mode, sep, count = text.partition("/")
    if mode != "auto":
        return parse_shard(text)
    if not sep or not count.isdigit() or int(count) < 1:
        raise ValueError(f"shard {text!r} is not auto/N")
    host = hostname if hostname is not None else (os.environ.get("HOSTNAME") or socket.gethostname())
    match = _ORDINAL.search(host)
    if match is None:
        raise ValueError(f"shard {text!r}: hostname {host!r} has no -ORDINAL suffix (not a StatefulSet pod?)")
    ordinal, n = int(match.group(1)), int(count)
    if ordinal >= n:
        raise ValueError(f"shard {text!r}: pod ordinal {ordinal} needs N > {ordinal} (replicas > shards?)")
    return ordinal + 1, n
