"""The policy as the copy engine's :class:`mirrord.copy.hooks.Gate`: admit or refuse an image by its
root manifest and its cosign signatures, before anything else of it is read.

Cost per image, at the source: nothing for ``insecureAcceptAnything``/``reject``; for
``sigstoreSigned`` one GET of ``sha256-<hex>.sig`` (a 404 when unsigned), then one small blob GET
per signature whose cryptographic signature a trusted key made (to read the identity and digest it
claims). Signatures by other keys are dismissed from the ``.sig`` manifest alone, so a refused image
costs no blob request at all. :attr:`PolicyGate.stats` adds the requests and time up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from mirrord.oci import AnyManifest, ImageManifest, InvalidReference, Reference, name_with_reference
from mirrord.registry.base import Repository
from mirrord.registry.errors import NotFound
from mirrord.trust.cosign import (
    MAX_PAYLOAD_BYTES,
    InvalidPayload,
    Payload,
    SignatureLayer,
    parse_payload,
    signature_layers,
    signature_tag,
    signed_by,
)
from mirrord.trust.policy import ACCEPT, REJECT, Policy, Requirement

log = logging.getLogger(__name__)


@dataclass(slots=True)
class GateStats:
    """What checking cost so far: images judged, source requests made, seconds spent."""

    images: int = 0
    requests: int = 0
    seconds: float = 0.0


def intended_reference(source: Repository, reference: str) -> Reference | None:
    """The reference an image was asked for (``host/repo:tag`` or ``host/repo@digest``), or None
    for a source without a registry identity (an OCI layout)."""
    name = str(source)
    if name.startswith("oci:"):
        return None
    try:
        return Reference.parse(name_with_reference(name, reference), default_tag=None)
    except InvalidReference:
        return None


class PolicyGate:
    """Judges images against ``policy``; one instance may serve many passes."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.stats = GateStats()

    async def __call__(self, source: Repository, reference: str, root: AnyManifest) -> str | None:
        """None to admit; else ``signature policy PATH (scope S): why``."""
        started = time.perf_counter()
        check = _Check(source, root, intended_reference(source, reference))
        scope, requirements = self.policy.requirements(check.intended)
        try:
            for requirement in requirements:
                refusal = await check.requirement(requirement)
                if refusal is not None:
                    return f"signature policy {self.policy.path} (scope {scope}): {refusal}"
            return None
        finally:
            elapsed = time.perf_counter() - started
            self.stats.images += 1
            self.stats.requests += check.requests
            self.stats.seconds += elapsed
            log.debug(
                "signature policy checked",
                extra={
                    "fields": {
                        "image": f"{source}:{reference}",
                        "scope": scope,
                        "requests": check.requests,
                        "ms": round(elapsed * 1000, 1),
                    }
                },
            )


class _Check:
    """One image's evaluation: its signatures are read once, whatever the requirements."""

    def __init__(self, source: Repository, root: AnyManifest, intended: Reference | None) -> None:
        self.source = source
        self.root = root
        self.intended = intended
        self.requests = 0
        self._signatures: list[SignatureLayer] | None = None

    async def requirement(self, requirement: Requirement) -> str | None:
        if requirement.unsupported is not None:
            return requirement.unsupported
        if requirement.kind == ACCEPT:
            return None
        if requirement.kind == REJECT:
            return "rejected (reject requirement)"
        return await self.sigstore(requirement)

    async def sigstore(self, requirement: Requirement) -> str | None:
        signatures = await self.signatures()
        if not signatures:
            return f"a signature is required, but {signature_tag(self.root.digest)} holds none"
        reasons = []
        for signature in signatures:
            reason = await self.judge(requirement, signature)
            if reason is None:
                return None
            reasons.append(reason)
        return f"none of {len(signatures)} signature(s) accepted: {'; '.join(dict.fromkeys(reasons))}"

    async def judge(self, requirement: Requirement, signature: SignatureLayer) -> str | None:
        if not any(signed_by(key, signature.signature, signature.layer.digest) for key in requirement.keys):
            return "not signed by a trusted key"
        try:
            payload = await self.payload(signature)
        except InvalidPayload as exc:
            return f"unreadable payload ({exc})"
        if payload.digest != self.root.digest:
            return f"signs {payload.digest}, not {self.root.digest}"
        if not requirement.identity.matches(self.intended, payload.identity):
            wanted = self.intended if self.intended is not None else "an image without registry identity"
            return (
                f"signed identity {payload.identity!r} does not match {wanted} "
                f"({requirement.identity.describe()})"
            )
        return None

    async def signatures(self) -> Sequence[SignatureLayer]:
        if self._signatures is None:
            self.requests += 1
            try:
                manifest = await self.source.manifest_get(signature_tag(self.root.digest))
            except NotFound:
                manifest = None
            self._signatures = signature_layers(manifest) if isinstance(manifest, ImageManifest) else []
        return self._signatures

    async def payload(self, signature: SignatureLayer) -> Payload:
        if signature.layer.size > MAX_PAYLOAD_BYTES:
            raise InvalidPayload(f"{signature.layer.size} bytes, more than a payload can be")
        self.requests += 1
        chunks = []
        size = 0
        async with self.source.blob_open(signature.layer.digest) as stream:
            async for chunk in stream:  # the stream verifies the digest at its end
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_PAYLOAD_BYTES:
                    raise InvalidPayload("larger than its descriptor says")
        return parse_payload(b"".join(chunks))
