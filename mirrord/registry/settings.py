"""Per-registry settings, as the plan's ``registries:`` section describes them.

Built by the plan loader; consumed by the HTTP client. Secrets are never stored here in clear: a
:class:`CredentialSpec` says where to find them, and they are read at use.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """``enabled`` False means plain HTTP. ``verify`` False skips certificate checks (loudly).

    ``implicit_plain`` marks plain HTTP that came from the loopback default rather than from the
    plan's ``tls: false``: such a registry is spoken to, but never sent credentials.
    """

    enabled: bool = True
    verify: bool = True
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    implicit_plain: bool = False


@dataclass(frozen=True, slots=True)
class CredentialSpec:
    """Where a registry's credentials come from; at most one source for the password.

    With no field set, credentials come from the default docker config
    (``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``) if it has the host, else
    anonymous. ``docker_config`` names another docker config file (``auths``, ``credHelpers``,
    ``credsStore``). ``repr`` never shows a password.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None
    password_env: str | None = None
    docker_config: str | None = None


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """Settings of one registry host (``host[:port]``, as written in references)."""

    host: str
    tls: TLSSettings = field(default_factory=TLSSettings)
    auth: CredentialSpec = field(default_factory=CredentialSpec)
    requests_per_second: float | None = None
    max_connections: int = 16
    #: Chunked upload (PATCH) part size in bytes; None means monolithic POST+PUT.
    chunk_size: int | None = None
    #: Seconds a transfer may move no bytes before it is aborted and retried; None: the transport's.
    stall_timeout: float | None = None


def default_settings(host: str) -> RegistrySettings:
    """Settings for a host the plan does not list: HTTPS with verification, docker-config creds.

    Loopback hosts (``localhost``, ``127.0.0.0/8``, ``::1``) default to plain HTTP, as cri-o treats
    loopback as insecure by default (seed 004). Credentials are sent over that plain HTTP only when
    the plan says ``tls: false`` for the host.
    """
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    loopback = name in ("localhost", "[::1]") or name.startswith("127.")
    return RegistrySettings(host=host, tls=TLSSettings(enabled=not loopback, implicit_plain=loopback))
