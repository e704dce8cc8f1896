"""Errors of the pure OCI model.

Every error raised by ``mirrord.oci`` derives from :class:`OCIError` (a
:class:`~mirrord.core.errors.MirrordError`, and a ``ValueError`` for callers that parse untrusted
input), so callers that parse references, manifests or plans can catch one type, and mirrord's
errors have one root.

    OCIError
    ├── InvalidDigest        a digest string that is not ``algorithm:hex`` of a known algorithm
    ├── InvalidReference     an image reference that breaks the distribution grammar
    ├── InvalidPlatform      a platform string that is not ``os/arch[/variant]``
    └── InvalidManifest      bytes that are not a manifest or index we can read
        └── UnsupportedManifest   recognised but not supported (Docker schema1)
"""

from mirrord.core.errors import MirrordError


class OCIError(MirrordError, ValueError):
    """Base of every error raised by the pure model."""


class InvalidDigest(OCIError):
    """A digest string is malformed or uses an unknown algorithm."""


class InvalidReference(OCIError):
    """An image reference does not follow the distribution grammar; the message names the bad part."""


class InvalidPlatform(OCIError):
    """A platform specifier is malformed."""


class InvalidManifest(OCIError):
    """Manifest or index bytes are not valid JSON of a known shape, or exceed the size limit."""


class UnsupportedManifest(InvalidManifest):
    """A manifest kind that is recognised but not supported (Docker schema1)."""
