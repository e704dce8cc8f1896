"""Resolve a :class:`CredentialSpec` into credentials, at the moment they are needed.

Sources, as the plan allows them: a username with ``password`` / ``password_file`` /
``password_env``; or a docker config file (``auths``, ``credHelpers``, ``credsStore``, like the
docker CLI); with nothing configured, the default docker config if it knows the host, else
anonymous access.

Docker config lookup order for a host: ``credHelpers[host]``, then ``auths[host]`` (base64
``auth`` or ``username``/``password``), then ``credsStore``. An ``identitytoken`` (an OAuth2
refresh token, as ``docker login`` stores for ACR and others), or a helper answering the username
``<token>``, gives credentials with ``identity_token`` set: the authenticator exchanges the secret at
the token realm (``grant_type=refresh_token``) instead of sending it as a password.

Helpers may answer short-lived secrets (ECR, GAR): the client keeps an answer until the registry or
its token endpoint refuses it, then asks again (see :mod:`mirrord.registry.http.client`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirrord.registry.errors import AuthError
from mirrord.registry.settings import CredentialSpec

log = logging.getLogger(__name__)

DOCKER_HUB = "docker.io"
#: The key docker uses for Docker Hub in config files and credential helpers.
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})
HELPER_TIMEOUT_SECONDS = 15.0


#: The username docker uses for an identity token (helpers answer it; configs may omit the name).
IDENTITY_TOKEN_USER = "<token>"


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and secret (password or token). ``repr`` and ``str`` never show the secret.

    ``identity_token``: the secret is an OAuth2 refresh token, to be exchanged at the token realm
    (never sent as a password).
    """

    username: str
    secret: str = field(repr=False)
    identity_token: bool = False

    def __repr__(self) -> str:
        kind = ", identity_token=True" if self.identity_token else ""
        return f"Credentials(username={self.username!r}, secret='***'{kind})"

    __str__ = __repr__


def normalize_host(key: str) -> str:
    """A docker config key (``https://host/v1/``, ``host``, ``http://host:5000``) as a bare host.

    Docker Hub's names all fold to ``docker.io``.
    """
    host = key.strip()
    for prefix in ("https://", "http://"):
        if host.lower().startswith(prefix):
            host = host[len(prefix) :]
    host = host.split("/", 1)[0].lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def default_docker_config(env: Mapping[str, str] | None = None) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    env = os.environ if env is None else env
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    return Path(env.get("HOME") or Path.home()) / ".docker" / "config.json"


def _strip_newline(text: str) -> str:
    # Secret files usually end in one newline added by editors or `echo`; a password may still
    # legitimately end in other whitespace, so strip exactly one line ending.
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def _password_from_spec(spec: CredentialSpec, host: str, env: Mapping[str, str]) -> str:
    if spec.password is not None:
        return spec.password
    if spec.password_file is not None:
        try:
            return _strip_newline(Path(spec.password_file).read_text())
        except OSError as exc:
            raise AuthError(
                f"{host}: cannot read password_file {spec.password_file}: {exc.strerror}"
            ) from None
    if spec.password_env is not None:
        if spec.password_env not in env:
            raise AuthError(f"{host}: environment variable {spec.password_env} (password_env) is not set")
        return env[spec.password_env]
    raise AuthError(f"{host}: a username is configured but no password, password_file or password_env")


def _load_config(path: Path, host: str, *, required: bool) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        if required:
            raise AuthError(f"{host}: docker config {path} does not exist") from None
        return None
    except (OSError, ValueError) as exc:
        raise AuthError(f"{host}: docker config {path} is unreadable: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise AuthError(f"{host}: docker config {path} is not a JSON object")
    return data


def _find_entry(mapping: Any, host: str) -> Any:
    if not isinstance(mapping, dict):
        return None
    for key, value in mapping.items():
        if isinstance(key, str) and normalize_host(key) == host:
            return value
    return None


def _from_auths_entry(entry: Any, host: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        username = entry.get("username")
        return Credentials(username if isinstance(username, str) and username else IDENTITY_TOKEN_USER,
                           token, identity_token=True)  # fmt: skip
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, sep, secret = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError(f"{host}: docker config 'auth' is not base64 of user:password") from None
        if not sep:
            raise AuthError(f"{host}: docker config 'auth' is not base64 of user:password")
        return Credentials(user, secret)
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return Credentials(entry["username"], entry["password"])
    return None


def helper_server_url(host: str) -> str:
    """What docker passes to a credential helper for ``host``."""
    return DOCKER_HUB_SERVER if host == DOCKER_HUB else host


async def run_credential_helper(
    helper: str, host: str, *, limit: float = HELPER_TIMEOUT_SECONDS
) -> Credentials | None:
    """Run ``docker-credential-<helper> get`` with the server URL on stdin.

    None when the helper knows no credentials for the host; AuthError when it cannot run or
    answers garbage. The helper's output is never logged (it holds the secret).
    """
    program = shutil.which(f"docker-credential-{helper}")
    if program is None:
        raise AuthError(f"{host}: credential helper docker-credential-{helper} is not on PATH")
    process = await asyncio.create_subprocess_exec(
        program,
        "get",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(limit):
            out, err = await process.communicate(helper_server_url(host).encode())
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AuthError(f"{host}: credential helper {helper} timed out after {limit:g} s") from None
    if process.returncode != 0:
        if b"credentials not found" in (out + err).lower():
            return None
        raise AuthError(f"{host}: credential helper {helper} failed with exit status {process.returncode}")
    return _parse_helper_output(out, helper, host)


def _parse_helper_output(out: bytes, helper: str, host: str) -> Credentials | None:
    try:
        data = json.loads(out)
    except ValueError:
        raise AuthError(f"{host}: credential helper {helper} answered something that is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("Secret"), str):
        raise AuthError(f"{host}: credential helper {helper} answered without a Secret")
    username = data.get("Username")
    if username == IDENTITY_TOKEN_USER:
        return Credentials(IDENTITY_TOKEN_USER, data["Secret"], identity_token=True)
    return Credentials(str(username or ""), data["Secret"])


async def credentials_from_docker_config(path: Path, host: str, *, required: bool) -> Credentials | None:
    """Credentials for ``host`` from the docker config at ``path`` (see the module docstring)."""
    config = _load_config(path, host, required=required)
    if config is None:
        return None
    helper = _find_entry(config.get("credHelpers"), host)
    if isinstance(helper, str) and helper:
        return await run_credential_helper(helper, host)
    found = _from_auths_entry(_find_entry(config.get("auths"), host), host)
    if found is not None:
        return found
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        return await run_credential_helper(store, host)
    return None


async def resolve_credentials(
    spec: CredentialSpec, host: str, *, env: Mapping[str, str] | None = None
) -> Credentials | None:
    """The credentials ``spec`` describes for ``host`` (settings key, e.g. ``docker.io``), or None.

    Raises AuthError (naming the host and the source, never a secret) when a configured source is
    unusable: missing file or variable, a username without password, a failing helper.
    """
    env = os.environ if env is None else env
    if spec.username is not None:
        return Credentials(spec.username, _password_from_spec(spec, host, env))
    if any(x is not None for x in (spec.password, spec.password_file, spec.password_env)):
        raise AuthError(f"{host}: a password source is configured without a username")
    if spec.docker_config is not None:
        return await credentials_from_docker_config(Path(spec.docker_config), host, required=True)
    return await credentials_from_docker_config(default_docker_config(env), host, required=False)
