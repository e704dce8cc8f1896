"""Errors of the trust layer: a policy or key that cannot be used (configuration, not an image)."""

from mirrord.core.errors import MirrordError


class TrustError(MirrordError):
    """A policy file or key is unusable. ``str(e)`` names the file (and the key within it); never a
    passphrase or key material."""
