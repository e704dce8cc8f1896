"""The catalog lister against an in-process fake: every page (Link, absolute or relative, or `last=`
when a registry sends no Link), duplicates dropped, and a clear error for a registry without one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mirrord.registry.errors import ProtocolError
from mirrord.registry.http.catalog import CatalogUnavailable, list_catalog
from mirrord.registry.http.client import RegistryClient
from mirrord.registry.http.retry import RetryPolicy
from mirrord.registry.http.transport import Transport
from mirrord.registry.settings import RegistrySettings, TLSSettings

FAST = RetryPolicy(base=0.001, cap=0.005, retry_after_cap=0.05)


@dataclass
class Catalog:
    """A fake ``/v2/_catalog``: ``names`` paged at ``page_max`` with the chosen Link style."""

    names: list[str]
    page_max: int = 3
    link: str = "relative"  # relative | absolute | none
    status: int = 200
    body: bytes | None = None
    seen: list[str] = field(default_factory=list)
    base: str = ""
    refuse_n: bool = False  # answer 400 to any n= (as ECR does above its cap)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(request.path_qs)
        if self.refuse_n and "n" in request.query:
            error = {"code": "PAGINATION_NUMBER_INVALID", "message": "invalid number of results"}
            return web.json_response({"errors": [error]}, status=400)
        if self.status != 200:
            return web.json_response({"errors": [{"code": "UNSUPPORTED"}]}, status=self.status)
        if self.body is not None:
            return web.Response(body=self.body, content_type="application/json")
        n = min(int(request.query.get("n", "1000")), self.page_max)
        last = request.query.get("last")
        rest = [x for x in sorted(self.names) if last is None or x > last]
        page = rest[:n]
        headers = {}
        if len(rest) > n and self.link != "none":
            path = f"/v2/_catalog?n={n}&last={page[-1]}"
            headers["Link"] = f'<{self.base + path if self.link == "absolute" else path}>; rel="next"'
        return web.json_response({"repositories": page}, headers=headers)


@asynccontextmanager
async def serving(catalog: Catalog) -> AsyncIterator[RegistryClient]:
    app = web.Application()
    app.router.add_get("/v2/_catalog", catalog.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    host = f"127.0.0.1:{server.port}"
    catalog.base = f"http://{host}"
    try:
        async with Transport(connect_timeout=5, read_timeout=5) as transport:
            settings = RegistrySettings(host=host, tls=TLSSettings(enabled=False))
            yield RegistryClient(settings, transport, retry=FAST)
    finally:
        await server.close()


NAMES = [f"team/r{i}" for i in range(8)] + ["team/deep/a/b", "other/x"]


@pytest.mark.parametrize("link", ["relative", "absolute", "none"])
async def test_every_page_is_read(link: str) -> None:
    catalog = Catalog(NAMES, link=link)
    async with serving(catalog) as client:
        names = await list_catalog(client, page_size=3)
    assert sorted(names) == sorted(NAMES)
    assert len(catalog.seen) == 4  # 10 names at 3 per page
    assert catalog.seen[0] == "/v2/_catalog?n=3"


async def test_a_refused_page_size_is_dropped_and_the_registry_pages() -> None:
    # The one paged-list reader's rule: a 400 to our n= is asked again without n.
    catalog = Catalog(NAMES, page_max=100, refuse_n=True)
    async with serving(catalog) as client:
        names = await list_catalog(client, page_size=3)
    assert sorted(names) == sorted(NAMES)
    assert catalog.seen == ["/v2/_catalog?n=3", "/v2/_catalog"]


async def test_the_client_method_lists_the_catalog() -> None:
    async with serving(Catalog(NAMES, page_max=100)) as client:
        assert sorted(await client.catalog()) == sorted(NAMES)


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_registry_without_a_catalog_is_a_clear_error(status: int) -> None:
    async with serving(Catalog(NAMES, status=status)) as client:
        with pytest.raises(CatalogUnavailable, match=rf"does not list its repositories .*HTTP {status}"):
            await list_catalog(client)


async def test_a_body_that_is_no_catalog_is_a_protocol_error() -> None:
    async with serving(Catalog(NAMES, body=b"<html>")) as client:
        with pytest.raises(ProtocolError, match="catalog is not JSON"):
            await list_catalog(client)
    async with serving(Catalog(NAMES, body=b'{"repositories": "x"}')) as client:
        with pytest.raises(ProtocolError, match="not a list"):
            await list_catalog(client)


async def test_a_registry_repeating_its_page_does_not_loop() -> None:
    # No Link, ignores last=: the same full page again ends the listing.
    async with serving(Catalog(NAMES, body=b'{"repositories": ["a", "b", "c"]}')) as client:
        assert await list_catalog(client, page_size=3) == ["a", "b", "c"]
