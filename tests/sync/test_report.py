"""The report's rows: ``image_report`` from a copy result, and ``ImageReport.to_json``."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from mirrord.copy.request import CopyResult, DroppedSignature
from mirrord.oci.digest import Digest
from mirrord.sync.report import ImageReport, image_report

A = Digest.parse("sha256:" + "a" * 64)
B = Digest.parse("sha256:" + "b" * 64)


def _rule(row: ImageReport) -> dict[str, Any]:
    """The contract: every field in field order, None, {} and [] left out but ``error``."""
    return {
        f.name: v
        for f in fields(ImageReport)
        if (v := getattr(row, f.name)) not in (None, {}, []) or f.name == "error"
    }


def _rows() -> list[ImageReport]:
    full = ImageReport(
        entry="e",
        source="reg/src:1",
        result="copied",
        source_digest=str(A),
        target_digests={"reg/dst": str(B)},
        digest_map={str(A): str(B)},
        bytes=12,
        error=None,
        artifacts=["sha256-a.sig"],
        dropped_signatures=[{"artifact": "x", "subject": str(A), "replacement": str(B), "target": "t"}],
        target="reg/dst",
        formats={"reg/dst": "oci+zstd"},
    )
    return [
        ImageReport(entry="e", source="reg/src:1", result="unchanged"),
        ImageReport(entry="e", source="reg/src:1", result="failed", error="boom"),
        ImageReport(entry="", source="", result="pruned", source_digest=""),
        full,
    ]


def test_to_json_keeps_field_order_and_leaves_out_only_empty_values_but_error() -> None:
    for row in _rows():
        got = row.to_json()
        assert got == _rule(row)
        assert list(got) == list(_rule(row))


def test_image_report_copies_every_field_of_the_result() -> None:
    dropped = DroppedSignature(artifact="sha256-a.sig", subject=A, replacement=B, target="reg/dst")
    result = CopyResult(
        source="reg/src",
        reference="1",
        outcome="copied",
        source_digest=A,
        target_digests={"reg/dst": B},
        digest_map={A: B},
        bytes=7,
        error=None,
        artifacts=("sha256-a.sig",),
        dropped_signatures=(dropped,),
    )
    row = image_report("e", "reg/src", "1", result)
    assert row.to_json() == {
        "entry": "e",
        "source": "reg/src:1",
        "result": "copied",
        "source_digest": str(A),
        "target_digests": {"reg/dst": str(B)},
        "digest_map": {str(A): str(B)},
        "bytes": 7,
        "error": None,
        "artifacts": ["sha256-a.sig"],
        "dropped_signatures": [dropped.to_json()],
    }
    by_digest = image_report("e", "reg/src", str(A), result)
    assert by_digest.source == f"reg/src@{A}"


def test_an_unchanged_row_has_fresh_empty_containers() -> None:
    result = CopyResult(
        source="reg/src",
        reference="1",
        outcome="unchanged",
        source_digest=A,
        target_digests={"reg/dst": A},
        digest_map={},
        bytes=0,
        error=None,
    )
    one, two = image_report("e", "reg/src", "1", result), image_report("e", "reg/src", "2", result)
    assert one.to_json() == {
        "entry": "e",
        "source": "reg/src:1",
        "result": "unchanged",
        "source_digest": str(A),
        "target_digests": {"reg/dst": str(A)},
        "bytes": 0,
        "error": None,
    }
    # Rows are mutated later (formats, hints): none may share a container with another.
    assert one.digest_map is not two.digest_map
    assert one.dropped_signatures is not two.dropped_signatures
