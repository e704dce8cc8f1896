"""Errors of the registry layer. One tree; HTTP statuses and registry error codes are mapped to it
in exactly one function (:func:`mirrord.registry.http.client.error_from_response`).

    RegistryError                 base: carries the registry, repository, reference, status and
                                  the server's ``retry_after`` hint (429, 503) when one was sent
    ├── AuthError                 401 / 403, UNAUTHORIZED, DENIED, or no usable credentials
    ├── NotFound                  404, MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN
    ├── RateLimited               429 TOOMANYREQUESTS
    ├── ServerError               5xx
    ├── RequestRejected           any other 4xx (MANIFEST_INVALID, DIGEST_INVALID, SIZE_INVALID, ...)
    ├── TransportError            connection reset, timeout, stalled transfer (retried)
    │   └── Unreachable           connection refused, DNS or TLS failure (not retried)
    ├── DigestMismatch            content did not match its digest or size
    └── ProtocolError             a response that breaks the protocol (bad header, bad JSON)

Messages never contain credentials or tokens.
"""

from __future__ import annotations

from mirrord.core.errors import MirrordError


class RegistryError(MirrordError):
    """A registry (or OCI layout) operation failed.

    ``retryable`` tells callers whether repeating the same operation may succeed;
    ``retry_after`` is how many seconds the server asked us to wait first (its ``Retry-After``),
    None when it did not say. Retry loops read it here, whatever the subclass.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        registry: str | None = None,
        repository: str | None = None,
        reference: str | None = None,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.registry = registry
        self.repository = repository
        self.reference = reference
        self.status = status
        self.code = code


class AuthError(RegistryError):
    """Authentication or authorisation failed."""


class NotFound(RegistryError):
    """The manifest, blob, repository or upload does not exist."""


class RateLimited(RegistryError):
    """429 Too Many Requests (``retry_after`` when the server sent a hint)."""

    retryable = True


class ServerError(RegistryError):
    """5xx from the registry (``retry_after`` when the server sent a hint, as with 503)."""

    retryable = True


class RequestRejected(RegistryError):
    """Any other 4xx: the registry refused the request as made."""


class TransportError(RegistryError):
    """The connection failed, timed out or stalled."""

    retryable = True


class Unreachable(TransportError):
    """The registry cannot be reached at all: connection refused, name not resolved, no route, TLS
    handshake or certificate refused. Unlike a reset mid-body, repeating the request within the
    pass does not help, so it is not retried, and a pass fails every image needing that registry
    with this one error (see :mod:`mirrord.copy.reach`). ``reason`` is the network's word alone
    (``cannot connect (Connection refused)``), without the request."""

    retryable = False
    reason: str = ""


class DigestMismatch(RegistryError):
    """Content did not match the digest (or size) it was addressed by."""


class ProtocolError(RegistryError):
    """The registry answered something the protocol does not allow."""
