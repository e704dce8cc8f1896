"""Image references per the distribution grammar, with Docker's short-name normalisation.

``HOST[:PORT]/PATH[:TAG][@DIGEST]``. A first component counts as a host when it contains ``.`` or
``:`` or is ``localhost`` (Docker's rule); otherwise the reference is a short name on ``docker.io``,
and a single-component path gets ``library/`` (``nginx`` -> ``docker.io/library/nginx:latest``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from mirrord.oci.digest import Digest, is_digest
from mirrord.oci.errors import InvalidDigest, InvalidReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
DEFAULT_TAG = "latest"
MAX_TAG_LENGTH = 128
MAX_NAME_LENGTH = 255

_LEGACY_HUB_HOSTS = frozenset({"index.docker.io"})
_OFFICIAL_PREFIX = "library/"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?", re.ASCII
)
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*", re.ASCII)
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed, normalised image reference.

    ``registry`` is the host (lower-cased, ``index.docker.io`` folded to ``docker.io``) with an
    optional ``:port``; ``repository`` the path (``library/nginx``); at most one of ``tag`` and
    ``digest`` may be None after parsing with a default tag, and both may be set
    (``name:tag@digest``: the digest wins when fetching).
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str, *, default_tag: str | None = DEFAULT_TAG) -> Reference:
        """Parse and normalise ``text``; raise InvalidReference naming the bad part.

        With ``default_tag`` None, a reference with neither tag nor digest keeps both None (a
        repository reference, as used for sync sources and targets).
        """
        remainder, digest = _split_digest(text)
        name, tag = _split_tag(text, remainder)
        registry, repository = _split_name(text, name)
        if tag is None and digest is None:
            tag = default_tag
        return cls(registry, repository, tag, digest)

    @property
    def api_host(self) -> str:
        """The host to talk HTTP to (``registry-1.docker.io`` for ``docker.io``)."""
        return DOCKER_HUB_API_HOST if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def version(self) -> str | None:
        """What to ask the registry for: the digest if set, else the tag."""
        return str(self.digest) if self.digest is not None else self.tag

    def with_tag(self, tag: str) -> Reference:
        """The same repository at ``tag`` (no digest); raise InvalidReference for a malformed tag."""
        return replace(self, tag=validate_tag(tag), digest=None)

    def with_digest(self, digest: Digest) -> Reference:
        """The same repository at ``digest`` (no tag)."""
        return replace(self, tag=None, digest=digest)

    def __str__(self) -> str:
        """Canonical form ``registry/repository[:tag][@digest]``."""
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def is_short_name(text: str) -> bool:
    """True when ``text`` names no registry host (Docker would put it on docker.io)."""
    first, slash, _ = text.partition("/")
    return not slash or not looks_like_host(first)


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it matches ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``; else InvalidReference."""
    problem = _tag_problem(tag)
    if problem is not None:
        raise InvalidReference(f"invalid tag {tag!r}: {problem}")
    return tag


def validate_repository(path: str) -> str:
    """Return ``path`` if every component matches the grammar; else InvalidReference naming it."""
    problem = _repository_problem(path)
    if problem is not None:
        raise InvalidReference(f"invalid repository {path!r}: {problem}")
    return path


def _fail(text: str, problem: str) -> InvalidReference:
    return InvalidReference(f"invalid reference {text!r}: {problem}")


def _split_digest(text: str) -> tuple[str, Digest | None]:
    """``name[:tag]`` and the parsed digest after ``@``, if any."""
    remainder, at, digest_text = text.partition("@")
    if not at:
        return text, None
    try:
        return remainder, Digest.parse(digest_text)
    except InvalidDigest as exc:
        raise _fail(text, f"digest {digest_text!r} is invalid ({exc})") from exc


def _split_tag(text: str, remainder: str) -> tuple[str, str | None]:
    """``name`` and the tag after the last ``:`` that follows the last ``/`` (a port is not a tag)."""
    colon = remainder.rfind(":")
    if colon <= remainder.rfind("/"):
        return remainder, None
    tag = remainder[colon + 1 :]
    problem = _tag_problem(tag)
    if problem is not None:
        raise _fail(text, f"tag {tag!r} {problem}")
    return remainder[:colon], tag


def _split_name(text: str, name: str) -> tuple[str, str]:
    """Validated, normalised ``(registry, repository)`` from a name without tag or digest."""
    if not name:
        raise _fail(text, "repository name is empty")
    first, slash, rest = name.partition("/")
    if slash and looks_like_host(first):
        registry, repository = _normalise_host(text, first), rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry == DOCKER_HUB and "/" not in repository:
        repository = _OFFICIAL_PREFIX + repository
    problem = _repository_problem(repository)
    if problem is not None:
        raise _fail(text, problem)
    if len(registry) + 1 + len(repository) > MAX_NAME_LENGTH:
        raise _fail(text, f"repository name must not be longer than {MAX_NAME_LENGTH} characters")
    return registry, repository


def looks_like_host(component: str) -> bool:
    """Docker's rule: a first path component is a host when it has ``.`` or ``:`` or is localhost.
    The one place that decides it (references, plan patterns and ``registries:`` keys)."""
    return "." in component or ":" in component or component == "localhost"


def _normalise_host(text: str, host: str) -> str:
    if not _DOMAIN_RE.fullmatch(host):
        raise _fail(text, f"registry host {host!r} is invalid")
    host = host.lower()
    return DOCKER_HUB if host in _LEGACY_HUB_HOSTS else host


def _tag_problem(tag: str) -> str | None:
    """Why ``tag`` is not a valid tag, or None."""
    if not tag:
        return "is empty"
    if len(tag) > MAX_TAG_LENGTH:
        return f"is longer than {MAX_TAG_LENGTH} characters"
    if not _TAG_RE.fullmatch(tag):
        return "must match [A-Za-z0-9_][A-Za-z0-9_.-]*"
    return None


def _repository_problem(path: str) -> str | None:
    """Why ``path`` is not a valid repository path, or None; names the offending component."""
    if not path:
        return "repository name is empty"
    for component in path.split("/"):
        if not component:
            return f"repository {path!r} has an empty path component"
        if _PATH_COMPONENT_RE.fullmatch(component):
            continue
        if _PATH_COMPONENT_RE.fullmatch(component.lower()):
            return f"repository component {component!r} must be lowercase"
        return f"repository component {component!r} is invalid (lowercase letters, digits and . _ - only)"
    return None


def name_with_reference(name: str, reference: str) -> str:
    """``name@digest`` for a digest reference, ``name:tag`` for a tag (see :func:`is_digest`)."""
    return f"{name}@{reference}" if is_digest(reference) else f"{name}:{reference}"
