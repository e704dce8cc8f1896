"""Cosign's key files: passphrase-encrypted private keys and PEM public keys.

A private key file is one PEM block labelled ``ENCRYPTED SIGSTORE PRIVATE KEY`` (cosign 2 and later,
``skopeo generate-sigstore-key``) or ``ENCRYPTED COSIGN PRIVATE KEY`` (cosign 1). Its body is the JSON
of go-securesystemslib's ``encrypted`` package::

    {"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": "<base64, 32 bytes>"},
     "cipher": {"name": "nacl/secretbox", "nonce": "<base64, 24 bytes>"},
     "ciphertext": "<base64>"}

The scrypt output (32 bytes) is the secretbox key; the plaintext is the PKCS#8 DER of an ECDSA P-256
private key. Only the scrypt parameters that library writes are accepted (N 2^15, 2^16 or 2^17 with
r 8, p 1): a file must not be able to make us spend unbounded memory. A public key file is a PEM
``PUBLIC KEY`` (SubjectPublicKeyInfo) block. Nothing here ever puts a passphrase or key bytes into
an error message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.secret
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mirrord.trust.errors import TrustError

SIGSTORE_LABEL = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_LABEL = "ENCRYPTED COSIGN PRIVATE KEY"
PRIVATE_LABELS = (SIGSTORE_LABEL, COSIGN_LABEL)
PUBLIC_LABEL = "PUBLIC KEY"

#: What keygen writes (go-securesystemslib's "legacy" strength, which cosign uses).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1
#: Parameter sets a key file may carry (legacy, standard, OWASP strength).
ACCEPTED_SCRYPT = frozenset({(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)})
SALT_SIZE, NONCE_SIZE, KEY_SIZE = 32, 24, 32

VerifyingKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

_PEM_RE = re.compile(
    rb"-----BEGIN (?P<label>[A-Z0-9 ]+)-----\r?\n(?P<body>[A-Za-z0-9+/=\r\n]*?)-----END (?P=label)-----"
)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A key pair as files hold it: the encrypted private key PEM and the public key PEM."""

    private_pem: bytes
    public_pem: bytes


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """Every PEM block in ``data`` as (label, DER bytes); malformed base64 raises ValueError."""
    blocks = []
    for m in _PEM_RE.finditer(data):
        try:
            der = base64.b64decode(re.sub(rb"\s", b"", m["body"]), validate=True)
        except binascii.Error:
            raise ValueError(f"the {m['label'].decode()} block is not valid base64") from None
        blocks.append((m["label"].decode(), der))
    return blocks


def pem_encode(label: str, der: bytes) -> bytes:
    """One PEM block, base64 wrapped at 64 columns (as Go's ``pem.Encode`` writes it)."""
    text = base64.b64encode(der).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""]).encode()


# -- private keys ----------------------------------------------------------------------------------


def decrypt_private_key(data: bytes, passphrase: bytes, *, source: str) -> ec.EllipticCurvePrivateKey:
    """The ECDSA private key in the cosign key file ``data`` (``source`` names it in errors).

    Raises TrustError for a file that is not such a key, unsupported parameters, or a wrong
    passphrase (the message never shows the passphrase or key material)."""
    envelope = _envelope(data, source)
    key = _kdf_key(envelope, passphrase, source)
    nonce, ciphertext = _cipher(envelope, source)
    try:
        der = nacl.secret.SecretBox(key).decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError:
        raise TrustError(f"{source}: cannot decrypt the private key (wrong passphrase?)") from None
    try:
        private = serialization.load_der_private_key(der, password=None)
    except (ValueError, UnsupportedAlgorithm):
        raise TrustError(f"{source}: the decrypted key is not a PKCS#8 private key") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise TrustError(f"{source}: only ECDSA keys can sign (got {type(private).__name__})")
    return private


def _envelope(data: bytes, source: str) -> dict[str, Any]:
    try:
        blocks = [(label, der) for label, der in pem_blocks(data) if label in PRIVATE_LABELS]
    except ValueError as exc:
        raise TrustError(f"{source}: {exc}") from None
    if not blocks:
        raise TrustError(f"{source}: no {SIGSTORE_LABEL} or {COSIGN_LABEL} PEM block")
    try:
        envelope = json.loads(blocks[0][1])
    except ValueError:
        raise TrustError(f"{source}: the encrypted key is not JSON") from None
    if not isinstance(envelope, dict):
        raise TrustError(f"{source}: the encrypted key is not a JSON object")
    return envelope


def _field(obj: Any, name: str, source: str) -> Any:
    if not isinstance(obj, dict) or name not in obj:
        raise TrustError(f"{source}: the encrypted key has no {name!r}")
    return obj[name]


def _b64(obj: Any, name: str, size: int | None, source: str) -> bytes:
    value = _field(obj, name, source)
    try:
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except binascii.Error:
        raw = None
    if raw is None or (size is not None and len(raw) != size):
        wanted = f" of {size} bytes" if size is not None else ""
        raise TrustError(f"{source}: the encrypted key's {name!r} is not base64{wanted}")
    return raw


def _kdf_key(envelope: dict[str, Any], passphrase: bytes, source: str) -> bytes:
    kdf = _field(envelope, "kdf", source)
    if _field(kdf, "name", source) != "scrypt":
        raise TrustError(f"{source}: unsupported key derivation {kdf.get('name')!r} (only scrypt)")
    params = _field(kdf, "params", source)
    triple = tuple(params.get(k) for k in ("N", "r", "p")) if isinstance(params, dict) else ()
    if triple not in ACCEPTED_SCRYPT:
        raise TrustError(f"{source}: unsupported scrypt parameters {params!r}")
    n, r, p = triple
    salt = _b64(kdf, "salt", None, source)
    return scrypt(passphrase, salt, n, r, p)


def scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    """The 32-byte secretbox key for ``passphrase`` (memory bound sized for ``n`` and ``r``)."""
    return hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + 2**20, dklen=KEY_SIZE)


def _cipher(envelope: dict[str, Any], source: str) -> tuple[bytes, bytes]:
    cipher = _field(envelope, "cipher", source)
    if _field(cipher, "name", source) != "nacl/secretbox":
        raise TrustError(f"{source}: unsupported cipher {cipher.get('name')!r} (only nacl/secretbox)")
    return _b64(cipher, "nonce", NONCE_SIZE, source), _b64(envelope, "ciphertext", None, source)


def encrypt_private_key(
    private: ec.EllipticCurvePrivateKey, passphrase: bytes, *, label: str = SIGSTORE_LABEL
) -> bytes:
    """``private`` as a cosign encrypted key file (fresh salt and nonce, legacy scrypt strength)."""
    der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    salt, nonce = os.urandom(SALT_SIZE), os.urandom(NONCE_SIZE)
    key = scrypt(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    sealed = nacl.secret.SecretBox(key).encrypt(der, nonce).ciphertext
    envelope = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed).decode(),
    }
    return pem_encode(label, json.dumps(envelope, separators=(",", ":")).encode())


def public_pem(key: ec.EllipticCurvePrivateKey | VerifyingKey) -> bytes:
    """The PEM ``PUBLIC KEY`` of ``key`` (or of a private key's public half)."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def generate_key_pair(passphrase: bytes) -> KeyPair:
    """A new ECDSA P-256 key pair in cosign's format."""
    private = ec.generate_private_key(ec.SECP256R1())
    return KeyPair(encrypt_private_key(private, passphrase), public_pem(private))


def write_key_pair(prefix: str | Path, passphrase: bytes) -> tuple[Path, Path]:
    """Write ``PREFIX.key`` (mode 0600) and ``PREFIX.pub``; FileExistsError when either exists
    (nothing is overwritten, nothing half written)."""
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (key_path, pub_path):
        if path.exists():
            raise FileExistsError(f"{path} exists (not overwritten)")
    pair = generate_key_pair(passphrase)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pair.private_pem)
    pub_path.write_bytes(pair.public_pem)
    return key_path, pub_path


# -- public keys -----------------------------------------------------------------------------------


def load_public_keys(data: bytes, *, source: str) -> list[VerifyingKey]:
    """Every PEM ``PUBLIC KEY`` in ``data`` (ECDSA or RSA); TrustError when there is none or one is
    of another kind."""
    try:
        blocks = [der for label, der in pem_blocks(data) if label == PUBLIC_LABEL]
    except ValueError as exc:
        raise TrustError(f"{source}: {exc}") from None
    if not blocks:
        raise TrustError(f"{source}: no PEM PUBLIC KEY block")
    keys: list[VerifyingKey] = []
    for der in blocks:
        try:
            key = serialization.load_der_public_key(der)
        except (ValueError, UnsupportedAlgorithm):
            raise TrustError(f"{source}: a PUBLIC KEY block is not a valid public key") from None
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise TrustError(f"{source}: unsupported public key type {type(key).__name__} (ECDSA or RSA)")
        keys.append(key)
    return keys


# -- passphrases -----------------------------------------------------------------------------------


def read_passphrase(*, file: str | None = None, env: str | None = None) -> bytes:
    """The passphrase from ``file`` (one trailing newline dropped, as skopeo's
    ``--sign-passphrase-file``) or the environment variable ``env``. TrustError naming the file or
    variable (never the passphrase) when it cannot be read."""
    if file is not None:
        try:
            text = Path(file).read_bytes()
        except OSError as exc:
            raise TrustError(f"passphrase file {file}: {exc.strerror or exc}") from None
        return text[:-2] if text.endswith(b"\r\n") else text.removesuffix(b"\n")
    if env is not None:
        if env not in os.environ:
            raise TrustError(f"passphrase environment variable {env} is not set")
        return os.environ[env].encode()
    return b""
