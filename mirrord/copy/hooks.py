"""The two seams through which the trust layer takes part in a copy, as protocols (the engine never
imports :mod:`mirrord.trust`; sync wires implementations in).

- :class:`Gate` (``CopyRequest.gate``): called once per image after its root manifest is read and
  before any child manifest or blob is requested; it answers None to admit the image or the reason
  it is refused. A refused image is copied to no target and ends with outcome ``rejected``.
- :class:`Signer` (``Target.signer``): called after an image's manifests (and artifacts) reached a
  target; it keeps the target's ``sha256-<hex>.sig`` of the root: the source's signatures of the
  same digest merged in when asked, and, when ``sign``, one more signature of its own.
"""

from __future__ import annotations

from typing import Protocol

from mirrord.oci import AnyManifest, Digest
from mirrord.registry.base import Repository


class Gate(Protocol):
    """Admission of an image by its root manifest (e.g. a signature policy)."""

    async def __call__(self, source: Repository, reference: str, root: AnyManifest) -> str | None:
        """None to admit the image asked for as ``reference`` (tag or digest) whose root manifest is
        ``root``; else why it is refused (one line, no secrets). May read the source's manifests
        and small signature blobs, never the image's own blobs or children. Raises RegistryError
        when the source cannot be read (the image then fails)."""
        ...


class Signer(Protocol):
    """Keeps a target's signature manifests."""

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
        """Bring ``target``'s signatures of the root ``digest`` up to date. ``merge_source``: the
        source's signatures of ``source_digest`` (equal to ``digest``: the root kept its bytes)
        belong beside the target's; ``sign``: add one of the signer's own (the root was pushed in
        this pass). Raises (RegistryError, or an error naming what failed, never a key or
        passphrase) when it cannot."""
        ...
