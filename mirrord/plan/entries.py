"""``defaults:`` and ``sync:`` -> Entry objects: fields parsed once, merged, then checked together."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from mirrord.oci.convert import COMPRESSIONS, FORMATS, Compression, Format, unsupported_transform
from mirrord.plan import fields as f
from mirrord.plan.model import DEFAULT_INTERVAL, DEFAULT_PRUNE_MAX, Entry, TargetConfig
from mirrord.plan.nodes import Value
from mirrord.plan.patterns import TARGET_WILDCARD, RepositoryFilter

#: Fields an entry and ``defaults`` share, with their parsers. ``format``, ``compression``,
#: ``artifacts`` and ``artifact_types`` here are the defaults of the entry's targets (a target
#: mapping overrides them).
SHARED_FIELDS: dict[str, Callable[[Value], Any]] = {
    "target": lambda v: f.parse_targets(v, many=False),
    "targets": lambda v: f.parse_targets(v, many=True),
    "tags": f.parse_tags,
    "platforms": f.parse_platforms,
    "interval": Value.duration,
    "prune": Value.boolean,
    "prune_max": lambda v: v.integer(minimum=1),
    "search_registries": f.parse_hosts,
    "require_signatures": Value.boolean,
    "recheck_artifacts": Value.boolean,
    "format": lambda v: f.parse_choice(v, FORMATS),
    "compression": lambda v: f.parse_choice(v, COMPRESSIONS),
    "artifacts": Value.boolean,
    "artifact_types": f.parse_artifact_types,
}
ENTRY_KEYS = ("name", "source", "repositories", *SHARED_FIELDS)
DEFAULTS_KEYS = (*SHARED_FIELDS, "target_prefix")


@dataclass(frozen=True, slots=True)
class Parsed:
    """A parsed field value and the YAML value it came from (for error lines)."""

    value: Any
    origin: Value


@dataclass(frozen=True, slots=True)
class Defaults:
    """The parsed ``defaults:`` section."""

    fields: dict[str, Parsed]
    target_prefix: Parsed | None


def parse_defaults(section: Value | None) -> Defaults:
    """Parse ``defaults:`` eagerly, so a bad default is reported even when no entry uses it."""
    if section is None or section.is_null:
        return Defaults({}, None)
    raw = section.mapping(DEFAULTS_KEYS)
    prefix = raw.pop("target_prefix", None)
    parsed = _parse_shared(raw)
    return Defaults(parsed, Parsed(f.parse_prefix(prefix), prefix) if prefix is not None else None)


def _parse_shared(raw: dict[str, Value]) -> dict[str, Parsed]:
    if "target" in raw and "targets" in raw:
        raise raw["targets"].error("give target: or targets:, not both")
    parsed = {name: Parsed(SHARED_FIELDS[name](value), value) for name, value in raw.items()}
    if "target" in parsed:
        # One logical field: an entry's target: overrides a default targets: and the other way round.
        parsed["targets"] = parsed.pop("target")
    return parsed


def parse_entries(section: Value | None, defaults: Defaults) -> list[Entry]:
    """Every ``sync:`` item as an Entry; entry names must be unique."""
    if section is None or section.is_null:
        return []
    entries: list[Entry] = []
    names: dict[str, int] = {}
    for item in section.sequence():
        entry, name_origin = _entry(item, defaults)
        if entry.name in names:
            raise name_origin.error(
                f"entry name {entry.name!r} is already used at line {names[entry.name]} (give each a name:)"
            )
        names[entry.name] = name_origin.line
        entries.append(entry)
    return entries


def _entry(item: Value, defaults: Defaults) -> tuple[Entry, Value]:
    raw = item.mapping(ENTRY_KEYS)
    if "source" not in raw:
        raise item.error("an entry needs source:")
    source_value = raw.pop("source")
    source = f.parse_source(source_value)
    name_value = raw.pop("name", None)
    repositories = _repositories(raw.pop("repositories", None), source)
    own = _parse_shared(raw)
    merged = {**defaults.fields, **own}
    if source.pinned:
        _drop_for_pinned(merged, own)
    name = name_value.string() if name_value is not None else source.written
    name_origin = name_value or source_value
    entry = Entry(
        name=name,
        source=source.name,
        source_is_short=source.is_short,
        tag=source.tag,
        digest=source.digest,
        tags=_get(merged, "tags", None),
        targets=_targets(item, source_value, source, merged, defaults),
        platforms=_get(merged, "platforms", None),
        interval=_get(merged, "interval", DEFAULT_INTERVAL),
        prune=_get(merged, "prune", False),
        prune_max=_get(merged, "prune_max", DEFAULT_PRUNE_MAX),
        search_registries=_get(merged, "search_registries", ()),
        require_signatures=_get(merged, "require_signatures", False),
        recheck_artifacts=_get(merged, "recheck_artifacts", False),
        repositories=repositories,
    )
    return entry, name_origin


def _repositories(value: Value | None, source: f.Source) -> RepositoryFilter | None:
    if value is None:
        return None
    if source.pattern is None:
        raise value.error("repositories: needs a source pattern (HOST/path/** or a '*' segment)")
    return f.parse_repositories(value)


def _get(merged: dict[str, Parsed], name: str, default: Any) -> Any:
    parsed = merged.get(name)
    return default if parsed is None else parsed.value


def _drop_for_pinned(merged: dict[str, Parsed], own: dict[str, Parsed]) -> None:
    """A one-image source: ``tags``/``prune`` make no sense on the entry; defaults' are ignored."""
    for name in ("tags", "prune"):
        if name in own and (name == "tags" or own[name].value):
            raise own[name].origin.error(
                f"the source names one tag or digest, so {name}: does not apply (drop one of them)"
            )
        merged.pop(name, None)


def _targets(
    item: Value, source_value: Value, source: f.Source, merged: dict[str, Parsed], defaults: Defaults
) -> tuple[TargetConfig, ...]:
    parsed = merged.get("targets")
    if parsed is not None:
        specs: list[f.TargetSpec] = parsed.value
    elif defaults.target_prefix is not None:
        specs = [_prefixed(source_value, source, defaults.target_prefix)]
    else:
        raise item.error("an entry needs target:, targets: or defaults.target_prefix")
    out = []
    for spec in specs:
        _check_target(spec, source)
        fmt = cast(Format, spec.format or _get(merged, "format", default_target_format(spec.ref)))
        compression = cast(Compression, spec.compression or _get(merged, "compression", "keep"))
        _check_transform(item, spec, merged, fmt, compression)
        out.append(
            TargetConfig(
                ref=spec.ref,
                tag=spec.tag,
                format=fmt,
                compression=compression,
                artifacts=spec.artifacts if spec.artifacts is not None else _get(merged, "artifacts", True),
                artifact_types=(
                    spec.artifact_types
                    if spec.artifact_types is not None
                    else _get(merged, "artifact_types", None)
                ),
                sign=spec.sign,
            )
        )
    return tuple(out)


def _prefixed(source_value: Value, source: f.Source, prefix: Parsed) -> f.TargetSpec:
    if source.name.startswith(f.OCI_PREFIX):
        raise source_value.error("an oci: source has no registry host for target_prefix: give target:")
    return f.target_from_text(source_value, f.prefixed_target(prefix.value, source))


def _check_transform(
    item: Value, spec: f.TargetSpec, merged: dict[str, Parsed], fmt: Format, compression: Compression
) -> None:
    """Refuse, at check time, a format/compression pair the engine refuses on every pass. The
    error points at the most specific of the two settings: the target's own, else the entry's or
    the defaults' (the later line)."""
    refused = unsupported_transform(fmt, compression)
    if refused is None:
        return
    given = [spec.options[n] for n in ("compression", "format") if n in spec.options]
    inherited = [merged[n].origin for n in ("compression", "format") if n in merged]
    origin = given[0] if given else max(inherited, key=lambda v: v.line or 0, default=item)
    raise origin.error(f"target {spec.ref}: {refused} (no pass could copy to it)")


def default_target_format(ref: str) -> Format:
    """``oci`` for an OCI layout target (skopeo and podman find a tag there only on an OCI manifest or
    index: a Docker list in index.json is "no descriptor found"), ``keep`` for a registry. The
    default of a plan target and of ``mirrord copy``'s destination alike."""
    return "oci" if ref.startswith("oci:") else "keep"


def _check_target(spec: f.TargetSpec, source: f.Source) -> None:
    wildcard = spec.ref.endswith(TARGET_WILDCARD)
    if source.pattern is not None and not wildcard:
        raise spec.value.error(
            "the source is a pattern: the target must end in /** (each repository goes below it)"
        )
    if source.pattern is None and wildcard:
        raise spec.value.error("a target ending in /** needs a source pattern (HOST/path/**)")
    if spec.tag is not None and not source.pinned:
        raise spec.value.error(
            "a target tag needs a source that names one tag or digest (every selected tag would land on it)"
        )
    if spec.ref == source.name and (spec.tag is None or spec.tag == source.tag):
        raise spec.value.error("the target is the source")
