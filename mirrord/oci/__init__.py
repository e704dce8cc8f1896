"""The pure OCI model: digests, references, media types, descriptors, platforms, manifests.

Standard library only: this package must never import asyncio, aiohttp or any I/O library, so that
everything above it can be tested without a network.
"""

from mirrord.oci.descriptor import Descriptor
from mirrord.oci.digest import Digest, DigestHasher, is_digest
from mirrord.oci.errors import (
    InvalidDigest,
    InvalidManifest,
    InvalidPlatform,
    InvalidReference,
    OCIError,
    UnsupportedManifest,
)
from mirrord.oci.manifest import AnyManifest, ImageIndex, ImageManifest, build_index, parse_manifest
from mirrord.oci.platform import Platform
from mirrord.oci.reference import Reference, name_with_reference

__all__ = [
    "AnyManifest",
    "Descriptor",
    "Digest",
    "DigestHasher",
    "ImageIndex",
    "ImageManifest",
    "InvalidDigest",
    "InvalidManifest",
    "InvalidPlatform",
    "InvalidReference",
    "OCIError",
    "Platform",
    "Reference",
    "UnsupportedManifest",
    "build_index",
    "is_digest",
    "name_with_reference",
    "parse_manifest",
]
