"""Digest-or-tag is decided in one place (``oci.is_digest``), and the transform vocabulary
(``Format``, ``Compression``) is declared once in ``oci.convert`` for the plan and the engine."""

from __future__ import annotations

from typing import get_args

from mirrord.copy import request as copy_request
from mirrord.oci import Digest, is_digest, name_with_reference
from mirrord.oci import convert as oci_convert
from mirrord.plan import fields, model

DIGEST = str(Digest.of(b"x"))


def test_is_digest_tells_digests_from_tags() -> None:
    assert is_digest(DIGEST)
    assert is_digest("sha512:" + "a" * 128)
    assert not is_digest("v1.2")
    assert not is_digest("latest")


def test_name_with_reference_joins_with_at_or_colon() -> None:
    assert name_with_reference("r.example/app", DIGEST) == f"r.example/app@{DIGEST}"
    assert name_with_reference("r.example/app", "1.0") == "r.example/app:1.0"


def test_format_and_compression_are_declared_once() -> None:
    assert model.Format is oci_convert.Format is copy_request.Format
    assert model.Compression is oci_convert.Compression is copy_request.Compression
    assert fields.FORMATS == get_args(oci_convert.Format) == ("keep", "oci", "docker")
    assert fields.COMPRESSIONS == get_args(oci_convert.Compression) == ("keep", "zstd", "gzip")
