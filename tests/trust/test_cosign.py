"""Cosign payloads and signature checks (pure)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from mirrord.oci import Digest
from mirrord.trust.cosign import InvalidPayload, parse_payload, payload_bytes, signed_by

DIGEST = Digest.of(b"manifest")


def test_payload_round_trips_and_is_deterministic() -> None:
    raw = payload_bytes("reg.example/app", DIGEST)
    assert raw == payload_bytes("reg.example/app", DIGEST)
    parsed = parse_payload(raw)
    assert (parsed.identity, parsed.digest) == ("reg.example/app", DIGEST)
    assert json.loads(raw)["critical"]["type"] == "cosign container image signature"


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"not json",
        b'{"critical": {"type": "atomic container signature", "identity": {}, "image": {}}}',
        b'{"critical": {"type": "cosign container image signature", "identity": {}, "image": {}}}',
        b'{"critical": {"type": "cosign container image signature", "identity": {"docker-reference": "a"},'
        b' "image": {"docker-manifest-digest": "no digest"}}}',
    ],
)
def test_malformed_payloads_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidPayload):
        parse_payload(body)


def test_signatures_check_against_the_payload_digest_for_ecdsa_and_rsa() -> None:
    payload = payload_bytes("reg.example/app", DIGEST)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_sig = ec_key.sign(payload, ec.ECDSA(hashes.SHA256()))
    rsa_sig = rsa_key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    digest = Digest.of(payload)
    assert signed_by(ec_key.public_key(), ec_sig, digest)
    assert signed_by(rsa_key.public_key(), rsa_sig, digest)
    assert not signed_by(ec_key.public_key(), rsa_sig, digest)
    assert not signed_by(ec_key.public_key(), ec_sig, Digest.of(payload + b" "))
    assert not signed_by(ec_key.public_key(), b"garbage", digest)
