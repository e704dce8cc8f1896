"""A hostile source registry: manifests over 4 MiB, malformed JSON, and digests that try to walk
out of an OCI layout directory are refused with a clear error, end to end (`mirrord copy`), and
nothing is written outside the layout."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.e2e.helpers import run_cli

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"


def _manifest(config_digest: str, **extra: object) -> bytes:
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config_digest, "size": 2},
        "layers": [],
        **extra,
    }
    return json.dumps(body).encode()


def bodies(escape_name: str) -> dict[str, bytes]:
    """The manifests the hostile registry serves, by tag."""
    return {
        "big": _manifest("sha256:" + "a" * 64, annotations={"pad": "x" * (5 * 1024 * 1024)}),
        "badjson": b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'", "config": {',
        "escape": _manifest(f"sha256:../../../../{escape_name}"),
        "escapealgo": _manifest(f"../../{escape_name}:" + "b" * 64),
    }


@pytest.fixture
async def hostile(tmp_path: Path) -> AsyncIterator[str]:
    """``127.0.0.1:PORT`` of a plain-HTTP registry serving :func:`bodies`."""
    served = bodies(str(tmp_path / "escaped"))

    async def manifest(request: web.Request) -> web.StreamResponse:
        body = served.get(request.match_info["ref"])
        if body is None:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        headers = {
            "Content-Type": OCI_MANIFEST,
            "Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest(),
        }
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return web.Response(headers=headers)
        return web.Response(body=body, headers=headers)

    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=b"{}")

    async def v2(request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/v2/", v2)
    app.router.add_route("*", "/v2/evil/manifests/{ref}", manifest)
    app.router.add_route("*", "/v2/evil/blobs/{digest:.*}", blob)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("big", "larger than 4194304 bytes"),
        ("badjson", "JSON"),
        ("escape", "digest"),
        ("escapealgo", "digest"),
    ],
)
async def test_hostile_manifest_is_refused_clearly(
    hostile: str, tmp_path: Path, tag: str, message: str
) -> None:
    layout = tmp_path / "layout"
    result = await run_cli("copy", f"{hostile}/evil:{tag}", f"oci:{layout}:{tag}", timeout=60)
    assert result.code == 1, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert _outside(tmp_path, layout) == []


def _outside(root: Path, layout: Path) -> list[Path]:
    """Everything under ``root`` that is not the layout directory or inside it."""
    return [p for p in root.rglob("*") if layout not in p.parents and p != layout]
