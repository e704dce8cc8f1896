"""Parsers of single entry fields (sources, targets, tags, platforms, ...), each from one YAML value.

Each parser validates one value and raises PlanError at that value's line and key; cross-field rules
(a target tag needs a one-image source, ...) live in :mod:`mirrord.plan.entries`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mirrord.oci import Digest, InvalidDigest, InvalidPlatform, InvalidReference, Platform, Reference
from mirrord.oci.convert import COMPRESSIONS, FORMATS
from mirrord.oci.reference import is_short_name, looks_like_host, validate_tag
from mirrord.plan.model import SignConfig
from mirrord.plan.nodes import Value
from mirrord.plan.patterns import (
    TARGET_WILDCARD,
    RepositoryFilter,
    RepositoryPattern,
    source_pattern,
)
from mirrord.plan.registries import normalise_host
from mirrord.plan.tags import SemverRange, TagFilter

TARGET_KEYS = ("ref", "format", "compression", "artifacts", "artifact_types", "sign")
SIGN_KEYS = ("key_file", "passphrase_file", "passphrase_env")
TAGS_KEYS = ("include", "exclude", "semver", "latest")
REPOSITORIES_KEYS = ("include", "exclude")
#: Stands in for a wildcard segment while the rest of a pattern is parsed as a reference.
_WILDCARD_PROBE = "mirrord-wildcard-probe"
OCI_PREFIX = "oci:"
#: skopeo's transport prefix for a registry image; accepted and dropped (as ``mirrord copy`` does).
DOCKER_TRANSPORT = "docker://"


@dataclass(frozen=True, slots=True)
class Source:
    """A parsed ``source:``: normalised repository (or ``oci:PATH``), how it was written, tag/digest."""

    name: str
    written: str
    is_short: bool
    tag: str | None
    digest: Digest | None

    @property
    def pinned(self) -> bool:
        """True when the source names one tag or digest (then ``tags:`` does not apply)."""
        return self.tag is not None or self.digest is not None

    @property
    def pattern(self) -> RepositoryPattern | None:
        """The repository pattern when the source is one (``host/team/**``)."""
        return source_pattern(self.name)


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A parsed target; None options inherit from the entry (then from defaults, then keep).
    ``options`` holds the YAML values of the options the target mapping gave (for error lines)."""

    ref: str
    tag: str | None
    format: str | None
    compression: str | None
    artifacts: bool | None
    value: Value
    artifact_types: tuple[str, ...] | None = None
    options: Mapping[str, Value] = field(default_factory=dict)
    sign: SignConfig | None = None


def split_layout(text: str) -> tuple[str, str | None, str | None]:
    """``oci:PATH[:TAG]`` or ``oci:PATH@DIGEST`` -> (``oci:PATH``, tag, digest text).

    As in containers/image, the path ends at the first ``:``, so a layout path cannot contain one.
    """
    body = text[len(OCI_PREFIX) :]
    if "@" in body:
        path, digest = body.rsplit("@", 1)
        return OCI_PREFIX + path, None, digest
    path, sep, tag = body.partition(":")
    return OCI_PREFIX + path, tag if sep else None, None


def _layout(value: Value, text: str) -> tuple[str, str | None, Digest | None]:
    ref, tag, digest_text = split_layout(text)
    if ref == OCI_PREFIX:
        raise value.error(f"{text!r}: an OCI layout reference needs a path (oci:PATH[:TAG])")
    try:
        if tag is not None:
            validate_tag(tag)
        digest = Digest.parse(digest_text) if digest_text is not None else None
    except (InvalidReference, InvalidDigest) as exc:
        raise value.error(str(exc)) from None
    return ref, tag, digest


def without_transport(value: Value, text: str) -> str:
    """``text`` without skopeo's ``docker://`` prefix (a registry reference either way); a PlanError
    when what follows it is no registry reference."""
    if not text.startswith(DOCKER_TRANSPORT):
        return text
    rest = text[len(DOCKER_TRANSPORT) :]
    if not rest or rest.startswith((OCI_PREFIX, DOCKER_TRANSPORT)):
        raise value.error(
            f"{text!r}: docker:// names a registry image (docker://HOST/REPO[:TAG]); "
            "an OCI layout is written oci:PATH[:TAG], without docker://"
        )
    return rest


def parse_source(value: Value) -> Source:
    """``REPO``, ``REPO:TAG``, ``REPO@DIGEST`` (``REPO:TAG@DIGEST``) or ``oci:PATH[:TAG|@DIGEST]``;
    skopeo's ``docker://`` prefix is accepted before a registry reference (and not kept)."""
    text = without_transport(value, value.string())
    if text.startswith(OCI_PREFIX):
        ref, tag, digest = _layout(value, text)
        return Source(ref, text, False, tag, digest)
    if "*" in text:
        return Source(parse_pattern(value, text), text, False, None, None)
    try:
        parsed = Reference.parse(text, default_tag=None)
        short = is_short_name(text)
    except InvalidReference as exc:
        raise value.error(str(exc)) from None
    return Source(parsed.name, text, short, parsed.tag, parsed.digest)


def parse_pattern(value: Value, text: str) -> str:
    """A pattern source (``HOST/team/**``, ``HOST/*/app``) -> its normalised form.

    The host must be written out (a pattern lists one registry's catalog); no tag or digest.
    """
    segments = text.split("/")
    if len(segments) < 2 or "*" in segments[0] or not looks_like_host(segments[0]):
        raise value.error(f"{text!r}: a repository pattern must name its registry (HOST/path/**)")
    if "@" in text or ":" in segments[-1]:
        raise value.error(f"{text!r}: a repository pattern cannot name a tag or digest (use tags:)")
    try:
        RepositoryPattern.parse(text)
    except ValueError as exc:
        raise value.error(str(exc)) from None
    probe = "/".join(s if s not in ("*", "**") else _WILDCARD_PROBE for s in segments)
    try:
        parsed = Reference.parse(probe, default_tag=None)
    except InvalidReference:
        raise value.error(f"{text!r} is not a valid repository pattern") from None
    # Normalisation may add a segment in front (docker.io/x -> library/x): align from the end.
    written = segments[1:]
    path = parsed.repository.split("/")
    offset = len(path) - len(written)
    path[offset:] = [w if s == _WILDCARD_PROBE else s for s, w in zip(path[offset:], written, strict=True)]
    return f"{parsed.registry}/{'/'.join(path)}"


def parse_repositories(value: Value) -> RepositoryFilter:
    """``repositories: {include, exclude}``: regular expressions on repository paths."""
    fields = value.mapping(REPOSITORIES_KEYS)
    return RepositoryFilter(
        include=_patterns(fields["include"]) if "include" in fields else (),
        exclude=_patterns(fields["exclude"]) if "exclude" in fields else (),
    )


def parse_target(value: Value) -> TargetSpec:
    """A target: a reference string, or ``{ref, format, compression, artifacts, artifact_types}``."""
    if not value.is_mapping:
        if value.kind != "a string":
            raise value.expected("a reference or a mapping with ref:")
        return target_from_text(value, value.string())
    fields = value.mapping(TARGET_KEYS)
    if "ref" not in fields:
        raise value.error("a target mapping needs ref:")
    spec = target_from_text(
        fields["ref"],
        fields["ref"].string(),
        parse_choice(fields["format"], FORMATS) if "format" in fields else None,
        parse_choice(fields["compression"], COMPRESSIONS) if "compression" in fields else None,
        fields["artifacts"].boolean() if "artifacts" in fields else None,
        parse_artifact_types(fields["artifact_types"]) if "artifact_types" in fields else None,
        options=fields,
    )
    if "sign" not in fields:
        return spec
    if spec.ref.startswith(OCI_PREFIX):
        raise fields["sign"].error("sign: needs a registry target (a signature names a repository)")
    return replace(spec, sign=parse_sign(fields["sign"]))


def parse_sign(value: Value) -> SignConfig:
    """``{key_file, passphrase_file | passphrase_env}``: a cosign key and its passphrase's place."""
    fields = value.mapping(SIGN_KEYS)
    if "key_file" not in fields:
        raise value.error("sign: needs key_file (a cosign encrypted private key)")
    if "passphrase_file" in fields and "passphrase_env" in fields:
        raise fields["passphrase_env"].error("give passphrase_file or passphrase_env, not both")
    env = fields["passphrase_env"].string() if "passphrase_env" in fields else None
    if env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
        raise fields["passphrase_env"].error(f"{env!r} is not an environment variable name")
    return SignConfig(
        key_file=fields["key_file"].string(),
        passphrase_file=fields["passphrase_file"].string() if "passphrase_file" in fields else None,
        passphrase_env=env,
        key=value.key,
        line=value.line,
    )


def parse_artifact_types(value: Value) -> tuple[str, ...]:
    """A non-empty list of media types (``type/subtype``): the artifact types to copy."""
    types = value.string_list()
    if not types:
        raise value.error("artifact_types needs at least one media type (or leave it out for all)")
    for text in types:
        if not re.fullmatch(r"[A-Za-z0-9][\w.+-]*/[\w.+-]+", text):
            raise value.error(f"{text!r} is not a media type (type/subtype)")
    return tuple(types)


def target_from_text(
    value: Value,
    text: str,
    fmt: str | None = None,
    compression: str | None = None,
    artifacts: bool | None = None,
    artifact_types: tuple[str, ...] | None = None,
    *,
    options: Mapping[str, Value] | None = None,
) -> TargetSpec:
    """A target from a reference string (``docker://`` accepted, see :func:`without_transport`);
    errors point at ``value``."""
    text = without_transport(value, text)
    wildcard = text.endswith(TARGET_WILDCARD)
    body = text[: -len(TARGET_WILDCARD)] if wildcard else text
    if "*" in body:
        raise value.error(f"{text!r}: a target may hold '**' only as its last path segment")
    if body.startswith(OCI_PREFIX):
        ref, tag, digest = _layout(value, body)
    else:
        try:
            parsed = Reference.parse(body, default_tag=None)
        except InvalidReference as exc:
            raise value.error(str(exc)) from None
        ref, tag, digest = parsed.name, parsed.tag, parsed.digest
    if wildcard:
        if tag is not None or digest is not None:
            raise value.error(f"{text!r}: a target ending in /** cannot name a tag or digest")
        ref += TARGET_WILDCARD
    if digest is not None:
        raise value.error(f"{text!r}: a target cannot name a digest (the digest comes from the source)")
    return TargetSpec(ref, tag, fmt, compression, artifacts, value, artifact_types, dict(options or {}))


def parse_targets(value: Value, *, many: bool) -> list[TargetSpec]:
    """``target:`` (one) or ``targets:`` (a list, or one reference); at least one, no duplicates."""
    items = value.sequence() if many and value.is_sequence else [value]
    if not items:
        raise value.error("an empty list: give at least one target")
    specs = [parse_target(item) for item in items]
    seen: dict[tuple[str, str | None], int] = {}
    for spec in specs:
        key = (spec.ref, spec.tag)
        if key in seen:
            raise spec.value.error(f"the same target again (first at line {seen[key]})")
        seen[key] = spec.value.line
    return specs


def parse_choice(value: Value, choices: tuple[str, ...]) -> str:
    """One of ``choices``."""
    text = value.string()
    if text not in choices:
        raise value.error(f"{text!r} is not one of: {', '.join(choices)}")
    return text


def parse_tags(value: Value) -> TagFilter | None:
    """A list of exact tags, or ``{include, exclude, semver, latest}``; null means every tag."""
    if value.is_null:
        return None
    if not value.is_mapping:
        if not value.is_sequence:
            raise value.expected("a list of tags or a mapping of include, exclude, semver, latest")
        # A plan may list thousands of tags: a list of good ones is checked as plain strings, and
        # only a list with a bad (or no) item is read item by item, for the message.
        texts = value.scalar_texts()
        if texts:
            try:
                return TagFilter(exact=tuple(dict.fromkeys([validate_tag(text) for text in texts])))
            except InvalidReference:
                pass
        items = value.sequence()
        if not items:
            raise value.error("an empty list selects nothing (leave tags: out to mirror every tag)")
        return TagFilter(exact=tuple(dict.fromkeys(_tag(item) for item in items)))
    fields = value.mapping(TAGS_KEYS)
    kwargs: dict[str, Any] = {}
    for name in ("include", "exclude"):
        if name in fields:
            kwargs[name] = _patterns(fields[name])
    if "semver" in fields:
        kwargs["semver"] = parse_semver(fields["semver"])
    if "latest" in fields:
        kwargs["latest"] = fields["latest"].integer(minimum=1)
    return TagFilter(**kwargs)


def _tag(value: Value) -> str:
    text = value.string()
    try:
        return validate_tag(text)
    except InvalidReference as exc:
        raise value.error(str(exc)) from None


def _patterns(value: Value) -> tuple[re.Pattern[str], ...]:
    items = value.sequence() if value.is_sequence else [value]
    return tuple(_regex(item) for item in items)


def _regex(value: Value) -> re.Pattern[str]:
    text = value.string()
    try:
        return re.compile(text)
    except re.error as exc:
        raise value.error(f"{text!r} is not a regular expression ({exc.msg})") from None


def parse_semver(value: Value) -> SemverRange:
    """A version range; its message names the range (``'>=1.x' is not a version range (...)``)."""
    try:
        return SemverRange.parse(value.string())
    except ValueError as exc:
        raise value.error(str(exc)) from None


def parse_platforms(value: Value) -> tuple[Platform, ...] | None:
    """``all`` (None) or a list of ``os/arch[/variant]`` (one string is a list of one)."""
    if value.kind == "a string" and value.string() == "all":
        return None
    items = value.sequence() if value.is_sequence else [value]
    if not items:
        raise value.error("an empty list selects nothing (write 'all' or name platforms)")
    platforms: list[Platform] = []
    for item in items:
        try:
            platforms.append(Platform.parse(item.string()))
        except InvalidPlatform as exc:
            raise item.error(str(exc)) from None
    return tuple(dict.fromkeys(platforms))


def parse_hosts(value: Value) -> tuple[str, ...]:
    """A list of registry hosts (``search_registries``), normalised, in order."""
    items = value.sequence() if value.is_sequence else [value]
    return tuple(dict.fromkeys(normalise_host(item, item.string()) for item in items))


def parse_prefix(value: Value) -> str:
    """``defaults.target_prefix``: ``HOST[:PORT]/PATH`` (or just a host) or ``oci:DIR``."""
    text = value.string().rstrip("/")
    if text.startswith(OCI_PREFIX):
        if text == OCI_PREFIX or ":" in text[len(OCI_PREFIX) :] or "@" in text:
            raise value.error(f"{text!r}: an OCI layout prefix is oci:DIR (no tag, no ':' in DIR)")
        return text
    normalise_host(value, text.split("/", 1)[0])
    try:
        probe = Reference.parse(f"{text}/probe", default_tag=None)
    except InvalidReference as exc:
        raise value.error(str(exc)) from None
    if probe.tag is not None or probe.digest is not None:
        raise value.error(f"{text!r}: a prefix cannot name a tag or digest")
    return text


def prefixed_target(prefix: str, source: Source) -> str:
    """``<prefix>/<source host>/<source repo>``, the host lower-cased with ``:`` written as ``_``.

    For a pattern the repository part is its fixed prefix followed by ``/**``, so each matching
    repository lands at ``<prefix>/<source host>/<its whole path>``.
    """
    host, _, repository = source.name.partition("/")
    pattern = source.pattern
    if pattern is not None:
        repository = "/".join(p for p in (pattern.prefix, "**") if p)
    return f"{prefix}/{host.lower().replace(':', '_')}/{repository}"
