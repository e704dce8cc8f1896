"""Content digests: parsing, validation and a streaming hasher.

A digest is ``algorithm:encoded``. We verify sha256 and sha512 (the algorithms registries accept);
other syntactically valid algorithms parse but cannot be verified.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from mirrord.oci.errors import InvalidDigest

_ALGORITHM_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*$")
_ENCODED_RE = re.compile(r"^[a-zA-Z0-9=_-]+$")
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
#: The usual digest, which passes every check of :meth:`Digest.parse` (one regex instead of four).
_SHA256_RE = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """A validated content digest such as ``sha256:<64 lowercase hex>``."""

    algorithm: str
    encoded: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``algorithm:encoded``; raise :class:`InvalidDigest` naming what is wrong."""
        if _SHA256_RE.fullmatch(text):
            return cls("sha256", text[7:])
        algorithm, sep, encoded = text.partition(":")
        if not sep or not algorithm or not encoded:
            raise InvalidDigest(f"digest {text!r} is not of the form algorithm:hex")
        if not _ALGORITHM_RE.match(algorithm):
            raise InvalidDigest(f"digest {text!r} has an invalid algorithm {algorithm!r}")
        if not _ENCODED_RE.match(encoded):
            raise InvalidDigest(f"digest {text!r} has an invalid encoded part")
        expected = _HEX_LENGTHS.get(algorithm)
        if expected is not None and (len(encoded) != expected or not re.fullmatch(r"[0-9a-f]+", encoded)):
            raise InvalidDigest(f"digest {text!r}: {algorithm} needs {expected} lowercase hex characters")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data`` (whole bytes: only for manifests and other small content)."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    @property
    def verifiable(self) -> bool:
        """True when we can compute this algorithm (sha256, sha512)."""
        return self.algorithm in _HEX_LENGTHS

    def hasher(self) -> DigestHasher:
        """A streaming hasher for this digest's algorithm."""
        return DigestHasher(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"


class DigestHasher:
    """Hash content incrementally while it streams; counts bytes too.

    ``update`` takes any bytes-like object (``memoryview`` included) without copying it.
    """

    __slots__ = ("_hash", "algorithm", "size")

    def __init__(self, algorithm: str = "sha256") -> None:
        if algorithm not in _HEX_LENGTHS:
            raise InvalidDigest(f"cannot verify digests of algorithm {algorithm!r}")
        self.algorithm = algorithm
        self._hash = hashlib.new(algorithm)
        self.size = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        """Feed the next chunk of content."""
        self._hash.update(chunk)
        self.size += len(chunk)

    def digest(self) -> Digest:
        """The digest of everything fed so far."""
        return Digest(self.algorithm, self._hash.hexdigest())

    def matches(self, expected: Digest, expected_size: int | None = None) -> bool:
        """True when the content fed so far has ``expected`` digest (and size, when given)."""
        if expected_size is not None and expected_size != self.size:
            return False
        return self.digest() == expected


def is_digest(reference: str) -> bool:
    """True when a manifest reference (a tag or a digest, as in ``name:tag`` / ``name@digest``) is
    a digest: a digest always contains ``:``, a tag never does. The one place that decides it."""
    return ":" in reference
