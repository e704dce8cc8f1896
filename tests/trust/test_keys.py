"""Cosign key files: go-securesystemslib's vectors decrypt, our keys round-trip, secrets stay out
of messages, keygen writes a pair and never overwrites."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mirrord.cli import main
from mirrord.trust import TrustError
from mirrord.trust import keys as k

# go-securesystemslib encrypted_test.go: "reallyimportant" under "supersecret", at the three
# strengths its CheckParams accepts (the plaintext there is a JSON-marshalled []byte).
VECTORS = {
    "legacy": '{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"WO3mVvyTwJ9vwT5/Tk5OW5WPIBUofMjcpEfrLnfY4uA="},"cipher":{"name":"nacl/secretbox","nonce":"tCy7HcTFr4uxv4Nrg/DWmncuZ148U1MX"},"ciphertext":"08n43p5G5yviPEZpO7tPPF4aZQkWiWjkv4taFdhDBA0tamKH4nw="}',  # noqa: E501
    "standard": '{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"FhzPOt9/bJG4PTq6lQ6ecG6GzaOuOy/ynG5+yRiFlNs="},"cipher":{"name":"nacl/secretbox","nonce":"aw1ng1jHaDz/tQ7V2gR9O2+IGQ8xJEuE"},"ciphertext":"HycvuLZL4sYH0BrYTh4E/H20VtAW6u5zL5Pr+IBjYLYnCPzDkq8="}',  # noqa: E501
}


def _pem(body: str, label: str = k.SIGSTORE_LABEL) -> bytes:
    return k.pem_encode(label, body.encode())


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_securesystemslib_vectors_decrypt_with_our_kdf_and_secretbox(name: str) -> None:
    # The vectors hold no private key, so decrypt_private_key must say exactly that, past the cipher.
    with pytest.raises(TrustError, match="not a PKCS#8 private key"):
        k.decrypt_private_key(_pem(VECTORS[name]), b"supersecret", source="vector")
    with pytest.raises(TrustError, match="wrong passphrase"):
        k.decrypt_private_key(_pem(VECTORS[name]), b"supersecreT", source="vector")


def test_a_generated_key_round_trips_under_both_labels_and_signs() -> None:
    pair = k.generate_key_pair(b"pass phrase")
    assert pair.private_pem.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    envelope = json.loads(k.pem_blocks(pair.private_pem)[0][1])
    assert envelope["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1}
    assert len(base64.b64decode(envelope["kdf"]["salt"])) == 32
    assert len(base64.b64decode(envelope["cipher"]["nonce"])) == 24
    cosign_pem = pair.private_pem.replace(b"SIGSTORE", b"COSIGN")
    for pem in (pair.private_pem, cosign_pem):
        key = k.decrypt_private_key(pem, b"pass phrase", source="k")
        signature = key.sign(b"payload", ec.ECDSA(hashes.SHA256()))
        (public,) = k.load_public_keys(pair.public_pem, source="pub")
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, b"payload", ec.ECDSA(hashes.SHA256()))


def test_a_key_encrypted_by_hand_as_cosign_does_decrypts() -> None:
    """Independent of encrypt_private_key: scrypt (hashlib) + secretbox (PyNaCl) assembled here."""
    import hashlib

    import nacl.secret

    private = ec.generate_private_key(ec.SECP256R1())
    der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    salt, nonce = b"s" * 32, b"n" * 24
    box_key = hashlib.scrypt(b"pw", salt=salt, n=65536, r=8, p=1, maxmem=2**28, dklen=32)
    sealed = nacl.secret.SecretBox(box_key).encrypt(der, nonce).ciphertext
    body = {"kdf": {"name": "scrypt", "params": {"N": 65536, "r": 8, "p": 1},
                    "salt": base64.b64encode(salt).decode()},
            "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
            "ciphertext": base64.b64encode(sealed).decode()}  # fmt: skip
    key = k.decrypt_private_key(_pem(json.dumps(body), k.COSIGN_LABEL), b"pw", source="k")
    assert key.private_numbers() == private.private_numbers()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '{"kdf":{"name":"scrypt","params":{"N":99,"r":99,"p":99},"salt":"AA=="},"cipher":{}}',
            "scrypt para",
        ),
        ('{"kdf":{"name":"argon2"}}', "unsupported key derivation"),
        ("not json", "not JSON"),
    ],
)
def test_bad_key_files_are_named_errors(body: str, message: str) -> None:
    with pytest.raises(TrustError, match=message) as info:
        k.decrypt_private_key(_pem(body), b"secret-pass", source="/etc/k.key")
    assert str(info.value).startswith("/etc/k.key: ")
    assert "secret-pass" not in str(info.value)


def test_a_file_without_a_private_key_block() -> None:
    with pytest.raises(TrustError, match="no ENCRYPTED SIGSTORE PRIVATE KEY"):
        k.decrypt_private_key(
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", b"", source="x"
        )


def test_passphrase_file_loses_one_trailing_newline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for text, expected in ((b"pw\n", b"pw"), (b"pw\r\n", b"pw"), (b"pw\n\n", b"pw\n"), (b"pw", b"pw")):
        (tmp_path / "p").write_bytes(text)
        assert k.read_passphrase(file=str(tmp_path / "p")) == expected
    monkeypatch.setenv("MIRRORD_TEST_PASS", "from-env")
    assert k.read_passphrase(env="MIRRORD_TEST_PASS") == b"from-env"
    with pytest.raises(TrustError, match="MIRRORD_TEST_UNSET is not set"):
        k.read_passphrase(env="MIRRORD_TEST_UNSET")


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pass").write_text("s3cret\n")
    prefix = str(tmp_path / "mirror")
    assert main(["keygen", prefix, "--passphrase-file", str(tmp_path / "pass")]) == 0
    key_file, pub_file = tmp_path / "mirror.key", tmp_path / "mirror.pub"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    private = k.decrypt_private_key(key_file.read_bytes(), b"s3cret", source="k")
    (public,) = k.load_public_keys(pub_file.read_bytes(), source="p")
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.public_numbers() == private.public_key().public_numbers()
    before = key_file.read_bytes()
    assert main(["keygen", prefix, "--passphrase-file", str(tmp_path / "pass")]) == 2
    assert key_file.read_bytes() == before
    out = capsys.readouterr()
    assert "exists" in out.err
    assert "s3cret" not in out.out + out.err
