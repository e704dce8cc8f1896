"""An independent, minimal cosign: keys, signing and checking written here with ``cryptography``
directly, so tests check mirrord's trust code against cosign's format, not against itself.

Only the registry transport (a Repository to push and read through) is mirrord's.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mirrord.oci import Digest
from mirrord.registry.base import Repository
from mirrord.registry.errors import NotFound

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
ANNOTATION = "dev.cosignproject.cosign/signature"


@dataclass
class CosignKey:
    """A P-256 key pair; ``pub`` is where its public PEM was written."""

    private: ec.EllipticCurvePrivateKey
    pub: Path

    @property
    def public(self) -> ec.EllipticCurvePublicKey:
        return self.private.public_key()

    @classmethod
    def make(cls, path: Path) -> CosignKey:
        private = ec.generate_private_key(ec.SECP256R1())
        path.write_bytes(
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return cls(private, path)


def sig_tag(digest: Digest | str) -> str:
    return str(digest).replace(":", "-") + ".sig"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _put_blob(repo: Repository, data: bytes) -> dict[str, Any]:
    digest = Digest.parse(_sha(data))
    if await repo.blob_head(digest) is None:
        await repo.blob_put(digest, len(data), _once(data))
    return {"digest": str(digest), "size": len(data)}


async def sign(repo: Repository, digest: Digest, key: CosignKey, identity: str) -> None:
    """Sign ``digest`` as cosign does: payload layer + signature annotation, appended to the
    ``.sig`` manifest of ``repo`` (existing signatures kept)."""
    payload = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": identity},
                "image": {"docker-manifest-digest": str(digest)},
                "type": "cosign container image signature",
            },
            "optional": {"creator": "test"},
        }
    ).encode()
    signature = key.private.sign(payload, ec.ECDSA(hashes.SHA256()))
    layer = {"mediaType": SIMPLE_SIGNING, **await _put_blob(repo, payload),
             "annotations": {ANNOTATION: base64.b64encode(signature).decode()}}  # fmt: skip
    try:
        layers = json.loads((await repo.manifest_get(sig_tag(digest))).raw)["layers"]
    except NotFound:
        layers = []
    layers.append(layer)
    rootfs = {"type": "layers", "diff_ids": [x["digest"] for x in layers]}
    config = json.dumps({"architecture": "", "os": "", "config": {}, "rootfs": rootfs}).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **await _put_blob(repo, config)},
        "layers": layers,
    }
    await repo.manifest_put(sig_tag(digest), json.dumps(manifest).encode(), manifest["mediaType"])


@dataclass(frozen=True)
class Found:
    """A signature read back: what it claims, and the name of the key that verifies it (or None)."""

    identity: str
    digest: str
    verified_by: str | None


async def read_signatures(
    repo: Repository, digest: Digest | str, keys: dict[str, ec.EllipticCurvePublicKey]
) -> list[Found]:
    """Every signature in ``repo``'s ``.sig`` of ``digest``, each checked against ``keys``."""
    try:
        manifest = json.loads((await repo.manifest_get(sig_tag(digest))).raw)
    except NotFound:
        return []
    found = []
    for layer in manifest["layers"]:
        async with repo.blob_open(Digest.parse(layer["digest"])) as stream:
            payload = b"".join([chunk async for chunk in stream])
        signature = base64.b64decode(layer["annotations"][ANNOTATION])
        by = None
        for name, key in keys.items():
            try:
                key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
            except InvalidSignature:
                continue
            by = name
        critical = json.loads(payload)["critical"]
        assert critical["type"] == "cosign container image signature"
        found.append(
            Found(critical["identity"]["docker-reference"], critical["image"]["docker-manifest-digest"], by)
        )
    return found


def public_key(pem_file: Path) -> ec.EllipticCurvePublicKey:
    """The ECDSA public key of a PEM file (cryptography directly)."""
    key = serialization.load_pem_public_key(pem_file.read_bytes())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key
