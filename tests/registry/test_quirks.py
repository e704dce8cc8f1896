"""The HTTP client against the real registry behind the quirks proxy: one test per field behaviour.

Each test switches on the quirk (:mod:`tests.testbed.quirks`) a public registry shows and checks the
client copes; each fails without the code that copes (checked by reverting it). Basic and token auth
both run where the behaviour touches authentication. The README's compatibility table points here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mirrord.oci import Digest
from mirrord.registry.errors import AuthError, NotFound
from mirrord.registry.http.client import RegistryClient
from mirrord.registry.http.paging import list_names
from mirrord.registry.http.repository import HTTPRepository
from mirrord.registry.http.retry import RetryPolicy
from mirrord.registry.http.transport import Transport
from mirrord.registry.settings import CredentialSpec, RegistrySettings
from tests.testbed.quirks import ABSENT, QuirksProxy
from tests.testbed.registry import RegistryServer

from .test_client_integration import chunks_of, manifest_bytes, push, read_all

pytestmark = pytest.mark.integration

FAST = RetryPolicy(base=0.01, cap=0.05)
AUTH_MODES = ["basic", "token"]


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    async with Transport(connect_timeout=10, read_timeout=30) as transport:
        yield transport


@pytest.fixture
async def proxy_for(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """``await proxy_for(server)``: a QuirksProxy in front of ``server``, stopped after the test."""
    proxies: list[QuirksProxy] = []

    async def start(server: RegistryServer) -> QuirksProxy:
        proxy = QuirksProxy(server.url)
        await proxy.__aenter__()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        await proxy.__aexit__(None, None, None)


def through(server: RegistryServer, proxy: QuirksProxy, **overrides: Any) -> RegistrySettings:
    """The server's settings (credentials included), pointed at the proxy."""
    return dataclasses.replace(server.settings(), host=proxy.host, **overrides)


def client_for(settings: RegistrySettings, transport: Transport) -> RegistryClient:
    return RegistryClient(settings, transport, retry=FAST)


async def seed_image(repo: HTTPRepository, tag: str = "v1") -> tuple[Digest, bytes]:
    """Push a one-layer OCI image under ``tag``; its manifest digest and raw bytes."""
    config, layer = b'{"architecture":"amd64","os":"linux"}', os.urandom(3000)
    await push(repo, config)
    await push(repo, layer)
    raw, media_type = manifest_bytes("oci", config, layer)
    return await repo.manifest_put(tag, raw, media_type), raw


# -- uploads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", AUTH_MODES)
async def test_a_mount_answered_202_continues_in_the_session_it_returned(
    request: pytest.FixtureRequest, proxy_for: Any, transport: Transport, unique_repo: str, mode: str
) -> None:
    server: RegistryServer = request.getfixturevalue(f"{mode}_registry")
    proxy = await proxy_for(server)
    proxy.quirks.ignore_mounts = True
    client = client_for(through(server, proxy), transport)
    source, target = client.repository(unique_repo + "/src"), client.repository(unique_repo + "/dst")
    data = os.urandom(20_000)
    digest = await push(source, data)
    result = await target.blob_mount(digest, source.name)
    assert not result.mounted
    assert result.upload is not None
    proxy.clear()
    await target.blob_put(digest, len(data), chunks_of(data), upload=result.upload)
    assert await read_all(target, digest) == data
    assert proxy.count("POST") == 0  # no second session: the mount's one took the bytes
    assert proxy.count("PUT", r"/blobs/uploads/") == 1


@pytest.mark.parametrize("mode", AUTH_MODES)
async def test_a_mount_answered_401_means_upload_instead(
    request: pytest.FixtureRequest, proxy_for: Any, transport: Transport, unique_repo: str, mode: str
) -> None:
    server: RegistryServer = request.getfixturevalue(f"{mode}_registry")
    proxy = await proxy_for(server)
    client = client_for(through(server, proxy), transport)
    source, target = client.repository(unique_repo + "/src"), client.repository(unique_repo + "/dst")
    data = os.urandom(6_000)
    digest = await push(source, data)
    proxy.quirks.mount_unauthorized = True
    result = await target.blob_mount(digest, source.name)
    assert not result.mounted
    assert result.upload is None
    await target.blob_put(digest, len(data), chunks_of(data))
    assert await read_all(target, digest) == data


async def test_a_mount_session_the_registry_forgot_fails_retryably(
    basic_registry: RegistryServer, proxy_for: Any, transport: Transport, unique_repo: str
) -> None:
    proxy = await proxy_for(basic_registry)
    proxy.quirks.mount_session_gone = True
    client = client_for(through(basic_registry, proxy), transport)
    source, target = client.repository(unique_repo + "/src"), client.repository(unique_repo + "/dst")
    data = os.urandom(5_000)
    digest = await push(source, data)
    result = await target.blob_mount(digest, source.name)
    assert result.upload is not None
    with pytest.raises(NotFound) as caught:
        await target.blob_put(digest, len(data), chunks_of(data), upload=result.upload)
    assert caught.value.code == "BLOB_UPLOAD_UNKNOWN"
    assert caught.value.retryable  # the engine restarts the blob in a fresh session
    await target.blob_put(digest, len(data), chunks_of(data))
    assert await target.blob_head(digest) == len(data)


@pytest.mark.parametrize("mode", AUTH_MODES)
async def test_patch_answered_201_is_accepted(
    request: pytest.FixtureRequest, proxy_for: Any, transport: Transport, unique_repo: str, mode: str
) -> None:
    server: RegistryServer = request.getfixturevalue(f"{mode}_registry")
    proxy = await proxy_for(server)
    proxy.quirks.patch_201 = True
    repo = client_for(through(server, proxy, chunk_size=4096), transport).repository(unique_repo)
    data = os.urandom(10_000)
    digest = await push(repo, data)
    assert await read_all(repo, digest) == data
    assert proxy.count("PATCH") == 2
    assert all(s.status == 201 for s in proxy.requests if s.method == "PATCH")


@pytest.mark.parametrize("mode", AUTH_MODES)
async def test_patch_refused_falls_back_to_a_monolithic_upload(
    request: pytest.FixtureRequest, proxy_for: Any, transport: Transport, unique_repo: str, mode: str
) -> None:
    server: RegistryServer = request.getfixturevalue(f"{mode}_registry")
    proxy = await proxy_for(server)
    proxy.quirks.refuse_patch = True
    repo = client_for(through(server, proxy, chunk_size=4096), transport).repository(unique_repo)
    first, second = os.urandom(10_000), os.urandom(9_000)
    assert await read_all(repo, await push(repo, first)) == first
    assert proxy.count("PATCH") == 1  # refused once: the whole blob went in the final PUT
    assert await read_all(repo, await push(repo, second)) == second
    assert proxy.count("PATCH") == 1  # and later uploads do not try again
    assert repo.client.chunked_uploads is False


@pytest.mark.parametrize("mode", AUTH_MODES)
async def test_put_answers_without_digest_or_location_are_fine(
    request: pytest.FixtureRequest, proxy_for: Any, transport: Transport, unique_repo: str, mode: str
) -> None:
    server: RegistryServer = request.getfixturevalue(f"{mode}_registry")
    proxy = await proxy_for(server)
    proxy.quirks.put_without_digest = True
    for chunk_size in (None, 2048):
        repo = client_for(through(server, proxy, chunk_size=chunk_size), transport).repository(unique_repo)
        digest, raw = await seed_image(repo, f"v{chunk_size}")
        assert digest == Digest.of(raw)
        head = await repo.manifest_head(f"v{chunk_size}")
        assert head is not None
        assert head.digest == digest
    puts = [s for s in proxy.requests if s.method == "PUT"]
    assert puts
    assert all(s.status in (201, 204) for s in puts)


# -- manifests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", AUTH_MODES)
async def test_head_without_digest_falls_back_to_a_get_of_the_same_accept(
    request: pytest.FixtureRequest, proxy_for: Any, transport: Transport, unique_repo: str, mode: str
) -> None:
    server: RegistryServer = request.getfixturevalue(f"{mode}_registry")
    proxy = await proxy_for(server)
    repo = client_for(through(server, proxy), transport).repository(unique_repo)
    digest, raw = await seed_image(repo)
    proxy.quirks.head_without_digest = True
    proxy.clear()
    head = await repo.manifest_head("v1")
    assert head is not None
    assert (head.digest, head.size) == (digest, len(raw))
    heads = [s for s in proxy.requests if s.method == "HEAD" and s.status == 200]
    gets = [s for s in proxy.requests if s.method == "GET" and "/manifests/" in s.path_qs]
    assert heads
    assert gets
    assert proxy.count("GET", "/blobs/") == 0
    accepts = {s.accept for s in heads + gets}
    assert len(accepts) == 1, accepts  # HEAD and GET ask alike, or Docker Hub answers another digest
    (accept,) = accepts
    assert accept is not None
    assert "application/vnd.oci.image.index.v1+json" in accept


# -- auth ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["token", "access_token", "both"])
@pytest.mark.parametrize("expires_in", [ABSENT, 3, None])
async def test_token_answers_of_every_shape(
    token_registry: RegistryServer,
    proxy_for: Any,
    transport: Transport,
    unique_repo: str,
    shape: str,
    expires_in: int | str | None,
) -> None:
    proxy = await proxy_for(token_registry)
    proxy.quirks.token_shape = shape
    proxy.quirks.token_expires_in = expires_in
    client = client_for(through(token_registry, proxy), transport)
    repo = client.repository(unique_repo)
    digest, _ = await seed_image(repo)
    head = await repo.manifest_head("v1")
    assert head is not None
    assert head.digest == digest
    assert proxy.token_requests
    now = client.auth._clock()
    tokens = list(client.auth.cache._tokens.values())
    assert tokens
    lifetime = {ABSENT: 60, 3: 3, None: 300}[expires_in]
    for token in tokens:
        # Refreshed before it expires: 30 s early, or half a short lifetime early.
        assert token.refresh_at - now <= lifetime - min(30, lifetime / 2) + 0.01


@pytest.mark.parametrize("mode", AUTH_MODES)
async def test_a_404_meaning_unauthorized_is_retried_with_credentials(
    request: pytest.FixtureRequest, proxy_for: Any, transport: Transport, unique_repo: str, mode: str
) -> None:
    server: RegistryServer = request.getfixturevalue(f"{mode}_registry")
    proxy = await proxy_for(server)
    digest, _ = await seed_image(client_for(through(server, proxy), transport).repository(unique_repo))
    proxy.quirks.not_found_for_unauthorized = True
    proxy.clear()
    repo = client_for(through(server, proxy), transport).repository(unique_repo)
    head = await repo.manifest_head("v1")
    assert head is not None
    assert head.digest == digest
    assert await repo.tags_list() == ["v1"]
    assert any(s.status == 404 for s in proxy.requests)  # the first, anonymous answer
    anonymous = client_for(through(server, proxy, auth=CredentialSpec()), transport).repository(unique_repo)
    assert await anonymous.manifest_head("v1") is None  # without credentials, 404 is all there is


async def test_a_401_in_the_middle_reauthenticates_once(
    registry_factory: Any, proxy_for: Any, transport: Transport, unique_repo: str
) -> None:
    server: RegistryServer = registry_factory("token")
    proxy = await proxy_for(server)
    proxy.quirks.token_uses = 3
    repo = client_for(through(server, proxy, chunk_size=2048), transport).repository(unique_repo)
    digest, _ = await seed_image(repo)  # chunked: every body is in memory, so 401s are resent
    for _ in range(5):
        head = await repo.manifest_head("v1")
        assert head is not None
        assert head.digest == digest
    assert any(s.status == 401 and s.authorization for s in proxy.requests)
    assert server.token_requests >= 4


async def test_a_401_on_a_streamed_body_is_retryable(
    registry_factory: Any, proxy_for: Any, transport: Transport, unique_repo: str
) -> None:
    server: RegistryServer = registry_factory("token")
    proxy = await proxy_for(server)
    proxy.quirks.token_uses = 1  # the upload's POST spends the token; its streamed PUT is refused
    repo = client_for(through(server, proxy), transport).repository(unique_repo)
    data = os.urandom(5000)
    with pytest.raises(AuthError) as caught:
        await repo.blob_put(Digest.of(data), len(data), chunks_of(data))
    assert caught.value.status == 401
    assert caught.value.retryable  # the body is spent: the caller sends it again, with a new token
    proxy.quirks.token_uses = None
    await repo.blob_put(Digest.of(data), len(data), chunks_of(data))
    assert await repo.blob_head(Digest.of(data)) == len(data)


async def test_a_mount_token_names_both_repositories(
    registry_factory: Any, proxy_for: Any, transport: Transport, unique_repo: str
) -> None:
    server: RegistryServer = registry_factory("token")
    assert server.token_server is not None
    proxy = await proxy_for(server)
    client = client_for(through(server, proxy), transport)
    source, target = client.repository(unique_repo + "/src"), client.repository(unique_repo + "/dst")
    digest = await push(source, os.urandom(4000))
    assert (await target.blob_mount(digest, source.name)).mounted
    scopes = server.token_server.issued[-1].scopes
    assert f"repository:{target.name}:pull,push" in scopes
    assert f"repository:{source.name}:pull" in scopes


def write_docker_config(path: Path, host: str, entry: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"auths": {host: entry}}))
    return path


async def test_an_identity_token_is_exchanged_at_the_realm(
    registry_factory: Any, proxy_for: Any, transport: Transport, unique_repo: str, tmp_path: Path
) -> None:
    server: RegistryServer = registry_factory("token")
    assert server.token_server is not None
    proxy = await proxy_for(server)
    config = write_docker_config(
        tmp_path / "config.json", proxy.host, {"identitytoken": server.token_server.refresh_token}
    )
    settings = through(server, proxy, auth=CredentialSpec(docker_config=str(config)))
    repo = client_for(settings, transport).repository(unique_repo)
    digest, _ = await seed_image(repo)
    head = await repo.manifest_head("v1")
    assert head is not None
    assert head.digest == digest
    methods = {method for method, _ in proxy.token_requests}
    assert methods == {"POST"}
    form = proxy.token_requests[0][1]
    assert "grant_type=refresh_token" in form
    assert "refresh_token=%2A%2A%2A" in form
    assert "service=" in form
    assert "scope=repository" in form

    wrong = write_docker_config(tmp_path / "wrong.json", proxy.host, {"identitytoken": "not-the-token"})
    settings = through(server, proxy, auth=CredentialSpec(docker_config=str(wrong)))
    with pytest.raises(AuthError) as caught:
        await client_for(settings, transport).repository(unique_repo).manifest_head("v1")
    assert "not-the-token" not in str(caught.value)


def install_helper(directory: Path, secret_file: Path, username: str) -> str:
    """``docker-credential-quirks``: answers ``username`` and whatever ``secret_file`` holds now."""
    script = directory / "docker-credential-quirks"
    script.write_text(
        "#!/bin/sh\n"
        "read -r server\n"
        f'printf \'{{"ServerURL":"%s","Username":"{username}","Secret":"%s"}}\' '
        f'"$server" "$(cat {secret_file})"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return "quirks"


async def test_an_expired_credential_helper_answer_is_asked_for_again(
    registry_factory: Any,
    proxy_for: Any,
    transport: Transport,
    unique_repo: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server: RegistryServer = registry_factory("token")
    assert server.token_server is not None
    assert server.password is not None
    proxy = await proxy_for(server)
    secret = tmp_path / "secret"
    secret.write_text(server.password)
    helper = install_helper(tmp_path, secret, server.token_server.username)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credHelpers": {proxy.host: helper}}))
    client = client_for(through(server, proxy, auth=CredentialSpec(docker_config=str(config))), transport)
    digest, _ = await seed_image(client.repository(unique_repo))
    # The helper's answer expires: the token server now wants the new secret, which the helper gives.
    server.token_server._password = "rotated-" + server.password
    secret.write_text(server.token_server._password)
    other = client.repository(unique_repo + "/other")  # a new scope: a new token is asked for
    assert await other.manifest_head("v1") is None
    head = await client.repository(unique_repo).manifest_head("v1")
    assert head is not None
    assert head.digest == digest
    assert server.token_server.rejected >= 1


# -- redirects -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", AUTH_MODES)
async def test_blob_gets_follow_the_cdn_redirect_without_credentials(
    request: pytest.FixtureRequest, proxy_for: Any, transport: Transport, unique_repo: str, mode: str
) -> None:
    server: RegistryServer = request.getfixturevalue(f"{mode}_registry")
    proxy = await proxy_for(server)
    repo = client_for(through(server, proxy), transport).repository(unique_repo)
    data = os.urandom(50_000)
    digest = await push(repo, data)
    proxy.quirks.cdn_redirect = True
    assert await read_all(repo, digest) == data
    async with repo.blob_open(digest, offset=1234) as stream:  # a resume asks the CDN for a Range
        assert b"".join([chunk async for chunk in stream]) == data[1234:]
    assert proxy.count("GET", "/blobs/") == 2
    assert len(proxy.cdn.requests) == 2
    assert proxy.cdn.saw_credentials == 0
    assert all(s.authorization for s in proxy.requests if s.method == "GET" and "/blobs/" in s.path_qs)


# -- lists -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", AUTH_MODES)
async def test_tag_lists_in_capped_pages_with_null_at_the_end(
    request: pytest.FixtureRequest, proxy_for: Any, transport: Transport, unique_repo: str, mode: str
) -> None:
    server: RegistryServer = request.getfixturevalue(f"{mode}_registry")
    proxy = await proxy_for(server)
    repo = client_for(through(server, proxy), transport).repository(unique_repo)
    _digest, raw = await seed_image(repo, "t0")
    tags = [f"t{i}" for i in range(6)]
    for tag in tags[1:]:
        await repo.manifest_put(tag, raw, "application/vnd.oci.image.manifest.v1+json")
    proxy.quirks.tags_page_cap = 2
    proxy.quirks.tags_null = True
    proxy.clear()
    assert sorted(await repo.tags_list()) == tags
    # 2 + 2 + 2, and the last full page links on to an empty one, answered "tags": null.
    assert proxy.count("GET", "/tags/list") == 4
    assert await repo.has_tags() is True


async def test_tag_pages_without_link_are_followed_with_last(
    plain_registry: RegistryServer, proxy_for: Any, transport: Transport, unique_repo: str
) -> None:
    proxy = await proxy_for(plain_registry)
    client = client_for(through(plain_registry, proxy), transport)
    repo = client.repository(unique_repo)
    _, raw = await seed_image(repo, "a0")
    tags = [f"a{i}" for i in range(5)]
    for tag in tags[1:]:
        await repo.manifest_put(tag, raw, "application/vnd.oci.image.manifest.v1+json")
    proxy.quirks.tags_page_cap = 2
    proxy.quirks.tags_without_link = True
    path = f"/v2/{repo.name}/tags/list"
    assert await list_names(client, path, "tags", scopes=repo.pull_scopes, page_size=2) == tags
    proxy.quirks.tags_null = True
    assert await list_names(client, path, "tags", scopes=repo.pull_scopes, page_size=2) == tags


async def test_a_page_size_the_registry_refuses_is_dropped(
    plain_registry: RegistryServer, proxy_for: Any, transport: Transport, unique_repo: str
) -> None:
    proxy = await proxy_for(plain_registry)
    repo = client_for(through(plain_registry, proxy), transport).repository(unique_repo)
    _, raw = await seed_image(repo, "b0")
    tags = [f"b{i}" for i in range(5)]
    for tag in tags[1:]:
        await repo.manifest_put(tag, raw, "application/vnd.oci.image.manifest.v1+json")
    proxy.quirks.tags_max_n = 2  # our n=1000 is refused; without n the registry pages by 2
    proxy.clear()
    assert sorted(await repo.tags_list()) == tags
    assert next(s.status for s in proxy.requests) == 400
    assert proxy.count("GET", "/tags/list") == 4  # refused, then 2 + 2 + 1
