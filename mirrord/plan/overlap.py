"""Checks across entries, after each entry validated on its own.

- Two entries that write the same target repository are an error, unless both write fixed, disjoint
  tag sets there (one tag or digest each, or exact tag lists, or a fixed target tag): otherwise one
  entry's copies overwrite the other's tags, and one entry's prune deletes the other's.
- A plan without entries is valid but mirrors nothing: :func:`plan_warnings` says so.

Repository patterns (targets ending in ``/**``) are compared as written; a pattern target that
covers another entry's concrete target is not detected.
"""

from __future__ import annotations

from collections.abc import Sequence

from mirrord.plan.model import Entry, Plan, TargetConfig
from mirrord.plan.nodes import Value


def written_tags(entry: Entry, target: TargetConfig) -> frozenset[str] | None:
    """The tags ``entry`` writes at ``target``; None when they depend on the source (a filter)."""
    if target.tag is not None:
        return frozenset({target.tag})
    if entry.digest is not None:
        return frozenset()  # pushed by digest only
    if entry.tag is not None:
        return frozenset({entry.tag})
    if entry.tags is not None and entry.tags.exact is not None:
        return frozenset(entry.tags.exact)
    return None


def check_overlaps(entries: Sequence[Entry], section: Value | None) -> None:
    """PlanError at the second of two entries writing one target repository (see the module)."""
    if section is None or section.is_null:
        return
    items = section.sequence()
    seen: dict[str, tuple[int, Entry, frozenset[str] | None]] = {}
    for index, entry in enumerate(entries):
        for target in entry.targets:
            tags = written_tags(entry, target)
            earlier = seen.get(target.ref)
            if earlier is None:
                seen[target.ref] = (index, entry, tags)
                continue
            first_index, first, first_tags = earlier
            if tags is not None and first_tags is not None and not tags & first_tags:
                seen[target.ref] = (index, entry, tags | first_tags)
                continue
            first_line = _target_value(items[first_index]).line
            raise _target_value(items[index]).error(
                f"entry {entry.name!r} writes {target.ref}, which entry {first.name!r} (line {first_line}) "
                "writes too: their tags would overwrite each other (and a prune would delete the other's); "
                "give each its own target repository, or both fixed, disjoint tags"
            )


def _target_value(item: Value) -> Value:
    """Where an entry's targets are written: its target:/targets: key, else the entry itself."""
    if item.is_mapping:
        fields = item.mapping()
        for key in ("target", "targets"):
            if key in fields:
                return fields[key]
    return item


def plan_warnings(plan: Plan) -> list[str]:
    """Things that are valid but probably not meant, one line each (``mirrord check`` prints them)."""
    if not plan.entries:
        return [f"{plan.path}: sync: the plan has no entries; nothing will be mirrored"]
    return []
