"""What the copy engine is asked (:class:`CopyRequest` to :class:`Target` s) and answers
(:class:`CopyResult`): frozen values, no behaviour beyond small derived properties."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from mirrord.copy.convert import Transform
from mirrord.copy.hooks import Gate, Signer
from mirrord.oci import Digest, Platform
from mirrord.oci.convert import Compression, Format
from mirrord.registry.base import Repository

Outcome = Literal["copied", "unchanged", "failed", "rejected"]


@dataclass(frozen=True, slots=True)
class Target:
    """Where to copy: a repository, and the tag to set there (None = push by digest only).

    ``format`` (keep|oci|docker) and ``compression`` (keep|zstd|gzip) rewrite what this target gets
    (:mod:`mirrord.copy.convert`); ``artifacts`` also copies signatures, attestations and referrers
    of every manifest copied (:mod:`mirrord.copy.artifacts`), only those whose type is in
    ``artifact_types`` when that is set. ``signer`` signs every root pushed here and keeps the
    root's ``.sig`` (:class:`mirrord.copy.hooks.Signer`).
    """

    repository: Repository
    tag: str | None
    format: Format = "keep"
    compression: Compression = "keep"
    artifacts: bool = False
    artifact_types: tuple[str, ...] | None = None
    signer: Signer | None = None

    @property
    def transform(self) -> Transform:
        """The format/compression transform of this target (UnconvertibleManifest when impossible)."""
        return Transform(self.format, self.compression)


@dataclass(frozen=True, slots=True)
class CopyRequest:
    """One source reference (tag or ``sha256:...``) to copy to every target.

    ``platforms`` None (or empty) copies every instance of an index; otherwise only matching
    instances (and their attestations), rewriting the index. ``force`` skips the unchanged check.
    ``require_signatures`` refuses (fails) a target where any manifest digest would change, so no
    signature is invalidated. Artifacts are looked for when the image is copied; for an unchanged
    image only with ``recheck_artifacts`` (that costs source requests: a tag list, a referrers query,
    a HEAD per artifact tag), so that otherwise an unchanged image costs one HEAD per side.
    ``gate`` admits or refuses the image once its root manifest is read, before anything else of
    it is requested (:class:`mirrord.copy.hooks.Gate`); an unchanged image is not asked about.
    """

    source: Repository
    reference: str
    targets: tuple[Target, ...]
    platforms: tuple[Platform, ...] | None = None
    entry: str = ""
    include_foreign: bool = False
    force: bool = False
    require_signatures: bool = False
    recheck_artifacts: bool = False
    gate: Gate | None = None


@dataclass(frozen=True, slots=True)
class CopyResult:
    """What happened to one request.

    ``target_digests`` maps ``str(target repository)`` to the root digest there (targets that
    completed or were already up to date); ``digest_map`` old -> new for rewritten manifests;
    ``bytes`` the blob bytes read from the source for this image; ``error`` says why it failed
    (or, for outcome ``rejected``, why the gate refused it);
    ``artifacts`` the references of artifacts copied or found up to date; ``dropped_signatures``
    the artifacts not copied because their subject's digest changed at a target.
    """

    source: str
    reference: str
    outcome: Outcome
    source_digest: Digest | None
    target_digests: Mapping[str, Digest]
    digest_map: Mapping[Digest, Digest]
    bytes: int
    error: str | None
    artifacts: tuple[str, ...] = ()
    dropped_signatures: tuple[DroppedSignature, ...] = ()


@dataclass(frozen=True, slots=True)
class DroppedSignature:
    """An artifact (``artifact``: its tag or digest) not copied to ``target`` because its subject
    ``subject`` became ``replacement`` there."""

    subject: Digest
    replacement: Digest
    target: str
    artifact: str

    def to_json(self) -> dict[str, str]:
        """For reports and logs: ``{artifact, subject, replacement, target}``."""
        return {
            "artifact": self.artifact,
            "subject": str(self.subject),
            "replacement": str(self.replacement),
            "target": self.target,
        }
