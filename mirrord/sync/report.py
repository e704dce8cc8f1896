"""What a pass reports: one row per image (``--report``, ``/status``), one summary per entry."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from mirrord.copy.engine import CopyResult
from mirrord.oci import name_with_reference

Result = Literal[
    "copied", "unchanged", "failed", "rejected", "would-copy", "pruned", "would-prune", "missing", "refused"
]
#: Results that make an entry (and the exit status) fail: ``rejected`` by the signature policy;
#: ``missing`` and ``refused`` are what a dry run finds where the real pass would fail.
FAILED_RESULTS = frozenset({"failed", "rejected", "missing", "refused"})


@dataclass(slots=True)
class ImageReport:
    """One row of the report: one source image (tag or digest) of one entry."""

    entry: str
    source: str
    result: Result
    source_digest: str | None = None
    target_digests: dict[str, str] = field(default_factory=dict)
    digest_map: dict[str, str] = field(default_factory=dict)
    bytes: int = 0
    error: str | None = None
    artifacts: list[str] = field(default_factory=list)
    dropped_signatures: list[dict[str, str]] = field(default_factory=list)
    #: The one target a dry-run row is about (None: every target, or the source itself).
    target: str | None = None
    #: Per target, the format and compression it was written with (``oci+keep``; ``keep`` is as is).
    formats: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``--report`` (no secrets: references and digests only).
        ``dropped_signatures`` lists ``{artifact, subject, replacement, target}``: signatures not
        copied because their subject's digest changed at that target."""
        # Not dataclasses.asdict: it deep-copies every value, and this runs once per image per pass
        # (a fifth of a nothing-changed pass's own CPU at 2,000 tags). The values are already plain
        # JSON types, built for this row by image_report; callers must not mutate them.
        return {k: v for k in _IMAGE_FIELDS if (v := getattr(self, k)) not in (None, {}, []) or k == "error"}


_IMAGE_FIELDS = tuple(f.name for f in fields(ImageReport))


@dataclass(slots=True)
class EntryReport:
    """What one entry's pass did."""

    entry: str
    started: float
    finished: float = 0.0
    images: list[ImageReport] = field(default_factory=list)
    error: str | None = None
    #: A pattern entry: the repositories (paths) this pass covered; None for a plain entry.
    repositories: list[str] | None = None

    @property
    def ok(self) -> bool:
        """True when the entry resolved and no image failed, was rejected (by the policy) or, in a
        dry run, was found missing or refused."""
        return self.error is None and all(i.result not in FAILED_RESULTS for i in self.images)

    def count(self, result: Result) -> int:
        """How many images ended with ``result``."""
        return sum(1 for i in self.images if i.result == result)

    @property
    def total_bytes(self) -> int:
        """The bytes the pass copied, over every image."""
        return sum(i.bytes for i in self.images)

    @property
    def first_error(self) -> str | None:
        """The first image's error, else the entry's own; None when there is neither."""
        return next((i.error for i in self.images if i.error), None) or self.error or None


def image_report(entry: str, source_text: str, version: str, result: CopyResult) -> ImageReport:
    return ImageReport(
        entry=entry,
        source=name_with_reference(source_text, version),
        result=result.outcome,
        source_digest=str(result.source_digest) if result.source_digest else None,
        target_digests={k: str(v) for k, v in result.target_digests.items()},
        digest_map={str(k): str(v) for k, v in result.digest_map.items()},
        bytes=result.bytes,
        error=result.error,
        artifacts=list(result.artifacts),
        dropped_signatures=[d.to_json() for d in result.dropped_signatures],
    )
