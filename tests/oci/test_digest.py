"""Digest parsing, formatting and the streaming hasher."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirrord.oci import Digest, DigestHasher, InvalidDigest, OCIError

HEX64 = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "text",
    [
        f"sha256:{HEX64}",
        f"sha512:{HEX64 * 2}",
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
        "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
    ],
)
def test_valid_digests_round_trip(text: str) -> None:
    assert str(Digest.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "algorithm:hex"),
        ("sha256", "algorithm:hex"),
        (":abc", "algorithm:hex"),
        ("sha256:", "algorithm:hex"),
        ("SHA256:" + HEX64, "invalid algorithm"),
        ("sha256:" + HEX64[:-1], "64 lowercase hex"),
        ("sha256:" + HEX64.upper(), "64 lowercase hex"),
        ("sha256:" + HEX64 + "0", "64 lowercase hex"),
        ("sha512:" + HEX64, "128 lowercase hex"),
        ("sha256:" + "g" * 64, "64 lowercase hex"),
        ("foo:bar baz", "invalid encoded"),
    ],
)
def test_invalid_digests_say_why(text: str, fragment: str) -> None:
    with pytest.raises(InvalidDigest, match=fragment):
        Digest.parse(text)


def test_of_and_hasher_agree() -> None:
    data = b"hello world" * 1000
    hasher = DigestHasher()
    for start in range(0, len(data), 777):
        hasher.update(memoryview(data)[start : start + 777])
    assert hasher.digest() == Digest.of(data) == Digest("sha256", hashlib.sha256(data).hexdigest())
    assert hasher.size == len(data)
    assert hasher.matches(Digest.of(data), len(data))
    assert not hasher.matches(Digest.of(data), len(data) + 1)
    assert not hasher.matches(Digest.of(b"other"))


def test_sha512_is_verifiable_and_unknown_algorithms_are_not() -> None:
    assert Digest.of(b"x", "sha512").verifiable
    unknown = Digest.parse("blake3:abc")
    assert not unknown.verifiable
    with pytest.raises(InvalidDigest):
        unknown.hasher()


def test_digests_order_and_hash() -> None:
    a, b = Digest.of(b"a"), Digest.of(b"b")
    assert len({a, b, Digest.parse(str(a))}) == 2
    assert sorted([a, b]) == sorted([b, a])


@given(st.binary(max_size=256), st.sampled_from(["sha256", "sha512"]))
def test_parse_str_round_trip(data: bytes, algorithm: str) -> None:
    digest = Digest.of(data, algorithm)
    assert Digest.parse(str(digest)) == digest


@given(st.text(max_size=80))
def test_parse_never_raises_anything_but_oci_errors(text: str) -> None:
    try:
        digest = Digest.parse(text)
    except OCIError:
        return
    assert str(digest) == text
