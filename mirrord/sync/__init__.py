"""One sync pass: the runner (resolve, copy, prune), its report, sharding and the state directory.

Imports point down: the sync layer uses copy, registry, plan and oci; the daemon and the CLI use it.
"""

from mirrord.sync.report import EntryReport, ImageReport
from mirrord.sync.runner import SyncRunner
from mirrord.sync.shard import parse_shard, resolve_shard, shard_entries, shard_of
from mirrord.sync.state import open_location_cache

__all__ = [
    "EntryReport",
    "ImageReport",
    "SyncRunner",
    "open_location_cache",
    "parse_shard",
    "resolve_shard",
    "shard_entries",
    "shard_of",
]
