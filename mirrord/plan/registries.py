"""The plan's ``registries:`` and ``server:`` sections -> RegistrySettings and ServerConfig."""

from __future__ import annotations

import logging
import re

from mirrord.oci import InvalidReference, Reference
from mirrord.oci.reference import looks_like_host
from mirrord.plan.model import DEFAULT_PORT, ServerConfig
from mirrord.plan.nodes import Value
from mirrord.registry.settings import CredentialSpec, RegistrySettings, TLSSettings, default_settings

log = logging.getLogger(__name__)

REGISTRY_KEYS = ("tls", "auth", "requests_per_second", "max_connections", "chunk_size", "stall_timeout")
TLS_KEYS = ("verify", "ca_file", "client_cert", "client_key")
AUTH_KEYS = ("username", "password_file", "password_env", "password", "docker_config")
SERVER_KEYS = ("listen", "trigger_token_file")
#: Key paths (relative to a registry or to ``server``) of settings naming files or secrets, whose lines
#: the plan keeps for :func:`mirrord.plan.check_secrets`.
TRACKED_KEYS = (
    "tls.ca_file",
    "tls.client_cert",
    "tls.client_key",
    "auth.password_file",
    "auth.password_env",
    "auth.docker_config",
)

_HOST_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d+)?"
)
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def registry_key(host: str, sub: str = "") -> str:
    """The key path of a registry (``registries[docker.io]``) or of a setting under it."""
    return f"registries[{host}].{sub}" if sub else f"registries[{host}]"


def normalise_host(value: Value, text: str) -> str:
    """``text`` as a registry host the way references spell it (lower-cased, index.docker.io folded).

    A host needs a ``.`` or a ``:port`` or is ``localhost`` (Docker's rule): anything else would be
    read as a Docker Hub namespace in a reference.
    """
    if not _HOST_RE.fullmatch(text) or not looks_like_host(text):
        raise value.error(f"{text!r} is not a registry host (HOST[:PORT], with a '.' or a port)")
    try:
        return Reference.parse(f"{text}/probe", default_tag=None).registry
    except InvalidReference as exc:
        raise value.error(str(exc)) from None


def parse_registries(section: Value, origins: dict[str, int]) -> dict[str, RegistrySettings]:
    """The ``registries:`` mapping; records lines of file/secret settings into ``origins``."""
    if section.is_null:
        return {}
    out: dict[str, RegistrySettings] = {}
    first_line: dict[str, int] = {}
    for written, value in section.mapping().items():
        at_key = section.key_node(written, registry_key(written))
        host = normalise_host(at_key, written)
        if host in out:
            raise at_key.error(f"the registry {host!r} again (first at line {first_line[host]})")
        out[host] = _registry(host, Value(value.node, registry_key(host), value.path), origins)
        first_line[host] = at_key.line
    return out


def _registry(host: str, value: Value, origins: dict[str, int]) -> RegistrySettings:
    if value.is_null:
        return default_settings(host)
    fields = value.mapping(REGISTRY_KEYS)
    # A listed host without tls: behaves like an unlisted one (loopback stays plain HTTP).
    settings = default_settings(host)
    tls, auth = settings.tls, settings.auth
    rps, max_conn, chunk = settings.requests_per_second, settings.max_connections, settings.chunk_size
    if "tls" in fields:
        tls = _tls(fields["tls"])
    if "auth" in fields:
        auth = _auth(fields["auth"])
    if "requests_per_second" in fields and not fields["requests_per_second"].is_null:
        rps = fields["requests_per_second"].number()
    if "max_connections" in fields:
        max_conn = fields["max_connections"].integer(minimum=1)
    if "chunk_size" in fields and not fields["chunk_size"].is_null:
        chunk = fields["chunk_size"].size()
    stall = fields["stall_timeout"].duration() if "stall_timeout" in fields else None
    _track(value, fields, origins)
    return RegistrySettings(
        host=host, tls=tls, auth=auth, requests_per_second=rps, max_connections=max_conn, chunk_size=chunk,
        stall_timeout=stall,
    )  # fmt: skip


def _track(value: Value, fields: dict[str, Value], origins: dict[str, int]) -> None:
    for dotted in TRACKED_KEYS:
        section, name = dotted.split(".")
        parent = fields.get(section)
        if parent is not None and parent.is_mapping:
            child = parent.mapping().get(name)
            if child is not None:
                origins[f"{value.key}.{dotted}"] = child.line


def _tls(value: Value) -> TLSSettings:
    """``tls: false`` (plain HTTP), ``tls: true`` (the default), or a mapping of TLS options."""
    if not value.is_mapping:
        if value.is_null:
            return TLSSettings()
        if value.kind != "a boolean":
            raise value.expected("false, true or a mapping of ca_file, client_cert, client_key, verify")
        return TLSSettings(enabled=value.boolean())
    fields = value.mapping(TLS_KEYS)
    paths = {name: fields[name].optional_string() for name in TLS_KEYS[1:] if name in fields}
    if ("client_cert" in paths) != ("client_key" in paths):
        missing = "client_key" if "client_cert" in paths else "client_cert"
        raise value.error(f"client_cert and client_key go together: {missing} is missing")
    verify = fields["verify"].boolean() if "verify" in fields else True
    return TLSSettings(
        enabled=True, verify=verify, ca_file=paths.get("ca_file"), client_cert=paths.get("client_cert"),
        client_key=paths.get("client_key"),
    )  # fmt: skip


def _auth(value: Value) -> CredentialSpec:
    """Credentials: a username with one password source, or a docker config file."""
    if value.is_null:
        return CredentialSpec()
    fields = value.mapping(AUTH_KEYS)
    texts = {name: fields[name].string() for name in AUTH_KEYS if name in fields}
    sources = [name for name in ("password_file", "password_env", "password") if name in texts]
    if len(sources) > 1:
        raise fields[sources[1]].error(f"give one password source, not {' and '.join(sources)}")
    if "docker_config" in texts and ("username" in texts or sources):
        raise fields["docker_config"].error(
            "docker_config replaces username and password: give one or the other"
        )
    if "username" in texts and not sources:
        raise value.error("username needs password_file, password_env or password")
    if sources and "username" not in texts:
        raise fields[sources[0]].error("a password needs a username")
    if "password_env" in texts and not _ENV_RE.fullmatch(texts["password_env"]):
        raise fields["password_env"].error(f"{texts['password_env']!r} is not an environment variable name")
    if "password" in texts:
        # Allowed for quick tests, but the plan file then holds a secret in clear.
        log.warning("plan: inline password for %s; prefer password_file or password_env", value.key)
    return CredentialSpec(**texts)


def parse_server(section: Value | None, origins: dict[str, int]) -> ServerConfig:
    """The ``server:`` mapping: ``listen: [HOST]:PORT`` and ``trigger_token_file``."""
    if section is None or section.is_null:
        return ServerConfig()
    fields = section.mapping(SERVER_KEYS)
    host, port = ServerConfig().host, DEFAULT_PORT
    if "listen" in fields:
        host, port = _listen(fields["listen"])
    token = None
    if "trigger_token_file" in fields:
        token = fields["trigger_token_file"].optional_string()
        origins["server.trigger_token_file"] = fields["trigger_token_file"].line
    return ServerConfig(host=host, port=port, trigger_token_file=token)


def _listen(value: Value) -> tuple[str, int]:
    """``0.0.0.0:9402``, ``:9402`` (all addresses), ``[::]:9402``, ``127.0.0.1`` (default port)."""
    text = value.string()
    m = re.fullmatch(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]*))(?::(?P<port>\d{1,5}))?", text)
    if m is None or (m["port"] is None and not (m["v6"] or m["host"])):
        raise value.error(f"{text!r} is not HOST:PORT")
    port = int(m["port"]) if m["port"] is not None else DEFAULT_PORT
    if port > 65535:
        raise value.error(f"port {port} is out of range (0-65535)")
    return m["v6"] or m["host"] or "0.0.0.0", port
