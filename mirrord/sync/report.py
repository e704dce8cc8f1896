"""What a pass reports: one row per image (``--report``, ``/status``), one summary per entry."""

from __future__ import annotations

from dataclasses import dataclass, field
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
        # JSON types, built for this row by image_report; callers must not mutate them. Written out
        # field by field (in field order; None, {} and [] left out but for ``error``, which is always
        # there) rather than a loop over the fields: a third of the CPU of the loop.
        obj: dict[str, Any] = {"entry": self.entry, "source": self.source, "result": self.result}
        if self.source_digest is not None:
            obj["source_digest"] = self.source_digest
        if self.target_digests != {}:
            obj["target_digests"] = self.target_digests
        if self.digest_map != {}:
            obj["digest_map"] = self.digest_map
        obj["bytes"] = self.bytes
        obj["error"] = self.error
        if self.artifacts != []:
            obj["artifacts"] = self.artifacts
        if self.dropped_signatures != []:
            obj["dropped_signatures"] = self.dropped_signatures
        if self.target is not None:
            obj["target"] = self.target
        if self.formats != {}:
            obj["formats"] = self.formats
        return obj


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
    """The report's row for ``version`` of ``entry`` (its source written ``source_text``)."""
    # Runs once per image per pass: the empty maps and lists of an unchanged image are not copied.
    digest_map = result.digest_map
    dropped = result.dropped_signatures
    return ImageReport(
        entry,
        name_with_reference(source_text, version),
        result.outcome,
        str(result.source_digest) if result.source_digest else None,
        {k: str(v) for k, v in result.target_digests.items()},
        {str(k): str(v) for k, v in digest_map.items()} if digest_map else {},
        result.bytes,
        result.error,
        list(result.artifacts),
        [d.to_json() for d in dropped] if dropped else [],
    )
