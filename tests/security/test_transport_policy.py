"""TLS on by default, credentials never over plain HTTP unless the plan says `tls: false`, no
Authorization carried to another host on a redirect: against real sockets (an HTTPS stub registry
with a trustme CA, a plain-HTTP server counting every Authorization it receives)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from mirrord.oci import Digest, Reference
from mirrord.registry.base import Repository
from mirrord.registry.errors import AuthError, TransportError
from mirrord.registry.hub import Registries
from mirrord.registry.settings import CredentialSpec, RegistrySettings, TLSSettings
from tests.conftest import RegistryFactory
from tests.e2e.helpers import run_cli, write_plan
from tests.testbed.registry import RegistryServer

PASSWORD = "pw-Secret-0b5e"
BLOB = b"not really a layer"


@dataclass
class Plain:
    """A plain-HTTP server (token realm, redirect target) recording each Authorization header."""

    port: int = 0
    authorizations: list[str | None] = field(default_factory=list)
    #: What the HTTPS registry itself received on blob GETs (before redirecting them here).
    at_registry: list[str | None] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization"))
        if request.path == "/token":
            return web.json_response({"token": "granted"})
        return web.Response(body=BLOB)


async def _serve(app: web.Application, context: ssl.SSLContext | None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    return runner, int(runner.addresses[0][1])


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[tuple[Plain, int, str]]:
    """(plain server, HTTPS stub port, CA file): the stub challenges for a token at the plain
    server's realm and redirects blob GETs there."""
    plain = Plain()
    plain_app = web.Application()
    plain_app.router.add_route("*", "/{tail:.*}", plain.handle)
    plain_runner, plain.port = await _serve(plain_app, None)

    async def tags(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") == "Bearer granted":
            return web.json_response({"name": "a/b", "tags": ["x"]})
        realm = (
            f'Bearer realm="http://127.0.0.1:{plain.port}/token",service="stub",scope="repository:a/b:pull"'
        )
        return web.json_response(
            {"errors": [{"code": "UNAUTHORIZED"}]}, status=401, headers={"WWW-Authenticate": realm}
        )

    async def blob(request: web.Request) -> web.Response:
        plain.at_registry.append(request.headers.get("Authorization"))
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{plain.port}/blob")

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    stub = web.Application()
    stub.router.add_get("/v2/a/b/tags/list", tags)
    stub.router.add_get("/v2/a/b/blobs/{digest}", blob)
    stub_runner, stub_port = await _serve(stub, context)
    try:
        yield plain, stub_port, str(ca_file)
    finally:
        await stub_runner.cleanup()
        await plain_runner.cleanup()


def _settings(port: int, ca_file: str | None, *, user: bool = True) -> dict[str, RegistrySettings]:
    host = f"127.0.0.1:{port}"
    auth = CredentialSpec(username="u", password=PASSWORD) if user else CredentialSpec()
    return {host: RegistrySettings(host=host, tls=TLSSettings(enabled=True, ca_file=ca_file), auth=auth)}


def _repo(registries: Registries, port: int) -> Repository:
    return registries.repository(Reference.parse(f"127.0.0.1:{port}/a/b", default_tag=None))


async def test_credentials_are_not_sent_to_a_plain_http_token_realm(servers: tuple[Plain, int, str]) -> None:
    plain, port, ca_file = servers
    async with Registries(_settings(port, ca_file)) as registries:
        with pytest.raises(AuthError, match="refusing to send credentials over plain HTTP") as caught:
            await _repo(registries, port).tags_list()
    assert PASSWORD not in str(caught.value)
    assert plain.authorizations == []  # not even asked: nothing crossed in clear


async def test_anonymous_token_over_plain_http_is_fine(servers: tuple[Plain, int, str]) -> None:
    plain, port, ca_file = servers
    async with Registries(_settings(port, ca_file, user=False)) as registries:
        assert await _repo(registries, port).tags_list() == ["x"]
    assert plain.authorizations == [None]


async def test_authorization_is_not_forwarded_on_a_redirect_to_another_host(
    servers: tuple[Plain, int, str],
) -> None:
    plain, port, ca_file = servers
    async with Registries(_settings(port, ca_file, user=False)) as registries:
        repo = _repo(registries, port)
        assert await repo.tags_list() == ["x"]  # the client now holds a token for the registry
        async with repo.blob_open(Digest.of(BLOB)) as stream:
            assert b"".join([chunk async for chunk in stream]) == BLOB
    assert plain.at_registry == ["Bearer granted"]
    assert plain.authorizations == [None, None]  # the token fetch and the redirected GET


async def test_unknown_ca_is_refused_with_a_clear_tls_error(servers: tuple[Plain, int, str]) -> None:
    _, port, _ = servers
    async with Registries(_settings(port, None, user=False)) as registries:
        with pytest.raises(TransportError, match="TLS certificate verification failed"):
            await _repo(registries, port).tags_list()


@pytest.mark.integration
async def test_sync_from_a_tls_registry_with_an_unknown_ca_fails_clearly(
    tls_registry: RegistryServer, registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    target = registry_factory("plain")
    plan = write_plan(
        tmp_path / "plan.yaml",
        f"""
        version: 1
        registries:
          {tls_registry.host}: {{tls: true}}
          {target.host}: {{tls: false}}
        sync:
          - source: {tls_registry.host}/t/any
            target: {target.host}/t/any
            tags: [x]
        """,
    )
    result = await run_cli("sync", "-c", str(plan))
    assert result.code == 1, result.output
    assert "TLS certificate verification failed" in result.output
