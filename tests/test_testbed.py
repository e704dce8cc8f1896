"""The test bed itself: registries in each mode, the token server, the tool wrappers, the fault proxy."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mirrord.oci import Digest
from mirrord.testing.sample import sample_image
from tests.conftest import RegistryFactory, repo_slug
from tests.testbed.proxy import FaultProxy, request_kind
from tests.testbed.registry import RegistryServer, start_registry
from tests.testbed.tokenserver import parse_scope
from tests.testbed.tools import (
    ToolError,
    oci_image_tool_validate,
    promtool_check_metrics,
    redact_args,
    require_tool,
    skopeo,
    skopeo_inspect_raw,
    write_sample_layout,
)

# -- helpers ---------------------------------------------------------------------------------------


def http_get(server: RegistryServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, headers) of a GET on the registry with urllib (independent of the code under test)."""
    request = urllib.request.Request(server.url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=server.ssl_context()) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, exc.headers


def basic(username: str | None, password: str | None) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def challenge_params(header: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def fetch_token(server: RegistryServer, challenge: str, scope: str, password: str | None = None) -> str:
    params = challenge_params(challenge)
    url = f"{params['realm']}?service={params['service']}&scope={scope}"
    request = urllib.request.Request(url, headers=basic(server.username, password or server.password))
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.loads(response.read())
    assert body["expires_in"] > 0
    assert body["access_token"] == body["token"]
    token: str = body["token"]
    return token


# -- registries ------------------------------------------------------------------------------------


@pytest.mark.integration
def test_v2_answers_as_the_mode_says(any_registry: RegistryServer) -> None:
    status, headers = http_get(any_registry, "/v2/")
    if any_registry.mode in ("plain", "tls"):
        assert status == 200
    else:
        assert status == 401
        scheme = "Basic" if any_registry.mode == "basic" else "Bearer"
        assert headers["WWW-Authenticate"].startswith(scheme)
    assert any_registry.url.startswith("https://" if any_registry.mode == "tls" else "http://")
    assert any_registry.url.endswith(any_registry.host)


@pytest.mark.integration
def test_settings_describe_how_to_reach_the_server(any_registry: RegistryServer) -> None:
    settings = any_registry.settings()
    assert settings.host == any_registry.host
    assert settings.tls.enabled == (any_registry.mode == "tls")
    if any_registry.mode == "tls":
        assert settings.tls.verify
        assert settings.tls.ca_file == str(any_registry.ca_file)
    assert settings.auth.username == any_registry.username
    assert settings.auth.password == any_registry.password
    assert (any_registry.username is None) == (any_registry.mode in ("plain", "tls"))


@pytest.mark.integration
def test_password_never_in_repr(basic_registry: RegistryServer) -> None:
    assert basic_registry.password
    assert basic_registry.password not in repr(basic_registry)
    assert basic_registry.password not in repr(basic_registry.settings())


@pytest.mark.integration
def test_basic_auth_accepts_the_generated_credentials_only(basic_registry: RegistryServer) -> None:
    ok = basic(basic_registry.username, basic_registry.password)
    assert http_get(basic_registry, "/v2/", ok)[0] == 200
    assert http_get(basic_registry, "/v2/", basic(basic_registry.username, "wrong"))[0] == 401


@pytest.mark.integration
def test_token_flow_and_counting(registry_factory: RegistryFactory) -> None:
    server = registry_factory("token")
    assert server.token_requests == 0
    status, headers = http_get(server, "/v2/t/x/tags/list")
    assert status == 401
    challenge = headers["WWW-Authenticate"]
    assert challenge_params(challenge)["scope"] == "repository:t/x:pull"
    token = fetch_token(server, challenge, "repository:t/x:pull")
    assert server.token_requests == 1
    status, _ = http_get(server, "/v2/t/x/tags/list", {"Authorization": f"Bearer {token}"})
    assert status == 404  # authorised; the repository just does not exist
    with pytest.raises(urllib.error.HTTPError) as info:
        fetch_token(server, challenge, "repository:t/x:pull", password="wrong")
    assert info.value.code == 401
    info.value.close()
    assert server.token_requests == 1
    assert server.token_server is not None
    assert server.token_server.issued[0].scopes == ("repository:t/x:pull",)


@pytest.mark.integration
def test_token_lifetime_is_configurable(registry_factory: RegistryFactory) -> None:
    server = registry_factory("token", token_expires_in=1)
    _, headers = http_get(server, "/v2/")
    token = fetch_token(server, headers["WWW-Authenticate"], "")
    assert server.token_server is not None
    assert server.token_server.expires_in == 1
    assert http_get(server, "/v2/", {"Authorization": f"Bearer {token}"})[0] == 200
    time.sleep(2.1)  # distribution allows no leeway on exp
    assert http_get(server, "/v2/", {"Authorization": f"Bearer {token}"})[0] == 401


def test_scope_parsing() -> None:
    assert parse_scope("repository:a/b:pull,push") == {
        "type": "repository", "name": "a/b", "actions": ["pull", "push"],
    }  # fmt: skip
    assert parse_scope("repository:host:5000/a:pull") == {
        "type": "repository", "name": "host:5000/a", "actions": ["pull"],
    }  # fmt: skip
    assert parse_scope("registry:catalog:*")["actions"] == ["*"]  # type: ignore[index]
    assert parse_scope("nonsense") is None


@pytest.mark.integration
def test_stopping_frees_the_port_and_keeps_the_files(tmp_path: Path) -> None:
    with start_registry("plain", tmp_path / "r") as server:
        host, port = server.host.split(":")
        assert http_get(server, "/v2/")[0] == 200
    with pytest.raises(ConnectionRefusedError), socket.create_connection((host, int(port)), timeout=1):
        pass
    assert (tmp_path / "r" / "config.yml").exists()


@pytest.mark.integration
def test_port_collision_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.testbed.registry as registry_module

    # The port is taken by another registry that answers /v2/ 200: the probe must not take it for ours.
    with start_registry("plain", tmp_path / "other") as other:
        busy = int(other.host.split(":")[1])
        ports = iter([busy])
        real = registry_module._free_port
        monkeypatch.setattr(registry_module, "_free_port", lambda: next(ports, None) or real())
        with start_registry("plain", tmp_path / "r") as server:
            assert server.host != other.host
            assert http_get(server, "/v2/")[0] == 200
        assert "address already in use" in (tmp_path / "r" / "registry.log").read_text()


@pytest.mark.integration
def test_factory_gives_fresh_servers(
    registry_factory: RegistryFactory, plain_registry: RegistryServer
) -> None:
    first, second = registry_factory("plain"), registry_factory("plain")
    assert len({first.host, second.host, plain_registry.host}) == 3
    assert first.root != second.root


def test_bad_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"), start_registry("ftp", tmp_path):
        pass


def test_unique_repo_is_a_valid_unique_name(unique_repo: str) -> None:
    assert re.fullmatch(r"t/[a-z0-9]+(?:-[a-z0-9]+)*-\d+", unique_repo)
    assert repo_slug("test_X[Param-1/b]") == "test-x-param-1-b"
    assert repo_slug("___") == "test"


# -- tools -----------------------------------------------------------------------------------------


def test_require_tool_fails_in_ci_and_skips_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    assert require_tool("sh").endswith("/sh")
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="no-such-tool-xyz is not installed"):
        require_tool("no-such-tool-xyz")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-xyz is not installed"):
        require_tool("no-such-tool-xyz")


def test_credentials_are_redacted() -> None:
    args = ["skopeo", "--src-creds", "u:secret", "--dest-creds=v:hush", "--creds", "w:pw", "x:keep"]
    assert redact_args(args) == [
        "skopeo", "--src-creds", "u:***", "--dest-creds=v:***", "--creds", "w:***", "x:keep",
    ]  # fmt: skip


@pytest.mark.integration
@pytest.mark.tools("skopeo")
def test_skopeo_push_and_inspect_in_every_mode(
    any_registry: RegistryServer, unique_repo: str, tmp_path: Path
) -> None:
    image = sample_image("tb", kind="oci-index", layers=1, layer_size=512)
    layout = write_sample_layout(image, tmp_path / "layout", "v1")
    dest = f"docker://{any_registry.ref(unique_repo)}:v1"
    skopeo(
        "copy", "--all", "--preserve-digests", *any_registry.skopeo_flags("dest"), f"oci:{layout}:v1", dest
    )
    assert skopeo_inspect_raw(any_registry, f"{unique_repo}:v1") == image.root.raw
    assert skopeo_inspect_raw(any_registry, f"{unique_repo}@{image.digest}") == image.root.raw
    with pytest.raises(ToolError, match="manifest unknown") as info:
        skopeo_inspect_raw(any_registry, f"{unique_repo}:absent")
    if any_registry.password:
        assert any_registry.password not in str(info.value)


@pytest.mark.integration
@pytest.mark.tools("promtool")
def test_promtool_check_metrics() -> None:
    good = "# HELP mirrord_x_total Things.\n# TYPE mirrord_x_total counter\nmirrord_x_total 1\n"
    promtool_check_metrics(good)
    with pytest.raises(ToolError):
        promtool_check_metrics("this is not an exposition {\n")


@pytest.mark.integration
@pytest.mark.tools("oci-image-tool")
def test_oci_image_tool_validates_a_sample_layout(tmp_path: Path) -> None:
    image = sample_image("tb", kind="oci-manifest", layers=1, layer_size=256)
    layout = write_sample_layout(image, tmp_path / "layout", "v1")
    oci_image_tool_validate(layout, "v1")
    layer = image.root.layers[0].digest  # type: ignore[union-attr]
    (layout / "blobs" / "sha256" / layer.encoded).write_bytes(b"corrupt")
    with pytest.raises(ToolError):
        oci_image_tool_validate(layout, "v1")


# -- fault proxy -----------------------------------------------------------------------------------

BLOB = os.urandom(200_000)
BLOB_DIGEST = Digest.of(BLOB)


async def push_blob(session: aiohttp.ClientSession, base: str, repo: str, data: bytes) -> None:
    async with session.post(f"{base}/v2/{repo}/blobs/uploads/") as response:
        assert response.status == 202
        location = response.headers["Location"]

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 65536):
            yield data[start : start + 65536]

    headers = {"Content-Length": str(len(data)), "Content-Type": "application/octet-stream"}
    async with session.put(
        location, params={"digest": str(Digest.of(data))}, data=chunks(), headers=headers
    ) as r:
        assert r.status == 201, await r.text()


@pytest.fixture
async def proxy(plain_registry: RegistryServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(plain_registry.url) as proxy:
        yield proxy


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def blob_url(plain_registry: RegistryServer, proxy: FaultProxy, session: aiohttp.ClientSession) -> str:
    """The BLOB pushed through the proxy (upload Location rewritten); its URL via the proxy."""
    await push_blob(session, proxy.url, "t/proxy-blob", BLOB)
    proxy.clear_requests()
    return f"{proxy.url}/v2/t/proxy-blob/blobs/{BLOB_DIGEST}"


@pytest.mark.integration
async def test_proxy_forwards_and_counts(
    proxy: FaultProxy, session: aiohttp.ClientSession, blob_url: str
) -> None:
    assert proxy.host.startswith("127.0.0.1:")
    async with session.get(f"{proxy.url}/v2/") as response:
        assert response.status == 200
    async with session.get(blob_url) as response:
        assert await response.read() == BLOB
        assert response.headers["Docker-Content-Digest"] == str(BLOB_DIGEST)
    async with session.head(blob_url) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(BLOB))
    async with session.get(f"{proxy.url}/v2/t/proxy-blob/manifests/nope") as response:
        assert response.status == 404
    assert proxy.count("GET", "blob") == 1
    assert proxy.count("HEAD", "blob") == 1
    assert proxy.count("GET", "manifest") == 1
    assert proxy.count("GET", "other") == 1
    assert proxy.count() == 4
    assert proxy.requests[-1] == ("GET", "/v2/t/proxy-blob/manifests/nope", 404)


@pytest.mark.integration
async def test_proxy_upload_goes_through_the_proxy(
    proxy: FaultProxy, session: aiohttp.ClientSession, plain_registry: RegistryServer
) -> None:
    await push_blob(session, proxy.url, "t/proxy-up", b"hello" * 1000)
    assert proxy.count("POST", "upload") == 1
    assert proxy.count("PUT", "upload") == 1  # the Location pointed back at the proxy
    status, _ = http_get(plain_registry, f"/v2/t/proxy-up/blobs/{Digest.of(b'hello' * 1000)}")
    assert status == 200


def test_request_kinds() -> None:
    assert request_kind("/v2/a/b/manifests/latest") == "manifest"
    assert request_kind("/v2/a/blobs/sha256:00") == "blob"
    assert request_kind("/v2/a/blobs/uploads/") == "upload"
    assert request_kind("/v2/a/blobs/uploads/x?digest=sha256:1") == "upload"
    assert request_kind("/v2/a/tags/list?n=10") == "tags"
    assert request_kind("/token?service=x") == "token"
    assert request_kind("/v2/") == "other"
    assert request_kind("/v2/token/manifests/1") == "manifest"


@pytest.mark.integration
@pytest.mark.parametrize("status", [503, 429])
async def test_status_fault(
    proxy: FaultProxy, session: aiohttp.ClientSession, blob_url: str, status: int
) -> None:
    fault = proxy.add_fault("status", method="GET", path_re="/blobs/", status=status, retry_after=2)
    async with session.get(blob_url) as response:
        assert response.status == status
        assert response.headers["Retry-After"] == "2"
        body = await response.json()
        assert body["errors"][0]["code"] == ("TOOMANYREQUESTS" if status == 429 else "UNAVAILABLE")
    async with session.head(blob_url) as response:
        assert response.status == 200  # method filter
    async with session.get(blob_url) as response:
        assert response.status == 200  # times=1 used up
    assert fault.triggered == 1
    assert [s for _, _, s in proxy.requests] == [status, 200, 200]


@pytest.mark.integration
async def test_reset_fault(proxy: FaultProxy, session: aiohttp.ClientSession, blob_url: str) -> None:
    proxy.add_fault("reset", path_re="/blobs/", after_bytes=1000)
    received = bytearray()
    async with session.get(blob_url) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):  # noqa: PT012 (the bytes before the reset count)
            async for chunk in response.content.iter_any():
                received += chunk
    assert bytes(received) == BLOB[:1000]
    async with session.get(blob_url) as response:
        assert await response.read() == BLOB


@pytest.mark.integration
async def test_flip_fault(proxy: FaultProxy, session: aiohttp.ClientSession, blob_url: str) -> None:
    proxy.add_fault("flip", path_re="/blobs/", after_bytes=150_000)
    async with session.get(blob_url) as response:
        body = await response.read()
    assert len(body) == len(BLOB)
    assert [i for i in range(len(BLOB)) if body[i] != BLOB[i]] == [150_000]
    assert body[150_000] == BLOB[150_000] ^ 0xFF


@pytest.mark.integration
async def test_slow_fault_stalls_after_bytes(
    proxy: FaultProxy, session: aiohttp.ClientSession, blob_url: str
) -> None:
    proxy.add_fault("slow", path_re="/blobs/", after_bytes=100, delay=0.4)
    start = time.monotonic()
    async with session.get(blob_url) as response:
        rest = await response.read()
    assert rest == BLOB
    assert time.monotonic() - start >= 0.4


@pytest.mark.integration
async def test_slow_fault_sends_the_first_bytes_before_stalling(
    proxy: FaultProxy, session: aiohttp.ClientSession, blob_url: str
) -> None:
    proxy.add_fault("slow", path_re="/blobs/", after_bytes=100, delay=600)
    async with session.get(blob_url) as response:
        # A stall before the first bytes would hold them for 600 s: this deadline fails it.
        async with asyncio.timeout(30):
            assert await response.content.readexactly(100) == BLOB[:100]
        reading = asyncio.ensure_future(response.content.read(1))
        for _ in range(50):
            await asyncio.sleep(0)
        assert not reading.done()  # the rest is held back
        reading.cancel()


@pytest.mark.integration
async def test_slow_fault_trickles_without_after_bytes(
    proxy: FaultProxy, session: aiohttp.ClientSession, plain_registry: RegistryServer
) -> None:
    small = b"x" * 4096  # 4 pieces of 1 KiB, 0.05 s apart
    await push_blob(session, proxy.url, "t/proxy-trickle", small)
    proxy.add_fault("slow", method="GET", path_re="/blobs/sha", delay=0.05)
    start = time.monotonic()
    async with session.get(f"{proxy.url}/v2/t/proxy-trickle/blobs/{Digest.of(small)}") as response:
        assert await response.read() == small
    assert time.monotonic() - start >= 0.14  # the body is complete after the third pause


@pytest.mark.integration
async def test_delay_fault(proxy: FaultProxy, session: aiohttp.ClientSession) -> None:
    proxy.add_fault("delay", path_re="^/v2/$", delay=0.3, times=None)
    for _ in range(2):
        start = time.monotonic()
        async with session.get(f"{proxy.url}/v2/") as response:
            assert response.status == 200
        assert time.monotonic() - start >= 0.3


@pytest.mark.integration
async def test_probability_is_repeatable_with_a_seed(
    proxy: FaultProxy, session: aiohttp.ClientSession
) -> None:
    async def run() -> list[int]:
        proxy.clear_faults()
        proxy.clear_requests()
        proxy.add_fault("status", path_re="^/v2/$", times=None, probability=0.5, seed=42)
        for _ in range(20):
            async with session.get(f"{proxy.url}/v2/") as response:
                await response.read()
        return [s for _, _, s in proxy.requests]

    first = await run()
    assert first == await run()
    assert 0 < first.count(503) < 20


def test_bad_fault_kind() -> None:
    with pytest.raises(ValueError, match="fault kind"):
        FaultProxy("http://127.0.0.1:1").add_fault("explode")


@pytest.mark.integration
async def test_proxy_in_front_of_tls_and_token_registries(
    tls_registry: RegistryServer, token_registry: RegistryServer, session: aiohttp.ClientSession
) -> None:
    async with (
        FaultProxy(tls_registry.url, ssl=tls_registry.ssl_context()) as proxy,
        session.get(f"{proxy.url}/v2/") as response,
    ):
        assert response.status == 200
    async with FaultProxy(token_registry.url) as proxy:
        async with session.get(f"{proxy.url}/v2/") as response:
            assert response.status == 401
            assert "Bearer realm=" in response.headers["WWW-Authenticate"]
        assert proxy.requests == [("GET", "/v2/", 401)]


@pytest.mark.integration
async def test_proxy_counts_requests_of_a_real_client(
    tmp_path: Path, registry_factory: RegistryFactory
) -> None:
    """skopeo through the proxy: the counters see manifests and blobs, as sync tests will use them."""
    require_tool("skopeo")
    server = registry_factory("plain")
    image = sample_image("tb", kind="oci-manifest", layers=1, layer_size=256)
    layout = write_sample_layout(image, tmp_path / "layout", "v1")
    async with FaultProxy(server.url) as proxy:
        dest = f"docker://{proxy.host}/t/counted:v1"
        await asyncio.to_thread(skopeo, "copy", "--dest-tls-verify=false", f"oci:{layout}:v1", dest)
        assert proxy.count("PUT", "manifest") == 1
        assert proxy.count("PUT", "upload") == 2  # config + layer
    assert skopeo_inspect_raw(server, "t/counted:v1") == image.root.raw
