"""The signature policy: containers-policy.json(5), as skopeo and podman read it.

::

    {"default": [{"type": "reject"}],
     "transports": {"docker": {"quay.io/org/app": [{"type": "sigstoreSigned", "keyPath": "k.pub",
                                                    "signedIdentity": {"type": "matchRepository"}}],
                               "docker.io": [{"type": "insecureAcceptAnything"}]},
                    "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}}}

An image's requirements come from the most specific ``transports.docker`` scope naming it:
``host/repo:tag`` (or ``host/repo@digest``), ``host/repo``, each parent namespace up to ``host``,
then ``*.domain`` wildcards from the longest (the port left out), then the transport's ``""`` scope,
then ``default``. Every requirement of the list must allow the image. Requirement types:
``insecureAcceptAnything``, ``reject``, ``sigstoreSigned`` with public keys (``keyPath``,
``keyPaths``, ``keyData``, ``keyDatas``) and a ``signedIdentity`` (default
``matchRepoDigestOrExact``). Known types mirrord cannot check (``signedBy`` GPG signatures,
``signedBaseLayer``, keyless ``sigstoreSigned`` with ``fulcio``/``pki``/Rekor keys) load, are noted,
and refuse every image they govern (fail closed). Transports other than ``docker`` are ignored
with a note. Unknown types and fields, and key files that cannot be read, are errors naming the
file and the key path (``policy.json: transports.docker["quay.io"][0].keyPath: ...``).

This module is pure apart from reading the policy and key files; fetching signatures is
:mod:`mirrord.trust.gate`'s.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirrord.oci import InvalidReference, Reference
from mirrord.trust.errors import TrustError
from mirrord.trust.keys import VerifyingKey, load_public_keys

ACCEPT, REJECT, SIGSTORE = "insecureAcceptAnything", "reject", "sigstoreSigned"
UNCHECKABLE = ("signedBy", "signedBaseLayer")
IDENTITY_TYPES = (
    "matchExact",
    "matchRepoDigestOrExact",
    "matchRepository",
    "exactReference",
    "exactRepository",
    "remapIdentity",
)
_KEY_FIELDS = ("keyPath", "keyPaths", "keyData", "keyDatas")
_KEYLESS_FIELDS = ("fulcio", "pki")
_REKOR_FIELDS = ("rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData", "rekorPublicKeyDatas")
_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?")


# -- identities ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedIdentity:
    """How a signature's claimed reference must relate to the image (``signedIdentity``)."""

    kind: str = "matchRepoDigestOrExact"
    reference: Reference | None = None  # exactReference, exactRepository
    prefix: str = ""  # remapIdentity
    signed_prefix: str = ""

    def matches(self, intended: Reference | None, signed: str) -> bool:
        """True when a signature claiming ``signed`` may stand for ``intended`` (the reference the
        image was asked for; None when it has no registry identity, e.g. an OCI layout)."""
        try:
            claim = Reference.parse(signed, default_tag=None)
        except InvalidReference:
            return False
        if self.kind == "exactReference":
            assert self.reference is not None
            return _exact(self.reference, claim)
        if self.kind == "exactRepository":
            assert self.reference is not None
            return claim.name == self.reference.name
        if intended is None:
            return False
        if self.kind == "matchExact":
            return _exact(intended, claim)
        if self.kind == "matchRepository":
            return claim.name == intended.name
        if self.kind == "remapIdentity":
            intended = self._remapped(intended)
            if intended is None:
                return False
        return _repo_digest_or_exact(intended, claim)

    def _remapped(self, intended: Reference) -> Reference | None:
        name = intended.name
        if name != self.prefix and not name.startswith(self.prefix + "/"):
            return intended
        text = str(intended).replace(self.prefix, self.signed_prefix, 1)
        try:
            return Reference.parse(text, default_tag=None)
        except InvalidReference:
            return None

    def describe(self) -> str:
        """The identity rule for messages (``matchRepository``, ``exactReference x``, ...)."""
        if self.reference is not None:
            return f"{self.kind} {self.reference}"
        if self.kind == "remapIdentity":
            return f"remapIdentity {self.prefix} -> {self.signed_prefix}"
        return self.kind


def _name_only(ref: Reference) -> bool:
    return ref.tag is None and ref.digest is None


def _exact(intended: Reference, claim: Reference) -> bool:
    return not _name_only(intended) and not _name_only(claim) and str(claim) == str(intended)


def _repo_digest_or_exact(intended: Reference, claim: Reference) -> bool:
    if _name_only(claim):
        return False
    if intended.tag is not None:
        return str(claim) == str(intended)
    if intended.digest is not None:
        # The digest itself is checked against the payload's docker-manifest-digest.
        return claim.name == intended.name
    return False


# -- requirements ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Requirement:
    """One policy requirement. ``unsupported`` says why mirrord cannot check it (then it refuses)."""

    kind: str
    keys: tuple[VerifyingKey, ...] = ()
    identity: SignedIdentity = field(default_factory=SignedIdentity)
    unsupported: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """A loaded policy: ``default``, the docker transport's scopes, and notes about what was
    ignored or cannot be checked (for ``mirrord check`` and the log)."""

    path: str
    default: tuple[Requirement, ...]
    scopes: Mapping[str, tuple[Requirement, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def requirements(self, intended: Reference | None) -> tuple[str, tuple[Requirement, ...]]:
        """The scope that applies to ``intended`` (``"default"`` when none does, or for an image
        without a registry identity) and its requirements."""
        if intended is not None:
            for scope in scope_candidates(intended):
                if scope in self.scopes:
                    return scope, self.scopes[scope]
            if "" in self.scopes:
                return '""', self.scopes[""]
        return "default", self.default

    @property
    def reads_signatures(self) -> bool:
        """True when some requirement needs the image's signatures."""
        every = [*self.default, *(r for reqs in self.scopes.values() for r in reqs)]
        return any(r.kind == SIGSTORE and r.unsupported is None for r in every)


def scope_candidates(ref: Reference) -> list[str]:
    """The docker scopes naming ``ref``, most specific first (containers-policy.json(5))."""
    out = []
    if ref.tag is not None and ref.digest is None:
        out.append(f"{ref.name}:{ref.tag}")
    elif ref.digest is not None:
        out.append(f"{ref.name}@{ref.digest}")
    name = ref.name
    while True:
        out.append(name)
        if "/" not in name:
            break
        name = name.rsplit("/", 1)[0]
    host = name.split(":", 1)[0]
    while "." in host:
        host = host.split(".", 1)[1]
        out.append(f"*.{host}")
    return out


# -- loading ---------------------------------------------------------------------------------------


def load_policy(path: str | Path) -> Policy:
    """Read and validate the policy file at ``path`` (key files are read now, relative paths from
    the current directory as containers/image does). TrustError naming the file and key path."""
    name = str(path)
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise TrustError(f"{name}: cannot read the policy: {exc.strerror or exc}") from None
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise TrustError(f"{name}: not JSON ({exc})") from None
    return _Loader(name).policy(body)


class _Loader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.notes: list[str] = []

    def error(self, key: str, message: str) -> TrustError:
        return TrustError(f"{self.path}: {key}: {message}" if key else f"{self.path}: {message}")

    def obj(self, value: Any, key: str, allowed: Sequence[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key, "expected a JSON object")
        for name in value:
            if name not in allowed:
                raise self.error(_join(key, name), f"unknown field (expected one of: {', '.join(allowed)})")
        return value

    def policy(self, body: Any) -> Policy:
        top = self.obj(body, "", ("default", "transports"))
        if "default" not in top:
            raise self.error("default", "missing (the policy needs a default requirement list)")
        default = self.requirements(top["default"], "default")
        scopes: dict[str, tuple[Requirement, ...]] = {}
        transports = top.get("transports", {})
        if not isinstance(transports, dict):
            raise self.error("transports", "expected a JSON object")
        for transport, section in transports.items():
            key = f"transports.{transport}"
            if not isinstance(section, dict):
                raise self.error(key, "expected a JSON object of scopes")
            if transport != "docker":
                self.notes.append(f"transport {transport!r} ignored (mirrord reads registries: docker only)")
                continue
            for scope, reqs in section.items():
                scope_key = f"{key}[{json.dumps(scope)}]"
                self.scope(scope, scope_key)
                scopes[scope] = self.requirements(reqs, scope_key)
        return Policy(self.path, default, scopes, tuple(self.notes))

    def scope(self, scope: str, key: str) -> None:
        if scope == "":
            return
        if scope.startswith("*."):
            if not _HOST_RE.fullmatch(scope[2:]) or ":" in scope:
                raise self.error(key, "a wildcard scope is *.DOMAIN")
            return
        if "/" not in scope:
            if not _HOST_RE.fullmatch(scope) or scope != scope.lower():
                raise self.error(key, "not a registry host, repository or *.DOMAIN")
            return
        try:
            ref = Reference.parse(scope, default_tag=None)
        except InvalidReference as exc:
            raise self.error(key, str(exc)) from None
        if str(ref) != scope:
            raise self.error(key, f"write the scope fully expanded ({str(ref)!r})")

    def requirements(self, value: Any, key: str) -> tuple[Requirement, ...]:
        if not isinstance(value, list) or not value:
            raise self.error(key, "expected a non-empty list of requirements")
        return tuple(self.requirement(item, f"{key}[{i}]") for i, item in enumerate(value))

    def requirement(self, value: Any, key: str) -> Requirement:
        kind = value.get("type") if isinstance(value, dict) else None
        if kind in (ACCEPT, REJECT):
            self.obj(value, key, ("type",))
            return Requirement(kind)
        if kind == SIGSTORE:
            return self.sigstore(value, key)
        if kind in UNCHECKABLE:
            why = f"{kind} requirements cannot be checked by mirrord (cosign sigstoreSigned only)"
            self.notes.append(f"{key}: {why}: images it governs are refused")
            return Requirement(kind, unsupported=why)
        if not isinstance(value, dict):
            raise self.error(key, "expected a requirement object")
        raise self.error(_join(key, "type"), f"unknown requirement type {kind!r}")

    def sigstore(self, value: dict[str, Any], key: str) -> Requirement:
        allowed = ("type", *_KEY_FIELDS, *_KEYLESS_FIELDS, *_REKOR_FIELDS, "signedIdentity")
        self.obj(value, key, allowed)
        sources = [name for name in (*_KEY_FIELDS, *_KEYLESS_FIELDS) if name in value]
        if len(sources) != 1:
            raise self.error(key, f"give exactly one of {', '.join((*_KEY_FIELDS, *_KEYLESS_FIELDS))}")
        identity = self.identity(value.get("signedIdentity"), _join(key, "signedIdentity"))
        unsupported = None
        if sources[0] in _KEYLESS_FIELDS or any(name in value for name in _REKOR_FIELDS):
            unsupported = "keyless (fulcio/pki) and Rekor-backed sigstoreSigned cannot be checked by mirrord"
            self.notes.append(f"{key}: {unsupported}: images it governs are refused")
            return Requirement(SIGSTORE, identity=identity, unsupported=unsupported)
        keys = self.keys(value, sources[0], _join(key, sources[0]))
        return Requirement(SIGSTORE, keys=tuple(keys), identity=identity)

    def keys(self, value: dict[str, Any], source: str, key: str) -> list[VerifyingKey]:
        entries = value[source] if source.endswith("s") else [value[source]]
        if not isinstance(entries, list) or not entries:
            raise self.error(key, "expected a non-empty list")
        keys: list[VerifyingKey] = []
        for i, entry in enumerate(entries):
            where = f"{key}[{i}]" if source.endswith("s") else key
            if not isinstance(entry, str) or not entry:
                raise self.error(where, "expected a non-empty string")
            keys += self.key(entry, source.startswith("keyData"), where)
        return keys

    def key(self, entry: str, inline: bool, where: str) -> list[VerifyingKey]:
        if inline:
            try:
                data = base64.b64decode(entry, validate=True)
            except binascii.Error:
                raise self.error(where, "keyData is not base64 (of a PEM public key)") from None
        else:
            try:
                data = Path(entry).read_bytes()
            except OSError as exc:
                raise self.error(where, f"cannot read {entry}: {exc.strerror or exc}") from None
        try:
            return load_public_keys(data, source=entry if not inline else "keyData")
        except TrustError as exc:
            raise self.error(where, str(exc)) from None

    def identity(self, value: Any, key: str) -> SignedIdentity:
        if value is None:
            return SignedIdentity()
        kind = value.get("type") if isinstance(value, dict) else None
        if kind not in IDENTITY_TYPES:
            if not isinstance(value, dict):
                raise self.error(key, "expected a JSON object")
            raise self.error(_join(key, "type"), f"unknown signedIdentity type {kind!r}")
        fields = {
            "exactReference": ("dockerReference",),
            "exactRepository": ("dockerRepository",),
            "remapIdentity": ("prefix", "signedPrefix"),
        }.get(kind, ())
        self.obj(value, key, ("type", *fields))
        for name in fields:
            if not isinstance(value.get(name), str) or not value[name]:
                raise self.error(_join(key, name), "missing (a non-empty string)")
        if kind == "remapIdentity":
            prefix, signed = (self.prefix(value[n], _join(key, n)) for n in fields)
            return SignedIdentity(kind, prefix=prefix, signed_prefix=signed)
        if fields:
            return SignedIdentity(
                kind, reference=self.reference(kind, value[fields[0]], _join(key, fields[0]))
            )
        return SignedIdentity(kind)

    def reference(self, kind: str, text: str, key: str) -> Reference:
        try:
            ref = Reference.parse(text, default_tag=None)
        except InvalidReference as exc:
            raise self.error(key, str(exc)) from None
        if kind == "exactReference" and _name_only(ref):
            raise self.error(key, f"{text!r} names no tag or digest")
        if kind == "exactRepository" and not _name_only(ref):
            raise self.error(key, f"{text!r} must be a repository (no tag or digest)")
        return ref

    def prefix(self, text: str, key: str) -> str:
        host = text.split("/", 1)[0]
        if not _HOST_RE.fullmatch(host) or text.endswith("/") or any(c in text for c in "@"):
            raise self.error(key, f"{text!r} is not HOST[/NAMESPACE...]")
        if "/" in text:
            try:
                Reference.parse(text, default_tag=None)
            except InvalidReference as exc:
                raise self.error(key, str(exc)) from None
        return text


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name
