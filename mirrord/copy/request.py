"""What the copy engine is asked (:class:`CopyRequest` to :class:`Target` s) and answers
(:class:`CopyResult`): frozen values, no behaviour beyond small derived properties."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from mirrord.copy.convert import Compression, Transform
from mirrord.oci import Digest, Platform
from mirrord.oci.convert import Format
from mirrord.registry.base import Repository

Outcome = Literal["copied", "unchanged", "failed"]


@dataclass(frozen=True, slots=True)
class Target:
    """Where to copy: a repository, and the tag to set there (None = push by digest only).

    ``format`` (keep|oci|docker) and ``compression`` (keep|zstd|gzip) rewrite what this target gets
    (:mod:`mirrord.copy.convert`); ``artifacts`` also copies signatures, attestations and referrers
    of every manifest copied (:mod:`mirrord.copy.artifacts`).
    """

    repository: Repository
    tag: str | None
    format: Format = "keep"
    compression: Compression = "keep"
    artifacts: bool = False

    @property
    def transform(self) -> Transform:
        """The format/compression transform of this target (UnconvertibleManifest when impossible)."""
        return Transform(self.format, self.compression)


@dataclass(frozen=True, slots=True)
class CopyRequest:
    """One source reference (tag or ``sha256:...``) to copy to every target.

    ``platforms`` None (or empty) copies every instance of an index; otherwise only matching
    instances (and their attestations), rewriting the index. ``force`` skips the unchanged check.
    """

    source: Repository
    reference: str
    targets: tuple[Target, ...]
    platforms: tuple[Platform, ...] | None = None
    entry: str = ""
    include_foreign: bool = False
    force: bool = False


@dataclass(frozen=True, slots=True)
class CopyResult:
    """What happened to one request.

    ``target_digests`` maps ``str(target repository)`` to the root digest there (targets that
    completed or were already up to date); ``digest_map`` old -> new for rewritten manifests;
    ``bytes`` the blob bytes read from the source for this image; ``error`` says why it failed.
    """

    source: str
    reference: str
    outcome: Outcome
    source_digest: Digest | None
    target_digests: Mapping[str, Digest]
    digest_map: Mapping[Digest, Digest]
    bytes: int
    error: str | None
