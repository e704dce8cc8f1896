"""Image references per the distribution grammar, with Docker's short-name normalisation.

``HOST[:PORT]/PATH[:TAG][@DIGEST]``. A first component counts as a host when it contains ``.`` or
``:`` or is ``localhost`` (Docker's rule); otherwise the reference is a short name on ``docker.io``,
and a single-component path gets ``library/`` (``nginx`` -> ``docker.io/library/nginx:latest``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mirrord.oci.digest import Digest

DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
DEFAULT_TAG = "latest"
MAX_TAG_LENGTH = 128
MAX_NAME_LENGTH = 255


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
        raise NotImplementedError

    @property
    def api_host(self) -> str:
        """The host to talk HTTP to (``registry-1.docker.io`` for ``docker.io``)."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def version(self) -> str | None:
        """What to ask the registry for: the digest if set, else the tag."""
        return str(self.digest) if self.digest is not None else self.tag

    def with_tag(self, tag: str) -> Reference:
        """The same repository at ``tag`` (no digest)."""
        raise NotImplementedError

    def with_digest(self, digest: Digest) -> Reference:
        """The same repository at ``digest`` (no tag)."""
        raise NotImplementedError

    def __str__(self) -> str:
        """Canonical form ``registry/repository[:tag][@digest]``."""
        raise NotImplementedError


def is_short_name(text: str) -> bool:
    """True when ``text`` names no registry host (Docker would put it on docker.io)."""
    raise NotImplementedError


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it matches ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``; else InvalidReference."""
    raise NotImplementedError


def validate_repository(path: str) -> str:
    """Return ``path`` if every component matches the grammar; else InvalidReference naming it."""
    raise NotImplementedError
