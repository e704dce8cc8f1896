"""Start Debian's ``docker-registry`` (distribution 2.8.2) on 127.0.0.1 for integration tests.

Modes: ``plain`` (HTTP, anonymous), ``basic`` (htpasswd with a bcrypt entry, generated credentials),
``token`` (bearer tokens from :class:`~tests.testbed.tokenserver.TokenServer`), ``tls`` (HTTPS with a
trustme CA; the CA file is written out). Usage::

    with start_registry("basic", tmp_path) as server:
        settings = server.settings()           # how mirrord must talk to it
        skopeo_copy(..., f"docker://{server.ref('t/x:1')}", *server.skopeo_flags("dest"))

The server binds a random free port (found by binding port 0; retried on a collision), keeps its
storage under ``tmp``, allows deletes, and is stopped (terminate, then kill) when the block ends.
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from mirrord.registry.settings import CredentialSpec, RegistrySettings, TLSSettings
from tests.testbed.tokenserver import ISSUER, SERVICE, TokenServer
from tests.testbed.tools import require_tool

MODES = ("plain", "basic", "token", "tls")

#: Seconds to wait for ``GET /v2/`` to answer after start.
START_TIMEOUT = 15.0
_PORT_ATTEMPTS = 5
_INSTANCE_HEADER = "X-Mirrord-Testbed-Instance"


class RegistryStartError(RuntimeError):
    """The registry process exited or never answered; the message carries its log."""


@dataclass
class RegistryServer:
    """A running registry: where it is, how to authenticate, and how tools and mirrord reach it."""

    mode: str
    host: str
    url: str
    root: Path
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    log_file: Path | None = None
    token_server: TokenServer | None = field(default=None, repr=False)

    @property
    def token_requests(self) -> int:
        """Token mode: how many tokens the token server has issued so far (0 in other modes)."""
        return self.token_server.token_requests if self.token_server is not None else 0

    @property
    def cert_dir(self) -> Path | None:
        """TLS mode: a directory holding ``ca.crt``, in the form skopeo's ``--cert-dir`` wants."""
        return self.ca_file.parent if self.ca_file is not None else None

    def settings(self) -> RegistrySettings:
        """RegistrySettings with which mirrord's HTTP client can talk to this server."""
        if self.mode == "tls":
            tls = TLSSettings(enabled=True, verify=True, ca_file=str(self.ca_file))
        else:
            tls = TLSSettings(enabled=False)
        auth = CredentialSpec(username=self.username, password=self.password) if self.username else None
        return RegistrySettings(host=self.host, tls=tls, auth=auth or CredentialSpec())

    def skopeo_flags(self, side: str) -> list[str]:
        """skopeo flags for this server as ``src`` or ``dest`` (``""``: unprefixed, e.g. inspect)."""
        if side not in ("src", "dest", ""):
            raise ValueError(f"side must be 'src', 'dest' or '', not {side!r}")
        prefix = f"--{side}-" if side else "--"
        if self.mode == "tls":
            flags = [f"{prefix}cert-dir", str(self.cert_dir), f"{prefix}tls-verify=true"]
        else:
            flags = [f"{prefix}tls-verify=false"]
        if self.username is not None:
            flags += [f"{prefix}creds", f"{self.username}:{self.password}"]
        return flags

    def ref(self, repo_and_tag: str) -> str:
        """``repo:tag`` or ``repo@digest`` -> ``127.0.0.1:PORT/repo:tag``."""
        return f"{self.host}/{repo_and_tag}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """An SSL context trusting this server's CA (TLS mode), else None."""
        if self.ca_file is None:
            return None
        return ssl.create_default_context(cafile=str(self.ca_file))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _htpasswd(path: Path, username: str, password: str) -> None:
    # Low cost keeps logins fast; distribution accepts any bcrypt cost.
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    path.write_text(f"{username}:{hashed}\n")


def _tls_files(tmp: Path) -> tuple[Path, Path, Path]:
    """(ca_file, cert_chain, key) for 127.0.0.1 from a fresh trustme CA."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_dir = tmp / "certs"
    cert_dir.mkdir()
    ca_file = cert_dir / "ca.crt"
    ca.cert_pem.write_to_path(str(ca_file))
    chain, key = tmp / "server-chain.pem", tmp / "server.key"
    cert.private_key_pem.write_to_path(str(key))
    with chain.open("wb") as out:
        for blob in cert.cert_chain_pems:
            out.write(blob.bytes())
    return ca_file, chain, key


def notification_endpoint(url: str, token: str | None = None, *, name: str = "mirrord") -> dict[str, Any]:
    """One ``notifications.endpoints`` item: POST events to ``url`` (with a bearer token), quickly.

    A short timeout and backoff keep a test from waiting long when the listener is not up yet.
    """
    endpoint: dict[str, Any] = {"name": name, "url": url, "timeout": "2s", "threshold": 3, "backoff": "200ms"}
    if token is not None:
        endpoint["headers"] = {"Authorization": [f"Bearer {token}"]}
    return endpoint


def _config(
    port: int,
    root: Path,
    auth: dict[str, Any] | None,
    tls: dict[str, str] | None,
    instance: str,
    notifications: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    http: dict[str, Any] = {
        "addr": f"127.0.0.1:{port}",
        "secret": secrets.token_hex(16),
        # Every response carries the instance id, so the readiness probe cannot mistake another
        # server that grabbed the port for ours.
        "headers": {_INSTANCE_HEADER: [instance]},
    }
    if tls:
        http["tls"] = tls
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
    }
    if auth:
        config["auth"] = auth
    if notifications:
        config["notifications"] = {"endpoints": notifications}
    return config


def _probe(url: str, context: ssl.SSLContext | None, instance: str) -> int | None:
    """Status of ``GET url/v2/`` from the registry ``instance``; None when it does not answer (yet)."""
    try:
        with urllib.request.urlopen(f"{url}/v2/", timeout=2, context=context) as response:
            status, headers = int(response.status), response.headers
    except urllib.error.HTTPError as exc:
        exc.close()  # an unclosed error response leaks its socket (ResourceWarning)
        status, headers = exc.code, exc.headers
    except (OSError, urllib.error.URLError):
        return None
    return status if headers.get(_INSTANCE_HEADER) == instance else None


def _registry_env() -> dict[str, str]:
    # REGISTRY_* variables would override the config file; the host's must not leak in.
    return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}


class _Process:
    """One docker-registry process with its log; stop() terminates, then kills."""

    def __init__(self, exe: str, config_file: Path, log_file: Path) -> None:
        self.log_file = log_file
        with log_file.open("ab") as log:
            self.popen = subprocess.Popen(
                [exe, "serve", str(config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_registry_env(),
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:]

    def wait_ready(self, url: str, context: ssl.SSLContext | None, instance: str) -> bool:
        """True once /v2/ answers 200 or 401; False if the process exited first; raises on timeout."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                return False
            if _probe(url, context, instance) in (200, 401):
                return True
            time.sleep(0.05)
        self.stop()
        raise RegistryStartError(f"registry at {url} did not answer within {START_TIMEOUT}s:\n{self.log()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


def _launch(
    exe: str,
    tmp: Path,
    root: Path,
    auth: dict[str, Any] | None,
    tls: dict[str, str] | None,
    context: ssl.SSLContext | None,
    notifications: list[dict[str, Any]] | None = None,
) -> tuple[_Process, int]:
    """Start the registry on a free port, retrying when another process took the port meanwhile."""
    scheme = "https" if tls else "http"
    for attempt in range(_PORT_ATTEMPTS):
        port = _free_port()
        config_file = tmp / "config.yml"
        instance = secrets.token_hex(8)
        config_file.write_text(yaml.safe_dump(_config(port, root, auth, tls, instance, notifications)))
        process = _Process(exe, config_file, tmp / "registry.log")
        if process.wait_ready(f"{scheme}://127.0.0.1:{port}", context, instance):
            return process, port
        if "address already in use" not in process.log() or attempt == _PORT_ATTEMPTS - 1:
            raise RegistryStartError(f"docker-registry exited ({process.popen.returncode}):\n{process.log()}")
    raise AssertionError("unreachable")


@contextmanager
def start_registry(
    mode: str,
    tmp: Path,
    *,
    token_expires_in: int = 300,
    notifications: list[dict[str, Any]] | None = None,
) -> Iterator[RegistryServer]:
    """Run a registry in ``mode`` with its files under ``tmp`` (created if needed) for the block.

    ``notifications`` are ``notifications.endpoints`` items (:func:`notification_endpoint`): the
    registry then POSTs its event envelopes (pushes and pulls) to them.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    exe = require_tool("docker-registry")
    tmp.mkdir(parents=True, exist_ok=True)
    root = tmp / "storage"
    root.mkdir(exist_ok=True)
    username = password = None
    auth: dict[str, Any] | None = None
    tls: dict[str, str] | None = None
    ca_file: Path | None = None
    with ExitStack() as stack:
        token_server = None
        if mode in ("basic", "token"):
            username, password = f"u{secrets.token_hex(4)}", secrets.token_urlsafe(18)
        if mode == "basic":
            _htpasswd(tmp / "htpasswd", username or "", password or "")
            auth = {"htpasswd": {"realm": "mirrord-test", "path": str(tmp / "htpasswd")}}
        elif mode == "token":
            token_server = TokenServer(
                tmp / "token-cert.pem", username or "", password or "", expires_in=token_expires_in
            )
            stack.enter_context(token_server)
            auth = {
                "token": {
                    "realm": token_server.realm,
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": str(token_server.cert_file),
                }
            }
        elif mode == "tls":
            ca_file, chain, key = _tls_files(tmp)
            tls = {"certificate": str(chain), "key": str(key)}
        context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        process, port = _launch(exe, tmp, root, auth, tls, context, notifications)
        stack.callback(process.stop)
        scheme = "https" if mode == "tls" else "http"
        yield RegistryServer(
            mode=mode,
            host=f"127.0.0.1:{port}",
            url=f"{scheme}://127.0.0.1:{port}",
            root=root,
            username=username,
            password=password,
            ca_file=ca_file,
            log_file=process.log_file,
            token_server=token_server,
        )
