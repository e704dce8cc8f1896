"""Checks across entries, after each entry validated on its own.

- Two entries that write the same target repository are an error, unless both write fixed, disjoint
  tag sets there (one tag or digest each, or exact tag lists, or a fixed target tag): otherwise one
  entry's copies overwrite the other's tags, and one entry's prune deletes the other's.
- A plan without entries is valid but mirrors nothing: :func:`plan_warnings` says so.

- A pattern entry (target ``host/ns/**``) writes every repository below ``ns`` its source pattern
  (and ``repositories`` filter) can map there: another entry's target repository among them is the
  same conflict, under the same fixed, disjoint tags exception. Two pattern targets are compared as
  written only (nested namespaces such as ``ns/**`` and ``ns/sub/**`` are not detected).
"""

from __future__ import annotations

from collections.abc import Sequence

from mirrord.plan.model import Entry, Plan, TargetConfig
from mirrord.plan.nodes import Value
from mirrord.plan.patterns import TARGET_WILDCARD


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
    _check_pattern_covers(entries, items)


def covers(entry: Entry, target: TargetConfig, ref: str) -> bool:
    """True when pattern ``entry``'s ``target`` (``host/ns/**``) can write repository ``ref``: a
    repository its source pattern matches and its ``repositories`` filter keeps maps to ``ref``."""
    pattern = entry.pattern
    if pattern is None or not target.ref.endswith(TARGET_WILDCARD):
        return False
    namespace = target.ref[: -len(TARGET_WILDCARD)] + "/"
    if not ref.startswith(namespace):
        return False
    below = ref[len(namespace) :]
    repository = f"{pattern.prefix}/{below}" if pattern.prefix else below
    kept = entry.repositories is None or entry.repositories.keeps(repository)
    return pattern.matches(repository) and kept


def _check_pattern_covers(entries: Sequence[Entry], items: Sequence[Value]) -> None:
    """PlanError at the later of the first (in file order) pattern target and concrete target
    that meet (see the module); each entry is named."""
    conflicts: list[tuple[int, int, int, TargetConfig, TargetConfig]] = []
    for p_index, p_entry in enumerate(entries):
        for p_target in p_entry.targets:
            if p_entry.pattern is None or not p_target.ref.endswith(TARGET_WILDCARD):
                continue
            p_tags = written_tags(p_entry, p_target)
            for index, entry in enumerate(entries):
                for target in entry.targets:
                    if index == p_index or not covers(p_entry, p_target, target.ref):
                        continue
                    tags = written_tags(entry, target)
                    if tags is not None and p_tags is not None and not tags & p_tags:
                        continue
                    conflicts.append((max(index, p_index), min(index, p_index), p_index, p_target, target))
    if not conflicts:
        return
    later, earlier, p_index, p_target, target = min(conflicts, key=lambda c: c[:2])
    p_name = entries[p_index].name
    c_name = entries[later if later != p_index else earlier].name
    line = _target_value(items[earlier]).line
    if later == p_index:
        what = f"entry {p_name!r} writes {p_target.ref}, covering {target.ref} of entry {c_name!r}"
    else:
        what = f"entry {c_name!r} writes {target.ref}, which {p_target.ref} of entry {p_name!r} covers"
    raise _target_value(items[later]).error(
        f"{what} (line {line}): their tags would overwrite each other (and a prune would delete the "
        "other's); narrow the pattern (repositories: exclude) or give the entry a target outside "
        f"{p_target.ref[: -len(TARGET_WILDCARD)]}/, or both fixed, disjoint tags"
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
