"""A target's signing key as the copy engine's :class:`mirrord.copy.hooks.Signer`.

For a root manifest ``D`` at a target repository ``R`` it keeps ``R:sha256-<hex of D>.sig``: the
layers already there stay, the source's signatures of ``D`` are merged in when the job asks (their
payload blobs brought along), and with ``sign`` one signature of its own is appended, whose payload
names ``R`` (repository, as cosign signs) and ``D``. The payload bytes are deterministic, so a
signature of its own already present (same payload digest, verifying with its public key) is not
added twice. The manifest is written only when its layers changed. Jobs for the same tag run one at
a time (read, modify, write).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from mirrord.oci import Descriptor, Digest, ImageManifest
from mirrord.oci import mediatypes as mt
from mirrord.registry.base import Repository
from mirrord.registry.errors import NotFound
from mirrord.trust.cosign import (
    SIGNATURE_ANNOTATION,
    layer_signature,
    payload_bytes,
    sign_payload,
    signature_descriptor,
    signature_manifest,
    signature_tag,
    signed_by,
)


class CosignSigner:
    """Signs with ``key`` (an ECDSA private key; its passphrase is long gone). ``signed`` counts the
    signatures it added."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        self._public = key.public_key()
        self._locks: dict[tuple[str, Digest], asyncio.Lock] = {}
        self.signed = 0

    def __repr__(self) -> str:
        return "CosignSigner(<key>)"

    async def __call__(
        self,
        target: Repository,
        digest: Digest,
        *,
        source: Repository,
        source_digest: Digest,
        merge_source: bool,
        sign: bool,
    ) -> None:
        """Bring ``target``'s ``.sig`` of ``digest`` up to date (module docstring)."""
        job = _Job(target, digest, source, source_digest, merge_source, sign)
        async with self._locks.setdefault((str(target), digest), asyncio.Lock()):
            await self._update(job)

    async def _update(self, job: _Job) -> None:
        tag = signature_tag(job.digest)
        current = await _signature_manifest(job.target, tag)
        layers = list(current.layers) if current is not None else []
        if job.merge_source:
            source = await _signature_manifest(job.source, signature_tag(job.source_digest))
            for layer in source.layers if source is not None else ():
                if _key(layer) not in {_key(d) for d in layers}:
                    await _bring(job.source, job.target, layer)
                    layers.append(layer)
        if job.sign and not self._has_own(job, layers):
            payload = payload_bytes(str(job.target), job.digest)
            signature = sign_payload(self._key, payload)
            await _put(job.target, Digest.of(payload), payload)
            layers.append(signature_descriptor(payload, signature))
            self.signed += 1
        if current is None and not layers:
            return
        if current is not None and [_key(d) for d in layers] == [_key(d) for d in current.layers]:
            return
        raw, config = signature_manifest(layers)
        await _put(job.target, Digest.of(config), config)
        await job.target.manifest_put(tag, raw, mt.OCI_MANIFEST)

    def _has_own(self, job: _Job, layers: list[Descriptor]) -> bool:
        wanted = Digest.of(payload_bytes(str(job.target), job.digest))
        for layer in layers:
            signature = layer_signature(layer) if layer.digest == wanted else None
            if signature is not None and signed_by(self._public, signature, wanted):
                return True
        return False


@dataclass(frozen=True, slots=True)
class _Job:
    target: Repository
    digest: Digest
    source: Repository
    source_digest: Digest
    merge_source: bool
    sign: bool


def _key(layer: Descriptor) -> tuple[Digest, str | None]:
    return layer.digest, layer.annotations.get(SIGNATURE_ANNOTATION)


async def _signature_manifest(repository: Repository, tag: str) -> ImageManifest | None:
    try:
        manifest = await repository.manifest_get(tag)
    except NotFound:
        return None
    return manifest if isinstance(manifest, ImageManifest) else None


async def _bring(source: Repository, target: Repository, layer: Descriptor) -> None:
    """A small signature blob from ``source`` to ``target`` unless it is there already."""
    if await target.blob_head(layer.digest) is not None:
        return
    chunks = []
    async with source.blob_open(layer.digest) as stream:
        async for chunk in stream:
            chunks.append(chunk)
    data = b"".join(chunks)  # checked absent above: no second HEAD through _put
    await target.blob_put(layer.digest, len(data), _once(data))


async def _put(repository: Repository, digest: Digest, data: bytes) -> None:
    if await repository.blob_head(digest) is None:
        await repository.blob_put(digest, len(data), _once(data))


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
