"""A bearer-token server (distribution token auth spec) for the "token" registry mode.

It runs a ``ThreadingHTTPServer`` on 127.0.0.1 in a daemon thread, so it serves whatever event loop
(or none) the test uses. ``GET /token?service=S&scope=...`` with Basic credentials answers
``{"token", "access_token", "expires_in", "issued_at"}``: an ES256 JWT whose ``x5c`` header carries a
self-signed certificate that the registry trusts as its ``rootcertbundle``. Every requested scope is
granted; wrong or missing credentials get 401. Issued tokens are counted (and their scopes recorded)
so tests can assert that the client caches tokens.

``POST /token`` is the OAuth2 flow docker uses for an identity token: a form with
``grant_type=refresh_token``, ``service``, ``scope`` (space-separated), ``client_id`` and
``refresh_token``; it answers ``{"access_token", "expires_in", "scope"}`` when the refresh token is
:attr:`TokenServer.refresh_token`, else 400 ``invalid_grant`` (as OAuth2 says).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVICE = "mirrord-test-registry"
ISSUER = "mirrord-test-token-issuer"
#: Seconds distribution (2.8, registry/auth/token) still accepts a token after its ``exp``.
REGISTRY_LEEWAY = 60


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """One token issued: the service asked for, the scopes granted, the account that asked."""

    service: str
    scopes: tuple[str, ...]
    account: str


def _signing_material() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def parse_scope(scope: str) -> dict[str, Any] | None:
    """``repository:name:pull,push`` -> an ``access`` claim entry; None when malformed.

    The name may itself contain ``:`` (a host with a port), so type is the first field and the
    actions the last.
    """
    parts = scope.split(":")
    if len(parts) < 3:
        return None
    actions = [a for a in parts[-1].split(",") if a]
    return {"type": parts[0], "name": ":".join(parts[1:-1]), "actions": actions}


class TokenServer:
    """Issue registry tokens to ``username``/``password``; use as a context manager to run it.

    ``cert_file`` (written at construction) is the registry's ``rootcertbundle``. ``expires_in``
    is what tokens advertise and exactly how long the registry accepts them, so refresh and
    re-authentication after expiry can be exercised.
    """

    def __init__(self, cert_file: Path, username: str, password: str, *, expires_in: int = 300) -> None:
        self.cert_file = cert_file
        self.username = username
        self._password = password
        self.expires_in = expires_in
        self.issued: list[TokenRequest] = []
        self.rejected = 0
        #: The one refresh token (docker config ``identitytoken``) the POST flow accepts.
        self.refresh_token = secrets.token_urlsafe(24)
        self._lock = threading.Lock()
        self._key, self._cert = _signing_material()
        cert_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"TokenServer(realm={self.realm!r}, issued={len(self.issued)})"

    @property
    def port(self) -> int:
        """The port the server listens on (only while running)."""
        assert self._httpd is not None, "token server not started"
        return int(self._httpd.server_address[1])

    @property
    def realm(self) -> str:
        """The ``realm`` URL the registry's challenges point at."""
        return f"http://127.0.0.1:{self.port}/token"

    @property
    def token_requests(self) -> int:
        """How many tokens were issued so far."""
        with self._lock:
            return len(self.issued)

    def check_credentials(self, header: str | None) -> str | None:
        """The account name when ``header`` is valid Basic auth for this server, else None."""
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        ok = secrets.compare_digest(user, self.username) and secrets.compare_digest(password, self._password)
        return user if ok else None

    def issue(self, service: str, scopes: list[str], account: str) -> dict[str, Any]:
        """Sign a token granting every scope asked for, record it, and build the JSON answer."""
        now = int(time.time())
        access = [entry for entry in map(parse_scope, scopes) if entry is not None]
        claims = {
            "iss": ISSUER,
            "sub": account,
            "aud": service,
            # distribution accepts a token until exp + its clock-skew leeway: subtracting the leeway
            # makes the registry reject it exactly ``expires_in`` seconds after issue.
            "exp": now + self.expires_in - REGISTRY_LEEWAY,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": [self._x5c]})
        with self._lock:
            self.issued.append(TokenRequest(service, tuple(scopes), account))
        issued_at = dt.datetime.fromtimestamp(now, dt.UTC).isoformat().replace("+00:00", "Z")
        return {"token": token, "access_token": token, "expires_in": self.expires_in, "issued_at": issued_at}

    def __enter__(self) -> TokenServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="token-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _handler_for(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/token":
                self._answer(404, {"errors": [{"code": "NOT_FOUND", "message": "no such path"}]})
                return
            account = server.check_credentials(self.headers.get("Authorization"))
            if account is None:
                with server._lock:
                    server.rejected += 1
                self._answer(
                    401,
                    {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]},
                    {"WWW-Authenticate": 'Basic realm="token"'},
                )
                return
            query = parse_qs(url.query)
            service = query.get("service", [SERVICE])[0]
            self._answer(200, server.issue(service, query.get("scope", []), account))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            if urlsplit(self.path).path != "/token":
                self._answer(404, {"errors": [{"code": "NOT_FOUND", "message": "no such path"}]})
                return
            grant = form.get("grant_type", [""])[0]
            refresh = form.get("refresh_token", [""])[0]
            if grant != "refresh_token" or not secrets.compare_digest(refresh, server.refresh_token):
                with server._lock:
                    server.rejected += 1
                self._answer(400, {"error": "invalid_grant"})
                return
            scopes = " ".join(form.get("scope", [])).split()
            service = form.get("service", [SERVICE])[0]
            answer = server.issue(service, scopes, server.username)
            self._answer(200, {"access_token": answer["token"], "expires_in": answer["expires_in"],
                               "scope": " ".join(scopes)})  # fmt: skip

        def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            # Quiet: request lines would only clutter test output.
            pass

    return Handler
