"""Cosign's signature format, pure (no I/O): simple-signing payloads and ``.sig`` manifests.

A signature of the manifest ``sha256:<hex>`` lives under the tag ``sha256-<hex>.sig`` of the same
repository: an image manifest whose every layer is one signature. The layer blob is the payload::

    {"critical": {"identity": {"docker-reference": "host/repo"},
                  "image": {"docker-manifest-digest": "sha256:..."},
                  "type": "cosign container image signature"},
     "optional": null}

and the layer's ``dev.cosignproject.cosign/signature`` annotation is the base64 of an ASN.1 DER
signature over the payload bytes with SHA-256. Because the layer's sha256 digest IS that SHA-256,
a signature can be checked against a key from the manifest alone (:func:`signed_by`), before the
payload is fetched: a signature by an untrusted key costs no blob request.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

from mirrord.oci import Descriptor, Digest, ImageManifest, InvalidDigest
from mirrord.oci import mediatypes as mt
from mirrord.trust.keys import VerifyingKey

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"
#: A payload is a few hundred bytes; anything much larger is not a signature we will read.
MAX_PAYLOAD_BYTES = 64 * 1024


class InvalidPayload(ValueError):
    """A signature payload that does not have the simple-signing shape."""


@dataclass(frozen=True, slots=True)
class Payload:
    """What a signature claims: the image's reference (``identity``) and manifest digest."""

    identity: str
    digest: Digest


@dataclass(frozen=True, slots=True)
class SignatureLayer:
    """One signature of a ``.sig`` manifest: the payload's descriptor and the DER signature."""

    layer: Descriptor
    signature: bytes


def signature_tag(subject: Digest) -> str:
    """``sha256-<hex>.sig``: where cosign keeps the signatures of ``subject``."""
    return f"{subject.algorithm}-{subject.encoded}.sig"


def payload_bytes(identity: str, digest: Digest) -> bytes:
    """The payload cosign writes for ``identity`` and ``digest`` (deterministic bytes, so one
    identity and digest always give the same layer digest)."""
    body = {
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": str(digest)},
            "type": SIGNATURE_TYPE,
        },
        "optional": None,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def parse_payload(raw: bytes) -> Payload:
    """The identity and digest a payload claims; InvalidPayload when it is not a cosign
    container image signature (``critical.type``) or a field is missing or malformed."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidPayload("the payload is not JSON") from None
    critical = _object(body, "critical")
    if critical.get("type") != SIGNATURE_TYPE:
        raise InvalidPayload(f"unrecognised signature type {critical.get('type')!r}")
    identity = _object(critical, "identity").get("docker-reference")
    digest = _object(critical, "image").get("docker-manifest-digest")
    if not isinstance(identity, str) or not isinstance(digest, str):
        raise InvalidPayload("the payload lacks docker-reference or docker-manifest-digest")
    try:
        return Payload(identity, Digest.parse(digest))
    except InvalidDigest as exc:
        raise InvalidPayload(str(exc)) from None


def _object(obj: Any, name: str) -> dict[str, Any]:
    value = obj.get(name) if isinstance(obj, dict) else None
    if not isinstance(value, dict):
        raise InvalidPayload(f"the payload has no {name!r} object")
    return value


def signature_layers(manifest: ImageManifest) -> list[SignatureLayer]:
    """The signatures of a ``.sig`` manifest: simple-signing layers with a base64 signature
    annotation (other layers and unreadable annotations are skipped: they sign nothing)."""
    found = []
    for layer in manifest.layers:
        signature = layer_signature(layer)
        if signature is not None:
            found.append(SignatureLayer(layer, signature))
    return found


def layer_signature(layer: Descriptor) -> bytes | None:
    """The DER signature of a simple-signing layer; None for another layer or a bad annotation."""
    text = layer.annotations.get(SIGNATURE_ANNOTATION)
    if layer.media_type != SIMPLE_SIGNING or not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return None


def signed_by(key: VerifyingKey, signature: bytes, payload_digest: Digest) -> bool:
    """True when ``signature`` is ``key``'s signature of the payload whose sha256 digest is
    ``payload_digest`` (ECDSA, or RSA PKCS#1 v1.5, over SHA-256; checked without the payload)."""
    if payload_digest.algorithm != "sha256":
        return False
    prehashed = utils.Prehashed(hashes.SHA256())
    hashed = bytes.fromhex(payload_digest.encoded)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, hashed, ec.ECDSA(prehashed))
        else:
            key.verify(signature, hashed, padding.PKCS1v15(), prehashed)
    except (InvalidSignature, ValueError):
        return False
    return True


def sign_payload(key: ec.EllipticCurvePrivateKey, payload: bytes) -> bytes:
    """The DER ECDSA signature of ``payload`` with SHA-256."""
    return key.sign(payload, ec.ECDSA(hashes.SHA256()))


def signature_descriptor(payload: bytes, signature: bytes) -> Descriptor:
    """The layer descriptor of one signature (payload blob + signature annotation)."""
    obj = {
        "mediaType": SIMPLE_SIGNING,
        "size": len(payload),
        "digest": str(Digest.of(payload)),
        "annotations": {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()},
    }
    return Descriptor.from_json(obj)


def signature_manifest(layers: Sequence[Descriptor]) -> tuple[bytes, bytes]:
    """A ``.sig`` manifest listing ``layers``, and its config blob (cosign's: an empty image config
    whose diff_ids are the layers' digests). Returns (manifest bytes, config bytes)."""
    config = json.dumps(
        {
            "architecture": "",
            "config": {},
            "created": "0001-01-01T00:00:00Z",
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [str(d.digest) for d in layers]},
        },
        separators=(",", ":"),
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "size": len(config), "digest": str(Digest.of(config))},
        "layers": [d.to_json() for d in layers],
    }
    return json.dumps(manifest, separators=(",", ":")).encode(), config
